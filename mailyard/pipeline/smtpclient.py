"""The SMTP client of outbound delivery (RFC 5321), with pipelining (RFC 2920) and STARTTLS.

aiosmtplib (5.x) has no pipelining and reads one reply per data event, so a server that answers
a pipelined MAIL+RCPT group in one write (as Postfix does) left replies unread and the session
hung. Here every received byte goes into one buffer and replies are cut from it whatever the
packet boundaries, each exactly once; a session that went out of step (a reply half read, a
write cut short, a cancellation) is only ever closed.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass

_MAX_LINE = 8192
"""Longest reply line taken (RFC 5321 §4.5.3.1.5 allows 512; servers overshoot)."""
_MAX_REPLY = 65536
_MAX_UNREAD = 1 << 20
"""Bytes a server may send ahead of our reading (a pipelined group's replies fit easily)."""
_CHUNK = 65536
UNSAFE = frozenset("\r\n\0")
"""Characters that must not reach a command line (an address with them would inject one)."""


class Broken(Exception):
    """The connection cannot go on: lost, timed out, or the server spoke no SMTP."""


@dataclass(frozen=True)
class Answer:
    code: int
    text: str
    """The reply's lines joined by newlines, without the codes."""


class _Wire(asyncio.Protocol):
    """One connection's received bytes in one buffer. aiosmtplib (5.x) has no pipelining and
    reads one reply per data event, so a server that answers a pipelined group in one write
    (or a reply split over several) left replies unread; here replies are cut from the buffer
    whatever the packet boundaries, each exactly once."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.event = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _MAX_UNREAD and self.transport is not None:
            self.transport.abort()  # a flood, not SMTP: never grow without bound
        self.event.set()

    def eof_received(self) -> bool:
        self.closed = True
        self.event.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.event.set()
        self.writable.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


def data_block(message: bytes) -> bytes:
    """The message as DATA sends it (RFC 5321 §4.5.2): CRLF line ends, leading dots doubled,
    the final "." line."""
    body = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", body) + b".\r\n"


class SmtpClient:
    """An SMTP client session over one `_Wire`: EHLO, STARTTLS, pipelined MAIL and RCPT
    (RFC 2920: the group goes out in one write, its replies are read in order), DATA."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.wire = _Wire()
        self.extensions: dict[str, str] = {}
        self.tls = False
        self.broken = False
        """A reply went unread or half read: the session can only be closed."""

    async def connect(self, address: str, port: int, timeout: float,
                      tls: ssl.SSLContext | None = None, server_hostname: str = "") -> Answer:
        """`tls`: implicit TLS from the first byte (a smarthost on port 465, RFC 8314)."""
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(
                lambda: self.wire, address, port, ssl=tls,
                server_hostname=(server_hostname or address) if tls else None), timeout)
        except TimeoutError:
            raise Broken("connect timed out") from None
        except (OSError, ssl.SSLError) as e:
            raise Broken(f"{type(e).__name__}: {e}") from None
        self.tls = tls is not None
        return await self.reply()

    def supports(self, keyword: str) -> bool:
        return keyword.upper() in self.extensions

    async def reply(self) -> Answer:
        """The next reply in the buffer, waiting for its bytes as long as it takes."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._reply()
        except TimeoutError:
            self.broken = True
            raise Broken("no answer in time") from None
        except BaseException:  # Broken, or cancelled mid-reply: out of step either way
            self.broken = True
            raise

    async def _reply(self) -> Answer:
        wire, start, lines = self.wire, 0, list[bytes]()
        while True:
            end = wire.buffer.find(b"\n", start)
            if end < 0:
                if len(wire.buffer) - start > _MAX_LINE or len(wire.buffer) > _MAX_REPLY:
                    raise Broken("reply too long")
                if wire.closed:
                    raise Broken("connection closed")
                wire.event.clear()
                await wire.event.wait()
                continue
            line = bytes(wire.buffer[start:end]).rstrip(b"\r")
            start = end + 1
            code = line[:3]
            if not code.isdigit() or line[3:4] not in (b"", b" ", b"-") \
                    or (lines and code != lines[0][:3]):
                raise Broken(f"not an SMTP reply: {line[:80]!r}")
            lines.append(line)
            if line[3:4] != b"-":
                del wire.buffer[:start]
                return Answer(int(code), "\n".join(
                    x[4:].decode("utf-8", "replace").strip() for x in lines))

    async def send(self, data: bytes) -> None:
        """Write, waiting while the kernel's buffer is full (a slow reader of a big DATA)."""
        try:
            await self._send(data)
        except BaseException:  # a half-sent command or message: only closing is safe
            self.broken = True
            raise

    async def _send(self, data: bytes) -> None:
        for i in range(0, len(data), _CHUNK):
            transport = self.wire.transport
            if self.wire.closed or transport is None or transport.is_closing():
                raise Broken("connection closed")
            transport.write(data[i:i + _CHUNK])
            try:
                await asyncio.wait_for(self.wire.writable.wait(), self.timeout)
            except TimeoutError:
                raise Broken("the server stopped reading") from None

    async def command(self, line: str) -> Answer:
        await self.send(line.encode() + b"\r\n")
        return await self.reply()

    async def pipeline(self, lines: list[str]) -> list[Answer]:
        """Every command in one write, then one reply each (RFC 2920 §3.1)."""
        await self.send(b"".join(line.encode() + b"\r\n" for line in lines))
        return [await self.reply() for _ in lines]

    async def hello(self, name: str) -> Answer:
        """EHLO, and HELO for a server that knows no EHLO (RFC 5321 §3.2)."""
        answer = await self.command(f"EHLO {name}")
        self.extensions = {}
        if answer.code == 250:
            for line in answer.text.split("\n")[1:]:
                keyword, _, params = line.partition(" ")
                self.extensions[keyword.upper()] = params
        elif 500 <= answer.code < 600:
            answer = await self.command(f"HELO {name}")
        return answer

    async def starttls(self, context: ssl.SSLContext, server_hostname: str) -> Answer:
        answer = await self.command("STARTTLS")
        if answer.code != 220:
            return answer
        if self.wire.buffer:  # RFC 3207 §4.2: nothing may follow 220 in plaintext
            raise Broken("data after the STARTTLS answer")
        assert self.wire.transport is not None
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(self.wire.transport, self.wire, context,
                                             server_hostname=server_hostname,
                                             ssl_handshake_timeout=self.timeout)
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as e:
            raise Broken(f"TLS handshake: {type(e).__name__}: {e}") from None
        if transport is None:
            raise Broken("connection closed during the TLS handshake")
        self.wire.transport = transport  # type: ignore[assignment]
        self.tls = True
        return answer

    async def auth_plain(self, username: str, password: str) -> Answer:
        """AUTH PLAIN with an initial response (RFC 4954, RFC 4616)."""
        import base64

        token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
        return await self.command(f"AUTH PLAIN {token}")

    async def data(self, message: bytes) -> Answer:
        answer = await self.command("DATA")
        if answer.code != 354:
            return answer
        await self.send(data_block(message))
        return await self.reply()

    async def quit(self) -> None:
        """QUIT when the session is in step, else just close."""
        if self.broken or self.wire.transport is None:
            self.close()
            return
        try:
            async with asyncio.timeout(5.0):
                await self.command("QUIT")
        except (Broken, TimeoutError, OSError):
            pass
        self.close()

    def close(self) -> None:
        if self.wire.transport is not None:
            self.wire.transport.close()
