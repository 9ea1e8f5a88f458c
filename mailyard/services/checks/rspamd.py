"""An rspamd client: POST the message to /checkv2 with the envelope in request headers.

rspamd's protocol (https://rspamd.com/doc/developers/protocol.html) takes the SMTP facts as
HTTP headers (IP, Helo, From, Rcpt, User) and answers JSON with a score, the action it would
take and the symbols that fired; Mailyard adds its score as one symbol and lets its own
thresholds decide, so that one set of thresholds governs every verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from mailyard.services.checks import SMTPEnvelope


class RspamdError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class RspamdResult:
    score: float
    action: str
    symbols: dict[str, float] = field(default_factory=dict)


def parse_result(body: Any) -> RspamdResult:
    if not isinstance(body, dict) or "score" not in body:
        raise RspamdError(f"unexpected answer {str(body)[:200]!r}")
    symbols: dict[str, float] = {}
    for name, info in (body.get("symbols") or {}).items():
        if isinstance(info, dict):
            symbols[str(name)] = float(info.get("score", 0.0))
    return RspamdResult(float(body["score"]), str(body.get("action", "")), symbols)


class Rspamd:
    """One HTTP connection pool per server, reused across messages."""

    def __init__(self, url: str, *, timeout: float = 5.0, password: str = "") -> None:
        self.url = url.rstrip("/") + "/checkv2"
        self.password = password
        self.client = httpx.AsyncClient(timeout=timeout)

    async def check(self, envelope: SMTPEnvelope, raw: bytes) -> RspamdResult:
        headers = {"IP": envelope.peer, "Helo": envelope.helo, "From": envelope.mail_from}
        if self.password:
            headers["Password"] = self.password
        if envelope.authenticated:
            headers["User"] = envelope.authenticated
        rcpts = [("Rcpt", r) for r in envelope.recipients]
        try:
            response = await self.client.post(
                self.url, content=raw, headers=[*headers.items(), *rcpts])
            response.raise_for_status()
            return parse_result(response.json())
        except (httpx.HTTPError, ValueError) as e:
            raise RspamdError(f"rspamd at {self.url}: {e or type(e).__name__}") from e

    async def close(self) -> None:
        await self.client.aclose()
