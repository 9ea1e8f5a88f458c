"""The engines of a cluster fail under SMTP load (issue 21): a PostgreSQL restart, and the S3
gateway (radosgw) stopped for 20 s and started again.

Three nodes over engines of this module's own, so that stopping them touches no other test:
a private PostgreSQL (tests/faults.PrivatePostgres) with two shard databases, a private
single-node Ceph with its radosgw (scripts/ceph-rgw-up.sh), a 3-server NATS JetStream
cluster (the queue, replicas = 3) and a redis-server.

Four senders spread the messages over the nodes and resend on the next node whatever got no
250, as MTAs do. For each fault:
- no SMTP transaction that began after the engine was down and ended before it was started
  again got a 250 (the mail cannot be made durable: a 250 would be a lie), and no answer at
  all was a 5xx (a sender would bounce the mail);
- every acknowledged message is delivered exactly once, and shows over IMAP on every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import smtplib
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.contract.test_counters_fallback import start_redis
from tests.e2e.server import ROOT, Server, free_port
from tests.e2e.test_cluster import message, subjects
from tests.faults import PrivatePostgres
from tests.natsserver import NatsCluster

pytestmark = pytest.mark.slow

DEADLINE = 180.0
"""Every wait is on a condition; this only bounds a failure."""
USER = "bob@example.test"


class PrivateCeph:
    """A single-node Ceph of this module's own; its radosgw can be stopped and started."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="mailyard-cluster-ceph-")
        out = subprocess.run([str(ROOT / "scripts" / "ceph-rgw-up.sh"), self.directory],
                             capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL)
        assert out.returncode == 0, out.stderr[-3000:]
        found = json.loads(out.stdout.strip().splitlines()[-1])
        self.endpoint: str = found["endpoint"]
        self.access_key: str = found["access_key"]
        self.secret_key: str = found["secret_key"]
        self._pid_file = Path(self.directory) / "run" / "client.rgw.a.pid"

    def answers(self) -> bool:
        try:
            httpx.get(self.endpoint, timeout=2)
        except httpx.HTTPError:
            return False
        return True

    def stop_gateway(self) -> None:
        """SIGTERM the radosgw and wait until it has exited (the monitor and OSD stay)."""
        pid = int(self._pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        assert not self.answers()

    def start_gateway(self) -> None:
        """The same radosgw again (it daemonizes), on the same port; returns once it answers."""
        subprocess.run(["radosgw", "-n", "client.rgw.a"], check=True, timeout=60,
                       env={**os.environ, "CEPH_CONF": f"{self.directory}/ceph.conf"},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not self.answers():
            assert time.monotonic() < deadline, "radosgw did not come back"
            time.sleep(0.1)

    def remove(self) -> None:
        subprocess.run([str(ROOT / "scripts" / "ceph-rgw-down.sh"), self.directory],
                       check=False, capture_output=True, timeout=60)


class FaultCluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: dict[str, Server] = {}
        self.postgres = PrivatePostgres()
        try:
            self.ceph = PrivateCeph()
        except BaseException:
            self.postgres.remove()
            raise
        self.nats = NatsCluster(root / "nats", size=3).start()
        self.redis_port = free_port()
        self.redis = start_redis(self.redis_port, root)
        try:
            self._start_nodes()
        except BaseException:
            self.stop()
            raise

    def _start_nodes(self) -> None:
        root = self.root
        run = uuid.uuid4().hex[:8]
        shards = [self.postgres.database(f"mailyard_cf_{run}_{n}") for n in (1, 2)]
        prefix = f"mycf{run}"
        for name in ("a", "b", "c"):
            node = Server(root / name, metadata="", blobs="", cluster="",
                          store={"metadata": shards, "search": "postgresql",
                                 "blobs": f"s3://mailyard-cluster-{run}/{prefix}",
                                 "counters": f"redis://127.0.0.1:{self.redis_port}/0"},
                          # Deliveries fail while an engine is down: enough retries
                          # that none is dead-lettered by an outage of a minute or so.
                          queue={"lease_seconds": 5.0, "backoff_base": 1.0,
                                 "backoff_max": 4.0, "max_attempts": 40},
                          limits={"messages_per_ip_per_minute": 100_000})
            with node.config_path.open("a") as f:
                f.write("[store.s3]\n"
                        f'endpoint = "{self.ceph.endpoint}"\n'
                        f'access_key = "{self.ceph.access_key}"\n'
                        f'secret_key = "{self.ceph.secret_key}"\n'
                        "[cluster]\n"
                        f'node = "{name}"\n'
                        "nats = [" + ", ".join(f'"{u}"' for u in self.nats.urls) + "]\n"
                        'queue = "nats"\nevents = "nats"\nreplicas = 3\n'
                        f'prefix = "{prefix}"\n')
            self.nodes[name] = node
        self.nodes["a"].add_user(USER, "secret-password")
        for node in self.nodes.values():
            node.start()

    def stop(self) -> None:
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.stop()
        self.nats.stop()
        self.redis.kill()
        self.redis.wait()
        self.ceph.remove()
        self.postgres.remove()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultCluster]:
    c = FaultCluster(tmp_path_factory.mktemp("cluster-faults"))
    try:
        yield c
    finally:
        c.stop()


@dataclass
class Attempt:
    subject: str
    node: str
    began: float
    ended: float
    code: int | None
    """The SMTP reply that ended the transaction; None: the connection broke."""


@dataclass
class Load:
    """Senders that spread `total` messages over the nodes and resend elsewhere."""

    nodes: list[Server]
    total: int
    tag: str
    senders: int = 4
    attempts: list[Attempt] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.run = f"{self.tag}-{time.time_ns()}"
        self._threads = [threading.Thread(target=self._sender, args=(k,))
                         for k in range(self.senders)]

    def _send(self, node: Server, subject: str) -> int | None:
        try:
            # RFC 5321 §4.5.3.2: a client waits up to 10 minutes for DATA's reply.
            with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=600) as smtp:
                smtp.send_message(message(subject, USER))
            return 250
        except smtplib.SMTPRecipientsRefused as e:
            return int(next(iter(e.recipients.values()))[0])
        except smtplib.SMTPResponseException as e:
            return int(e.smtp_code)
        except (OSError, smtplib.SMTPException):
            return None

    def _sender(self, k: int) -> None:
        for i in range(k, self.total, self.senders):
            subject = f"{self.run}-{i}"
            for attempt in range(10_000):
                node = self.nodes[(i + attempt) % len(self.nodes)]
                began = time.monotonic()
                code = self._send(node, subject)
                with self._lock:
                    self.attempts.append(Attempt(subject, node.root.name, began,
                                                 time.monotonic(), code))
                    if code == 250:
                        self.acknowledged.add(subject)
                if code == 250 or self.stop.is_set():
                    break
                time.sleep(0.1)

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    def refused_since(self, t: float) -> int:
        with self._lock:
            return sum(1 for a in self.attempts if a.began > t and a.code != 250)

    def join(self) -> None:
        for t in self._threads:
            t.join(DEADLINE * 2)
        assert not any(t.is_alive() for t in self._threads), "a sender never finished"


def run_fault(cluster: FaultCluster, tag: str, stop: Callable[[], None],
              start: Callable[[], None], *, at_least: float) -> None:
    """Load over the three nodes; once a third is acknowledged the engine is stopped, kept
    down for `at_least` seconds and until the senders met the outage (8 refused attempts),
    then started again. Then the checks of the module docstring."""
    nodes = list(cluster.nodes.values())
    load = Load(nodes, 150, tag).start()
    try:
        load.wait(lambda: len(load.acknowledged) >= 50, "no load before the fault")
        stop()
        down = time.monotonic()
        load.wait(lambda: load.refused_since(down) >= 8
                  and time.monotonic() - down >= at_least, "the outage was never met")
        restarting = time.monotonic()
        start()
        load.join()
    finally:
        load.stop.set()
    codes = Counter(a.code for a in load.attempts)
    during = [a for a in load.attempts if a.began > down and a.ended < restarting]
    print(f"{tag}: {len(load.attempts)} attempts {dict(codes)};"
          f" {len(during)} within the outage: {dict(Counter(a.code for a in during))}")
    assert during and all(a.code != 250 for a in during), \
        [a for a in during if a.code == 250][:5]
    assert not [a for a in load.attempts if a.code is not None and a.code >= 500], codes
    assert len(load.acknowledged) == load.total

    deadline = time.monotonic() + DEADLINE
    while True:
        got = Counter(s for s in subjects(nodes[-1], USER) if s.startswith(load.run))
        if set(got) >= load.acknowledged:
            break
        if time.monotonic() > deadline:
            dead = nodes[-1].cli("dlq", "list", check=False).stdout.decode()
            lost = sorted(load.acknowledged - set(got))[:10]
            raise AssertionError(f"acknowledged but lost: {lost}; dead letters: {dead[-3000:]}")
        time.sleep(0.5)
    duplicated = {s: n for s, n in got.items() if n > 1}
    assert not duplicated, f"delivered twice: {duplicated}"
    for node in nodes[:-1]:
        seen = Counter(s for s in subjects(node, USER) if s.startswith(load.run))
        assert seen == got, f"node {node.root.name} shows another mailbox"


def test_postgresql_restart_under_load(cluster: FaultCluster) -> None:
    """PostgreSQL (both shards) stopped and started again: recipients cannot be looked up
    and nothing can be delivered meanwhile; the queue keeps what was acknowledged."""
    run_fault(cluster, "pg", cluster.postgres.stop, cluster.postgres.start, at_least=0)


def test_radosgw_stopped_for_20_seconds_under_load(cluster: FaultCluster) -> None:
    """The S3 gateway stopped for 20 s and started again: no spool blob can be stored, so
    no 250 can be given; the senders' retries land once it is back."""
    run_fault(cluster, "rgw", cluster.ceph.stop_gateway, cluster.ceph.start_gateway,
              at_least=20.0)


def test_every_engine_up_after_the_faults(cluster: FaultCluster) -> None:
    """The nodes recovered on their own: `mailyard cluster status` says every engine is up
    and the queue drains."""
    node = cluster.nodes["c"]
    deadline = time.monotonic() + DEADLINE
    while (status := node.cli("cluster", "status", check=False)).returncode != 0:
        assert time.monotonic() < deadline, status.stdout.decode()
        time.sleep(0.5)
    out = status.stdout.decode()
    for engine in ("nats: ok", "mailstore: ok", "blobs: ok", "redis: ok"):
        assert engine in out, out
    node.wait_queue_empty(DEADLINE)
    asyncio.run(cluster.nats.wait_ready())
