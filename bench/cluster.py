"""Cluster benchmark (issue 21): ingest end to end and an IMAP command mix through 1, 2 and 3
Mailyard nodes of the loopback cluster that scripts/cluster-up.sh starts, and IMAP IDLE on
node c woken by a delivery through node a, at half of the measured load.

    BLOBS=fs scripts/cluster-up.sh /tmp/cl        # or `make cluster` (S3 on Ceph)
    .venv/bin/python bench/cluster.py --dir /tmp/cl
    .venv/bin/python bench/cluster.py --dir /tmp/cl --postgres "$(scripts/postgres-up.sh /tmp/pg)"
    scripts/cluster-down.sh /tmp/cl

With k nodes measured, only those k run (the others are stopped: with one shared JetStream
queue every running node's pipeline takes deliveries, so a stopped node is the only way to
measure k). The bench restarts the nodes itself (same command as cluster-up.sh, pids in
DIR/pids) with `[dns]` pointing at a loopback DNS server of its own (bench/smtp_ingest.py's
records: SPF and DMARC pass for the senders); the cluster is left running with that DNS gone,
to be stopped with cluster-down.sh.

On one machine the nodes, NATS and PostgreSQL share the cores, so rates say little about a
real fleet. What carries over is CPU: for each phase it prints, per node, utime + stime of the
node's process tree per message (ingest) or per IMAP command (mix), and the same for the three
NATS servers and for the PostgreSQL backends serving the cluster's two shard databases (their
pids from pg_stat_activity; a backend that ended within the phase is not counted), or with
`--postgres` (a server of the cluster's own) its whole process tree.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import imaplib
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.postfix_dovecot import cpu_seconds  # noqa: E402
from bench.smtp_ingest import DNS_RECORDS, HELO, make_mail  # noqa: E402
from tests.dnsserver import TestDNS  # noqa: E402

PASSWORD = "bench-password"
RETRIED: list[str] = []
"""4xx answers the senders met and tried again after (printed with each phase)."""
NODES = ("a", "b", "c")


@dataclass
class Node:
    name: str
    config: Path
    smtp: int
    imap: int
    pid: int = 0


@dataclass
class Cluster:
    dir: Path
    nodes: dict[str, Node]
    nats: list[int]
    shards: list[str]
    """The shard DSNs ([store] metadata)."""
    running: set[str] = field(default_factory=set)
    postmaster: int = 0
    """With a PostgreSQL of the cluster's own (--postgres): its postmaster, whose process tree
    (every backend, ended ones included) is the PostgreSQL CPU counted."""

    @classmethod
    def read(cls, directory: Path) -> Cluster:
        pids = {name: int(pid) for pid, name in
                (line.split() for line in (directory / "pids").read_text().splitlines())}
        nodes: dict[str, Node] = {}
        shards: list[str] = []
        for name in NODES:
            config = directory / name / "mailyard.toml"
            text = config.read_text()
            smtp = int(re.search(r'^smtp = "127.0.0.1:(\d+)"', text, re.M).group(1))  # type: ignore[union-attr]
            imap = int(re.search(r'^imap = "127.0.0.1:(\d+)"', text, re.M).group(1))  # type: ignore[union-attr]
            nodes[name] = Node(name, config, smtp, imap, pids.get(f"mailyard-{name}", 0))
            shards = re.findall(r'"(postgresql://[^"]+)"', text)
        nats = [pid for name, pid in pids.items() if name.startswith("nats-")]
        cluster = cls(directory, nodes, nats, shards)
        cluster.running = {n for n, node in nodes.items() if node.pid and _alive(node.pid)}
        return cluster

    def _save_pids(self) -> None:
        lines = [line for line in (self.dir / "pids").read_text().splitlines()
                 if not line.endswith(tuple(f" mailyard-{n}" for n in NODES))]
        lines += [f"{node.pid} mailyard-{name}" for name, node in self.nodes.items()
                  if name in self.running]
        (self.dir / "pids").write_text("\n".join(lines) + "\n")

    def stop(self, name: str) -> None:
        node = self.nodes[name]
        if name in self.running:
            os.kill(node.pid, signal.SIGTERM)
            for _ in range(300):
                if not _alive(node.pid):
                    break
                time.sleep(0.1)
            self.running.discard(name)
            self._save_pids()

    def start(self, name: str) -> None:
        node = self.nodes[name]
        if name in self.running:
            return
        path = self.dir / name / "serve.log"
        offset = path.stat().st_size if path.exists() else 0
        with open(path, "ab") as log:
            proc = subprocess.Popen(
                [str(ROOT / ".venv/bin/mailyard"), "--config", str(node.config), "serve"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        node.pid = proc.pid
        self.running.add(name)
        self._save_pids()
        for _ in range(1200):  # as cluster-up.sh waits: the serve log says it serves
            with open(path, "rb") as f:
                f.seek(offset)
                if b"mailyard: serving" in f.read():
                    return
            if proc.poll() is not None:
                raise RuntimeError(f"node {name} died; see {path}")
            time.sleep(0.1)
        raise RuntimeError(f"node {name} did not start")

    def only(self, names: set[str]) -> None:
        for name in NODES:
            if name not in names:
                self.stop(name)
        for name in NODES:
            if name in names:
                self.start(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(
        f"/proc/{pid}/status").read_text().lower()


def set_dns(cluster: Cluster, dns: TestDNS) -> None:
    """Each node's config gets (or has replaced) a [dns] section naming `dns`; the running
    nodes are restarted on it."""
    for name, node in cluster.nodes.items():
        text = re.sub(r"\n# bench/cluster\.py DNS\n\[dns\]\nnameservers = \[[^\]]*\]\n", "\n",
                      node.config.read_text())
        node.config.write_text(
            text + f'\n# bench/cluster.py DNS\n[dns]\nnameservers = ["{dns.address}"]\n')
        if name in cluster.running:
            cluster.stop(name)
            cluster.start(name)


async def move_postgres(cluster: Cluster, admin: str) -> None:
    """Point every node at two shard databases on the PostgreSQL of `admin` (made if missing,
    schemas by the first `domain add`): a private server, when the machine's is shared with
    other work (its connections run out, and its CPU is not the cluster's alone)."""
    conn = await asyncpg.connect(admin)
    try:
        checkpointer = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
        cluster.postmaster = int(Path(f"/proc/{checkpointer}/stat").read_text().rsplit(
            ")", 1)[1].split()[1])
        dsns = []
        for n in range(len(cluster.shards)):
            name = f"mailyard_cluster_s{n}"
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
            dsns.append(admin.rsplit("/", 1)[0] + "/" + name)
    finally:
        await conn.close()
    running = set(cluster.running)
    for name in NODES:
        cluster.stop(name)
    for node in cluster.nodes.values():
        text = node.config.read_text()
        for old, new in zip(cluster.shards, dsns, strict=True):
            text = text.replace(f'"{old}"', f'"{new}"')
        node.config.write_text(text)
    cluster.shards = dsns
    subprocess.run([str(ROOT / ".venv/bin/mailyard"), "--config",
                    str(cluster.nodes["a"].config), "domain", "add", "example.test"],
                   capture_output=True)
    for name in sorted(running):
        cluster.start(name)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def pg_backends(shards: list[str]) -> list[int]:
    conn = await asyncpg.connect(shards[0])
    try:
        names = [dsn.rsplit("/", 1)[1] for dsn in shards]
        return [r[0] for r in await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = ANY($1::text[])"
            " AND pid <> pg_backend_pid()", names)]
    finally:
        await conn.close()


def _pid_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:13]) / os.sysconf("SC_CLK_TCK")


@dataclass
class CPU:
    """CPU seconds of each running node's tree, the NATS servers, the shards' backends."""

    nodes: dict[str, float]
    nats: float
    pg: dict[int, float]

    @classmethod
    async def take(cls, cluster: Cluster) -> CPU:
        if cluster.postmaster:
            pg = {0: cpu_seconds(cluster.postmaster)}
        else:
            pg = {p: _pid_cpu(p) for p in await pg_backends(cluster.shards)}
        return cls({n: cpu_seconds(cluster.nodes[n].pid) for n in sorted(cluster.running)},
                   sum(_pid_cpu(p) for p in cluster.nats), pg)

    def since(self, before: CPU) -> CPU:
        return CPU({n: v - before.nodes.get(n, 0.0) for n, v in self.nodes.items()},
                   self.nats - before.nats,
                   {p: v - before.pg.get(p, 0.0) for p, v in self.pg.items()})


def report_cpu(label: str, used: CPU, count: int, unit: str) -> None:
    per = {n: v / count * 1000 for n, v in used.nodes.items()}
    total = sum(per.values())
    pg = sum(used.pg.values()) / count * 1000
    nats = used.nats / count * 1000
    print(f"  {label} CPU ms per {unit}: " + ", ".join(f"node {n} {v:.2f}" for n, v in
                                                    per.items())
          + f"; all nodes {total:.2f}; NATS {nats:.2f}; PostgreSQL {pg:.2f}")


# ------------------------------------------------------------------ users


def add_users(cluster: Cluster, count: int) -> list[str]:
    users = [f"bench{n}@example.test" for n in range(count)]
    config = cluster.nodes["a"].config
    for user in users:
        subprocess.run([str(ROOT / ".venv/bin/mailyard"), "--config", str(config), "user",
                        "add", user, "--password-stdin"], input=PASSWORD.encode(),
                       capture_output=True)
    return users


# ------------------------------------------------------------------ ingest


def _source(sid: int) -> tuple[str, int]:
    """Each sending session from a loopback address of its own: the limits per client address
    ([smtp] messages_per_ip_per_minute, shared by the nodes through Redis) are a sender's,
    and the bench stands for many."""
    return (f"127.0.{1 + sid // 250}.{1 + sid % 250}", 0)


DNS: dict[tuple[str, str], list[str | bytes]] = {
    **DNS_RECORDS, (HELO, "TXT"): ["v=spf1 ip4:127.0.0.0/8 -all"]}
"""smtp_ingest's records, the HELO name's SPF widened to every loopback sender address."""


async def _send(port: int, sid: int, mails: int, size: int, users: list[str],
                rate: float | None, latencies: list[float]) -> int:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=300,
                             local_hostname=HELO, source_address=_source(sid))
    await client.connect()
    sent = 0
    started = time.perf_counter()
    for n in range(mails):
        if rate:
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
        t0 = time.perf_counter()
        for attempt in range(30):  # a 4xx is tried again, as a sending MTA would
            try:
                await client.sendmail(f"bench{sid}@remote.test",
                                      [users[(sid + n) % len(users)]], make_mail(sid, n, size))
                break
            except (aiosmtplib.SMTPDataError, aiosmtplib.SMTPRecipientsRefused,
                    aiosmtplib.SMTPSenderRefused) as e:
                if attempt == 29 or not str(getattr(e, "code", 4)).startswith("4"):
                    raise
                RETRIED.append(f"{type(e).__name__}: {e}")
                await asyncio.sleep(1.0)
        latencies.append(time.perf_counter() - t0)
        sent += 1
    await client.quit()
    return sent


async def indexed(cluster: Cluster) -> int:
    """Documents in the search index of every shard: a mail counts once stored and indexed
    (the bench's users are the cluster's only ones)."""
    total = 0
    for dsn in cluster.shards:
        conn = await asyncpg.connect(dsn)
        try:
            if await conn.fetchval("SELECT to_regclass('search_docs') IS NOT NULL"):
                total += int(await conn.fetchval("SELECT count(*) FROM search_docs"))
        finally:
            await conn.close()
    return total


async def drained(cluster: Cluster, expected: int) -> None:
    deadline = time.monotonic() + 600
    while (seen := await indexed(cluster)) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {seen} of {expected} mails indexed after 600 s")
        await asyncio.sleep(0.1)


async def ingest(cluster: Cluster, names: list[str], users: list[str],
                 sessions: int, mails: int, size: int) -> float:
    """SMTP sessions spread over `names`; returns the end-to-end rate (mails/s)."""
    base = await indexed(cluster)
    before, load0 = await CPU.take(cluster), loadavg()
    latencies: list[float] = []
    start = time.perf_counter()
    sent = sum(await asyncio.gather(*(
        _send(cluster.nodes[names[s % len(names)]].smtp, s, mails, size, users, None,
              latencies) for s in range(sessions))))
    accepted_s = time.perf_counter() - start
    await drained(cluster, base + sent)
    done_s = time.perf_counter() - start
    used = (await CPU.take(cluster)).since(before)
    lat = sorted(latencies)
    print(f"ingest through {len(names)} node(s) {','.join(names)}: {sent} mails of {size} B,"
          f" {sessions} sessions; load {load0} -> {loadavg()}")
    print(f"  accepted {sent / accepted_s:.1f} mails/s (250 median"
          f" {statistics.median(lat) * 1000:.0f} ms), stored and indexed"
          f" {sent / done_s:.1f} mails/s end to end")
    report_cpu("ingest", used, sent, "mail")
    if RETRIED:
        print(f"  {len(RETRIED)} 4xx answers tried again, first: {RETRIED[0]}")
        RETRIED.clear()
    return sent / done_s


# ------------------------------------------------------------------ IMAP mix


def _mix_client(port: int, user: str, stop: threading.Event, counts: list[int]) -> None:
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=120)
    imap.login(user, PASSWORD)
    done = 2
    n = 0
    while not stop.is_set():
        _, data = imap.select("INBOX")
        exists = int(data[0] or 0)
        low = max(1, exists - 19)
        imap.fetch(f"{low}:*", "(UID FLAGS RFC822.SIZE ENVELOPE)")
        imap.fetch(str(max(1, exists - n % 20)), "(BODY.PEEK[])")
        imap.search(None, "UNSEEN")
        imap.uid("SEARCH", "X-GM-RAW", '"quick fox"')
        imap.store(str(max(1, exists - n % 20)), "+FLAGS", "(\\Seen)")
        imap.noop()
        imap.status("INBOX", "(MESSAGES UNSEEN)")
        done += 8
        n += 1
    imap.logout()
    counts.append(done + 1)


async def imap_mix(cluster: Cluster, names: list[str], users: list[str], clients: int,
                   seconds: float) -> None:
    """`clients` sessions over `names`, each a loop of SELECT, FETCH of the last 20 headers,
    one BODY.PEEK[], SEARCH UNSEEN, X-GM-RAW, STORE, NOOP and STATUS, for `seconds`."""
    before, load0 = await CPU.take(cluster), loadavg()
    stop = threading.Event()
    counts: list[int] = []
    threads = [threading.Thread(target=_mix_client, args=(
        cluster.nodes[names[c % len(names)]].imap, users[c % len(users)], stop, counts))
        for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    await asyncio.sleep(seconds)
    stop.set()
    for t in threads:
        await asyncio.to_thread(t.join)
    took = time.perf_counter() - start
    used = (await CPU.take(cluster)).since(before)
    total = sum(counts)
    print(f"IMAP mix through {len(names)} node(s) {','.join(names)}: {clients} sessions,"
          f" {total} commands in {took:.1f} s = {total / took:.0f} commands/s;"
          f" load {load0} -> {loadavg()}")
    report_cpu("IMAP", used, total, "command")


# ------------------------------------------------------------------ IDLE across nodes


def _idle_waiter(port: int, user: str, wakes: list[float], ready: threading.Event,
                 stop: threading.Event, flags: bool = False) -> None:
    """IDLE on `port` and time each untagged EXISTS (time.perf_counter, this process), and
    with `flags` each untagged FETCH too."""
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=120)
    imap.login(user, PASSWORD)
    imap.select("INBOX")
    tag = imap._new_tag().decode()
    imap.send(f"{tag} IDLE\r\n".encode())
    assert imap.readline().startswith(b"+")
    ready.set()
    imap.sock.settimeout(1.0)
    buffer = b""
    while not stop.is_set():
        try:
            chunk = imap.sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        now = time.perf_counter()
        buffer += chunk
        while b"\r\n" in buffer:
            line, buffer = buffer.split(b"\r\n", 1)
            if line.endswith(b" EXISTS") or (flags and b" FETCH " in line):
                wakes.append(now)
    with contextlib.suppress(OSError):
        imap.send(b"DONE\r\n")
        imap.logout()


async def idle_latency(cluster: Cluster, users: list[str], samples: int,
                       background_rate: float, size: int) -> None:
    """One IDLE session on node c for a user of its own; deliveries to that user through
    node a, one at a time, each timed from its 250 to the EXISTS on c; meanwhile other mail
    flows through a and b at `background_rate` mails/s to the other users."""
    target, others = users[0], users[1:]
    wakes: list[float] = []
    ready, stop = threading.Event(), threading.Event()
    waiter = threading.Thread(target=_idle_waiter, args=(
        cluster.nodes["c"].imap, target, wakes, ready, stop))
    waiter.start()
    await asyncio.to_thread(ready.wait, 30)
    load0 = loadavg()
    background: list[asyncio.Task[int]] = []
    lat: list[float] = []
    if background_rate:
        per = background_rate / 4
        background = [asyncio.create_task(_send(
            cluster.nodes["ab"[s % 2]].smtp, 100 + s, 100000, size, others, per, lat))
            for s in range(4)]
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=cluster.nodes["a"].smtp,
                             start_tls=False, timeout=120, local_hostname=HELO,
                             source_address=_source(999))
    await client.connect()
    delays: list[float] = []
    try:
        await asyncio.sleep(2.0)
        for n in range(samples):
            seen = len(wakes)
            await client.sendmail("idle@remote.test", [target], make_mail(999, n, size))
            accepted = time.perf_counter()
            deadline = accepted + 30
            while len(wakes) == seen and time.perf_counter() < deadline:
                await asyncio.sleep(0.001)
            if len(wakes) == seen:
                raise RuntimeError(f"no EXISTS on node c within 30 s (sample {n})")
            delays.append(wakes[seen] - accepted)
            await asyncio.sleep(0.2)
    finally:
        await client.quit()
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        stop.set()
        await asyncio.to_thread(waiter.join)
    delays.sort()

    def p(q: float) -> float:
        return delays[min(len(delays) - 1, int(len(delays) * q))] * 1000

    print(f"IDLE on node c, delivery through node a, background {background_rate:.1f} mails/s"
          f" through a and b ({len(lat)} sent meanwhile): {len(delays)} samples, 250 -> EXISTS"
          f" median {p(0.5):.0f} ms, p90 {p(0.9):.0f} ms, p99 {p(0.99):.0f} ms,"
          f" max {delays[-1] * 1000:.0f} ms; load {load0} -> {loadavg()}")


async def flag_latency(cluster: Cluster, users: list[str], samples: int,
                       background_rate: float, size: int) -> None:
    """The event path alone: STORE +FLAGS/-FLAGS on node a, timed from the command sent (the
    write, its commit and the publish included) to the untagged FETCH in an IDLE on node c,
    with the same background mail."""
    target, others = users[0], users[1:]
    wakes: list[float] = []
    ready, stop = threading.Event(), threading.Event()
    waiter = threading.Thread(target=_idle_waiter, args=(
        cluster.nodes["c"].imap, target, wakes, ready, stop, True))
    waiter.start()
    await asyncio.to_thread(ready.wait, 30)
    load0 = loadavg()
    lat: list[float] = []
    background = [asyncio.create_task(_send(
        cluster.nodes["ab"[s % 2]].smtp, 200 + s, 100000, size, others, background_rate / 4,
        lat)) for s in range(4)] if background_rate else []
    writer = imaplib.IMAP4("127.0.0.1", cluster.nodes["a"].imap, timeout=60)
    writer.login(target, PASSWORD)
    writer.select("INBOX")
    delays: list[float] = []
    try:
        await asyncio.sleep(2.0)
        for n in range(samples):
            seen = len(wakes)
            done = time.perf_counter()  # from the command sent: the FETCH on c can come
            await asyncio.to_thread(writer.store, "1", "+FLAGS" if n % 2 == 0 else "-FLAGS",
                                    "(\\Flagged)")  # before this thread sees the OK
            deadline = done + 30
            while len(wakes) == seen and time.perf_counter() < deadline:
                await asyncio.sleep(0.001)
            if len(wakes) == seen:
                raise RuntimeError(f"no FETCH on node c within 30 s (sample {n})")
            delays.append(wakes[seen] - done)
            await asyncio.sleep(0.1)
    finally:
        writer.logout()
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        stop.set()
        await asyncio.to_thread(waiter.join)
    delays.sort()
    at = [delays[min(len(delays) - 1, int(len(delays) * q))] * 1000 for q in (0.5, 0.9, 0.99)]
    print(f"IDLE on node c, STORE FLAGS through node a, background {background_rate:.1f}"
          f" mails/s through a and b ({len(lat)} sent meanwhile): {len(delays)} samples,"
          f" STORE sent -> FETCH median {at[0]:.1f} ms, p90 {at[1]:.1f} ms, p99 {at[2]:.1f} ms,"
          f" max {delays[-1] * 1000:.1f} ms; load {load0} -> {loadavg()}")


def _rss_kb(root: int) -> int:
    """Resident memory of `root` and its descendants (kB)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    total = 0
    for pid in tree:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


class _FromIMAP4(imaplib.IMAP4):
    """An IMAP client connecting from a loopback address of its own (127.0.0.0/8 is all
    local), to stay under the server's connections per address."""

    def __init__(self, source: str, port: int) -> None:
        self.source = source
        super().__init__("127.0.0.1", port, timeout=60)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))


async def idle_memory(cluster: Cluster, users: list[str], sessions: int) -> None:
    """Memory of `sessions` IMAP sessions in IDLE on node b: the node's resident memory
    before and after they log in, select INBOX and start IDLE."""
    node = cluster.nodes["b"]
    before = _rss_kb(node.pid)
    held: list[imaplib.IMAP4] = []

    def open_one(n: int) -> imaplib.IMAP4:
        imap = _FromIMAP4(f"127.0.0.{2 + n // 40}", node.imap)  # [imap] connections_per_ip
        imap.login(users[n % len(users)], PASSWORD)
        imap.select("INBOX")
        imap.send(f"{imap._new_tag().decode()} IDLE\r\n".encode())
        assert imap.readline().startswith(b"+")
        return imap

    for n in range(sessions):
        held.append(await asyncio.to_thread(open_one, n))
    await asyncio.sleep(2.0)
    after = _rss_kb(node.pid)
    for imap in held:
        with contextlib.suppress(OSError):
            imap.shutdown()
    print(f"IDLE sessions on node b: {sessions} sessions, resident memory {before / 1024:.0f}"
          f" -> {after / 1024:.0f} MB = {(after - before) / sessions:.0f} kB per session")


# ------------------------------------------------------------------ main


async def main(args: argparse.Namespace) -> None:
    cluster = Cluster.read(Path(args.dir))
    if args.postgres:
        await move_postgres(cluster, args.postgres)
    with TestDNS(DNS, ttl=300) as dns:
        set_dns(cluster, dns)
        cluster.only({"a"})
        users = add_users(cluster, args.users)
        if args.idle_sessions:
            cluster.only(set(NODES))
            await idle_memory(cluster, users, args.idle_sessions)
            return
        rates: dict[int, float] = {3: args.idle_rate * 2}
        for _ in range(0 if args.idle_rate else args.rounds):
            for k in (1, 2, 3):
                names = list(NODES[:k])
                cluster.only(set(names))
                rates[k] = await ingest(cluster, names, users, args.sessions,
                                        args.mails, args.size)
                await imap_mix(cluster, names, users, args.clients, args.seconds)
        cluster.only(set(NODES))
        await idle_latency(cluster, users, args.samples, 0.0, args.size)
        await idle_latency(cluster, users, args.samples, rates[3] / 2, args.size)
        await flag_latency(cluster, users, args.samples, 0.0, args.size)
        await flag_latency(cluster, users, args.samples, rates[3] / 2, args.size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="the cluster's directory (cluster-up.sh)")
    parser.add_argument("--postgres", default="", help="admin DSN of another PostgreSQL for"
                        " the shards (e.g. a private scripts/postgres-up.sh one)")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--mails", type=int, default=40, help="per session")
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=6, help="IMAP sessions of the mix")
    parser.add_argument("--seconds", type=float, default=20.0, help="of the IMAP mix")
    parser.add_argument("--samples", type=int, default=100, help="IDLE wake-ups timed")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--idle-sessions", type=int, default=0,
                        help="only measure the memory of this many IDLE sessions on node b")
    parser.add_argument("--idle-rate", type=float, default=0.0,
                        help="skip the throughput phases: IDLE only, at this background rate")
    asyncio.run(main(parser.parse_args()))
