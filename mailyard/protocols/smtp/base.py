"""What every Mailyard SMTP listener shares: enhanced status codes on every reply, and the
small helpers for peers, closing and line lengths."""

from __future__ import annotations

from typing import Any

from aiosmtpd.smtp import SMTP, Session

from mailyard.protocols.smtp.replies import enhance


class EnhancedSMTP(SMTP):
    """aiosmtpd's protocol answering with RFC 3463 codes once ENHANCEDSTATUSCODES is said."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._in_ehlo = False

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
