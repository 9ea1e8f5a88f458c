"""A remote mail server on loopback (the outside world that cannot exist here), on aiosmtpd.

It offers STARTTLS with a self-signed certificate, records every transaction it accepts (and
whether it came over TLS), and answers recipients from a script: `script["temp@remote.test"]
= ["451 4.3.0 Try later"]` gives that answer once, then the default 250.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from mailyard.tls import ensure_self_signed, server_context
from tests.e2e.server import free_port


@dataclass
class Received:
    mail_from: str
    recipients: list[str]
    data: bytes
    tls: bool


@dataclass
class _Handler:
    script: dict[str, list[str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    rcpt_log: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        with self.lock:
            self.rcpt_log.append(address)
            answers = self.script.get(address.lower())
            if answers:
                return answers.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.received.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos),
                                          envelope.original_content or b"",
                                          session.ssl is not None))
        return "250 2.0.0 Queued"


class FakeMX:
    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.handler = _Handler()
        self.port = port or free_port()
        if tls is None:
            tls = server_context(*ensure_self_signed(directory, "mx.remote.test"))
        self.controller = Controller(self.handler, hostname=host, port=self.port,
                                     tls_context=tls,
                                     decode_data=False, enable_SMTPUTF8=True,
                                     data_size_limit=64 * 1024 * 1024)

    @property
    def script(self) -> dict[str, list[str]]:
        return self.handler.script

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def start(self) -> FakeMX:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> FakeMX:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Until `count` transactions have arrived (or the time is up)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)
