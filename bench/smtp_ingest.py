"""SMTP ingest benchmark: N concurrent sessions send M mails of S bytes each to a real server.

Prints the accepted mails per second (time to the last 250) and the time until every mail is
stored and indexed (queue drained, index count reached). Starts its own `mailyard serve` in a
temporary data_dir unless --port is given.

The server's DNS is a loopback server (tests/dnsserver.py) that publishes what a sending domain
of today publishes: SPF for the HELO name and the MAIL FROM domain, a DMARC record, answers
cacheable for 5 minutes. A real MX asks a caching resolver on its own host; this machine's
resolver drops queries when many are in flight (20 concurrent lookups: some answered only after
dnspython's 2 s retry), which measures that resolver, not the mail path. `--dns system` uses it
anyway.

`--store postgres` puts the server's MailStore and SearchIndex in a fresh PostgreSQL database
(tests/pgserver.py: the machine's server on 127.0.0.1:5432, dropped at the end); `--blobs s3`
puts its blobs in S3: the gateway named by MAILYARD_TEST_S3_ENDPOINT/_KEY/_SECRET, else a
private single-node Ceph radosgw (scripts/ceph-rgw-up.sh, ~20 s, stopped at the end). The
indexed-document count is read from whichever index the server uses. The queue stays SQLite.

    .venv/bin/python bench/smtp_ingest.py --sessions 20 --mails 50 --size 20000 --workers 2
    .venv/bin/python bench/smtp_ingest.py --store postgres --blobs s3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mailyard.app import Runtime  # noqa: E402
from mailyard.config import Config, load  # noqa: E402
from tests.dnsserver import TestDNS  # noqa: E402
from tests.e2e.server import Server  # noqa: E402

HELO = "mail.remote.test"
DNS_RECORDS: dict[tuple[str, str], list[str | bytes]] = {
    ("remote.test", "TXT"): ["v=spf1 ip4:127.0.0.0/8 -all"],
    ("_dmarc.remote.test", "TXT"): ["v=DMARC1; p=none"],
    (HELO, "TXT"): ["v=spf1 a -all"],
    (HELO, "A"): ["127.0.0.1"],
}
"""The bench senders' domain: SPF passes for loopback, DMARC p=none (aligned SPF: pass)."""


def bench_dns(kind: str) -> contextlib.AbstractContextManager[TestDNS | None]:
    """The loopback DNS server of the bench (`--dns loopback`), or none (`--dns system`)."""
    if kind == "system":
        return contextlib.nullcontext()
    return TestDNS(DNS_RECORDS, ttl=300)


def dns_config(dns: TestDNS | None) -> dict[str, list[str]]:
    return {"nameservers": [dns.address]} if dns is not None else {}


def make_mail(session: int, n: int, size: int) -> bytes:
    head = (f"From: bench{session}@remote.test\r\nTo: alice@example.test\r\n"
            f"Subject: bench {session}-{n}\r\nMessage-ID: <bench-{session}-{n}-{time.time_ns()}"
            f"@remote.test>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog and keeps on running. \r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


async def session(port: int, sid: int, mails: int, size: int, latencies: list[float]) -> int:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=120,
                             local_hostname=HELO)
    await client.connect()
    sent = 0
    for n in range(mails):
        t0 = time.perf_counter()
        await client.sendmail(f"bench{sid}@remote.test", ["alice@example.test"],
                              make_mail(sid, n, size))
        latencies.append(time.perf_counter() - t0)
        sent += 1
    await client.quit()
    return sent


async def run(args: argparse.Namespace, port: int, config: Config) -> None:
    latencies: list[float] = []
    total = args.sessions * args.mails
    # The server's own adapters for its config: its queue, and its index whichever engine.
    runtime = Runtime.open(config)
    queue, index = runtime.queue, runtime.index
    account = await runtime.store.get_account("alice@example.test")
    start = time.perf_counter()
    results = await asyncio.gather(*(session(port, s, args.mails, args.size, latencies)
                                     for s in range(args.sessions)))
    accepted_s = time.perf_counter() - start
    accepted = sum(results)
    while True:
        stats = await queue.stats()
        if stats.ready + stats.leased + stats.delayed == 0:
            break
        await asyncio.sleep(0.05)
    stored_s = time.perf_counter() - start
    indexed = await index.count(account.id)
    runtime.close()
    lat = sorted(latencies)
    print(f"sessions={args.sessions} mails/session={args.mails} size={args.size}B "
          f"workers={args.workers} total={total} store={args.store} blobs={args.blobs}")
    print(f"accepted: {accepted} mails in {accepted_s:.2f}s = {accepted / accepted_s:.0f} mails/s "
          f"({accepted * args.size / accepted_s / 1e6:.1f} MB/s)")
    print(f"latency per mail (to 250): median {statistics.median(lat) * 1000:.1f} ms, "
          f"p95 {lat[int(len(lat) * 0.95) - 1] * 1000:.1f} ms")
    print(f"stored and indexed: {indexed} documents, all done {stored_s:.2f}s after the start "
          f"= {accepted / stored_s:.0f} mails/s end to end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--mails", type=int, default=50)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, help="use a running server (with --config)")
    parser.add_argument("--config", help="that server's config, to find its data_dir")
    parser.add_argument("--dns", choices=("loopback", "system"), default="loopback",
                        help="the server's resolver: the bench's loopback DNS or the system's")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite",
                        help="the MailStore and SearchIndex: SQLite in data_dir or a fresh"
                             " PostgreSQL database")
    parser.add_argument("--blobs", choices=("files", "s3"), default="files",
                        help="the BlobStore: files in data_dir or S3 (a private Ceph radosgw"
                             " unless MAILYARD_TEST_S3_ENDPOINT names one)")
    args = parser.parse_args()
    if args.port:
        config = load(args.config)
        args.store = "postgres" if config.store.metadata else "sqlite"
        args.blobs = "s3" if config.store.blobs else "files"
        asyncio.run(run(args, args.port, config))
        return
    if args.blobs == "s3":
        from tests import s3

        asyncio.run(s3.warm_up())
    with tempfile.TemporaryDirectory(prefix="mailyard-bench-") as tmp, bench_dns(args.dns) as dns:
        # Server reads neither engine from the environment here: the flags say which.
        srv = Server(Path(tmp), workers=args.workers, dns=dns_config(dns),
                     limits={"messages_per_ip_per_minute": 0, "connections_per_ip": 0},
                     metadata="postgres" if args.store == "postgres" else "",
                     blobs="s3" if args.blobs == "s3" else "")
        srv.add_user("alice@example.test")
        srv.start()
        try:
            asyncio.run(run(args, srv.smtp_port, load(str(srv.config_path))))
        finally:
            srv.stop()
    print(f"machine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}")


if __name__ == "__main__":
    main()
