"""What every Mailyard SMTP listener shares: enhanced status codes on every reply, and the
small helpers for peers, closing and line lengths."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Session

from mailyard import metrics
from mailyard.protocols.live import LIVE
from mailyard.protocols.smtp.replies import enhance


class EnhancedSMTP(SMTP):
    """aiosmtpd's protocol answering with RFC 3463 codes once ENHANCEDSTATUSCODES is said;
    every command timed for /metrics, and a 421 at shutdown once no command is running."""

    protocol_name = "smtp"

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._in_ehlo = False
        self._busy = False
        self._closing = False
        self._smtp_methods = {name: self._timed(name, fn)
                              for name, fn in self._smtp_methods.items()}

    def _timed(self, name: str, fn: Callable[[str], Awaitable[None]]
               ) -> Callable[[str], Awaitable[None]]:
        @functools.wraps(fn)
        async def run(arg: str) -> None:
            self._busy = True
            started = time.perf_counter()
            try:
                await fn(arg)
            finally:
                self._busy = False
                metrics.command(self.protocol_name, name, time.perf_counter() - started)
            if self._closing:
                await self._shutdown()

        return run

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # called again by STARTTLS on the same connection
        super().connection_made(transport)
        if first:
            LIVE.opened(self, self.protocol_name, self.goodbye)

    def connection_lost(self, error: Exception | None) -> None:
        LIVE.closed(self)
        super().connection_lost(error)

    async def goodbye(self) -> None:
        """At shutdown: 421 now if waiting for a command, else once the command (a DATA whose
        message is being made durable) has been answered."""
        self._closing = True
        if not self._busy:
            await self._shutdown()

    async def _shutdown(self) -> None:
        if self.transport is None:
            return
        with contextlib.suppress(Exception):
            await SMTP.push(self, "421 4.3.2 Service shutting down, try again later")
        close(self)

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and not self._in_ehlo and not status.startswith("220 "):
            status = enhance(status)
        await super().push(status)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False


def has_long_line(content: bytes) -> bool:
    """aiosmtpd allows 1001 octets with CRLF (room for a transparency dot), so an unstuffed line
    of 999 still passes it; RFC 5321 §4.5.3.1.6 allows 998 plus CRLF."""
    return len(content) > 998 and any(len(line) > 998 for line in content.split(b"\r\n"))


def peer_ip(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "unknown")


def header_safe(value: str) -> str:
    """A value fit for a trace header: no line breaks, bounded length."""
    return "".join(ch for ch in value if ch not in "\r\n")[:256]


def close(server: SMTP) -> None:
    if server.transport is not None:
        server.transport.close()
