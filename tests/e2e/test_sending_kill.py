"""SIGKILL during a burst of outbound mail: every accepted submission reaches the remote MX;
duplicates can only come from a crash between the remote's 250 and our ack, and are counted."""

from __future__ import annotations

import re
import smtplib
import ssl
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.dnsserver import TestDNS
from tests.e2e.server import Server
from tests.fakemx import FakeMX

CLIENTS = 10
MAILS = 1000
ALICE, PASSWORD = "alice@example.test", "secret-password"


def mail(n: int) -> bytes:
    return (f"From: Alice <{ALICE}>\r\nTo: rcpt{n}@d{n % 5}.remote.test\r\n"
            f"Subject: burst {n}\r\nMessage-ID: <burst-{n}@example.test>\r\n"
            f"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\n\r\n" + f"mail {n}\r\n" * 20).encode()


def send_share(port: int, numbers: list[int], acked: set[int], lock: threading.Lock) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.starttls(context=ctx)
            smtp.login(ALICE, PASSWORD)
            for n in numbers:
                smtp.sendmail(ALICE, [f"rcpt{n}@d{n % 5}.remote.test"], mail(n))
                with lock:
                    acked.add(n)
    except (OSError, smtplib.SMTPException):
        return  # the server died under us


def send_all(port: int, todo: list[int], acked: set[int]) -> None:
    lock = threading.Lock()
    with ThreadPoolExecutor(CLIENTS) as pool:
        for i in range(CLIENTS):
            pool.submit(send_share, port, todo[i::CLIENTS], acked, lock)


@pytest.mark.slow
def test_sigkill_during_outbound_burst(tmp_path: Path) -> None:
    with FakeMX(tmp_path / "mx") as mx, TestDNS({
            **{(f"d{d}.remote.test", "MX"): ["10 mx.remote.test."] for d in range(5)},
            ("mx.remote.test", "A"): ["127.0.0.1"]}) as dns:
        srv = Server(tmp_path / "srv", workers=1,
                     outbound={"port": mx.port, "retry_schedule": [1.0]},
                     submission={"messages_per_hour": 10 * MAILS},
                     dns={"nameservers": [dns.address]})
        srv.add_user(ALICE, PASSWORD)
        srv.start()
        acked: set[int] = set()
        sender = threading.Thread(target=send_all,
                                  args=(srv.submission_port, list(range(MAILS)), acked))
        sender.start()
        deadline = time.monotonic() + 180
        while len(mx.received) < MAILS // 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        srv.kill()
        sender.join()
        at_kill = len(mx.received)
        assert 0 < at_kill < MAILS, f"the kill came after {at_kill} deliveries"
        srv.start()
        try:
            resent: set[int] = set()  # a client resends what got no 250, as MUAs do
            send_all(srv.submission_port, [n for n in range(MAILS) if n not in acked], resent)
            assert acked | resent == set(range(MAILS))

            def delivered() -> Counter[int]:
                return Counter(int(m.group(1)) for r in mx.received
                               if (m := re.search(rb"Subject: burst (\d+)", r.data)))

            deadline = time.monotonic() + 300
            while len(delivered()) < MAILS and time.monotonic() < deadline:
                time.sleep(0.2)
            counts = delivered()
            missing = set(range(MAILS)) - set(counts)
            assert not missing, f"{len(missing)} accepted mails never reached the MX"
            twice = {n: c for n, c in counts.items() if c > 1}
            # Only a crash between the remote 250 and our ack can repeat a mail: at most the
            # deliveries in flight at the kill (16 concurrent per worker, one worker), plus a
            # submission whose 250 the client never saw and which it therefore sent again.
            print(f"killed after {at_kill} deliveries; {len(acked)} submissions acknowledged"
                  f" before the kill; delivered twice: {len(twice)} {sorted(twice)[:20]}")
            assert all(c == 2 for c in twice.values()), twice
            assert len(twice) <= 16 + CLIENTS, twice
        finally:
            srv.stop()
