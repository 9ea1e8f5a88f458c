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

`--compare` (issue 24) measures side by side, as root, in alternated rounds: a private Postfix
delivering by LMTP to a private Dovecot (bench/postfix_dovecot.py), then `mailyard serve` from
each `--tree NAME=DIR` (a `git archive` of a commit, run with PYTHONPATH=DIR, so that what is
measured is that commit and not the working tree), each fresh for every run. The load is
Postfix's own `smtp-source -s 10 -m 2000 -l SIZE` (one connection per mail, as smtp-source
sends), the end is when all mail is visible over IMAP (STATUS INBOX MESSAGES on one session);
server CPU is utime + stime of the server's whole process tree (children reaped included)
from before the first connection to that end. Each run prints its figures with the load
averages; the medians and the ratios to Postfix + Dovecot come last.

    git archive --prefix=after/ HEAD | tar -x -C /tmp/ingest
    .venv/bin/python bench/smtp_ingest.py --compare --tree after=/tmp/ingest/after \
        --sizes 5000,50000 --rounds 3

`--smtp-processes N` (or, with --compare, NAME=N for one tree, repeatable) sets the server's
`[smtp] processes`: one tree can run twice under two names, default and with N MX processes.

    .venv/bin/python bench/smtp_ingest.py --compare --tree smtp1=/tmp/ingest/after \
        --tree smtp2=/tmp/ingest/after --smtp-processes smtp2=2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import imaplib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Run:
    """One measured run of `--compare`."""

    system: str
    size: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    accepted_s: float
    visible_s: float
    mails: int
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.mails / self.visible_s

    @property
    def accepted_rate(self) -> float:
        return self.mails / self.accepted_s

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s / self.mails * 1000


class IMAPCounter:
    """One IMAP session asking STATUS INBOX (MESSAGES) again and again."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.imap = imaplib.IMAP4("127.0.0.1", port, timeout=60)
        self.imap.login(user, password)

    def count(self) -> int:
        typ, data = self.imap.status("INBOX", "(MESSAGES)")
        first = data[0] if typ == "OK" and data else b""
        text = first.decode() if isinstance(first, bytes) else ""
        return int(text.rsplit("MESSAGES", 1)[1].strip(" )")) if "MESSAGES" in text else 0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.imap.logout()


def smtp_source(port: int, sessions: int, mails: int, size: int) -> None:
    subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(mails), "-l", str(size),
                    "-M", HELO, "-f", "bench@remote.test", "-t", "alice@example.test",
                    f"127.0.0.1:{port}"], check=True, timeout=3600)


def measure(system: str, size: int, args: argparse.Namespace, port: int, roots: list[int],
            counter: IMAPCounter) -> Run:
    """smtp-source against `port`, then STATUS until every mail is visible; the CPU of the
    process trees under `roots` meanwhile."""
    from bench.postfix_dovecot import cpu_seconds

    load_before = os.getloadavg()
    cpu0 = sum(cpu_seconds(pid) for pid in roots)
    start = time.perf_counter()
    smtp_source(port, args.sessions, args.mails, size)
    accepted = time.perf_counter() - start
    deadline = time.monotonic() + 1800
    while (seen := counter.count()) < args.mails:
        if time.monotonic() > deadline:
            raise SystemExit(f"{system}: only {seen} of {args.mails} mails visible")
        time.sleep(0.05)
    visible = time.perf_counter() - start
    run = Run(system, size, load_before, os.getloadavg(), accepted, visible, seen,
              sum(cpu_seconds(pid) for pid in roots) - cpu0)
    print(f"{system:>18} {size:>6} B: accepted {run.accepted_rate:5.0f} mails/s, all {seen}"
          f" visible in {visible:6.2f} s = {run.rate:5.0f} mails/s, server CPU"
          f" {run.cpu_ms:5.2f} ms/mail, load {' '.join(f'{v:.1f}' for v in load_before)} ->"
          f" {' '.join(f'{v:.1f}' for v in run.load_after)}", flush=True)
    return run


def postfix_dovecot_run(size: int, args: argparse.Namespace) -> Run:
    from bench.postfix_dovecot import PASSWORD, Dovecot, PostfixLMTP
    from tests.e2e.server import free_port

    dovecot = Dovecot().start()
    try:
        postfix = PostfixLMTP(free_port(), dovecot.lmtp_port).start()
        try:
            counter = IMAPCounter(dovecot.imap_port, "alice@example.test", PASSWORD)
            try:
                return measure("postfix+dovecot", size, args, postfix.port,
                               [postfix.master_pid, dovecot.master_pid], counter)
            finally:
                counter.close()
        finally:
            postfix.stop()
    finally:
        dovecot.stop()


def mailyard_run(name: str, tree: str, size: int, args: argparse.Namespace,
                 dns: TestDNS | None) -> Run:
    """`mailyard serve` from `tree` (PYTHONPATH), fresh data_dir, the default checks on."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = tree
    try:
        with tempfile.TemporaryDirectory(prefix="mailyard-bench-") as tmp:
            srv = Server(Path(tmp), workers=args.workers, dns=dns_config(dns),
                         limits={"messages_per_ip_per_minute": 0, "connections_per_ip": 0})
            smtp_processes(srv, processes_of(args, name))
            srv.add_user("alice@example.test")
            srv.start()
            try:
                assert srv.process is not None
                counter = IMAPCounter(srv.imap_port, "alice@example.test", "secret-password")
                try:
                    return measure(name, size, args, srv.smtp_port, [srv.process.pid],
                                   counter)
                finally:
                    counter.close()
            finally:
                srv.stop()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def processes_of(args: argparse.Namespace, name: str = "") -> int:
    """`[smtp] processes` for tree `name` (--smtp-processes N or NAME=N; default 1)."""
    found = 1
    for value in args.smtp_processes:
        key, sep, count = value.rpartition("=")
        if not sep or key == name:
            found = int(count)
    return found


def smtp_processes(srv: Server, processes: int) -> None:
    """`[smtp] processes` in the config Server wrote (it writes no [smtp] table itself)."""
    if processes > 1:
        with srv.config_path.open("a") as config:
            config.write(f"[smtp]\nprocesses = {processes}\n")


def compare(args: argparse.Namespace) -> None:
    trees = dict(t.split("=", 1) for t in args.tree) or {"mailyard": str(ROOT)}
    sizes = [int(v) for v in args.sizes.split(",")]
    runs: list[Run] = []
    print(f"smtp-source -s {args.sessions} -m {args.mails}; mailyard --workers {args.workers}"
          f" smtp processes {[f'{t}={processes_of(args, t)}' for t in trees]};"
          f" {args.rounds} alternated rounds; {os.cpu_count()} cores", flush=True)
    with bench_dns(args.dns) as dns:
        for n in range(args.rounds):
            for size in sizes:
                # Alternated, and the order turned each round, so no system always goes first.
                order: list[str] = [*(["postfix+dovecot"] if args.reference else []), *trees]
                if (n + args.reverse) % 2:
                    order.reverse()
                for system in order:
                    if system == "postfix+dovecot":
                        runs.append(postfix_dovecot_run(size, args))
                    else:
                        runs.append(mailyard_run(system, trees[system], size, args, dns))
    print("\nmedians (mails/s all visible over IMAP; accepted; server CPU ms/mail; load 1 min"
          " at the runs' start):")
    for size in sizes:
        reference = [r for r in runs if r.size == size and r.system == "postfix+dovecot"]
        base = statistics.median(r.rate for r in reference) if reference else float("nan")
        for system in [*(["postfix+dovecot"] if args.reference else []), *trees]:
            mine = [r for r in runs if r.size == size and r.system == system]
            rate = statistics.median(r.rate for r in mine)
            print(f"{system:>18} {size:>6} B: {rate:5.0f} mails/s ({rate / base:.2f}x),"
                  f" accepted {statistics.median(r.accepted_rate for r in mine):5.0f},"
                  f" CPU {statistics.median(r.cpu_ms for r in mine):5.2f} ms/mail,"
                  f" runs {', '.join(f'{r.rate:.0f}' for r in mine)},"
                  f" load {min(r.load_before[0] for r in mine):.1f}-"
                  f"{max(r.load_before[0] for r in mine):.1f}")


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
    parser.add_argument("--compare", action="store_true",
                        help="Postfix + Dovecot LMTP against mailyard serve, alternated rounds"
                             " of smtp-source (see the module doc; --mails is the total)")
    parser.add_argument("--tree", action="append", default=[],
                        help="with --compare: NAME=DIR, a mailyard tree to run (repeatable)")
    parser.add_argument("--smtp-processes", action="append", default=[],
                        help="[smtp] processes: N, or with --compare NAME=N for one tree")
    parser.add_argument("--sizes", default="5000,50000", help="with --compare: message sizes")
    parser.add_argument("--rounds", type=int, default=3, help="with --compare")
    parser.add_argument("--reverse", type=int, choices=(0, 1), default=0,
                        help="with --compare: 1 turns the first round's order round")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="with --compare: the mailyard trees only, no Postfix + Dovecot")
    args = parser.parse_args()
    if args.compare:
        # Unless given: smtp-source -s 10 -m 2000, as in the issue.
        args.sessions = 10 if args.sessions == 20 else args.sessions
        args.mails = 2000 if args.mails == 50 else args.mails
        compare(args)
        return
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
        smtp_processes(srv, processes_of(args))
        srv.add_user("alice@example.test")
        srv.start()
        try:
            asyncio.run(run(args, srv.smtp_port, load(str(srv.config_path))))
        finally:
            srv.stop()
    print(f"machine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}")


if __name__ == "__main__":
    main()
