"""Mail stored by a pipeline worker process (`--workers 2`) wakes IDLE sessions in the IMAP
processes (`[imap] processes = 2`): the worker's event goes to the listener (the hub) as a
datagram, and the hub forwards it to the other IMAP process.

IDLE has no poll of its own: a session learns of new mail only from the event bus, so a lost
or unrelayed event leaves it without `* n EXISTS` and the read times out (the test fails). The
batch of concurrent deliveries exercises the worker announcing items as they come out of the
pipeline, each announced and acked once."""

from __future__ import annotations

import smtplib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.e2e.server import Server

USER = "alice@example.test"
PASSWORD = "push-password-123"
SESSIONS = 8
"""IDLE sessions; the kernel spreads them over both IMAP processes."""
READ_TIMEOUT = 120.0
"""How long a session waits for its EXISTS before the test fails (a ceiling, not a measure)."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, workers=2,
                 imap={"processes": 2, "connections_per_ip": 0, "connections_per_user": 0},
                 limits={"messages_per_ip_per_minute": 0, "connections_per_ip": 0})
    srv.add_user(USER, PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class Idle:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
        self.file: BinaryIO = self.sock.makefile("rb")
        self.file.readline()
        self.command(b"a LOGIN " + USER.encode() + b" " + PASSWORD.encode())
        self.command(b"b SELECT INBOX")
        self.sock.sendall(b"c IDLE\r\n")
        assert self.file.readline().startswith(b"+"), "no IDLE continuation"

    def command(self, line: bytes) -> None:
        tag = line.split(b" ", 1)[0] + b" "
        self.sock.sendall(line + b"\r\n")
        while not (reply := self.file.readline()).startswith(tag):
            assert reply, "connection closed"
        assert reply.startswith(tag + b"OK"), reply

    def wait_exists(self, count: int) -> None:
        """Read until `* count EXISTS` (an earlier count may come first)."""
        while True:
            line = self.file.readline()
            assert line, "connection closed before EXISTS"
            fields = line.split()
            if fields[2:3] == [b"EXISTS"] and int(fields[1]) >= count:
                assert int(fields[1]) == count, line
                return

    def done(self) -> None:
        self.sock.sendall(b"DONE\r\n")
        while not (reply := self.file.readline()).startswith(b"c "):
            assert reply, "connection closed"
        assert reply.startswith(b"c OK"), reply
        self.sock.close()


def deliver(server: Server, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
        smtp.sendmail("carol@remote.test", [USER],
                      f"From: carol@remote.test\r\nTo: {USER}\r\nSubject: {subject}\r\n"
                      f"Message-ID: <{subject.replace(' ', '-')}@remote.test>\r\n\r\n"
                      "Hello.\r\n")


def test_worker_deliveries_wake_idle_sessions_in_every_imap_process(server: Server) -> None:
    sessions = [Idle(server.imap_port) for _ in range(SESSIONS)]
    for n in range(1, 3):  # one at a time: each worker event on its own
        deliver(server, f"single {n}")
        for s in sessions:
            s.wait_exists(n)
    threads = [threading.Thread(target=deliver, args=(server, f"burst {k}")) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in sessions:
        s.wait_exists(14)
    for s in sessions:
        s.done()
    server.wait_queue_empty()  # every item acked, none left leased
    assert len(server.emails(USER)) == 14
