"""The fault stage of issue 17: each engine is filled, killed or cut off while SMTP load runs.

For every fault the same three things must hold:
- while it lasts, the server answers only 2xx or 4xx (a sender retries a 4xx; a 5xx would bounce
  the mail), and keeps answering (no dropped or refused connection);
- once it ends, the same server process accepts mail again, without a restart;
- every message it acknowledged with 250 is delivered exactly once (the senders resend what got
  a 4xx, as an MTA's queue does, and those end up delivered exactly once too).

The faults are real: a tmpfs data directory filled to the last byte, a PostgreSQL crashed with
`pg_ctl -m immediate` and started again, the S3 gateway cut off by a TCP hop that resets every
connection, and clients that reset the connection right after DATA's final dot (the SQLite
writer's callers cancelled mid-write).
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.server import Server
from tests.faults import (
    PrivatePostgres,
    SmtpLoad,
    TcpProxy,
    fill,
    small_filesystem,
    wait_delivered,
)

USER, PASSWORD = "load@example.test", "secret-password"
# Short backoff so recovery shows within the test; the default attempts (5) are kept, so a
# fault of ~10 s must not send acknowledged mail to the dead-letter queue.
QUEUE = {"backoff_base": 2.0, "backoff_max": 8.0}
TEMPORARY = {"421", "450", "451", "452", "454"}
LIMITS = {"messages_per_ip_per_minute": 100_000}
"""The load comes from one address (loopback): not a flood for the per-IP limit to stop."""


def _started(srv: Server) -> Server:
    srv.add_user(USER, PASSWORD)
    srv.start()
    return srv


def _total(load: SmtpLoad) -> int:
    return sum(len(r) for r in load.sent.replies.values())


def run_fault(srv: Server, tag: str, begin: Callable[[], None], end: Callable[[], None],
              *, during: int = 24) -> None:
    """Healthy load, the fault for `during` transactions, recovery; then the three checks."""
    load = SmtpLoad(srv.smtp_port, USER, tag)
    load.start()
    try:
        load.wait_sent(12)
        healthy = load.outcomes_since(0)
        assert set(healthy) == {"250"}, f"before the fault: {healthy}"
        begin()
        mark = _total(load)
        load.wait_sent(during, timeout=300)
        faulted = load.outcomes_since(mark)
        end()
        recovered_at = _total(load)
        deadline = time.monotonic() + 120
        while "250" not in load.outcomes_since(recovered_at):
            assert time.monotonic() < deadline, \
                f"no 250 in 120 s after the fault ended: {load.outcomes_since(recovered_at)}"
            time.sleep(0.2)
        load.wait_sent(8)
    finally:
        load.stop()
    assert srv.process is not None and srv.process.poll() is None, "the server died"
    assert not load.sent.permanent(), \
        f"5xx answers (the sender would bounce): {dict(list(load.sent.permanent().items())[:5])}"
    assert set(faulted) - {"250"}, f"the fault changed nothing: {faulted}"
    assert set(faulted) <= TEMPORARY | {"250"}, f"while the fault lasted: {faulted}"
    load.retry_unacknowledged()
    expected = set(load.sent.replies)
    found = wait_delivered(srv.imap_port, USER, PASSWORD, expected)
    missing = expected - set(found)
    assert not missing, f"{len(missing)} acknowledged messages never delivered, e.g." \
                        f" {sorted(missing)[:3]}; queue: {srv.queue_stats()}"
    twice = {mid: n for mid, n in found.items() if n > 1}
    assert not twice, f"delivered more than once: {dict(list(twice.items())[:5])}"
    assert set(found) == expected, f"unknown messages delivered: {set(found) - expected}"


def test_disk_full(tmp_path: Path) -> None:
    """The data directory's filesystem fills up under load, then space is freed."""
    srv = Server(tmp_path / "srv", queue=QUEUE, limits=LIMITS, metadata="", blobs="")
    with small_filesystem(srv.data_dir, 96):
        _started(srv)
        filler: list[Path] = []
        try:
            run_fault(srv, "disk", lambda: filler.append(fill(srv.data_dir)),
                      lambda: filler[0].unlink())
        finally:
            srv.stop()


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    yield pg
    with contextlib.suppress(Exception):
        pg.start()  # remove() stops it the orderly way
    pg.remove()


def test_postgres_crash(tmp_path: Path, postgres: PrivatePostgres) -> None:
    """The MailStore's and search index's PostgreSQL crashes under load and comes back."""
    dsn = postgres.database(f"mailyard_fault_{uuid.uuid4().hex[:8]}")
    srv = Server(tmp_path / "srv", queue=QUEUE, limits=LIMITS, metadata="", blobs="",
                 store={"metadata": dsn, "search": "postgresql"})
    _started(srv)
    try:
        run_fault(srv, "pg", postgres.kill, postgres.start)
    finally:
        srv.stop()


def test_s3_cut_off(tmp_path: Path) -> None:
    """The blob store's S3 gateway becomes unreachable under load, then reachable again."""
    srv = Server(tmp_path / "srv", queue=QUEUE, limits=LIMITS, metadata="", blobs="s3")
    from tests import s3

    endpoint = s3.gateway().endpoint
    target = urlsplit(endpoint)
    proxy = TcpProxy((target.hostname or "127.0.0.1", target.port or 80))
    proxied = target._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
    srv.config_path.write_text(srv.config_path.read_text().replace(
        f'"{endpoint}"', f'"{proxied}"'))
    assert proxied in srv.config_path.read_text()
    _started(srv)
    try:
        run_fault(srv, "s3", proxy.cut, proxy.restore)
    finally:
        srv.stop()
        proxy.close()


def _reset_after_dot(port: int, n: int) -> None:
    """A sender that sends a whole message and resets the connection right after the final
    dot, before the reply: the server's write for it is cancelled while queued."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")
    try:
        f.readline()
        for line in (b"EHLO reset.test", b"MAIL FROM:<r@reset.test>", f"RCPT TO:<{USER}>".encode(),
                     b"DATA"):
            s.sendall(line + b"\r\n")
            while (reply := f.readline())[3:4] == b"-":
                pass
            assert reply[:1] in (b"2", b"3"), reply
        s.sendall(f"Subject: reset {n}\r\nMessage-ID: <reset-{n}@reset.test>\r\n\r\n"
                  f"x\r\n.\r\n".encode())
    finally:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()


def test_senders_resetting_after_the_final_dot(tmp_path: Path) -> None:
    """Clients that vanish right after DATA must not take the store's writer down: the load
    around them is acknowledged and delivered, and IMAP writes (CREATE) still answer."""
    srv = _started(Server(tmp_path / "srv", queue=QUEUE, limits=LIMITS, metadata="", blobs=""))
    try:
        resets = [0]

        def begin() -> None:
            for _ in range(40):
                resets[0] += 1
                _reset_after_dot(srv.smtp_port, resets[0])

        # No fault is left to end: the "fault" is the resets themselves. run_fault wants the
        # load to have seen something other than 250 while it lasted, which resets do not
        # cause, so the checks are made here.
        load = SmtpLoad(srv.smtp_port, USER, "reset")
        load.start()
        try:
            load.wait_sent(10)
            begin()
            load.wait_sent(20)
        finally:
            load.stop()
        assert set(load.outcomes_since(0)) == {"250"}, load.outcomes_since(0)
        expected = set(load.sent.replies)
        found = wait_delivered(srv.imap_port, USER, PASSWORD, expected)
        assert expected <= set(found), f"missing: {sorted(expected - set(found))[:3]}"
        assert all(found[mid] == 1 for mid in expected)
        import imaplib

        imap = imaplib.IMAP4("127.0.0.1", srv.imap_port, timeout=60)
        imap.login(USER, PASSWORD)
        assert imap.create("after-resets")[0] == "OK"
        imap.logout()
        assert srv.process is not None and srv.process.poll() is None
    finally:
        srv.stop()
