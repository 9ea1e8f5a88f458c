"""Framing IMAP commands off the wire: lines and the literals inside them (RFC 9051 §4.3, §7.5).

An IMAP command is one line, unless it carries literals: a line ending in `{n}` announces n octets
of raw data, after which the command line goes on. The reader alone knows where a command ends,
so it also owns the literal rules, which differ by kind (RFC 9051 §4.3, RFC 7888, RFC 3516):

- `{n}` synchronising: the client waits for our "+" continuation before it sends the data. A
  literal that is too big is refused *before* the client sends it (tagged `NO [TOOBIG]`, no "+"),
  so nothing has to be read or skipped.
- `{n+}` non-synchronising (LITERAL+ / LITERAL-): the data follows at once, so a refused one has
  to be read and thrown away to find the next command; beyond a hard cap we give up and the
  server closes the connection. With LITERAL- (not LITERAL+) only 4096 octets are allowed.
- `~{n}` / `~{n+}` literal8 (BINARY): framed exactly like the above; only the grammar tells them
  apart (NUL octets are allowed).
- `{n-}` is no RFC syntax (LITERAL- is `{n+}` with a cap), but a client that sends it will send the
  data too: it is framed as non-synchronising with LITERAL-'s cap, so the stream stays in step,
  and the grammar then answers BAD.

Before authentication the bounds are far smaller (`pre_auth`): nothing a client may say then
(LOGIN, AUTHENTICATE, ID) needs more than a few KB, and an anonymous peer must not make the server
hold megabytes. A synchronising literal over PRE_AUTH_LITERAL_MAX gets `NO [TOOBIG]` and no "+"; a
non-synchronising one over it is answered `BAD [TOOBIG]` and the connection closed without reading
the data (RFC 7888 §4: the data is already on its way and cannot be refused, and skipping it would
let an anonymous peer make the server read up to the post-login cap). The whole command is capped
at PRE_AUTH_COMMAND_MAX, its lines included.

Everything is bounded (line, literal, whole command) and an EOF anywhere ends reading cleanly, so
a hostile or broken client can neither exhaust memory nor hang a session in here.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

CONTINUATION = b"+ Ready for literal data\r\n"
LITERAL_MINUS_MAX = 4096
"""RFC 7888 §4: the largest non-synchronising literal a LITERAL- server must accept."""
PRE_AUTH_LITERAL_MAX = 8192
"""The largest literal accepted before authentication: a user name or password, or an ID value,
with room to spare (RFC 7888 §4 deems 4096 octets enough for any non-synchronising literal)."""
PRE_AUTH_COMMAND_MAX = 32768
"""The largest whole command (lines and literals) before authentication: a LOGIN with two literals
at the limit, or a SASL PLAIN response of that size in base64, fits."""

_LITERAL_MARK = re.compile(rb"(~?)\{([0-9]+)([+-]?)\}\Z")
# tag = 1*<any ASTRING-CHAR except "+"> (RFC 9051 §9): no SP, CTL, ( ) { % * " \ or +.
_TAG = re.compile(rb"([\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c-\x7e]+) ")
_HUGE = 1 << 64
_CHUNK = 65536
YIELD_EVERY = 8
"""Commands read in a row before the reader lets the event loop run other tasks: commands
already buffered are read without waiting, so a client that pipelines thousands of them (one
64 KB segment of "a\r\n" lines is 21,000 commands, each answered BAD) would otherwise hold
the loop, and every other connection of the process, for as long as they take."""


class CommandTooLong(Exception):
    """A command line (or the command as a whole) is over the limit.

    The offending line has been read up to its end, so the stream is in step again: the server
    answers `tag BAD` (or `* BAD` when `tag` is None) and reads the next command.
    """

    def __init__(self, tag: str | None = None, message: str = "Command line too long") -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message


class LiteralTooBig(Exception):
    """A literal is over the limit: the server answers `tag NO [TOOBIG]` (RFC 9051 §7.1).

    `close` is True when the stream could not be brought back in step (a non-synchronising
    literal too big even to skip, or any too big before authentication): the server then answers
    BAD (RFC 7888 §4), says BYE and closes the connection.
    """

    def __init__(self, tag: str | None, size: int, limit: int, *, close: bool = False) -> None:
        super().__init__(f"Literal of {size} octets is over the limit of {limit}")
        self.tag = tag
        self.size = size
        self.limit = limit
        self.close = close


class _Overlong(Exception):
    def __init__(self, head: bytes) -> None:
        super().__init__("line too long")
        self.head = head


def _tag_of(line: bytes) -> str | None:
    match = _TAG.match(line)
    return match.group(1).decode("ascii") if match else None


def _strip_eol(line: bytes) -> bytes:
    """CRLF, or a bare LF from a sloppy client, ends a line; neither is part of it."""
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line


class CommandReader:
    """Reads whole commands (literals inline) from one client connection.

    It keeps no buffer of its own, only the StreamReader's, so a session can hand the stream over
    (STARTTLS, COMPRESS) between two commands without losing or leaking octets: `stream` is the
    StreamReader it reads, and COMPRESS sets it to the inflated one.
    """

    __slots__ = ("_continuation", "_streak", "literal_minus", "max_command", "max_discard",
                 "max_line", "max_literal", "pre_auth", "stream")

    def __init__(
        self,
        reader: asyncio.StreamReader,
        *,
        max_line: int = 65536,
        max_literal: int = 36_700_160,
        max_command: int | None = None,
        max_discard: int | None = None,
        literal_minus: bool = False,
        pre_auth: bool = False,
        continuation: Callable[[bytes], Awaitable[None]],
    ) -> None:
        """`max_command` caps a whole command, literals included (MULTIAPPEND); `max_discard` caps
        how many octets of refused non-synchronising literals are skipped before giving up;
        `literal_minus` is True when the server advertises LITERAL- instead of LITERAL+;
        `pre_auth` applies the pre-authentication caps (the session clears it at login)."""
        self.stream = reader
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_command = max_command if max_command is not None else max_literal + 64 * max_line
        self.max_discard = max_discard if max_discard is not None else 2 * max_literal
        self.literal_minus = literal_minus
        self.pre_auth = pre_auth
        self._continuation = continuation
        self._streak = 0

    @property
    def line_limit(self) -> int:
        """The longest line accepted now."""
        return min(self.max_line, PRE_AUTH_COMMAND_MAX) if self.pre_auth else self.max_line

    @property
    def command_limit(self) -> int:
        """The largest whole command accepted now."""
        return min(self.max_command, PRE_AUTH_COMMAND_MAX) if self.pre_auth else self.max_command

    async def _line(self) -> bytes | None:
        """One line with its terminator; None at EOF. An overlong line is read to its end
        (without keeping it) and reported with its first octets, where the tag is."""
        chunks: list[bytes] = []
        head = b""
        size = 0
        max_line = self.line_limit
        while True:
            try:
                chunk = await self.stream.readuntil(b"\n")
                done = True
            except asyncio.IncompleteReadError:
                return None
            except asyncio.LimitOverrunError as exc:
                try:
                    chunk = await self.stream.readexactly(max(1, exc.consumed))
                except asyncio.IncompleteReadError:
                    return None
                done = False
            if not head:
                head = chunk[:256]
            size += len(chunk)
            if size <= max_line:
                chunks.append(chunk)
            else:
                chunks.clear()
            if done:
                break
        if size > max_line:
            raise _Overlong(head)
        return b"".join(chunks)

    async def _turn(self) -> None:
        """Every YIELD_EVERY reads, let the other connections' tasks run."""
        self._streak += 1
        if self._streak >= YIELD_EVERY:
            self._streak = 0
            await asyncio.sleep(0)

    async def read_line(self) -> bytes | None:
        """One line without its terminator (IDLE's DONE, AUTHENTICATE responses, and every
        POP3 command); None at EOF."""
        await self._turn()
        try:
            line = await self._line()
        except _Overlong:
            raise CommandTooLong(None) from None
        return None if line is None else _strip_eol(line)

    async def _discard(self, size: int) -> bool:
        """Skip `size` octets; False if the stream ended first."""
        while size > 0:
            data = await self.stream.read(min(size, _CHUNK))
            if not data:
                return False
            size -= len(data)
        return True

    async def _discard_rest(self, budget: int) -> int | None:
        """Skip what is left of a refused command: its lines and non-synchronising literals.

        Stops at the end of the command, or at a synchronising literal, since the client then
        waits for a "+" it will not get and reads our tagged answer instead. Returns the budget
        left (negative: more than `budget` octets would have had to be skipped), None at EOF."""
        while True:
            try:
                line = await self._line()
            except _Overlong:
                continue
            if line is None:
                return None
            mark = _LITERAL_MARK.search(_strip_eol(line))
            if mark is None or not mark.group(3):
                return budget
            digits = mark.group(2)
            size = int(digits) if len(digits) <= 20 else _HUGE
            budget -= size
            if budget < 0:
                return budget
            if not await self._discard(size):
                return None

    async def read_command(self) -> bytes | None:
        """The next whole command without its final line end, literals inline as received
        (`{3}\\r\\nabc` kept), or None at EOF (also EOF in the middle of a command).

        Raises CommandTooLong or LiteralTooBig; after either, the next call reads the next
        command, unless LiteralTooBig.close says the stream is lost."""
        await self._turn()
        parts: list[bytes] = []
        total = 0
        tag: str | None = None
        first = True
        max_command = self.command_limit
        while True:
            try:
                line = await self._line()
            except _Overlong as exc:
                raise CommandTooLong(_tag_of(exc.head) if first else tag) from None
            if line is None:
                return None
            if first:
                tag = _tag_of(line)
                first = False
            total += len(line)
            body = _strip_eol(line)
            mark = _LITERAL_MARK.search(body)
            if mark is None:
                if total > max_command:
                    raise CommandTooLong(tag, "Command too long")
                parts.append(body)
                return b"".join(parts)
            parts.append(line)
            _literal8, digits, plus = mark.groups()
            size = int(digits) if len(digits) <= 20 else _HUGE
            sync = not plus
            limit = min(self.max_literal, max_command - total)
            if not sync and (self.literal_minus or plus == b"-"):
                limit = min(limit, LITERAL_MINUS_MAX)
            if self.pre_auth:
                limit = min(limit, PRE_AUTH_LITERAL_MAX)
            if size > limit:
                if self.pre_auth and not sync:  # never read (nor skip) an anonymous flood
                    raise LiteralTooBig(tag, size, max(limit, 0), close=True)
                if not await self._refuse(tag, size, sync):
                    return None
                raise LiteralTooBig(tag, size, max(limit, 0))
            if sync:
                await self._continuation(CONTINUATION)
            try:
                data = await self.stream.readexactly(size)
            except asyncio.IncompleteReadError:
                return None
            parts.append(data)
            total += size

    async def _refuse(self, tag: str | None, size: int, sync: bool) -> bool:
        """Bring the stream back in step after refusing a literal (False if it ended meanwhile),
        or raise LiteralTooBig with close=True when that is not possible."""
        if sync:
            return True  # the client waits for "+" and sends nothing more of this command
        if size > self.max_discard:
            raise LiteralTooBig(tag, size, self.max_discard, close=True)
        if not await self._discard(size):
            return False
        left = await self._discard_rest(self.max_discard - size)
        if left is None:
            return False
        if left < 0:
            raise LiteralTooBig(tag, size, self.max_discard, close=True)
        return True
