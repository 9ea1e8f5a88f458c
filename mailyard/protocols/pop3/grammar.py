"""The POP3 wire format: command lines (RFC 1939 §3, RFC 2449 §3) and multi-line responses.

Pure functions over bytes, so that the parser can be fuzzed without a server: everything a
client can send either parses or raises ParseError, which the session answers with -ERR.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_NUMBER_DIGITS = 10
"""A message number or line count longer than this is no number we could hold a message for."""

_KEYWORD = re.compile(r"[A-Za-z]{1,40}\Z")
_BARE_LF = re.compile(rb"(?<!\r)\n")


class ParseError(ValueError):
    """A line that is no POP3 command; the text goes into the -ERR answer."""


@dataclass(frozen=True, slots=True)
class Command:
    keyword: str
    """Upper-cased (RFC 1939 §3: keywords are case-insensitive)."""
    args: tuple[str, ...]
    rest: str
    """Everything after the keyword and one space, spaces kept: PASS takes it whole, since
    RFC 1939 §7 lets a password contain spaces."""


def parse_command(line: bytes) -> Command:
    """One command line without its CRLF."""
    if b"\0" in line or b"\r" in line or b"\n" in line:
        raise ParseError("Control characters in command")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("Command is not UTF-8") from None
    keyword, _, rest = text.partition(" ")
    if not _KEYWORD.match(keyword):
        raise ParseError("No command keyword")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in rest):
        raise ParseError("Control characters in command")
    return Command(keyword.upper(), tuple(rest.split()), rest)


def number(arg: str, what: str = "message number") -> int:
    """A decimal argument (RFC 1939 §3: "a message-number ... is a decimal number")."""
    if not arg.isascii() or not arg.isdigit() or len(arg) > MAX_NUMBER_DIGITS:
        raise ParseError(f"Invalid {what}")
    return int(arg)


def crlf(data: bytes) -> bytes:
    """Bare LF line ends as CRLF: POP3 sends CRLF lines whatever the stored form."""
    return _BARE_LF.sub(b"\r\n", data) if b"\n" in data else data


def multiline(data: bytes) -> bytes:
    """`data` as the body of a multi-line response (RFC 1939 §3): CRLF lines, every line that
    starts with "." byte-stuffed with another ".", ending in CRLF "." CRLF."""
    data = crlf(data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"


def top(raw: bytes, lines: int) -> bytes:
    """The header block, the empty line after it, and the first `lines` lines of the body
    (RFC 1939 §7 TOP); a message without a body is all header."""
    raw = crlf(raw)
    if raw.startswith(b"\r\n"):
        end = 2
    else:
        found = raw.find(b"\r\n\r\n")
        if found < 0:
            return raw
        end = found + 4
    body = raw[end:]
    pos = 0
    for _ in range(lines):
        nxt = body.find(b"\r\n", pos)
        if nxt < 0:
            pos = len(body)
            break
        pos = nxt + 2
    return raw[:end] + body[:pos]
