"""ManageSieve's wire syntax (RFC 5804 §4): a command is an atom and arguments separated by
spaces, each a quoted string, a literal ("{n+}" or "{n}", CRLF, n octets) or a number; the
server answers with OK / NO / BYE, an optional (CODE) and an optional string."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

_LITERAL_END = re.compile(rb"\{(\d{1,10})(\+?)\}\r?\n?$")


class BadCommand(ValueError):
    pass


class TooLarge(BadCommand):
    """A literal over the limit: the connection ends (its octets cannot be skipped safely
    without reading them all)."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: tuple[str | int, ...]


def quote(text: str) -> bytes:
    """A string as RFC 5804 §4 writes it: quoted when it can be, else a literal."""
    data = text.encode()
    if len(data) < 1024 and not re.search(rb"[\r\n\x00]", data):
        return b'"' + re.sub(rb'(["\\])', rb"\\\1", data) + b'"'
    return b"{%d}\r\n" % len(data) + data


MAX_LITERALS = 8
"""Literals one command may carry: the most any command takes is two (PUTSCRIPT's name and
script, RENAMESCRIPT's names); a bound keeps a client from holding memory with many."""


async def read_command(reader: asyncio.StreamReader, *, max_line: int = 8192,
                       max_literal: int = 1 << 20) -> Command | None:
    """One command, or None at the end of the stream. What one command may hold is bounded:
    each literal by `max_literal`, their number by MAX_LITERALS and all its octets together
    by `max_literal` plus a few lines, so no client grows the server's memory without end."""
    parts: list[bytes] = []
    literals: list[bytes] = []
    total = 0
    budget = max_literal + 4 * max_line
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            raise BadCommand("line too long") from None
        if len(line) > max_line:
            raise BadCommand("line too long")
        m = _LITERAL_END.search(line)
        if m is None:
            parts.append(line.rstrip(b"\r\n"))
            break
        size = int(m.group(1))
        total += len(line) + size
        if size > max_literal:
            raise TooLarge(f"literal of {size} octets is over the limit of {max_literal}")
        if len(literals) >= MAX_LITERALS or total > budget:
            raise TooLarge(f"a command may hold at most {MAX_LITERALS} literals and"
                           f" {budget} octets")
        parts.append(line[:m.start()] + b"\x00LIT%d\x00" % len(literals))
        try:
            literals.append(await reader.readexactly(size))
        except asyncio.IncompleteReadError:
            return None
    return _tokens(b"".join(parts), literals)


_TOKEN = re.compile(rb'\s*(?:"((?:[^"\\\r\n]|\\["\\])*)"|\x00LIT(\d+)\x00'
                    rb'|(\d{1,10})(?![0-9A-Za-z])|([A-Za-z][A-Za-z0-9_-]*))')
"""A number is at most 10 digits (RFC 5804 §4: numbers are 32-bit); a longer run of digits is
a syntax error, never a conversion of thousands of digits."""


def _tokens(line: bytes, literals: list[bytes]) -> Command:
    pos = 0
    out: list[str | int] = []
    name = ""
    line = line.rstrip()
    while pos < len(line):
        m = _TOKEN.match(line, pos)
        if m is None or m.end() == pos:
            raise BadCommand("syntax error in the arguments")
        pos = m.end()
        quoted, literal, number, atom = m.groups()
        if atom is not None:
            if name:
                raise BadCommand(f"unexpected word {atom[:20].decode()!r}")
            name = atom.decode().upper()
            continue
        if not name:
            raise BadCommand("a command starts with its name")
        if quoted is not None:
            out.append(re.sub(rb'\\(["\\])', rb"\1", quoted).decode("utf-8", "replace"))
        elif literal is not None:
            out.append(literals[int(literal)].decode("utf-8", "replace"))
        else:
            out.append(int(number))
    if not name:
        raise BadCommand("empty command")
    return Command(name, tuple(out))
