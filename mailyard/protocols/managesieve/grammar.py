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


async def read_command(reader: asyncio.StreamReader, *, max_line: int = 8192,
                       max_literal: int = 1 << 20) -> Command | None:
    """One command, or None at the end of the stream."""
    parts: list[bytes] = []
    literals: list[bytes] = []
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
        if size > max_literal:
            raise TooLarge(f"literal of {size} octets is over the limit of {max_literal}")
        parts.append(line[:m.start()] + b"\x00LIT%d\x00" % len(literals))
        try:
            literals.append(await reader.readexactly(size))
        except asyncio.IncompleteReadError:
            return None
    return _tokens(b"".join(parts), literals)


_TOKEN = re.compile(rb'\s*(?:"((?:[^"\\\r\n]|\\["\\])*)"|\x00LIT(\d+)\x00|(\d+)(?![A-Za-z])'
                    rb'|([A-Za-z][A-Za-z0-9_-]*))')


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
