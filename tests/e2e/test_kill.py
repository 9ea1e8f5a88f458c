"""SIGKILL under load: nothing acknowledged is lost, nothing is stored twice."""

from __future__ import annotations

import smtplib
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.server import Server

CLIENTS = 20
MAILS = 2000


def mail(n: int) -> bytes:
    return (f"From: load{n % CLIENTS}@remote.test\r\nTo: alice@example.test\r\n"
            f"Subject: load {n}\r\nMessage-ID: <load-{n}@remote.test>\r\n"
            f"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\n"
            + f"mail number {n}\r\n" * 20).encode()


def send_batch(port: int, numbers: list[int], acked: set[int], lock: threading.Lock,
               stop: threading.Event) -> None:
    """One client: a session, many mails; stops at the first failure (the server died)."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            for n in numbers:
                if stop.is_set():
                    return
                smtp.sendmail(f"load{n % CLIENTS}@remote.test", ["alice@example.test"], mail(n))
                with lock:
                    acked.add(n)
    except (OSError, smtplib.SMTPException):
        return


def run_clients(port: int, todo: list[int], acked: set[int], stop: threading.Event) -> None:
    lock = threading.Lock()
    shares = [todo[i::CLIENTS] for i in range(CLIENTS)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        for share in shares:
            pool.submit(send_batch, port, share, acked, lock, stop)


@pytest.mark.slow
def test_sigkill_under_load_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    srv = Server(tmp_path, workers=2, limits={"messages_per_ip_per_minute": 0,
                                              "connections_per_ip": 0})
    srv.add_user("alice@example.test")
    srv.start()
    t0 = time.monotonic()
    acked_before: set[int] = set()
    stop = threading.Event()
    clients = threading.Thread(target=run_clients,
                               args=(srv.smtp_port, list(range(MAILS)), acked_before, stop))
    clients.start()
    deadline = time.monotonic() + 120
    while len(acked_before) < MAILS // 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.kill()
    killed_at = len(acked_before)
    clients.join()
    assert MAILS // 3 <= killed_at < MAILS, f"kill came at {killed_at} acknowledged mails"
    acked_at_kill = set(acked_before)
    print(f"killed after {killed_at} acks, {time.monotonic() - t0:.1f}s")

    # The senders retry what did not get a 250, as real MTAs do.
    srv.start()
    acked_after: set[int] = set()
    run_clients(srv.smtp_port, [n for n in range(MAILS) if n not in acked_at_kill],
                acked_after, threading.Event())
    assert acked_at_kill | acked_after == set(range(MAILS))
    print(f"resent {len(acked_after)}, {time.monotonic() - t0:.1f}s")
    srv.wait_queue_empty(timeout=300)
    print(f"drained, {time.monotonic() - t0:.1f}s")
    emails = srv.emails("alice@example.test")
    counts = Counter(e["subject"] for e in emails)
    duplicates = {s: c for s, c in counts.items() if c > 1}
    assert not duplicates, f"stored twice: {sorted(duplicates)[:10]}"
    missing = [n for n in range(MAILS) if counts[f"load {n}"] != 1]
    assert not missing, f"{len(missing)} acknowledged mails missing, e.g. {missing[:10]}"
    assert srv.queue_stats()["dead"] == 0
    srv.stop()
