"""The connection policy's lists and greylist triplets on PostgreSQL, in the directory database
(the first DSN of `[store] metadata`), so that `mailyard policy allow|deny|remove` run on any
node (or anywhere with the configuration) applies to every node of a cluster, and a greylisted
client's retry to another node counts even without `[store] counters` (Redis).

The port (services/checks/policy.PolicyStore) is synchronous: the MX asks `data_version()` and
`entries()` on the event loop before every connection and MAIL FROM, where a round trip to the
database per check would stall every session; the CLI calls it without a loop at all. So this
adapter keeps a snapshot of the lists in memory, which a thread of its own (with its own event
loop and asyncpg connections) keeps current:

- a trigger on `policy_entries` bumps `policy_version` and sends NOTIFY on "mailyard_policy"
  in the writer's transaction, so every node re-reads the lists a round trip after a commit;
- a read every `refresh` seconds is the safety net for a notification lost with a connection;
- while the database is away the last snapshot keeps deciding (a node never forgets a deny
  list because PostgreSQL restarts), and the thread reconnects.

The greylist calls come from a worker thread (PolicyCheck runs them with asyncio.to_thread)
and wait for their query.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg

from mailyard.store.postgres.pool import LazyPool
from mailyard.store.postgres.schema import migrate

log = logging.getLogger("mailyard.store.postgres.policy")

COMPONENT = "policy"
CHANNEL = "mailyard_policy"
T = 'text COLLATE "C"'
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE policy_entries (
        entry {T} PRIMARY KEY,
        kind {T} NOT NULL CHECK (kind IN ('allow', 'deny')),
        reason text NOT NULL DEFAULT '',
        added double precision NOT NULL
    );
    CREATE TABLE policy_version (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        version bigint NOT NULL
    );
    INSERT INTO policy_version (version) VALUES (1);
    CREATE FUNCTION policy_entries_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE policy_version SET version = version + 1;
        PERFORM pg_notify('{CHANNEL}', '');
        RETURN NULL;
    END $$;
    CREATE TRIGGER policy_entries_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
        ON policy_entries FOR EACH STATEMENT EXECUTE FUNCTION policy_entries_changed();
    CREATE TABLE greylist (
        triplet {T} PRIMARY KEY,
        first_seen double precision NOT NULL,
        passed double precision
    );
    """,
)

Row = tuple[str, str, str, float]
R = TypeVar("R")


async def _migrate(conn: asyncpg.Connection) -> None:
    await migrate(conn, COMPONENT, MIGRATIONS)


class PostgresPolicyStore:
    """`refresh`: seconds between reads of the version when no notification came;
    `timeout`: how long a call (and the first snapshot, at construction) may wait."""

    def __init__(self, dsn: str, *, refresh: float = 5.0, timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.refresh = refresh
        self.timeout = timeout
        self._pool = LazyPool(dsn, _migrate, min_size=1, max_size=2)
        self._snapshot: tuple[int, list[Row]] = (-1, [])
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="policy-postgres")
        self._thread.start()
        self._changed: asyncio.Event | None = None
        self._watcher = asyncio.run_coroutine_threadsafe(self._watch(), self._loop)
        if not self._loaded.wait(timeout):
            log.warning("policy lists: no snapshot from PostgreSQL within %gs; deciding with"
                        " none until it answers", timeout)

    # ------------------------------------------------------------------ the private loop

    def _run(self, coro: Coroutine[Any, Any, R]) -> R:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout)

    async def _read(self) -> None:
        """Take a new snapshot if the version moved (one consistent read of both tables)."""
        pool = await self._pool.get()
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            version = int(await conn.fetchval("SELECT version FROM policy_version"))
            if version == self._snapshot[0]:
                return
            rows = await conn.fetch(
                "SELECT entry, kind, reason, added FROM policy_entries ORDER BY kind, entry")
        with self._lock:
            if version > self._snapshot[0]:  # a slower concurrent read never goes back
                self._snapshot = (version, [(r[0], r[1], r[2], float(r[3])) for r in rows])
        self._loaded.set()

    async def _watch(self) -> None:
        self._changed = asyncio.Event()
        changed = self._changed
        failing = False
        while True:
            listener: asyncpg.Connection | None = None
            try:
                await self._pool.get()  # migrated before anything listens or reads
                listener = await asyncpg.connect(self.dsn, timeout=self.timeout)
                await listener.add_listener(CHANNEL, lambda *_: changed.set())
                while True:
                    changed.clear()
                    await self._read()
                    if failing:
                        log.warning("policy lists: PostgreSQL answers again")
                        failing = False
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.refresh):
                            await changed.wait()
                    if listener.is_closed():
                        break
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, asyncpg.PostgresError,
                    asyncpg.InterfaceError) as e:
                if not failing:
                    log.warning("policy lists: PostgreSQL unreachable (%s); the last lists"
                                " stay in force", e)
                failing = True
                self._pool.close()
                await asyncio.sleep(1.0)
            finally:
                if listener is not None:
                    with contextlib.suppress(Exception):
                        listener.terminate()

    # ------------------------------------------------------------------ the port

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._watcher.cancel()

        async def stop() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wrap_future(self._watcher)
            self._pool.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(self.timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self.timeout)
        self._loop.close()

    def data_version(self) -> int:
        """The version of the lists held in memory: changes after any node's commit."""
        with self._lock:
            return self._snapshot[0]

    def entries(self) -> list[Row]:
        """(entry, kind, reason, added) rows as of `data_version()`, allow before deny."""
        with self._lock:
            return list(self._snapshot[1])

    def put(self, entry: str, kind: str, reason: str = "") -> None:
        async def put() -> None:
            pool = await self._pool.get()
            await pool.execute(
                "INSERT INTO policy_entries (entry, kind, reason, added) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (entry) DO UPDATE SET kind = EXCLUDED.kind,"
                " reason = EXCLUDED.reason, added = EXCLUDED.added",
                entry, kind, reason, time.time())
            await self._read()  # this store sees its own write at once

        self._run(put())

    def remove(self, entry: str) -> bool:
        async def remove() -> bool:
            pool = await self._pool.get()
            status = await pool.execute("DELETE FROM policy_entries WHERE entry = $1", entry)
            await self._read()
            return not status.endswith(" 0")

        return self._run(remove())

    def triplet(self, key: str) -> tuple[float, float | None] | None:
        """(first_seen, passed) of a greylist triplet, None when never seen."""
        async def triplet() -> asyncpg.Record | None:
            pool = await self._pool.get()
            return await pool.fetchrow(
                "SELECT first_seen, passed FROM greylist WHERE triplet = $1", key)

        row = self._run(triplet())
        return (float(row[0]), None if row[1] is None else float(row[1])) if row else None

    def put_triplet(self, key: str, first_seen: float, passed: float | None) -> None:
        async def put_triplet() -> None:
            pool = await self._pool.get()
            await pool.execute(
                "INSERT INTO greylist (triplet, first_seen, passed) VALUES ($1, $2, $3)"
                " ON CONFLICT (triplet) DO UPDATE SET first_seen = EXCLUDED.first_seen,"
                " passed = EXCLUDED.passed", key, first_seen, passed)

        self._run(put_triplet())

    def expire_triplets(self, before: float) -> int:
        """Forget triplets neither seen nor passed since `before`."""
        async def expire() -> str:
            pool = await self._pool.get()
            return str(await pool.execute(
                "DELETE FROM greylist WHERE greatest(first_seen, coalesce(passed, 0)) < $1",
                before))

        return int(self._run(expire()).split()[-1])
