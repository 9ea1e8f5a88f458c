"""Sieve's lexical structure and grammar (RFC 5228 §2 and §8), to a checked syntax tree.

`parse` takes any text and gives a `Script` or raises `SieveSyntaxError` with the line of
the fault, never another exception (tests/unit/test_sieve_fuzz.py): a ManageSieve client
shows that message to the user as it is (RFC 5804 §2.6 CHECKSCRIPT). Nesting is bounded
(`MAX_DEPTH`) so that no input can exhaust the recursion of the parser or the interpreter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 64
"""Blocks and tests nested deeper than this are refused (Dovecot's limit is 32)."""
MAX_NUMBER = 2**63 - 1


class SieveSyntaxError(ValueError):
    """A script that is not valid Sieve: `line` is 1-based (0: the whole script)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    """Lower case, without the colon."""
    line: int


@dataclass(frozen=True, slots=True)
class Number:
    value: int
    line: int


@dataclass(frozen=True, slots=True)
class StringList:
    values: tuple[str, ...]
    line: int
    single: bool
    """Written as one string, not as a [list]: where the grammar wants a string."""


Argument = Tag | Number | StringList


@dataclass(frozen=True, slots=True)
class Test:
    name: str
    args: tuple[Argument, ...]
    tests: tuple[Test, ...]
    line: int
    listed: bool = False
    """Its tests were written as a parenthesised test-list (allof/anyof)."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: tuple[Argument, ...]
    tests: tuple[Test, ...]
    block: tuple[Command, ...] | None
    line: int
    listed: bool = False


@dataclass(frozen=True, slots=True)
class Script:
    commands: tuple[Command, ...]
    requires: frozenset[str] = field(default_factory=frozenset)
    parsed: dict[int, Any] = field(default_factory=dict, compare=False, repr=False)
    """Each command's and test's arguments sorted out once (spec.Parsed by id of the node,
    which lives as long as the script): the interpreter reads them on every run."""


# --------------------------------------------------------------------------------------------
# Lexer (RFC 5228 §8.1)

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<hash>\#[^\n]*)
  | (?P<bracket>/\*)
  | (?P<multi>text:[ \t]*(?:\#[^\n]*)?\r?\n)
  | (?P<tag>:[A-Za-z_][A-Za-z0-9_]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>[0-9]+[KkMmGg]?)
  | (?P<quote>")
  | (?P<special>[\[\]{}(),;])
""", re.VERBOSE)
_QUANTIFIER = {"k": 2**10, "m": 2**20, "g": 2**30}
_QUOTED_PIECE = re.compile(r'[^"\\]+|\\.|\\$', re.DOTALL)


@dataclass(slots=True)
class Token:
    kind: str
    """ident, tag, number, string, multi, a special character, or eof."""
    value: str | int
    line: int


def tokens(text: str) -> list[Token]:
    out: list[Token] = []
    pos, line, end = 0, 1, len(text)
    while pos < end:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SieveSyntaxError(line, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup
        value = m.group()
        start_line = line
        if kind in ("ws", "hash"):
            line += value.count("\n")
            pos = m.end()
            continue
        if kind == "bracket":
            close = text.find("*/", m.end())
            if close < 0:
                raise SieveSyntaxError(line, "unterminated /* comment")
            line += text.count("\n", pos, close)
            pos = close + 2
            continue
        if kind == "quote":
            pos, string, line = _quoted(text, m.end(), line)
            out.append(Token("string", string, start_line))
            continue
        if kind == "multi":
            line += 1
            pos, string, line = _multiline(text, m.end(), line, start_line)
            out.append(Token("string", string, start_line))
            continue
        pos = m.end()
        if kind == "number":
            number = int(value.rstrip("KkMmGg")) * _QUANTIFIER.get(value[-1].lower(), 1)
            if number > MAX_NUMBER:
                raise SieveSyntaxError(line, f"number {value} is too large")
            out.append(Token("number", number, line))
        elif kind == "tag":
            out.append(Token("tag", value[1:].lower(), line))
        elif kind == "ident":
            if pos < end and text[pos] == ":" and value.lower() == "text":
                raise SieveSyntaxError(line, "text: must be followed by a line break")
            out.append(Token("ident", value.lower(), line))
        else:
            out.append(Token(value, value, line))
    out.append(Token("eof", "", line))
    return out


def _quoted(text: str, pos: int, line: int) -> tuple[int, str, int]:
    """A quoted string from after its opening quote: \\" and \\\\ escape, any other
    backslash stands for the character after it (RFC 5228 §2.4.2)."""
    pieces: list[str] = []
    start_line = line
    while True:
        if pos >= len(text):
            raise SieveSyntaxError(start_line, "unterminated string")
        if text[pos] == '"':
            return pos + 1, "".join(pieces), line
        m = _QUOTED_PIECE.match(text, pos)
        assert m is not None
        piece = m.group()
        if piece.startswith("\\"):
            piece = piece[1:]
        line += piece.count("\n")
        pieces.append(piece)
        pos = m.end()


def _multiline(text: str, pos: int, line: int, start_line: int) -> tuple[int, str, int]:
    """The lines of a text: string up to the lone "." line; a leading ".." loses one dot.
    Lines end in CRLF in the value, as RFC 5228 §2.4.2 has them."""
    lines: list[str] = []
    while True:
        nl = text.find("\n", pos)
        if nl < 0:
            raise SieveSyntaxError(start_line, "text: string has no ending \".\" line")
        row = text[pos:nl].removesuffix("\r")
        pos = nl + 1
        line += 1
        if row == ".":
            return pos, "".join(lines), line
        if row.startswith(".."):
            row = row[1:]
        lines.append(row + "\r\n")


# --------------------------------------------------------------------------------------------
# Parser (RFC 5228 §8.2)


class _Parser:
    def __init__(self, toks: list[Token]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self) -> Token:
        return self.toks[self.i]

    def take(self) -> Token:
        tok = self.toks[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def expect(self, kind: str, what: str) -> Token:
        tok = self.take()
        if tok.kind != kind:
            raise SieveSyntaxError(tok.line, f"expected {what}, found {_describe(tok)}")
        return tok

    def commands(self, depth: int, closing: str) -> tuple[Command, ...]:
        out: list[Command] = []
        while self.peek().kind != closing:
            out.append(self.command(depth))
        return tuple(out)

    def command(self, depth: int) -> Command:
        tok = self.expect("ident", "a command")
        name = str(tok.value)
        args, tests, listed = self.arguments(depth)
        nxt = self.take()
        if nxt.kind == ";":
            return Command(name, args, tests, None, tok.line, listed)
        if nxt.kind == "{":
            if depth >= MAX_DEPTH:
                raise SieveSyntaxError(nxt.line, f"blocks nested deeper than {MAX_DEPTH}")
            block = self.commands(depth + 1, "}")
            self.expect("}", '"}"')
            return Command(name, args, tests, block, tok.line, listed)
        raise SieveSyntaxError(nxt.line, f'expected ";" or "{{" after {name}, found'
                                         f" {_describe(nxt)}")

    def arguments(self, depth: int) -> tuple[tuple[Argument, ...], tuple[Test, ...], bool]:
        args: list[Argument] = []
        while True:
            tok = self.peek()
            if tok.kind == "tag":
                self.take()
                args.append(Tag(str(tok.value), tok.line))
            elif tok.kind == "number":
                self.take()
                args.append(Number(int(tok.value), tok.line))
            elif tok.kind == "string":
                self.take()
                args.append(StringList((str(tok.value),), tok.line, True))
            elif tok.kind == "[":
                args.append(self.string_list())
            else:
                break
        tok = self.peek()
        if tok.kind == "ident":
            return tuple(args), (self.test(depth + 1),), False
        if tok.kind == "(":
            return tuple(args), self.test_list(depth + 1), True
        return tuple(args), (), False

    def string_list(self) -> StringList:
        open_ = self.take()
        values = [str(self.expect("string", "a string").value)]
        while self.peek().kind == ",":
            self.take()
            values.append(str(self.expect("string", "a string").value))
        self.expect("]", '"]" or ","')
        return StringList(tuple(values), open_.line, False)

    def test(self, depth: int) -> Test:
        if depth >= MAX_DEPTH:
            raise SieveSyntaxError(self.peek().line, f"tests nested deeper than {MAX_DEPTH}")
        tok = self.expect("ident", "a test")
        args, tests, listed = self.arguments(depth)
        return Test(str(tok.value), args, tests, tok.line, listed)

    def test_list(self, depth: int) -> tuple[Test, ...]:
        self.take()
        tests = [self.test(depth)]
        while self.peek().kind == ",":
            self.take()
            tests.append(self.test(depth))
        self.expect(")", '")" or ","')
        return tuple(tests)


def _describe(tok: Token) -> str:
    if tok.kind == "eof":
        return "the end of the script"
    if tok.kind == "string":
        return "a string"
    if tok.kind == "number":
        return f"number {tok.value}"
    if tok.kind == "tag":
        return f":{tok.value}"
    return repr(str(tok.value))


def parse(text: str) -> Script:
    """`text` as a checked Script (spec.check: commands, arguments, require)."""
    from mailyard.core.sieve.spec import check

    parser = _Parser(tokens(text))
    commands = parser.commands(0, "eof")
    return check(commands)
