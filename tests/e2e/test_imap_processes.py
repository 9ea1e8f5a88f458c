"""`[imap] processes = 2`: two processes accept IMAP connections on one port (SO_REUSEPORT),
and a change made through either reaches the sessions of the other (the event bus's hub)."""

from __future__ import annotations

import imaplib
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import Server

USER = "procs@example.test"
PASSWORD = "procs-password-123"
CONNECTIONS = 16
"""Enough that both processes get some: the kernel hashes each connection to one of them."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, imap={"processes": 2, "connections_per_ip": 0,
                                 "connections_per_user": 0})
    srv.add_user(USER, PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def serving_pids(port: int) -> dict[int, int]:
    """Which process holds each established IMAP connection: {client port: server pid}."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    pids: dict[int, int] = {}
    for line in out.splitlines():
        peer = line.split()[3]
        found = re.search(r"pid=(\d+)", line)
        if found:
            pids[int(peer.rsplit(":", 1)[1])] = int(found.group(1))
    return pids


class Idler:
    """A raw IMAP connection in IDLE on INBOX."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.file = self.sock.makefile("rb")
        self.file.readline()
        self.command(f'a LOGIN {USER} "{PASSWORD}"')
        self.command("b SELECT INBOX")
        self.sock.sendall(b"c IDLE\r\n")
        assert self.file.readline().startswith(b"+")

    def command(self, line: str) -> list[bytes]:
        tag = line.split()[0].encode()
        self.sock.sendall(line.encode() + b"\r\n")
        lines = []
        while True:
            got = self.file.readline()
            assert got, "connection closed"
            lines.append(got)
            if got.startswith(tag + b" "):
                assert got.split()[1] == b"OK", got
                return lines

    def wait_for(self, pattern: bytes, timeout: float = 60.0) -> bytes:
        self.sock.settimeout(timeout)
        while True:
            line = self.file.readline()
            assert line, "connection closed"
            if re.search(pattern, line):
                return line

    def client_port(self) -> int:
        return int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()


def test_connections_spread_over_both_processes_and_see_each_others_changes(
        server: Server) -> None:
    idlers = [Idler(server.imap_port) for _ in range(CONNECTIONS)]
    try:
        pids = serving_pids(server.imap_port)
        assert server.process is not None
        served_by = {pids[i.client_port()] for i in idlers}
        assert len(served_by) == 2 and server.process.pid in served_by, served_by

        # A message appended through some process wakes the IDLE sessions of both.
        with imaplib.IMAP4("127.0.0.1", server.imap_port) as writer:
            writer.login(USER, PASSWORD)
            status, _ = writer.append("INBOX", None, None,
                                      b"From: a@example.test\r\nSubject: one\r\n\r\nhi\r\n")
            assert status == "OK"
            for idler in idlers:
                idler.wait_for(rb"^\* 1 EXISTS")
            # A flag set through some process reaches them all as FETCH FLAGS.
            writer.select("INBOX")
            status, _ = writer.store("1", "+FLAGS", "(\\Flagged)")
            assert status == "OK"
            for idler in idlers:
                idler.wait_for(rb"^\* 1 FETCH \(.*\\Flagged")
        # Each session, served by either process, reads the same mailbox after DONE.
        for idler in idlers:
            idler.sock.sendall(b"DONE\r\n")
            idler.wait_for(rb"^c OK")
            lines = idler.command("d FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert any(b"\\Flagged" in line for line in lines)
            assert any(b"Subject: one" in line for line in lines)
    finally:
        for idler in idlers:
            idler.close()


def test_sessions_of_both_processes_get_bye_at_shutdown(server: Server) -> None:
    idlers = [Idler(server.imap_port) for _ in range(CONNECTIONS)]
    try:
        pids = serving_pids(server.imap_port)
        assert len({pids[i.client_port()] for i in idlers}) == 2
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        for idler in idlers:
            idler.wait_for(rb"^\* BYE")
        server.process.wait(30)
        deadline = time.monotonic() + 60
        while serving_pids(server.imap_port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not serving_pids(server.imap_port)
    finally:
        for idler in idlers:
            idler.close()
        server.process = None


@pytest.mark.parametrize("workers", [0, 2])
def test_an_imap_process_that_dies_is_started_again_as_one(tmp_path: Path, workers: int
                                                           ) -> None:
    """SIGKILL of the second IMAP process: it is started again as an IMAP process (with
    `--workers` it used to come back as a pipeline worker, and /readyz to call it a dead
    worker; without, never), and both processes serve and hear each other again."""
    srv = Server(tmp_path, imap={"processes": 2, "connections_per_ip": 0,
                                 "connections_per_user": 0}, workers=workers)
    srv.add_user(USER, PASSWORD)
    srv.start()
    try:
        assert srv.process is not None
        idlers = [Idler(srv.imap_port) for _ in range(CONNECTIONS)]
        pids = serving_pids(srv.imap_port)
        other = {pids[i.client_port()] for i in idlers} - {srv.process.pid}
        for idler in idlers:
            idler.close()
        assert len(other) == 1, pids
        [victim] = other
        subprocess.run(["kill", "-KILL", str(victim)], check=True)
        deadline = time.monotonic() + 120
        while "process mailyard-imap-1 ended" not in srv.log_path.read_text():
            assert time.monotonic() < deadline, srv.log_path.read_text()[-2000:]
            time.sleep(0.2)
        served_by: set[int] = set()
        while len(served_by) < 2:  # until the new process takes connections too
            assert time.monotonic() < deadline, served_by
            idlers = [Idler(srv.imap_port) for _ in range(CONNECTIONS)]
            pids = serving_pids(srv.imap_port)
            served_by = {pids[i.client_port()] for i in idlers}
            if len(served_by) == 2:
                with imaplib.IMAP4("127.0.0.1", srv.imap_port) as writer:
                    writer.login(USER, PASSWORD)
                    writer.append("INBOX", None, None,
                                  b"From: a@example.test\r\nSubject: back\r\n\r\nhi\r\n")
                for idler in idlers:
                    idler.wait_for(rb"^\* 1 EXISTS")
            for idler in idlers:
                idler.close()
            time.sleep(0.2)
        assert victim not in served_by and srv.process.pid in served_by
        log = srv.log_path.read_text()
        assert "worker process ended" not in log and "mailyard-worker" not in \
            log[log.index("process mailyard-imap-1 ended"):]
    finally:
        srv.stop()
