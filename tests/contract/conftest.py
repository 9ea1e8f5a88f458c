"""Fixtures that start every adapter of every port for the contract suites.

One suite per port, run against each adapter named in that port's list below. To add an engine
(postgres, s3, nats, ...), add its name to the list and a branch to the matching `_open_*`
function; the tests themselves do not change.

An `Engine` is one backing store (a directory, a database file, a server) from which a test can
open several adapter objects: a second object on the same backing store is how the suites play
"another process" and "after a restart". Every adapter opened is closed at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import itertools
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mailyard.core.ids import new_id
from mailyard.store.ports import Account, NewEmail

BLOBSTORES = ["fs", "s3"]
QUEUES = ["sqlite", "nats"]
MAILSTORES = ["sqlite", "postgres", "postgres-sharded"]
SEARCH_INDEXES = ["sqlite", "postgres"]
EVENTBUSES = ["local", "nats"]
COUNTERS = ["sqlite", "redis"]
PUSH_STORES = ["sqlite", "postgres"]
SPAM_MODELS = ["sqlite", "postgres"]


async def close_adapter(adapter: Any) -> None:
    result = adapter.aclose() if hasattr(adapter, "aclose") else adapter.close()
    if inspect.isawaitable(result):
        await result


class Engine:
    """Opens adapters of one port on one shared backing store; closes them all at teardown."""

    def __init__(
        self,
        name: str,
        opener: Callable[[], Any],
        link: Callable[[Any, Any], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self._opener = opener
        self._link = link
        self._open: list[Any] = []

    async def open(self) -> Any:
        adapter = self._opener()
        if inspect.isawaitable(adapter):
            adapter = await adapter
        self._open.append(adapter)
        return adapter

    async def close(self, adapter: Any) -> None:
        """Close one adapter (a process stopping); its backing store stays."""
        self._open.remove(adapter)
        await close_adapter(adapter)

    async def link(self, listener: Any, worker: Any) -> None:
        """Wire two adapters as two processes of one installation (EventBus relay)."""
        if self._link is not None:
            await self._link(listener, worker)

    async def close_all(self) -> None:
        while self._open:
            await close_adapter(self._open.pop())


class DatabaseEngine(Engine):
    """An Engine on a database server: the test's own database, dropped after its adapters
    are closed (postgres)."""

    def __init__(self, name: str, opener: Callable[[], Any],
                 drop: Callable[[], Awaitable[None]]) -> None:
        super().__init__(name, opener)
        self._drop = drop

    async def close_all(self) -> None:
        try:
            await super().close_all()
        finally:
            await self._drop()


def sqlite_or_postgres(name: str, port: str, *, sqlite: Callable[[], Any],
                       postgres: Callable[[str], Awaitable[Any]]) -> Engine:
    """The Engine of a port kept in SQLite (a file of the test's own) or in PostgreSQL (a
    database of the test's own, dropped at the end): `postgres` connects an adapter to a
    DSN."""
    if name == "sqlite":
        return Engine(name, sqlite)
    if name == "postgres":
        from tests.pgserver import TestDatabase

        database = TestDatabase()

        async def open_postgres() -> Any:
            return await postgres(await database.dsn())

        return DatabaseEngine(name, open_postgres, database.drop)
    raise ValueError(f"unknown {port} adapter {name}")


@contextlib.asynccontextmanager
async def closing(engine: Engine) -> AsyncIterator[Engine]:
    """An engine whose adapters are all closed (and its database dropped) at the end."""
    try:
        yield engine
    finally:
        await engine.close_all()


# --------------------------------------------------------------------------- BlobStore


def _open_blobstore(name: str, tmp_path: Path) -> Engine:
    if name == "fs":
        from mailyard.store.fs.blobstore import FsBlobStore

        root = tmp_path / "blobs"
        return Engine(name, lambda: FsBlobStore(root))
    if name == "s3":
        # A real Ceph radosgw, started once per session (tests/s3.py); a prefix per test.
        from tests import s3

        prefix = s3.new_prefix()

        async def open_s3() -> Any:
            await asyncio.get_running_loop().run_in_executor(None, s3.gateway)
            return s3.open_store(prefix)

        return DatabaseEngine(name, open_s3, lambda: s3.remove_prefix(prefix))
    raise ValueError(f"unknown BlobStore adapter {name}")


@pytest.fixture(params=BLOBSTORES)
async def blob_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    async with closing(_open_blobstore(request.param, tmp_path)) as engine:
        yield engine


@pytest.fixture
async def blobstore(blob_engine: Engine) -> Any:
    return await blob_engine.open()


# --------------------------------------------------------------------------- Queue


def _open_queue(name: str, tmp_path: Path) -> Engine:
    if name == "sqlite":
        from mailyard.store.sqlite.queue import SqliteQueue

        path = tmp_path / "queue.db"
        return Engine(name, lambda: SqliteQueue(path, poll_interval=0.05))
    if name == "nats":
        # JetStream on the machine's NATS; streams of this test's own (a prefix), removed after.
        from mailyard.store.nats.connection import NatsConnection
        from mailyard.store.nats.queue import NatsQueue

        prefix = nats_prefix()
        holders = itertools.count()

        def open_nats() -> NatsQueue:
            return NatsQueue(NatsConnection([nats_url()]), prefix=prefix, poll_interval=0.05,
                             holder=f"node-{next(holders)}")

        return DatabaseEngine(name, open_nats, lambda: drop_nats_streams(prefix))
    raise ValueError(f"unknown Queue adapter {name}")


async def drop_nats_streams(prefix: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    from mailyard.store.nats.connection import stream_name

    nc = await nats.connect(nats_url())
    try:
        for stream in (stream_name(prefix, "queue"), stream_name(prefix, "dead"),
                       "KV_" + stream_name(prefix, "nodes")):  # the heartbeats' bucket
            with contextlib.suppress(NotFoundError):
                await nc.jsm().delete_stream(stream)
    finally:
        await nc.close()


@pytest.fixture(params=QUEUES)
async def queue_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    async with closing(_open_queue(request.param, tmp_path)) as engine:
        yield engine


@pytest.fixture
async def queue(queue_engine: Engine) -> Any:
    return await queue_engine.open()


# --------------------------------------------------------------------------- MailStore


def _open_mailstore(name: str, tmp_path: Path) -> Engine:
    if name == "sqlite":
        from mailyard.store.sqlite.mailstore import SqliteMailStore

        path = tmp_path / "mail.db"
        return Engine(name, lambda: SqliteMailStore(path))
    if name == "postgres":
        from mailyard.store.postgres.mailstore import PostgresMailStore
        from tests.pgserver import TestDatabase

        database = TestDatabase()

        async def open_postgres() -> PostgresMailStore:
            return await PostgresMailStore.connect(await database.dsn())

        return DatabaseEngine(name, open_postgres, database.drop)
    if name == "postgres-sharded":
        # Two databases: the directory's (shard 0) and one more; accounts go to either.
        from mailyard.store.postgres.sharded import ShardedMailStore
        from tests.pgserver import TestDatabase

        databases = [TestDatabase(), TestDatabase()]

        async def open_sharded() -> ShardedMailStore:
            return await ShardedMailStore.connect([await d.dsn() for d in databases])

        async def drop_all() -> None:
            for d in databases:
                await d.drop()

        return DatabaseEngine(name, open_sharded, drop_all)
    raise ValueError(f"unknown MailStore adapter {name}")


@pytest.fixture(params=MAILSTORES)
async def mail_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    async with closing(_open_mailstore(request.param, tmp_path)) as engine:
        yield engine


@pytest.fixture
async def mailstore(mail_engine: Engine) -> Any:
    return await mail_engine.open()


# --------------------------------------------------------------------------- SearchIndex


def _open_search(name: str, tmp_path: Path) -> Engine:
    from mailyard.store.postgres.search import PostgresSearchIndex
    from mailyard.store.sqlite.search import SqliteSearchIndex

    return sqlite_or_postgres(name, "SearchIndex", postgres=PostgresSearchIndex.connect,
                              sqlite=lambda: SqliteSearchIndex(tmp_path / "search.db"))


@pytest.fixture(params=SEARCH_INDEXES)
async def search_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    async with closing(_open_search(request.param, tmp_path)) as engine:
        yield engine


@pytest.fixture
async def search_index(search_engine: Engine) -> Any:
    return await search_engine.open()


# --------------------------------------------------------------------------- EventBus


def _open_eventbus(name: str, sock_dir: Path) -> Engine:
    if name == "local":
        from mailyard.store.local.eventbus import LocalEventBus

        address = local_relay_address(sock_dir)

        async def link(listener: Any, worker: Any) -> None:
            await listener.listen(address)
            worker.relay_to(address)

        return Engine(name, LocalEventBus, link)
    if name == "nats":
        # The machine's NATS (127.0.0.1:4222 unless MAILYARD_TEST_NATS); a subject prefix of
        # this test's own. Every adapter is "a process" with its own connection: no link.
        from mailyard.store.nats.connection import NatsConnection
        from mailyard.store.nats.eventbus import NatsEventBus

        prefix = nats_prefix()
        return Engine(name, lambda: NatsEventBus(NatsConnection([nats_url()]), prefix=prefix))
    raise ValueError(f"unknown EventBus adapter {name}")


def nats_url() -> str:
    import os

    return os.environ.get("MAILYARD_TEST_NATS", "nats://127.0.0.1:4222")


def nats_prefix() -> str:
    return "mytest" + new_id("").lower()


def local_relay_address(directory: Path, name: str = "events.sock") -> Any:
    """Where LocalEventBus.listen / relay_to meet for a data directory: the adapter's own
    `socket_address(data_dir)` when it has one, else a socket file in the directory."""
    from mailyard.store.local import eventbus

    socket_address = getattr(eventbus, "socket_address", None)
    if socket_address is not None:
        return socket_address(directory / name)
    return directory / name


@pytest.fixture
def sock_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short directory: a Unix socket path must stay under ~100 bytes."""
    return tmp_path_factory.mktemp("ev")


@pytest.fixture(params=EVENTBUSES)
async def bus_engine(request: pytest.FixtureRequest, sock_dir: Path) -> AsyncIterator[Engine]:
    async with closing(_open_eventbus(request.param, sock_dir)) as engine:
        yield engine


@pytest.fixture
async def bus(bus_engine: Engine) -> Any:
    return await bus_engine.open()


def _open_counters(name: str, tmp_path: Path) -> Engine:
    if name == "sqlite":
        from mailyard.store.sqlite.counters import SqliteCounters
        return Engine(name, lambda: SqliteCounters(tmp_path / "counters.db"))
    if name == "redis":
        from mailyard.store.redis.counters import RedisCounters
        # The machine's Redis (127.0.0.1:6379); a prefix of this test's own keeps runs apart.
        prefix = f"mailyard-test:{new_id('c')}:"
        return Engine(name, lambda: RedisCounters("redis://127.0.0.1:6379/0", prefix=prefix))
    raise ValueError(name)


@pytest.fixture(params=COUNTERS)
async def counters_engine(request: pytest.FixtureRequest,
                          tmp_path: Path) -> AsyncIterator[Engine]:
    async with closing(_open_counters(request.param, tmp_path)) as engine:
        yield engine


# --------------------------------------------------------------------------- PushSubscriptionStore


def _open_push_store(name: str, tmp_path: Path) -> Engine:
    from mailyard.store.postgres.pushsubs import PostgresPushSubscriptionStore
    from mailyard.store.sqlite.pushsubs import SqlitePushSubscriptionStore

    return sqlite_or_postgres(
        name, "PushSubscriptionStore", postgres=PostgresPushSubscriptionStore.connect,
        sqlite=lambda: SqlitePushSubscriptionStore(tmp_path / "push.db"))


@pytest.fixture(params=PUSH_STORES)
async def push_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    async with closing(_open_push_store(request.param, tmp_path)) as engine:
        yield engine


# --------------------------------------------------------------------------- SpamModel


def _open_spam_model(name: str, tmp_path: Path) -> Engine:
    from mailyard.store.postgres.spam import PostgresSpamModel
    from mailyard.store.sqlite.spam import SqliteSpamModel

    return sqlite_or_postgres(name, "SpamModel", postgres=PostgresSpamModel.connect,
                              sqlite=lambda: SqliteSpamModel(tmp_path / "spam.db"))


@pytest.fixture(params=SPAM_MODELS)
async def spam_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    async with closing(_open_spam_model(request.param, tmp_path)) as engine:
        yield engine


# --------------------------------------------------------------------------- helpers

_PREFIX = re.compile(r"^\s*((re|fwd?|aw|sv)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def normalise_subject(subject: str) -> str:
    """What the pipeline stores as thread_subject: no Re:/Fwd: prefixes, case-folded."""
    return " ".join(_PREFIX.sub("", subject).split()).casefold()


_clock = itertools.count()


def make_new_email(
    account_id: str,
    *,
    subject: str = "Hello",
    message_id: str | None = "",
    in_reply_to: list[str] | None = None,
    references: list[str] | None = None,
    content: bytes | None = None,
    size: int | None = None,
    delivery_key: str | None = None,
    mailbox_roles: list[str] | None = None,
    keywords: list[str] | None = None,
    received_at: int | None = None,
    email_id: str | None = None,
) -> NewEmail:
    """A NewEmail with every field filled, as the inbound pipeline would hand it over.

    message_id="" (the default) makes a fresh unique Message-ID; None means the header is absent.
    """
    email_id = email_id or new_id("e")
    if message_id == "":
        message_id = f"<{email_id}@example.test>"
    if content is None:
        content = (f"Message-ID: {message_id}\r\nSubject: {subject}\r\n\r\nbody of {email_id}\r\n"
                   ).encode()
    # Strictly increasing, close to now: the subject fallback only looks back a bounded window.
    received = received_at if received_at is not None else int(time.time() * 1000) + next(_clock)
    sender = [{"name": "Alice Example", "email": "alice@example.test"}]
    return NewEmail(
        account_id=account_id,
        email_id=email_id,
        delivery_key=delivery_key or new_id("q"),
        content_sha256=hashlib.sha256(content).hexdigest(),
        blob_id=hashlib.sha256(content).hexdigest(),
        size=len(content) if size is None else size,
        received_at=received,
        sent_at=received - 1000,
        message_id=message_id,
        in_reply_to=list(in_reply_to or []),
        references=list(references or []),
        subject=subject,
        thread_subject=normalise_subject(subject),
        from_=sender,
        to=[{"name": "Bob", "email": "bob@example.test"}],
        cc=[{"name": "", "email": "carol@example.test"}],
        bcc=[],
        reply_to=[],
        sender=sender,
        preview=f"body of {email_id}",
        has_attachment=False,
        attachments=[],
        envelope=b'("date" "subject" NIL NIL NIL NIL NIL NIL NIL NIL)',
        bodystructure=b'("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 10 1)',
        body=b"body",
        parts={"1": {"type": "text/plain", "size": 10}},
        mailbox_roles=list(mailbox_roles or ["inbox"]),
        keywords=list(keywords or []),
        blob_refs=[],
    )


@pytest.fixture
def new_email() -> Callable[..., NewEmail]:
    """Factory: new_email(account_id, subject=..., in_reply_to=[...], ...) -> NewEmail."""
    return make_new_email


@pytest.fixture
async def account(mailstore: Any) -> Account:
    """alice@example.test with a 100 MB quota, in a fresh mail store."""
    await mailstore.add_domain("example.test")
    created: Account = await mailstore.create_account("alice@example.test", "hash-1",
                                                      100 * 1024 * 1024)
    return created


@pytest.fixture
async def postgres_dsn() -> AsyncIterator[str]:
    """A fresh PostgreSQL database of this test's own (tests/pgserver.py), dropped after it:
    for tests of what several nodes share through one database."""
    from tests.pgserver import TestDatabase

    database = TestDatabase()
    try:
        yield await database.dsn()
    finally:
        await database.drop()
