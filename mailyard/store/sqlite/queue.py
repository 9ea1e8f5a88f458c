"""The durable work queue in its own SQLite file (WAL), shared by the listener and the workers.

`available_at` is both "not before" for a delayed retry and the lease's expiry for a leased item,
so taking over from a dead worker needs no sweeper: an expired lease is simply available again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from mailyard.core.ids import new_id
from mailyard.store.ports import (
    DeadLetter,
    NewItem,
    NotFound,
    PendingItem,
    QueueItem,
    QueueStats,
)
from mailyard.store.sqlite.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL,
    lease_token TEXT,
    last_error TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_ready ON items (kind, available_at);
CREATE TABLE IF NOT EXISTS dead (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    created_at REAL NOT NULL,
    died_at REAL NOT NULL
);
"""


WATCH_INTERVAL = 0.01
"""How often a worker process looks for commits of other processes (seconds)."""


class SqliteQueue:
    def __init__(self, path: Path, *, poll_interval: float = 0.5,
                 watch_interval: float | None = None) -> None:
        """`watch_interval`: how often `wait` looks for items other processes committed
        (a `--workers N` process, fed by the listener, uses WATCH_INTERVAL). None: only at
        `poll_interval`, for a process whose items are enqueued by itself (`--workers 0`, where
        the enqueue wakes the waiter at once and a 10 ms watch cost the event loop 7 % of its
        time under IMAP load)."""
        self.db = Database(path, SCHEMA)
        self.poll_interval = poll_interval
        self.watch_interval = watch_interval
        self._wakeup: asyncio.Event | None = None
        # A connection of its own for PRAGMA data_version, which changes when another
        # connection (another process's) commits: a microsecond read, so a worker learns of
        # an item the listener enqueued within WATCH_INTERVAL instead of a whole poll_interval.
        self._watch = sqlite3.connect(path, check_same_thread=False, isolation_level=None)

    def _event(self) -> asyncio.Event:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        return self._wakeup

    async def enqueue(
        self, kind: str, payload: dict[str, Any], *, item_id: str | None = None,
        delay: float = 0.0,
    ) -> str:
        ident = item_id or new_id("q")
        body = orjson.dumps(payload)
        now = time.time()

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO items (id, kind, payload, available_at, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (ident, kind, body, now + delay, now),
            )

        await self.db.write(insert)
        self._event().set()
        return ident

    async def enqueue_many(self, items: Sequence[NewItem]) -> list[str]:
        now = time.time()
        rows = [(i.item_id or new_id("q"), i.kind, orjson.dumps(i.payload), now + i.delay, now)
                for i in items]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR IGNORE INTO items (id, kind, payload, available_at, created_at)"
                " VALUES (?, ?, ?, ?, ?)", rows)

        await self.db.write(insert)
        self._event().set()
        return [r[0] for r in rows]

    async def lease(
        self, kinds: Sequence[str], limit: int, lease_seconds: float
    ) -> list[QueueItem]:
        marks = ",".join("?" * len(kinds))

        def ready(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                f"SELECT 1 FROM items WHERE kind IN ({marks}) AND available_at <= ? LIMIT 1",
                (*kinds, time.time())).fetchone() is not None

        # Idle workers poll; a read costs no write lock, which the listener needs for enqueue.
        if not await self.db.read(ready):
            return []

        def take(conn: sqlite3.Connection) -> list[QueueItem]:
            now = time.time()
            rows = conn.execute(
                f"SELECT id, kind, payload, attempts, last_error, created_at FROM items"
                f" WHERE kind IN ({marks}) AND available_at <= ?"
                f" ORDER BY available_at LIMIT ?",
                (*kinds, now, limit),
            ).fetchall()
            items = []
            for row in rows:
                token = new_id("l")
                conn.execute(
                    "UPDATE items SET lease_token = ?, available_at = ?, attempts = attempts + 1"
                    " WHERE id = ?",
                    (token, now + lease_seconds, row["id"]),
                )
                items.append(QueueItem(
                    id=row["id"], kind=row["kind"], payload=orjson.loads(row["payload"]),
                    attempts=row["attempts"] + 1, lease_token=token,
                    last_error=row["last_error"], created_at=row["created_at"],
                ))
            return items

        return await self.db.write(take)

    async def ack(self, item: QueueItem) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM items WHERE id = ? AND lease_token = ?", (item.id, item.lease_token)
            )
            return cur.rowcount == 1

        return await self.db.write(delete)

    async def retry(self, item: QueueItem, error: str, delay: float, *,
                    payload: dict[str, Any] | None = None) -> bool:
        body = orjson.dumps(payload if payload is not None else item.payload)

        def release(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE items SET lease_token = NULL, available_at = ?, last_error = ?,"
                " payload = ? WHERE id = ? AND lease_token = ?",
                (time.time() + delay, error, body, item.id, item.lease_token),
            )
            return cur.rowcount == 1

        return await self.db.write(release)

    async def bury(self, item: QueueItem, error: str, *,
                   payload: dict[str, Any] | None = None) -> bool:
        def move(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT * FROM items WHERE id = ? AND lease_token = ?", (item.id, item.lease_token)
            ).fetchone()
            if row is None:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO dead (id, kind, payload, attempts, error, created_at,"
                " died_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row["id"], row["kind"],
                 row["payload"] if payload is None else orjson.dumps(payload),
                 row["attempts"], error, row["created_at"], time.time()),
            )
            conn.execute("DELETE FROM items WHERE id = ?", (item.id,))
            return True

        return await self.db.write(move)

    async def stats(self) -> QueueStats:
        def count(conn: sqlite3.Connection) -> QueueStats:
            now = time.time()
            stats = QueueStats()
            for row in conn.execute(
                "SELECT kind, lease_token IS NOT NULL AS leased, available_at > ? AS later,"
                " count(*) AS n FROM items GROUP BY 1, 2, 3", (now,)
            ):
                n = row["n"]
                stats.by_kind[row["kind"]] = stats.by_kind.get(row["kind"], 0) + n
                if not row["later"]:
                    stats.ready += n
                elif row["leased"]:
                    stats.leased += n
                else:
                    stats.delayed += n
            stats.dead = conn.execute("SELECT count(*) FROM dead").fetchone()[0]
            return stats

        return await self.db.read(count)

    @staticmethod
    def _dead(row: sqlite3.Row) -> DeadLetter:
        return DeadLetter(
            id=row["id"], kind=row["kind"], payload=orjson.loads(row["payload"]),
            attempts=row["attempts"], error=row["error"], created_at=row["created_at"],
            died_at=row["died_at"],
        )

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        def fetch(conn: sqlite3.Connection) -> list[DeadLetter]:
            rows = conn.execute("SELECT * FROM dead ORDER BY died_at LIMIT ?", (limit,))
            return [self._dead(r) for r in rows]

        return await self.db.read(fetch)

    async def dead_letter(self, item_id: str) -> DeadLetter:
        def fetch(conn: sqlite3.Connection) -> DeadLetter:
            row = conn.execute("SELECT * FROM dead WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                raise NotFound(f"no dead letter {item_id}")
            return self._dead(row)

        return await self.db.read(fetch)

    async def revive(self, item_id: str | None = None) -> int:
        def move(conn: sqlite3.Connection) -> int:
            where, args = ("WHERE id = ?", (item_id,)) if item_id else ("", ())
            rows = conn.execute(f"SELECT * FROM dead {where}", args).fetchall()
            if item_id and not rows:
                raise NotFound(f"no dead letter {item_id}")
            now = time.time()
            for row in rows:
                conn.execute(
                    "INSERT OR REPLACE INTO items (id, kind, payload, attempts, available_at,"
                    " last_error, created_at) VALUES (?, ?, ?, 0, ?, ?, ?)",
                    (row["id"], row["kind"], row["payload"], now, row["error"],
                     row["created_at"]),
                )
                conn.execute("DELETE FROM dead WHERE id = ?", (row["id"],))
            return len(rows)

        revived = await self.db.write(move)
        self._event().set()
        return revived

    async def drop(self, item_id: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM dead WHERE id = ?", (item_id,)).rowcount != 1:
                raise NotFound(f"no dead letter {item_id}")

        await self.db.write(delete)

    async def release(self, item_id: str, items: Sequence[NewItem]) -> None:
        """One transaction: the dead letter goes and the items come, or neither."""
        now = time.time()
        rows = [(i.item_id or new_id("q"), i.kind, orjson.dumps(i.payload), now + i.delay, now)
                for i in items]

        def swap(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM dead WHERE id = ?", (item_id,)).rowcount != 1:
                raise NotFound(f"no dead letter {item_id}")
            conn.executemany(
                "INSERT OR IGNORE INTO items (id, kind, payload, available_at, created_at)"
                " VALUES (?, ?, ?, ?, ?)", rows)

        await self.db.write(swap)
        self._event().set()

    async def expire_dead(self, before: float) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM dead WHERE died_at < ?", (before,)).rowcount

        return await self.db.write(delete)

    async def pending(self, kinds: Sequence[str] = (), *, prefix: str = "",
                      limit: int = 1000) -> list[PendingItem]:
        where = ["id >= ? AND id < ?"] if prefix else []
        args: list[Any] = [prefix, prefix + "\uffff"] if prefix else []
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args += list(kinds)
        sql = "SELECT * FROM items" + (" WHERE " + " AND ".join(where) if where else "")

        def fetch(conn: sqlite3.Connection) -> list[PendingItem]:
            return [PendingItem(
                id=r["id"], kind=r["kind"], payload=orjson.loads(r["payload"]),
                attempts=r["attempts"], available_at=r["available_at"],
                leased=r["lease_token"] is not None, last_error=r["last_error"],
                created_at=r["created_at"])
                for r in conn.execute(sql + " ORDER BY created_at, id LIMIT ?", (*args, limit))]

        return await self.db.read(fetch)

    async def cancel(self, item_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT lease_token, available_at FROM items WHERE id = ?",
                               (item_id,)).fetchone()
            if row is None:
                raise NotFound(f"no queued item {item_id}")
            if row["lease_token"] is not None and row["available_at"] > time.time():
                return False  # a worker is delivering it right now
            conn.execute("DELETE FROM items WHERE id = ?", (item_id,))
            return True

        return await self.db.write(delete)

    async def release_leases(self) -> int:
        def release(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE items SET lease_token = NULL, available_at = ?"
                " WHERE lease_token IS NOT NULL", (time.time(),)).rowcount

        return await self.db.write(release)

    async def wait(self, timeout: float) -> None:
        """Until an item may be ready: enqueued here (an event), committed by another process
        (data_version moved), or poll_interval passed (delayed items come due)."""
        event = self._event()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(timeout, self.poll_interval)
        step = self.watch_interval
        version = self._data_version() if step is not None else 0
        while (remaining := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining if step is None else min(remaining, step)):
                    await event.wait()
                break
            if step is not None and self._data_version() != version:
                break
        event.clear()

    def _data_version(self) -> int:
        return int(self._watch.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        self._watch.close()
        self.db.close()
