"""Push across nodes (issue 21): IMAP IDLE on node c and JMAP WebSocket push on node b, woken
by deliveries through node a, with and without a background SMTP load at half of what the
cluster sustains.

Starts a cluster of its own on loopback, as tests/e2e/test_cluster.py does: three NATS servers
with JetStream (queue replicas 3, events), a private PostgreSQL with two shard databases, a
private Redis, three `mailyard serve` nodes sharing one blob directory, a loopback DNS server
(bench/smtp_ingest.py's records: SPF and DMARC pass for the senders). The private PostgreSQL
runs with track_commit_timestamp = on, so each probe's commit time is read back afterwards
(pg_xact_commit_timestamp of its `emails` row): the time from the SMTP 250 on node a is split
into 250 -> commit (the queue, a pipeline on any node, the store) and commit -> wake-up; and a
NATS subscriber of the bench's own on the account's event subject splits that into commit ->
announce (the worker's search indexing and publish) and announce -> wake-up (NATS to the
node, the listener's own work, the client). Everything is stopped at the end.

    .venv/bin/python bench/cluster_push.py --samples 100 --rounds 2

First the sustained rate: `--sessions` SMTP sessions spread over the three nodes send
`--mails` each as fast as they can, and the rate is counted until every mail is in the search
index (the end of a delivery). Then, per round, a phase with no other mail and a phase at half
that rate (four paced senders through nodes a and b to the other users), alternated. In each
phase one user is the probe: an IDLE on its INBOX on node c, a JMAP WebSocket (RFC 8887,
WebSocketPushEnable for Email) on node b; a probe mail with a Subject of its own goes to it
through node a, one at a time, and the next only once both have woken (plus a pause).
Timestamps are wall-clock (time.time()) in this process; the commit's comes from PostgreSQL
on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import imaplib
import json
import shutil
import ssl
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
import asyncpg
from websockets.sync.client import connect
from websockets.typing import Subprotocol

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cluster import DNS, _send, _source, loadavg  # noqa: E402
from bench.smtp_ingest import HELO  # noqa: E402
from tests.dnsserver import TestDNS  # noqa: E402

PASSWORD = "secret-password"  # tests/e2e/test_cluster.py's


@dataclass
class Listener:
    """A thread that records the wall-clock time of each wake-up it sees."""

    wakes: list[float] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    error: list[BaseException] = field(default_factory=list)

    def first_after(self, t: float) -> float | None:
        return next((w for w in list(self.wakes) if w >= t), None)

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(10)


def idle_on(port: int, user: str) -> Listener:
    """IMAP IDLE on INBOX; a wake is an untagged `* n EXISTS`."""
    listener = Listener()

    def run() -> None:
        try:
            imap = imaplib.IMAP4("127.0.0.1", port, timeout=60)
            imap.login(user, PASSWORD)
            imap.select("INBOX")
            imap.send(f"{imap._new_tag().decode()} IDLE\r\n".encode())
            assert imap.readline().startswith(b"+")
            listener.ready.set()
            imap.sock.settimeout(0.5)
            buffer = b""
            while not listener.stop.is_set():
                try:
                    chunk = imap.sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                now = time.time()
                buffer += chunk
                while b"\r\n" in buffer:
                    line, buffer = buffer.split(b"\r\n", 1)
                    if line.endswith(b" EXISTS"):
                        listener.wakes.append(now)
            with contextlib.suppress(OSError):
                imap.send(b"DONE\r\n")
                imap.logout()
        except BaseException as e:  # reported by the phase
            listener.error.append(e)
            listener.ready.set()

    listener.thread = threading.Thread(target=run, daemon=True)
    listener.thread.start()
    return listener


def websocket_on(port: int, user: str) -> Listener:
    """A JMAP WebSocket with push enabled for Email; a wake is a StateChange frame."""
    listener = Listener()

    def run() -> None:
        try:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # the node's self-signed certificate
            credentials = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
            with connect(f"wss://127.0.0.1:{port}/jmap/ws", ssl=ctx,
                         subprotocols=[Subprotocol("jmap")],
                         additional_headers={"Authorization": f"Basic {credentials}"}) as ws:
                ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]}))
                time.sleep(0.2)
                listener.ready.set()
                while not listener.stop.is_set():
                    try:
                        frame = ws.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    now = time.time()
                    if json.loads(frame).get("@type") == "StateChange":
                        listener.wakes.append(now)
        except BaseException as e:  # reported by the phase
            listener.error.append(e)
            listener.ready.set()

    listener.thread = threading.Thread(target=run, daemon=True)
    listener.thread.start()
    return listener


def nats_tap(urls: list[str], subject: str) -> Listener:
    """A NATS subscriber of the bench's own on the probe account's event subject, in a thread
    with its own event loop: a wake is the worker's announce arriving from NATS, the moment
    the nodes' subscribers can have it too."""
    import nats

    listener = Listener()

    def run() -> None:
        async def main() -> None:
            nc = await nats.connect(urls)

            async def received(msg: object) -> None:
                listener.wakes.append(time.time())

            await nc.subscribe(subject, cb=received)
            await nc.flush()
            listener.ready.set()
            while not listener.stop.is_set():
                await asyncio.sleep(0.05)
            await nc.close()

        try:
            asyncio.run(main())
        except BaseException as e:  # reported by the phase
            listener.error.append(e)
            listener.ready.set()

    listener.thread = threading.Thread(target=run, daemon=True)
    listener.thread.start()
    return listener


def probe_mail(subject: str, to: str, size: int) -> bytes:
    head = (f"From: probe@remote.test\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@remote.test>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog and keeps on running. \r\n"
    return head + line * max(1, (size - len(head)) // len(line))


async def event_subject(dsns: list[str], prefix: str, address: str) -> str:
    from mailyard.store.nats.connection import subject_token

    for dsn in dsns:  # the account's shard has its row
        conn = await asyncpg.connect(dsn)
        try:
            account_id = await conn.fetchval("SELECT id FROM accounts WHERE address = $1",
                                             address)
        finally:
            await conn.close()
        if account_id is not None:
            return f"{prefix}.events.{subject_token(str(account_id))}"
    raise RuntimeError(f"no account {address}")


async def indexed(dsns: list[str]) -> int:
    total = 0
    for dsn in dsns:
        conn = await asyncpg.connect(dsn)
        try:
            if await conn.fetchval("SELECT to_regclass('search_docs') IS NOT NULL"):
                total += int(await conn.fetchval("SELECT count(*) FROM search_docs"))
        finally:
            await conn.close()
    return total


async def sustained(cluster: object, dsns: list[str], users: list[str], sessions: int,
                    mails: int, size: int) -> float:
    """Mails/s end to end (until indexed), sessions spread over the three nodes."""
    nodes = [cluster.nodes[n] for n in "abc"]  # type: ignore[attr-defined]
    base = await indexed(dsns)
    load0 = loadavg()
    lat: list[float] = []
    start = time.perf_counter()
    sent = sum(await asyncio.gather(*(
        _send(nodes[s % 3].smtp_port, s, mails, size, users, None, lat)
        for s in range(sessions))))
    accepted = time.perf_counter() - start
    deadline = time.monotonic() + 600
    while await indexed(dsns) < base + sent:
        if time.monotonic() > deadline:
            raise RuntimeError("the mail was not all indexed within 600 s")
        await asyncio.sleep(0.1)
    took = time.perf_counter() - start
    print(f"sustained: {sent} mails of {size} B from {sessions} sessions over a, b, c:"
          f" accepted {sent / accepted:.1f}/s, stored and indexed {sent / took:.1f}/s end to"
          f" end; load {load0} -> {loadavg()}", flush=True)
    return sent / took


async def commit_times(dsns: list[str], prefix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for dsn in dsns:
        conn = await asyncpg.connect(dsn)
        try:
            for subject, at in await conn.fetch(
                    "SELECT subject, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8"
                    " FROM emails WHERE subject LIKE $1", prefix + "%"):
                if at is not None:
                    out[subject] = at
        finally:
            await conn.close()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def summary(label: str, values: list[float]) -> str:
    if not values:
        return f"  {label}: no samples"
    return (f"  {label}: n={len(values)} p50 {pct(values, 0.5):.1f} ms, p90"
            f" {pct(values, 0.9):.1f} ms, p99 {pct(values, 0.99):.1f} ms, max"
            f" {max(values) * 1000:.1f} ms")


async def phase(cluster: object, dsns: list[str], target: str, others: list[str],
                samples: int, rate: float, size: int, name: str) -> dict[str, list[float]]:
    nodes = cluster.nodes  # type: ignore[attr-defined]
    idle = idle_on(nodes["c"].imap_port, target)
    push = websocket_on(nodes["b"].http_port, target)
    tap = nats_tap(cluster.nats.urls, await event_subject(  # type: ignore[attr-defined]
        dsns, cluster.prefix, target))  # type: ignore[attr-defined]
    for listener in (idle, push, tap):
        await asyncio.to_thread(listener.ready.wait, 60)
        if listener.error:
            raise listener.error[0]
    load0 = loadavg()
    lat: list[float] = []
    background = [asyncio.create_task(_send(
        nodes["ab"[s % 2]].smtp_port, 100 + s, 10**6, size, others, rate / 4, lat))
        for s in range(4)] if rate else []
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=nodes["a"].smtp_port,
                             start_tls=False, timeout=120, local_hostname=HELO,
                             source_address=_source(999))
    await client.connect()
    prefix = f"probe-{name}-{time.time_ns()}-"
    probes: list[tuple[str, float, float]] = []  # subject, sent, 250
    replies: dict[str, str] = {}  # subject -> the 250's text (its queue id)
    missed = {"IDLE": 0, "JMAP": 0}
    try:
        await asyncio.sleep(2.0)
        for n in range(samples):
            subject = f"{prefix}{n}"
            sent = time.time()
            _, reply = await client.sendmail("probe@remote.test", [target],
                                             probe_mail(subject, target, size))
            probes.append((subject, sent, time.time()))
            replies[subject] = reply
            deadline = time.monotonic() + 30
            while (idle.first_after(sent) is None or push.first_after(sent) is None) \
                    and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.3)  # a delivery may move the JMAP state more than once
            # the wakes of this probe are behind us: later probes look after their own send
    finally:
        await client.quit()
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        idle.close()
        push.close()
        tap.close()
    load1 = loadavg()
    commits = await commit_times(dsns, prefix)
    deadline = time.monotonic() + 120  # a probe not in yet: late (how late?) or lost
    while len(commits) < len(probes) and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        commits = await commit_times(dsns, prefix)
    for subject, _, ok in probes:
        if subject in commits and commits[subject] - ok > 30:
            print(f"  {subject} ({replies.get(subject, '')}): committed"
                  f" {commits[subject] - ok:.1f} s after its 250", flush=True)
        elif subject not in commits:
            print(f"  {subject} ({replies.get(subject, '')}): not committed 120 s after the"
                  " phase", flush=True)
    out: dict[str, list[float]] = {k: [] for k in (
        "250->EXISTS c", "250->StateChange b", "250->commit", "commit->EXISTS c",
        "commit->StateChange b", "commit->announce", "announce->EXISTS c",
        "announce->StateChange b")}
    for i, (subject, sent, ok) in enumerate(probes):
        until = probes[i + 1][1] if i + 1 < len(probes) else float("inf")
        e = idle.first_after(sent)
        s = push.first_after(sent)
        a = tap.first_after(sent)
        e = e if e is not None and e < until else None
        s = s if s is not None and s < until else None
        a = a if a is not None and a < until else None
        commit = commits.get(subject)
        if e is None or s is None or commit is None:
            print(f"  {subject}: 250 ({replies.get(subject, '')}) at {ok:.3f} after"
                  f" {(ok - sent) * 1000:.0f} ms, no"
                  + "".join(f" {w}" for w, v in (("EXISTS", e), ("StateChange", s),
                                                  ("commit", commit)) if v is None)
                  + " before the next probe", flush=True)
        if a is not None:
            if commit is not None:
                out["commit->announce"].append(a - commit)
            if e is not None:
                out["announce->EXISTS c"].append(e - a)
            if s is not None:
                out["announce->StateChange b"].append(s - a)
        if e is None:
            missed["IDLE"] += 1
        else:
            out["250->EXISTS c"].append(e - ok)
        if s is None:
            missed["JMAP"] += 1
        else:
            out["250->StateChange b"].append(s - ok)
        if commit is not None:
            out["250->commit"].append(commit - ok)
            if e is not None:
                out["commit->EXISTS c"].append(e - commit)
            if s is not None:
                out["commit->StateChange b"].append(s - commit)
    print(f"{name}: {len(probes)} probes through a, background {rate:.1f} mails/s through a"
          f" and b ({len(lat)} sent meanwhile); {len(commits)} commit times; missed"
          f" {missed}; load {load0} -> {load1}", flush=True)
    for label, values in out.items():
        print(summary(label, values), flush=True)
    return out


async def run(args: argparse.Namespace) -> None:
    from tests.e2e.test_cluster import Cluster
    from tests.faults import PrivatePostgres

    with tempfile.TemporaryDirectory(prefix="cluster-push-") as tmp, \
            TestDNS(DNS, ttl=300) as dns:
        postgres = PrivatePostgres()
        try:
            conn = await asyncpg.connect(postgres.dsn)
            try:
                await conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
            finally:
                await conn.close()
            postgres.stop()
            postgres.start()
        except BaseException:
            postgres.remove()
            raise
        cluster = await asyncio.to_thread(
            Cluster, Path(tmp), postgres, dns={"nameservers": [dns.address]},
            limits={"messages_per_ip_per_minute": 100000})
        try:
            dsns = cluster.dsns
            users = [f"push{n}@example.test" for n in range(args.users)]
            for user in users:
                await asyncio.to_thread(cluster.nodes["a"].add_user, user, PASSWORD)
            target, others = users[0], users[1:]
            rate = args.rate or await sustained(cluster, dsns, others, args.sessions,
                                                args.mails, args.size)
            results: dict[str, dict[str, list[float]]] = {}
            for r in range(args.rounds):
                order = [("idle", 0.0), ("half", rate / 2)]
                for name, bg in order if r % 2 == 0 else order[::-1]:
                    got = await phase(cluster, dsns, target, others, args.samples, bg,
                                      args.size, f"{name}{r + 1}")
                    for k, v in got.items():
                        results.setdefault(name, {}).setdefault(k, []).extend(v)
            for name, got in results.items():
                print(f"all rounds, {name}:")
                for label, values in got.items():
                    print(summary(label, values))
        finally:
            await asyncio.to_thread(cluster.stop)
            if args.keep_logs:
                keep = Path(args.keep_logs)
                keep.mkdir(parents=True, exist_ok=True)
                for name, node in cluster.nodes.items():
                    shutil.copy(node.log_path, keep / f"{name}.log")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100, help="probes per phase")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--mails", type=int, default=30, help="per session, sustained rate")
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--keep-logs", default="",
                        help="copy the nodes' logs into this directory at the end")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="the sustained rate (mails/s) if known; skips measuring it")
    asyncio.run(run(parser.parse_args()))
