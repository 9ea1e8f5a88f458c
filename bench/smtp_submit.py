"""Submission and outbound benchmark: N authenticated sessions submit M mails each to remote
recipients; a loopback MX (aiosmtpd) found through a loopback DNS server (dnslib) receives them.

Prints submitted mails/s (time to the last 250 of the submission port: Sent copy stored and
queue items committed) and delivered mails/s (time until the MX has every message).

    .venv/bin/python bench/smtp_submit.py --sessions 10 --mails 50 --domains 5 --workers 0
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.dnsserver import TestDNS  # noqa: E402
from tests.e2e.server import Server  # noqa: E402
from tests.fakemx import FakeMX  # noqa: E402

USER, PASSWORD = "alice@example.test", "bench-password"


def make_mail(sid: int, n: int, size: int, rcpt: str) -> bytes:
    head = (f"From: Alice <{USER}>\r\nTo: {rcpt}\r\nSubject: bench {sid}-{n}\r\n"
            f"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <bench-{sid}-{n}-{time.time_ns()}@example.test>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog and keeps on running. \r\n"
    return head + line * max(1, (size - len(head)) // len(line))


async def session(port: int, sid: int, mails: int, size: int, domains: int,
                  latencies: list[float]) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=True, tls_context=ctx,
                             timeout=120)
    await client.connect()
    await client.login(USER, PASSWORD)
    for n in range(mails):
        rcpt = f"user{sid}-{n}@d{(sid + n) % domains}.remote.test"
        t0 = time.perf_counter()
        await client.sendmail(USER, [rcpt], make_mail(sid, n, size, rcpt))
        latencies.append(time.perf_counter() - t0)
    await client.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--mails", type=int, default=50)
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--domains", type=int, default=5)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    total = args.sessions * args.mails
    with tempfile.TemporaryDirectory(prefix="mailyard-bench-") as tmp:
        root = Path(tmp)
        with FakeMX(root / "mx") as mx:
            records = {(f"d{d}.remote.test", "MX"): ["10 mx.remote.test."]
                       for d in range(args.domains)}
            records[("mx.remote.test", "A")] = ["127.0.0.1"]
            with TestDNS(records) as dns:
                srv = Server(root / "srv", workers=args.workers,
                             outbound={"port": mx.port, "retry_schedule": [1.0]},
                             submission={"messages_per_hour": total * 2},
                             dns={"nameservers": [dns.address]})
                srv.add_user(USER, PASSWORD)
                srv.start()
                try:
                    latencies: list[float] = []
                    start = time.perf_counter()
                    asyncio.run(_all(args, srv.submission_port, latencies))
                    submitted = time.perf_counter() - start
                    mx.wait(total, timeout=600)
                    delivered = time.perf_counter() - start
                finally:
                    srv.stop()
                lat = sorted(latencies)
                print(f"sessions={args.sessions} mails/session={args.mails} size={args.size}B"
                      f" domains={args.domains} workers={args.workers} total={total}")
                print(f"submitted: {total} in {submitted:.2f}s = {total / submitted:.0f}"
                      f" mails/s; latency to 250 median {statistics.median(lat) * 1000:.1f} ms,"
                      f" p95 {lat[int(len(lat) * 0.95) - 1] * 1000:.1f} ms")
                print(f"delivered to the MX: {len(mx.received)} in {delivered:.2f}s ="
                      f" {len(mx.received) / delivered:.0f} mails/s end to end")


async def _all(args: argparse.Namespace, port: int, latencies: list[float]) -> None:
    await asyncio.gather(*(session(port, s, args.mails, args.size, args.domains, latencies)
                           for s in range(args.sessions)))


if __name__ == "__main__":
    main()
