"""Sliding-window counters in a small SQLite file of the data directory (counters.db), which
every process of the node opens: the listener, the IMAP processes and the CLI count together.

One row per event, indexed by (key, at); a hit deletes what has left its key's window, so a
key holds at most the events of one window. Keys nobody hits again are swept every
`_SWEEP_EVERY` hits. Counts guard logins, not mail: WAL with synchronous=NORMAL is enough (a
power cut may forget the last failures, never corrupt the file).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from mailyard.store.sqlite.db import check_schema, migrate_schema

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    key TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_key_at ON events (key, at);
"""

_SWEEP_EVERY = 512


class SqliteCounters:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=10.0)
        self._lock = threading.Lock()
        self._hits = 0
        with self._lock:
            check_schema(self._db, path, 1)
            existed = self._db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            migrate_schema(self._db, path, 1, None, existed is not None)

    async def hit(self, key: str, window: float, now: float) -> int:
        return await asyncio.to_thread(self._hit, key, window, now)

    async def count(self, key: str, window: float, now: float) -> int:
        return await asyncio.to_thread(self._count, key, window, now)

    async def close(self) -> None:
        with self._lock:
            self._db.close()

    def _hit(self, key: str, window: float, now: float) -> int:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM events WHERE key = ? AND at <= ?", (key, now - window))
                db.execute("INSERT INTO events (key, at) VALUES (?, ?)", (key, now))
                self._hits += 1
                if self._hits % _SWEEP_EVERY == 0:
                    db.execute("DELETE FROM events WHERE at <= ?", (now - window,))
                (n,) = db.execute("SELECT count(*) FROM events WHERE key = ? AND at > ?",
                                  (key, now - window)).fetchone()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return int(n)

    def _count(self, key: str, window: float, now: float) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT count(*) FROM events WHERE key = ? AND at > ?",
                                    (key, now - window)).fetchone()
            return int(n)
