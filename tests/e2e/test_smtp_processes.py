"""`[smtp] processes = 2`: two processes accept MX connections on one port (SO_REUSEPORT) and
make mail durable in the one queue. Every message sent arrives exactly once (found over IMAP
by Message-ID); both processes serve connections; an SMTP process SIGKILLed under load loses
no message it acknowledged (senders retry what got no 250) and is started again; SIGTERM
ends the server and both processes."""

from __future__ import annotations

import imaplib
import json
import os
import re
import signal
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.server import Server

USER = "smtpprocs@example.test"
PASSWORD = "smtpprocs-password-1"
CONNECTIONS = 20
MESSAGES = 200
"""Per phase: 20 connections of 10 messages each."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, limits={"connections_per_ip": 0, "messages_per_ip_per_minute": 0})
    # Server writes no [smtp] or [log] table: appended, they are tables of their own.
    with srv.config_path.open("a") as config:
        config.write('[smtp]\nprocesses = 2\n[log]\nformat = "json"\n')
    srv.add_user(USER, PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def log_events(srv: Server) -> list[dict[str, object]]:
    events = []
    for line in srv.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def smtp_pids(srv: Server) -> list[int]:
    """The processes that said their MX listener is up, in order (the listener's own too)."""
    return [int(str(e["pid"])) for e in log_events(srv)
            if str(e.get("msg", "")).startswith("SMTP (MX) listening on")]


def accepted_by(srv: Server) -> Counter[int]:
    """Messages accepted per process (its "accepted" log line)."""
    return Counter(int(str(e["pid"])) for e in log_events(srv)
                   if str(e.get("msg", "")).startswith("accepted "))


def mail(tag: str, n: int) -> bytes:
    return (f"From: sender{n % CONNECTIONS}@remote.test\r\nTo: {USER}\r\n"
            f"Subject: {tag} {n}\r\nMessage-ID: <{tag}-{n}@remote.test>\r\n"
            f"Date: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\n"
            + f"{tag} number {n}\r\n" * 40).encode()


def send_share(port: int, tag: str, numbers: list[int], acked: set[int],
               lock: threading.Lock, deadline: float, broken: list[int] | None = None) -> None:
    """One sender: one session for as many messages as it lasts; a message that got no 250
    (the session broke, a 4xx) is sent again, on a new session, until the deadline. Each
    broken session is appended to `broken`."""
    todo = list(numbers)
    while todo and time.monotonic() < deadline:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                while todo:
                    n = todo[0]
                    smtp.sendmail(f"sender{n % CONNECTIONS}@remote.test", [USER], mail(tag, n))
                    with lock:
                        acked.add(n)
                    todo.pop(0)
        except (OSError, smtplib.SMTPException):
            with lock:
                if broken is not None:
                    broken.append(todo[0])
            time.sleep(0.05)


def send_all(port: int, tag: str, acked: set[int], broken: list[int] | None = None) -> None:
    lock = threading.Lock()
    deadline = time.monotonic() + 240
    with ThreadPoolExecutor(CONNECTIONS) as pool:
        futures = [pool.submit(send_share, port, tag, list(range(MESSAGES))[i::CONNECTIONS],
                               acked, lock, deadline, broken) for i in range(CONNECTIONS)]
        for future in futures:
            future.result()


def message_ids(srv: Server, timeout: float = 180.0, expect: int = 0) -> Counter[str]:
    """Message-IDs in the Inbox over IMAP, each with how many messages carry it; waits until
    at least `expect` messages are there (the pipeline delivers after the 250)."""
    deadline = time.monotonic() + timeout
    while True:
        with imaplib.IMAP4("127.0.0.1", srv.imap_port) as imap:
            imap.login(USER, PASSWORD)
            imap.select("INBOX", readonly=True)
            status, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            found: Counter[str] = Counter()
            if status == "OK":
                for part in data:
                    if isinstance(part, tuple):
                        m = re.search(rb"<([^>]+)>", part[1])
                        if m:
                            found[m.group(1).decode()] += 1
        if sum(found.values()) >= expect or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(")")[-1].split()[0] == "Z")


@pytest.mark.slow
def test_two_smtp_processes_share_the_port_lose_nothing_and_restart(server: Server) -> None:
    assert server.process is not None
    listener = server.process.pid
    pids = smtp_pids(server)
    assert listener in pids and len(set(pids)) == 2, pids
    [other] = set(pids) - {listener}

    # Phase 1: 200 messages over 20 concurrent connections, served by both processes.
    acked: set[int] = set()
    send_all(server.smtp_port, "spread", acked)
    assert acked == set(range(MESSAGES))
    served = accepted_by(server)
    assert served[listener] > 0 and served[other] > 0, served
    assert served[listener] + served[other] == MESSAGES, served

    # Phase 2: the other SMTP process is SIGKILLed under load; senders retry what got no 250.
    acked_kill: set[int] = set()
    broken: list[int] = []
    senders = threading.Thread(target=send_all,
                               args=(server.smtp_port, "kill", acked_kill, broken))
    senders.start()
    deadline = time.monotonic() + 120
    while accepted_by(server)[other] < served[other] + 10:
        assert time.monotonic() < deadline, "the other process accepted nothing in phase 2"
        assert senders.is_alive(), "phase 2 ended before the kill"
        time.sleep(0.02)
    os.kill(other, signal.SIGKILL)
    killed_at = time.monotonic()
    senders.join(300)
    assert not senders.is_alive()
    assert acked_kill == set(range(MESSAGES)), "every message got its 250 in the end"
    assert broken, "the kill broke no session: nothing was retried"

    # Started again: a new process says its MX listener is up, and serves.
    deadline = killed_at + 60
    while True:
        restarted = [p for p in smtp_pids(server) if p not in (listener, other)]
        if restarted and alive(restarted[-1]):
            break
        assert time.monotonic() < deadline, "the SMTP process was not started again"
        time.sleep(0.1)
    assert "ended (exit code -9); starting it again" in server.log_path.read_text()

    # Every message of both phases exactly once (a retried message whose first copy was
    # durable before the kill is the same content: stored once).
    want = {f"spread-{n}@remote.test" for n in range(MESSAGES)} | {
        f"kill-{n}@remote.test" for n in range(MESSAGES)}
    found = message_ids(server, expect=len(want))
    assert set(found) == want, (sorted(want - set(found))[:5], sorted(set(found) - want)[:5])
    assert all(count == 1 for count in found.values()), [k for k, v in found.items() if v > 1]

    # The restarted process serves too: new connections until one lands on it.
    new = restarted[-1]
    before = accepted_by(server)[new]
    acked_after: set[int] = set()
    for n in range(60):
        send_share(server.smtp_port, "after", [n], acked_after, threading.Lock(),
                   time.monotonic() + 30)
        if accepted_by(server)[new] > before:
            break
    assert accepted_by(server)[new] > before, "the restarted process took no connection"

    # SIGTERM drains both: the server and its SMTP process end.
    proc = server.process
    server.stop()
    assert proc.returncode == 0, proc.returncode
    deadline = time.monotonic() + 30
    while alive(new):
        assert time.monotonic() < deadline, "the SMTP process outlived the server"
        time.sleep(0.1)
