"""A remote mail server on loopback (the outside world that cannot exist here), on aiosmtpd.

It offers STARTTLS with a self-signed certificate, records every transaction it accepts (and
whether it came over TLS), and answers recipients from a script: `script["temp@remote.test"]
= ["451 4.3.0 Try later"]` gives that answer once, then the default 250. `RawMX` is a bare
ESMTP server for tests about packet boundaries (replies grouped or split byte by byte).
"""

from __future__ import annotations

import socket
import socketserver
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


class RawMX:
    """An ESMTP server on raw sockets that chooses its packet boundaries, which aiosmtpd
    cannot: "group" answers every command that came in one segment with one write (what
    Postfix and most MTAs do with a pipelined MAIL+RCPT group, RFC 2920 §3.2 rule 7),
    "bytes" sends every reply one byte per write, with Nagle off and a pause between bytes,
    so that replies and even reply lines are split across segments. Both offer PIPELINING.

    `received` holds (recipients, message) per transaction; `grouped` counts writes that
    carried the replies to a MAIL and at least one RCPT together."""

    def __init__(self, port: int, mode: str) -> None:
        if mode not in ("group", "bytes"):
            raise ValueError(mode)
        self.port = port
        self.mode = mode
        self.received: list[tuple[list[str], bytes]] = []
        self.grouped = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._serve(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler,
                                                      bind_and_activate=False)
        self.server.daemon_threads = True
        self.server.allow_reuse_address = True

    def start(self) -> RawMX:
        self.server.server_bind()
        self.server.server_activate()
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> RawMX:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self, count: int, timeout: float = 30.0) -> list[tuple[list[str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)

    def _send(self, sock: socket.socket, replies: list[bytes]) -> None:
        data = b"".join(replies)
        if self.mode == "group":
            sock.sendall(data)
            return
        for i in range(len(data)):
            sock.sendall(data[i:i + 1])
            time.sleep(0.001)

    def _serve(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send(sock, [b"220 raw.remote.test ESMTP\r\n"])
        buffer, rcpts = b"", list[str]()
        in_data = False
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
            replies: list[bytes] = []
            verbs: list[str] = []
            while True:
                if in_data:
                    end = (b"\r\n" + buffer).find(b"\r\n.\r\n")
                    if end < 0:
                        break
                    data, buffer = buffer[:end], buffer[end + 3:]
                    lines = data.split(b"\r\n")[:-1]  # each line ends in CRLF
                    message = b"".join((x[1:] if x.startswith(b".") else x) + b"\r\n"
                                       for x in lines)
                    with self.lock:
                        self.received.append((rcpts, message))
                    replies.append(b"250 2.0.0 queued\r\n")
                    verbs.append("DATA-END")
                    in_data, rcpts = False, []
                    continue
                line, sep, rest = buffer.partition(b"\r\n")
                if not sep:
                    break
                buffer = rest
                verb = line[:4].upper().decode("ascii", "replace")
                verbs.append(verb)
                if verb == "EHLO":
                    replies.append(b"250-raw.remote.test\r\n250-PIPELINING\r\n"
                                   b"250-8BITMIME\r\n250 SIZE 104857600\r\n")
                elif verb == "MAIL":
                    rcpts = []
                    replies.append(b"250 2.1.0 ok\r\n")
                elif verb == "RCPT":
                    rcpts.append(line.decode().split(":", 1)[1].strip().strip("<>"))
                    replies.append(b"250 2.1.5 ok\r\n")
                elif verb == "DATA":
                    in_data = True
                    replies.append(b"354 go ahead\r\n")
                elif verb == "QUIT":
                    self._send(sock, [*replies, b"221 2.0.0 bye\r\n"])
                    return
                else:
                    replies.append(b"250 2.0.0 ok\r\n" if verb in ("RSET", "NOOP")
                                   else b"502 5.5.1 not here\r\n")
            if replies:
                if "MAIL" in verbs and "RCPT" in verbs:
                    with self.lock:
                        self.grouped += 1
                self._send(sock, replies)
