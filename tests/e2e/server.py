"""A real `mailyard serve` in a subprocess, on free loopback ports, with its own data_dir."""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


_PORTS_PER_WORKER = 3000
_next: dict[str, int] = {}


def free_port() -> int:
    """A loopback port nothing listens on. Under pytest-xdist each worker takes ports from its
    own range below the kernel's ephemeral range (32768-), so two workers can never be handed
    the same port between one's check and its server's bind."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    base = 20000 + int(worker[2:]) % 4 * _PORTS_PER_WORKER
    if worker not in _next:  # a random start, so two runs on one machine rarely meet
        _next[worker] = random.randrange(_PORTS_PER_WORKER)
    for _ in range(_PORTS_PER_WORKER):
        port = base + _next.get(worker, 0)
        _next[worker] = (_next.get(worker, 0) + 1) % _PORTS_PER_WORKER
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base}..{base + _PORTS_PER_WORKER}")


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


_databases: list[Any] = []


def _in_thread(coroutine: Any) -> Any:
    """Run a coroutine to its end from sync code, even when called inside a running loop
    (an async test building a Server); at exit, when no thread may start, in this one."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _drop_databases() -> None:
    for database in _databases:
        with contextlib.suppress(Exception):
            _in_thread(database.drop())


def _new_database() -> str:
    """A fresh PostgreSQL database for one server, dropped when this process exits."""
    from tests.pgserver import TestDatabase

    if not _databases:
        atexit.register(_drop_databases)
    database = TestDatabase()
    _databases.append(database)
    return str(_in_thread(database.dsn()))


_nats_prefixes: list[str] = []


def _drop_nats_streams() -> None:
    from tests.contract.conftest import drop_nats_streams

    for prefix in _nats_prefixes:
        with contextlib.suppress(Exception):
            _in_thread(drop_nats_streams(prefix))


_RAWS = """
import asyncio, base64, json, sys
from mailyard import config
from mailyard.app import Runtime

async def main() -> None:
    runtime = Runtime.open(config.load(None))
    try:
        account = await runtime.store.get_account(sys.argv[1])
        records = await runtime.mailbox.emails(account, None, limit=10_000_000)
        print(json.dumps({r.id: base64.b64encode(await runtime.mailbox.raw_of(r)).decode()
                          for r in records}))
    finally:
        runtime.close()

asyncio.run(main())
"""


@dataclass
class Server:
    root: Path
    domains: tuple[str, ...] = ("example.test",)
    limits: dict[str, Any] = field(default_factory=dict)
    queue: dict[str, Any] = field(default_factory=dict)
    workers: int = 0
    process: subprocess.Popen[bytes] | None = None
    smtp_port: int = 0

    imap_port: int = 0
    imaps_port: int = 0
    imap: dict[str, Any] = field(default_factory=dict)
    plaintext_on_loopback: bool = True
    auth: dict[str, Any] = field(default_factory=dict)
    """More [auth] keys (failed-login limits)."""
    addresses: dict[str, Any] = field(default_factory=dict)
    """[addresses] keys (postmaster, abuse)."""
    hostname: str = "mx.example.test"
    submission: dict[str, Any] = field(default_factory=dict)
    outbound: dict[str, Any] = field(default_factory=dict)
    dns: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    submission_port: int = 0
    submissions_port: int = 0
    http_port: int = 0
    pop3_port: int = 0
    pop3s_port: int = 0
    managesieve_port: int = 0
    pop3: dict[str, Any] = field(default_factory=dict)
    store: dict[str, Any] = field(default_factory=dict)
    blobs: str = field(default_factory=lambda: os.environ.get("MAILYARD_TEST_BLOBS", ""))
    """"s3": blobs in the session's Ceph radosgw (tests/s3.py), under a prefix of their own;
    "": files in data_dir. MAILYARD_TEST_BLOBS=s3 runs the whole e2e suite on S3."""
    metadata: str = field(default_factory=lambda: os.environ.get("MAILYARD_TEST_STORE", ""))
    """"postgres": the MailStore and the SearchIndex in a fresh PostgreSQL database of this
    server's own (tests/pgserver.py); "postgres-sharded": the MailStore over two such
    databases (shards), each account's search index in its own shard; "": SQLite in data_dir.
    MAILYARD_TEST_STORE=postgres runs the e2e suites on PostgreSQL (`make test-postgres`,
    the second stage of `make test`, with MAILYARD_TEST_BLOBS=s3).
    The databases outlive stop() (a restarted server finds its mail) and are dropped when the
    test process exits. Keys given in `store` win."""
    cluster: str = field(default_factory=lambda: os.environ.get("MAILYARD_TEST_CLUSTER", ""))
    """"nats": the queue and the event bus on the machine's NATS JetStream
    (MAILYARD_TEST_NATS, else 127.0.0.1:4222) under a prefix of this server's own, its
    streams removed when the test process exits; "": SQLite queue, in-process bus."""
    s3_prefix: str = field(default="", init=False)
    """The key prefix of this server's blobs in the session's bucket when `blobs` is "s3"."""

    def __post_init__(self) -> None:
        self.smtp_port = free_port()
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.submission_port = free_port()
        self.submissions_port = free_port()
        self.http_port = free_port()
        self.pop3_port = free_port()
        self.pop3s_port = free_port()
        self.managesieve_port = free_port()
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.root / "data"
        self.config_path = self.root / "mailyard.toml"
        lines = [
            f'data_dir = "{self.data_dir}"',
            f'hostname = "{self.hostname}"',
            "domains = [" + ", ".join(f'"{d}"' for d in self.domains) + "]",
            "[listen]",
            f'smtp = "127.0.0.1:{self.smtp_port}"',
            f'imap = "127.0.0.1:{self.imap_port}"',
            f'imaps = "127.0.0.1:{self.imaps_port}"',
            f'submission = "127.0.0.1:{self.submission_port}"',
            f'submissions = "127.0.0.1:{self.submissions_port}"',
            f'http = "127.0.0.1:{self.http_port}"',
            f'pop3 = "127.0.0.1:{self.pop3_port}"',
            f'pop3s = "127.0.0.1:{self.pop3s_port}"',
            f'managesieve = "127.0.0.1:{self.managesieve_port}"',
            "[auth]",
            f"plaintext_on_loopback = {str(self.plaintext_on_loopback).lower()}",
            *(f"{k} = {json.dumps(v)}" for k, v in self.auth.items()),
            "[addresses]",
            *(f"{k} = {json.dumps(v)}" for k, v in self.addresses.items()),
            "[pop3]",
            *(f"{k} = {json.dumps(v)}" for k, v in self.pop3.items()),
            "[imap]",
            *(f"{k} = {json.dumps(v)}" for k, v in self.imap.items()),
            "[limits]",
            *(f"{k} = {json.dumps(v)}" for k, v in self.limits.items()),
            "[submission]",
            *(f"{k} = {json.dumps(v)}" for k, v in self.submission.items()),
            "[outbound]",
            *(f"{k} = {json.dumps(v)}" for k, v in self.outbound.items()),
            "[dns]",
            *(f"{k} = {json.dumps(v)}" for k, v in self.dns.items()),
            "[checks]",
            *(f"{k} = {json.dumps(v)}" for k, v in self.checks.items()),
            "[queue]",
            "poll_interval = 0.1",
            *(f"{k} = {json.dumps(v)}" for k, v in self.queue.items()),
            *self._store_lines(),
            *self._cluster_lines(),
        ]
        self.config_path.write_text("\n".join(lines) + "\n")
        self.log_path = self.root / "server.log"

    def _store_lines(self) -> list[str]:
        store, s3_table = {**self._metadata_store(), **self.store}, {}
        if self.blobs == "s3":
            from tests import s3

            gateway = s3.gateway()
            self.s3_prefix = s3.new_prefix()
            store["blobs"] = gateway.url(self.s3_prefix)
            s3_table = {"endpoint": gateway.endpoint, "access_key": gateway.access_key,
                        "secret_key": gateway.secret_key}
        elif self.blobs:
            raise ValueError(f"blobs: expected \"s3\" or \"\", got {self.blobs!r}")
        lines = ["[store]", *(f"{k} = {json.dumps(v)}" for k, v in store.items())]
        if s3_table:
            lines += ["[store.s3]", *(f"{k} = {json.dumps(v)}" for k, v in s3_table.items())]
        return lines

    def _cluster_lines(self) -> list[str]:
        if not self.cluster:
            return []
        if self.cluster != "nats":
            raise ValueError(f"cluster: expected \"nats\" or \"\", got {self.cluster!r}")
        from mailyard.core.ids import new_id

        prefix = "mytest" + new_id("").lower()
        if not _nats_prefixes:
            atexit.register(_drop_nats_streams)
        _nats_prefixes.append(prefix)
        url = os.environ.get("MAILYARD_TEST_NATS", "nats://127.0.0.1:4222")
        return ["[cluster]", f'nats = ["{url}"]', 'queue = "nats"', 'events = "nats"',
                f'prefix = "{prefix}"', f'node = "{prefix}"']

    def _metadata_store(self) -> dict[str, Any]:
        if not self.metadata:
            return {}
        shards = {"postgres": 1, "postgres-sharded": 2}.get(self.metadata)
        if shards is None:
            raise ValueError(f"metadata: expected \"postgres\", \"postgres-sharded\" or \"\","
                             f" got {self.metadata!r}")
        dsns = [_new_database() for _ in range(shards)]
        return {"metadata": dsns[0] if self.metadata == "postgres" else dsns,
                "search": "postgresql"}

    def search_database(self) -> str | None:
        """The DSN of the PostgreSQL database holding this server's search index, if it is
        there (None: SQLite files in data_dir), read back from the config written."""
        import tomllib

        store = tomllib.loads(self.config_path.read_text()).get("store", {})
        metadata = store.get("metadata", "")
        first = metadata[0] if isinstance(metadata, list) else metadata
        search = store.get("search", "")
        return str(first) if search == "postgresql" else (str(search) or None)

    def lose_search_index(self) -> None:
        """Throw the whole search index away, as a lost disk or database would (the server
        stopped): what `mailyard reindex` must rebuild."""
        import tomllib

        for path in self.data_dir.glob("search.db*"):
            path.unlink()
        store = tomllib.loads(self.config_path.read_text()).get("store", {})
        metadata = store.get("metadata", "")
        shards = metadata if isinstance(metadata, list) else [metadata]
        dsns = [str(dsn) for dsn in shards] if store.get("search") == "postgresql" else []
        if dsns:
            import asyncpg

            async def truncate() -> None:
                for dsn in dsns:  # sharded with the account: every shard holds a part
                    conn = await asyncpg.connect(dsn)
                    try:
                        if await conn.fetchval("SELECT to_regclass('search_docs')"):
                            await conn.execute("TRUNCATE search_docs")
                    finally:
                        await conn.close()

            _in_thread(truncate())

    def blob_bytes(self) -> int:
        """Bytes held in this server's blob storage, everything there counted (a spool copy
        or a temporary left behind too): every file under data_dir/blobs, or every object
        under its S3 prefix."""
        if self.s3_prefix:
            from tests import s3

            return int(_in_thread(s3.object_bytes(self.s3_prefix)))
        return sum(p.stat().st_size for p in (self.data_dir / "blobs").rglob("*")
                   if p.is_file())

    def env(self) -> dict[str, str]:
        return {**os.environ, "MAILYARD_CONFIG": str(self.config_path)}

    def cli(self, *args: str, input: bytes | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run([sys.executable, "-m", "mailyard.cli", *args], input=input,
                                capture_output=True, env=self.env(), cwd=self.root, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"mailyard {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout.decode()}\n{result.stderr.decode()}")
        return result

    def add_user(self, address: str, password: str = "secret-password") -> None:
        self.cli("user", "add", address, "--password-stdin", input=password.encode() + b"\n")

    def start(self) -> None:
        args = [sys.executable, "-m", "mailyard.cli", "serve", "--workers", str(self.workers)]
        self._log = self.log_path.open("ab")
        offset = self._log.tell()
        self.process = subprocess.Popen(args, env=self.env(), cwd=self.root, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        # `serve` prints its "serving" line once every listener is up (SMTP, IMAP, POP3, HTTP).
        # The bound only ends a start that failed: at a load of 15-20 on two cores a healthy
        # start was seen to take over 30 s (imports, TLS keys, the first SQLite opens).
        deadline = time.monotonic() + 180
        while b"mailyard: serving" not in self.log_path.read_bytes()[offset:]:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise AssertionError("server did not start:\n" + self.log_path.read_text())
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a power cut for the process."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    # ---------------------------------------------------------------- reading back

    def emails(self, address: str, label: str | None = None) -> list[dict[str, Any]]:
        args = ["mail", "list", address, "--json", "--limit", "1000000"]
        if label:
            args += ["--label", label]
        result: list[dict[str, Any]] = json.loads(self.cli(*args).stdout)
        return result

    def raw(self, address: str, email_id: str) -> bytes:
        return self.cli("mail", "show", address, email_id, "--raw").stdout

    def raws(self, address: str) -> dict[str, bytes]:
        """Every email of `address` by id, read in one process (a `mail show` per message
        costs a CLI start-up each), through the same Runtime the CLI uses."""
        result = subprocess.run([sys.executable, "-c", _RAWS, address], capture_output=True,
                                env=self.env(), cwd=self.root, timeout=300, check=False)
        if result.returncode != 0:
            raise AssertionError(f"reading {address}'s mail failed:\n{result.stderr.decode()}")
        found: dict[str, str] = json.loads(result.stdout)
        return {k: base64.b64decode(v) for k, v in found.items()}

    def wait_emails(self, address: str, count: int, timeout: float = 30.0
                    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.emails(address)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def queue_stats(self) -> dict[str, int]:
        out = self.cli("queue", "stats").stdout.decode()
        stats = {}
        for line in out.splitlines():
            key, _, value = line.strip().partition(" ")
            if value.isdigit() and not line.startswith(" "):
                stats[key] = int(value)
        return stats

    def wait_queue_empty(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.queue_stats()
            if s["ready"] + s["leased"] + s["delayed"] == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"queue not drained: {self.queue_stats()}")


@contextlib.contextmanager
def serving(root: Path, users: Iterable[str]) -> Iterator[Server]:
    """A started server with one account per name in `users` (user@example.test, the default
    password): for a module-scoped fixture whose tests each use an account of their own."""
    srv = Server(root)
    for user in users:
        srv.add_user(f"{user}@example.test")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
