"""Reading IMAP commands off the wire and parsing their arguments (RFC 3501 §9, RFC 9051 §9).

`CommandReader` frames one command with its literals (synchronising `{n}`, LITERAL+ `{n+}`,
LITERAL- and BINARY's `~{n}`), asking for continuation only for synchronising literals and
refusing one that is too big before the client sends it. `Tokenizer` walks the arguments of one
command; every `parse_*` raises `ParseError` (answered as BAD) and nothing else.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

LITERAL_MINUS_MAX = 4096
_LITERAL_AT_END = re.compile(rb"~?\{(\d{1,20})([+-]?)\}\r?\n?$")


class ParseError(Exception):
    """Bad syntax: the server answers BAD with this message."""


class CommandTooLong(Exception):
    pass


class LiteralTooBig(Exception):
    def __init__(self, tag: str | None) -> None:
        super().__init__("literal too big")
        self.tag = tag


# --------------------------------------------------------------------------- framing

class CommandReader:
    def __init__(self, reader: asyncio.StreamReader, *, max_line: int = 65_536,
                 max_literal: int = 36_700_160,
                 continuation: Callable[[bytes], Awaitable[None]]) -> None:
        self.reader = reader
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_command = max_literal + 16 * max_line
        self.continuation = continuation

    async def read_line(self) -> bytes | None:
        try:
            line = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as e:
            await self._discard_line(e.consumed)
            raise CommandTooLong() from None
        return line

    async def _discard_line(self, consumed: int) -> None:
        await self.reader.readexactly(consumed)
        while True:
            try:
                await self.reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as e:
                await self.reader.readexactly(e.consumed)

    async def read_command(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = await self.read_line()
            if line is None:
                return None
            if len(line) > self.max_line:
                raise CommandTooLong()
            parts.append(line)
            total += len(line)
            m = _LITERAL_AT_END.search(line.rstrip(b"\r\n") + b"\n")
            if m is None:
                return b"".join(parts)
            size, kind = int(m.group(1)), m.group(2)
            tag = parts[0].split(b" ", 1)[0].decode("ascii", "replace")
            too_big = size > self.max_literal or (kind == b"-" and size > LITERAL_MINUS_MAX)
            if too_big or total + size > self.max_command:
                if kind == b"":
                    raise LiteralTooBig(tag)  # never sent "+": the client sends nothing
                await self._skip(size)
                await self.read_line()  # the rest of the command after the literal
                raise LiteralTooBig(tag)
            if kind == b"":
                await self.continuation(b"+ Ready for literal data\r\n")
            try:
                data = await self.reader.readexactly(size)
            except asyncio.IncompleteReadError:
                return None
            parts.append(data)
            total += size

    async def _skip(self, size: int) -> None:
        while size > 0:
            chunk = await self.reader.read(min(size, 1 << 20))
            if not chunk:
                return
            size -= len(chunk)


# --------------------------------------------------------------------------- commands

@dataclass(frozen=True, slots=True)
class Command:
    tag: str
    name: str
    args: bytes


_TAG = re.compile(rb"[\x21-\x7e]+")
_ATOM_SPECIALS = set(b'(){ %*"\\]') | set(range(0, 0x21)) | {0x7f}


def parse_command(data: bytes) -> Command:
    line = data[:-2] if data.endswith(b"\r\n") else data.rstrip(b"\n")
    tag, sp, rest = line.partition(b" ")
    if not tag or not _TAG.fullmatch(tag) or any(c in b'+(){%*"\\' for c in tag):
        raise ParseError("Missing or invalid tag")
    if not sp:
        raise ParseError("Missing command")
    name, _, args = rest.partition(b" ")
    upper = name.upper().decode("ascii", "replace")
    if upper == "UID":
        sub, _, args = args.partition(b" ")
        upper = "UID " + sub.upper().decode("ascii", "replace")
    if not upper or not upper.replace(" ", "").replace("-", "").isalnum():
        raise ParseError("Invalid command name")
    return Command(tag.decode("ascii"), upper, (b" " + args) if args else b"")


# --------------------------------------------------------------------------- tokens

@dataclass(slots=True)
class SequenceSet:
    ranges: list[tuple[int | None, int | None]]
    """(start, end) with None for "*"."""
    saved: bool = False
    """"$": the result saved by SEARCH RETURN (SAVE) (RFC 5182); the session resolves it."""

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        return [(largest if a is None else a, largest if b is None else b)
                for a, b in self.ranges]

    def contains(self, n: int, largest: int) -> bool:
        return any(min(a, b) <= n <= max(a, b) for a, b in self.resolve(largest))


class Tokenizer:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def error(self, message: str) -> ParseError:
        return ParseError(f"{message} at position {self.pos}")

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def end(self) -> None:
        if not self.at_end():
            raise self.error("Unexpected extra arguments")

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise self.error("Expected a space")
        self.pos += 1

    def expect(self, token: bytes) -> None:
        if self.data[self.pos:self.pos + len(token)].upper() != token.upper():
            raise self.error(f"Expected {token.decode()}")
        self.pos += len(token)

    def maybe(self, token: bytes) -> bool:
        if self.data[self.pos:self.pos + len(token)].upper() == token.upper():
            self.pos += len(token)
            return True
        return False

    def atom(self, extra: bytes = b"") -> str:
        start = self.pos
        allowed_extra = set(extra)
        while self.pos < len(self.data) and (
                self.data[self.pos] not in _ATOM_SPECIALS or self.data[self.pos] in allowed_extra):
            self.pos += 1
        if self.pos == start:
            raise self.error("Expected an atom")
        return self.data[start:self.pos].decode("utf-8", "replace")

    def number(self) -> int:
        m = re.compile(rb"\d{1,20}").match(self.data, self.pos)
        if not m:
            raise self.error("Expected a number")
        self.pos = m.end()
        return int(m.group(0))

    def _literal(self) -> bytes:
        m = re.compile(rb"~?\{(\d{1,20})[+-]?\}\r?\n").match(self.data, self.pos)
        if not m:
            raise self.error("Bad literal")
        size = int(m.group(1))
        start = m.end()
        if start + size > len(self.data):
            raise self.error("Truncated literal")
        self.pos = start + size
        return self.data[start:start + size]

    def _quoted(self) -> bytes:
        self.pos += 1
        out = bytearray()
        while self.pos < len(self.data):
            ch = self.data[self.pos]
            if ch == 0x5C:
                if self.pos + 1 >= len(self.data):
                    break
                out.append(self.data[self.pos + 1])
                self.pos += 2
                continue
            if ch == 0x22:
                self.pos += 1
                return bytes(out)
            if ch in (0x0D, 0x0A):
                break
            out.append(ch)
            self.pos += 1
        raise self.error("Unterminated quoted string")

    def string(self) -> bytes:
        ch = self.peek()
        if ch == 0x22:
            return self._quoted()
        if ch in (0x7B, 0x7E):
            return self._literal()
        raise self.error("Expected a string")

    def astring(self) -> bytes:
        if self.peek() in (0x22, 0x7B, 0x7E):
            return self.string()
        return self.atom(extra=b"]").encode()

    def astring_text(self) -> str:
        return self.astring().decode("utf-8", "replace")

    def nstring_or_nil(self) -> bytes | None:
        if self.maybe(b"NIL"):
            return None
        return self.string()

    def mailbox(self) -> str:
        name = decode_mutf7(self.astring_text())
        return "INBOX" if name.upper() == "INBOX" else name

    def paren_atoms(self) -> list[str]:
        """A parenthesised list of atoms or strings (flags, options); nested lists flattened."""
        self.expect(b"(")
        out: list[str] = []
        depth = 1
        while depth:
            ch = self.peek()
            if ch is None:
                raise self.error("Unterminated list")
            if ch == 0x20:
                self.pos += 1
            elif ch == 0x28:
                self.pos += 1
                depth += 1
            elif ch == 0x29:
                self.pos += 1
                depth -= 1
            elif ch in (0x22, 0x7B, 0x7E):
                out.append(self.string().decode("utf-8", "replace"))
            else:
                out.append(self.atom(extra=b"\\*]%"))
        return out

    def flag_list(self) -> list[str]:
        if self.peek() == 0x28:
            return self.paren_atoms()
        return [self.atom(extra=b"\\")]

    def sequence_set(self) -> SequenceSet:
        if self.maybe(b"$"):
            return SequenceSet([], saved=True)
        m = re.compile(rb"[0-9*:,]+").match(self.data, self.pos)
        if not m:
            raise self.error("Expected a sequence set")
        self.pos = m.end()
        ranges: list[tuple[int | None, int | None]] = []
        for piece in m.group(0).split(b","):
            a, _, b = piece.partition(b":")
            try:
                start = None if a == b"*" else int(a)
                end = start if not b else (None if b == b"*" else int(b))
            except ValueError:
                raise self.error("Invalid sequence set") from None
            if start == 0 or end == 0:
                raise self.error("Zero is not a valid message number")
            ranges.append((start, end))
        return SequenceSet(ranges)

    def date(self) -> date:
        quoted = self.maybe(b'"')
        text = self.atom(extra=b"-")
        if quoted:
            self.expect(b'"')
        try:
            return datetime.strptime(text, "%d-%b-%Y").date()
        except ValueError:
            raise self.error("Invalid date") from None

    def date_time(self) -> datetime:
        raw = self.string().decode("ascii", "replace").strip()
        try:
            return datetime.strptime(raw, "%d-%b-%Y %H:%M:%S %z")
        except ValueError:
            raise self.error("Invalid date-time") from None


def decode_mutf7(name: str) -> str:
    """Modified UTF-7 (RFC 3501 §5.1.3) to text; names without '&' pass through."""
    if "&" not in name:
        return name
    import base64
    out, i = [], 0
    while i < len(name):
        if name[i] == "&":
            j = name.find("-", i)
            if j < 0:
                raise ParseError("Invalid modified UTF-7 mailbox name")
            chunk = name[i + 1:j]
            if not chunk:
                out.append("&")
            else:
                b64 = chunk.replace(",", "/")
                b64 += "=" * (-len(b64) % 4)
                try:
                    out.append(base64.b64decode(b64).decode("utf-16-be"))
                except (ValueError, UnicodeDecodeError):
                    raise ParseError("Invalid modified UTF-7 mailbox name") from None
            i = j + 1
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


# --------------------------------------------------------------------------- FETCH

@dataclass(frozen=True, slots=True)
class Section:
    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def spec(self) -> str:
        bits = ".".join(map(str, self.part))
        if self.text:
            bits = f"{bits}.{self.text}" if bits else self.text
            if self.fields:
                bits += " (" + " ".join(self.fields) + ")"
        return bits


@dataclass(frozen=True, slots=True)
class FetchItem:
    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False

    def response_name(self) -> str:
        base = self.name
        if self.section is None:
            return base
        text = f"{base}[{self.section.spec()}]"
        if self.partial is not None:
            text += f"<{self.partial[0]}>"
        return text


_SIMPLE = {"FLAGS", "UID", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
           "RFC822.TEXT", "ENVELOPE", "BODY", "BODYSTRUCTURE", "MODSEQ", "EMAILID", "THREADID",
           "X-GM-MSGID", "X-GM-THRID", "X-GM-LABELS", "SAVEDATE"}
_MACROS = {"ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
           "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
           "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]}


def _section(tok: Tokenizer, binary: bool) -> Section:
    tok.expect(b"[")
    part: list[int] = []
    text: str | None = None
    fields: tuple[str, ...] = ()
    while tok.peek() is not None and chr(tok.peek() or 0).isdigit():
        part.append(tok.number())
        if not tok.maybe(b"."):
            break
    if tok.peek() != 0x5D:
        if binary:
            raise tok.error("BINARY takes part numbers only")
        m = _ATT_NAME.match(tok.data, tok.pos)
        if not m:
            raise tok.error("Expected a section name")
        tok.pos = m.end()
        word = m.group(0).decode().upper()
        if word not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"):
            raise tok.error(f"Unknown section {word[:20]}")
        if word == "MIME" and not part:
            raise tok.error("MIME needs a part number")
        text = word
        if word.startswith("HEADER.FIELDS"):
            tok.sp()
            fields = tuple(f.upper() for f in tok.paren_atoms())
            if not fields:
                raise tok.error("Empty header list")
    tok.expect(b"]")
    if any(p == 0 for p in part):
        raise tok.error("Part numbers start at 1")
    return Section(tuple(part), text, fields)


_ATT_NAME = re.compile(rb"[A-Za-z0-9.\-]+")


def _fetch_att(tok: Tokenizer) -> list[FetchItem]:
    m = _ATT_NAME.match(tok.data, tok.pos)
    if not m:
        raise tok.error("Expected a fetch item")
    tok.pos = m.end()
    name = m.group(0).decode().upper()
    if name in _MACROS:
        return [FetchItem(n) for n in _MACROS[name]]
    if name in ("BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE") \
            and tok.peek() == 0x5B:
        binary = name.startswith("BINARY")
        section = _section(tok, binary)
        partial = None
        if tok.maybe(b"<"):
            origin = tok.number()
            tok.expect(b".")
            length = tok.number()
            tok.expect(b">")
            partial = (origin, length)
        if name == "BINARY.SIZE":
            return [FetchItem("BINARY.SIZE", section)]
        return [FetchItem(name.split(".")[0], section, partial, peek=name.endswith(".PEEK"))]
    if name not in _SIMPLE:
        raise tok.error(f"Unknown fetch item {name[:30]}")
    return [FetchItem(name)]


def parse_fetch_items(tok: Tokenizer) -> tuple[list[FetchItem], int | None, bool]:
    """The items (macros expanded), CHANGEDSINCE and VANISHED from the modifiers (RFC 7162)."""
    items: list[FetchItem] = []
    if tok.maybe(b"("):
        while True:
            items += _fetch_att(tok)
            if tok.maybe(b")"):
                break
            tok.sp()
    else:
        items = _fetch_att(tok)
    changed_since = None
    vanished = False
    if not tok.at_end():
        tok.sp()
        tok.expect(b"(")
        while not tok.maybe(b")"):
            word = tok.atom().upper()
            if word == "CHANGEDSINCE":
                tok.sp()
                changed_since = tok.number()
            elif word == "VANISHED":
                vanished = True
            else:
                raise tok.error(f"Unknown FETCH modifier {word[:20]}")
            tok.maybe(b" ")
    if changed_since is not None and not any(i.name == "MODSEQ" for i in items):
        items.append(FetchItem("MODSEQ"))
    return items, changed_since, vanished


# --------------------------------------------------------------------------- STORE

@dataclass(slots=True)
class StoreRequest:
    sequence_set: SequenceSet
    unchanged_since: int | None
    mode: str
    silent: bool
    flags: list[str]
    gm_labels: bool


def parse_store(tok: Tokenizer) -> StoreRequest:
    seqset = tok.sequence_set()
    tok.sp()
    unchanged = None
    if tok.maybe(b"("):
        tok.expect(b"UNCHANGEDSINCE")
        tok.sp()
        unchanged = tok.number()
        tok.expect(b")")
        tok.sp()
    mode = "+" if tok.maybe(b"+") else "-" if tok.maybe(b"-") else ""
    word = tok.atom(extra=b".").upper()
    silent = word.endswith(".SILENT")
    base = word.removesuffix(".SILENT")
    if base not in ("FLAGS", "X-GM-LABELS"):
        raise tok.error("Expected FLAGS")
    tok.sp()
    flags = tok.flag_list()
    return StoreRequest(seqset, unchanged, mode, silent, flags, base == "X-GM-LABELS")


# --------------------------------------------------------------------------- SEARCH

@dataclass(slots=True)
class All:
    pass


@dataclass(slots=True)
class And:
    keys: list[Any]


@dataclass(slots=True)
class Or:
    left: Any
    right: Any


@dataclass(slots=True)
class Not:
    key: Any


@dataclass(slots=True)
class SeqSet:
    seqset: SequenceSet


@dataclass(slots=True)
class Uid:
    seqset: SequenceSet


@dataclass(slots=True)
class Flag:
    name: str
    present: bool


@dataclass(slots=True)
class Keyword:
    name: str
    present: bool


@dataclass(slots=True)
class Date:
    field: str
    op: str
    date: date


@dataclass(slots=True)
class Size:
    op: str
    n: int


@dataclass(slots=True)
class Header:
    name: str
    value: str


@dataclass(slots=True)
class Text:
    value: str


@dataclass(slots=True)
class Body:
    value: str


@dataclass(slots=True)
class ModSeq:
    n: int


@dataclass(slots=True)
class GmRaw:
    query: str


@dataclass(slots=True)
class EmailId:
    id: str


@dataclass(slots=True)
class ThreadId:
    id: str


@dataclass(slots=True)
class GmLabel:
    name: str


@dataclass(slots=True)
class SearchProgram:
    key: Any
    returns: list[str] | None = None
    charset: str | None = None


_FLAG_KEYS = {"ANSWERED": ("ANSWERED", True), "DELETED": ("DELETED", True),
              "DRAFT": ("DRAFT", True), "FLAGGED": ("FLAGGED", True), "SEEN": ("SEEN", True),
              "RECENT": ("RECENT", True), "NEW": ("NEW", True), "OLD": ("OLD", True),
              "UNANSWERED": ("ANSWERED", False), "UNDELETED": ("DELETED", False),
              "UNDRAFT": ("DRAFT", False), "UNFLAGGED": ("FLAGGED", False),
              "UNSEEN": ("SEEN", False)}
_DATES = {"BEFORE": ("internal", "before"), "ON": ("internal", "on"),
          "SINCE": ("internal", "since"), "SENTBEFORE": ("sent", "before"),
          "SENTON": ("sent", "on"), "SENTSINCE": ("sent", "since")}
_MAX_DEPTH = 64


def _text(tok: Tokenizer) -> str:
    tok.sp()
    return tok.astring_text()


def _search_key(tok: Tokenizer, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise tok.error("Search program too deep")
    if tok.maybe(b"("):
        keys = [_search_key(tok, depth + 1)]
        while not tok.maybe(b")"):
            tok.sp()
            keys.append(_search_key(tok, depth + 1))
        return keys[0] if len(keys) == 1 else And(keys)
    ch = tok.peek()
    if ch is not None and (chr(ch).isdigit() or ch in (0x2A, 0x24)):
        return SeqSet(tok.sequence_set())
    word = tok.atom(extra=b"-").upper()
    if word == "ALL":
        return All()
    if word in _FLAG_KEYS:
        name, present = _FLAG_KEYS[word]
        return Flag(name, present)
    if word in ("KEYWORD", "UNKEYWORD"):
        tok.sp()
        return Keyword(tok.atom(extra=b"\\"), word == "KEYWORD")
    if word in _DATES:
        tok.sp()
        field_, op = _DATES[word]
        return Date(field_, op, tok.date())
    if word in ("LARGER", "SMALLER"):
        tok.sp()
        return Size(word.lower(), tok.number())
    if word in ("FROM", "TO", "CC", "BCC", "SUBJECT"):
        return Header(word, _text(tok))
    if word == "HEADER":
        tok.sp()
        name = tok.astring_text()
        return Header(name, _text(tok))
    if word == "TEXT":
        return Text(_text(tok))
    if word == "BODY":
        return Body(_text(tok))
    if word == "NOT":
        tok.sp()
        return Not(_search_key(tok, depth + 1))
    if word == "OR":
        tok.sp()
        left = _search_key(tok, depth + 1)
        tok.sp()
        return Or(left, _search_key(tok, depth + 1))
    if word == "UID":
        tok.sp()
        return Uid(tok.sequence_set())
    if word == "MODSEQ":
        tok.sp()
        if tok.peek() == 0x22:  # entry name and type (RFC 7162 §3.1.5): accepted, ignored
            tok.string()
            tok.sp()
            tok.atom()
            tok.sp()
        return ModSeq(tok.number())
    if word == "X-GM-LABELS":
        return GmLabel(_text(tok))
    if word == "X-GM-RAW":
        return GmRaw(_text(tok))
    if word == "EMAILID":
        return EmailId(_text(tok))
    if word == "THREADID":
        return ThreadId(_text(tok))
    raise tok.error(f"Unknown search key {word[:30]}")


def parse_search(tok: Tokenizer, *, uid: bool) -> SearchProgram:
    program = SearchProgram(key=All())
    tok.sp()
    if tok.maybe(b"RETURN "):
        program.returns = [w.upper() for w in tok.paren_atoms()]
        tok.sp()
    if tok.maybe(b"CHARSET "):
        program.charset = _charset(tok)
        tok.sp()
    program.key = _search_keys(tok)
    return program


def _search_keys(tok: Tokenizer) -> Any:
    keys = [_search_key(tok, 0)]
    while not tok.at_end():
        tok.sp()
        keys.append(_search_key(tok, 0))
    return keys[0] if len(keys) == 1 else And(keys)


def _charset(tok: Tokenizer) -> str:
    charset = tok.astring_text().upper()
    if charset not in ("UTF-8", "US-ASCII"):
        raise ParseError("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset")
    return charset


SORT_KEYS = {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM",
             "DISPLAYTO"}


def parse_sort(tok: Tokenizer) -> tuple[list[tuple[str, bool]], Any]:
    """SORT (criteria) charset keys (RFC 5256): [(key, reverse)], search key."""
    tok.sp()
    words = [w.upper() for w in tok.paren_atoms()]
    criteria: list[tuple[str, bool]] = []
    reverse = False
    for word in words:
        if word == "REVERSE":
            reverse = True
            continue
        if word not in SORT_KEYS:
            raise tok.error(f"Unknown sort key {word[:20]}")
        criteria.append((word, reverse))
        reverse = False
    if not criteria or reverse:
        raise tok.error("Bad sort criteria")
    tok.sp()
    _charset(tok)
    tok.sp()
    return criteria, _search_keys(tok)


def parse_thread(tok: Tokenizer) -> tuple[str, Any]:
    """THREAD algorithm charset keys (RFC 5256)."""
    tok.sp()
    algorithm = tok.atom().upper()
    if algorithm not in ("REFERENCES", "ORDEREDSUBJECT"):
        raise tok.error(f"Unknown threading algorithm {algorithm[:20]}")
    tok.sp()
    _charset(tok)
    tok.sp()
    return algorithm, _search_keys(tok)


# --------------------------------------------------------------------------- LIST / STATUS

@dataclass(slots=True)
class ListRequest:
    reference: str
    patterns: list[str]
    selection: set[str] = field(default_factory=set)
    returns: set[str] = field(default_factory=set)
    status_items: list[str] = field(default_factory=list)


def _list_pattern(tok: Tokenizer) -> str:
    if tok.peek() in (0x22, 0x7B):
        return decode_mutf7(tok.string().decode("utf-8", "replace"))
    return decode_mutf7(tok.atom(extra=b"%*]"))


def parse_list(tok: Tokenizer) -> ListRequest:
    tok.sp()
    selection: set[str] = set()
    if tok.peek() == 0x28:
        selection = {w.upper() for w in tok.paren_atoms()}
        tok.sp()
    reference = _list_pattern(tok)
    tok.sp()
    if tok.peek() == 0x28:
        tok.expect(b"(")
        patterns = []
        while not tok.maybe(b")"):
            patterns.append(_list_pattern(tok))
            tok.maybe(b" ")
    else:
        patterns = [_list_pattern(tok)]
    req = ListRequest(reference, patterns, selection - {"RECURSIVEMATCH", "REMOTE"})
    if not tok.at_end():
        tok.sp()
        tok.expect(b"RETURN ")
        tok.expect(b"(")
        while not tok.maybe(b")"):
            word = tok.atom().upper()
            if word == "STATUS":
                tok.sp()
                req.status_items = parse_status_items(tok)
            req.returns.add(word)
            tok.maybe(b" ")
    tok.end()
    return req


_STATUS = {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE", "DELETED",
           "HIGHESTMODSEQ", "MAILBOXID", "APPENDLIMIT"}


def parse_status_items(tok: Tokenizer) -> list[str]:
    items = [w.upper() for w in tok.paren_atoms()]
    if not items or any(i not in _STATUS for i in items):
        raise tok.error("Unknown status item")
    return items


def list_pattern_to_regex(reference: str, pattern: str, delimiter: str = "/") -> re.Pattern[str]:
    """LIST wildcards: * matches anything, % anything but the hierarchy delimiter."""
    full = reference + pattern if not pattern.startswith(delimiter) else pattern
    out = []
    for ch in full:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(f"[^{re.escape(delimiter)}]*")
        else:
            out.append(re.escape(ch))
    regex = "".join(out)
    if full.upper().startswith("INBOX"):
        regex = "(?i:INBOX)" + regex[len(re.escape("INBOX")):] if full[:5].upper() == "INBOX" \
            else regex
    return re.compile(regex, re.DOTALL)


# --------------------------------------------------------------------------- APPEND

@dataclass(slots=True)
class AppendMessage:
    flags: list[str]
    date: datetime | None
    data: bytes


def parse_append(tok: Tokenizer) -> list[AppendMessage]:
    messages = []
    while not tok.at_end():
        tok.sp()
        flags: list[str] = []
        when = None
        if tok.peek() == 0x28:
            flags = tok.paren_atoms()
            tok.sp()
        if tok.peek() == 0x22:
            when = tok.date_time()
            tok.sp()
        if tok.peek() not in (0x7B, 0x7E):
            raise tok.error("Expected the message as a literal")
        messages.append(AppendMessage(flags, when, tok.string()))
    if not messages:
        raise ParseError("APPEND needs a message")
    return messages
