"""The connection policy's persistent state in the data dir: allow/deny entries and greylist
triplets, in one small SQLite file (policy.db) that `mailyard policy` edits while the server
runs.

The server keeps the lists in memory and re-reads them only when `PRAGMA data_version` says
another connection (the CLI) committed a change, which costs a few microseconds per check.
Calls are blocking and short; the greylist ones are made from a worker thread.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from mailyard.store.sqlite.db import check_schema, migrate_schema

_SCHEMA = """
CREATE TABLE IF NOT EXISTS policy_entries (
    entry TEXT PRIMARY KEY,       -- an IP, a network (CIDR) or a domain, lower case
    kind TEXT NOT NULL CHECK (kind IN ('allow', 'deny')),
    reason TEXT NOT NULL DEFAULT '',
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS greylist (
    triplet TEXT PRIMARY KEY,     -- network | sender | recipient
    first_seen REAL NOT NULL,
    passed REAL                   -- when a retry was let through; NULL until then
);
"""


class SqlitePolicyStore:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                  timeout=10.0)
        self.lock = threading.Lock()
        with self.lock:
            check_schema(self.db, path, 1)
            existed = self.db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone()
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            migrate_schema(self.db, path, 1, None, existed is not None)

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def data_version(self) -> int:
        """Changes when another connection (the CLI) commits to the file."""
        with self.lock:
            return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def entries(self) -> list[tuple[str, str, str, float]]:
        """(entry, kind, reason, added) rows, allow before deny."""
        with self.lock:
            rows = self.db.execute(
                "SELECT entry, kind, reason, added FROM policy_entries ORDER BY kind, entry"
            ).fetchall()
        return [(str(a), str(b), str(c), float(d)) for a, b, c, d in rows]

    def put(self, entry: str, kind: str, reason: str = "") -> None:
        with self.lock:
            self.db.execute(
                "INSERT INTO policy_entries (entry, kind, reason, added) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (entry) DO UPDATE SET kind = excluded.kind,"
                " reason = excluded.reason, added = excluded.added",
                (entry, kind, reason, time.time()))

    def remove(self, entry: str) -> bool:
        with self.lock:
            cur = self.db.execute("DELETE FROM policy_entries WHERE entry = ?", (entry,))
        return cur.rowcount > 0

    def triplet(self, key: str) -> tuple[float, float | None] | None:
        """(first_seen, passed) of a greylist triplet, None when never seen."""
        with self.lock:
            row = self.db.execute("SELECT first_seen, passed FROM greylist WHERE triplet = ?",
                                  (key,)).fetchone()
        return (float(row[0]), None if row[1] is None else float(row[1])) if row else None

    def put_triplet(self, key: str, first_seen: float, passed: float | None) -> None:
        with self.lock:
            self.db.execute(
                "INSERT INTO greylist (triplet, first_seen, passed) VALUES (?, ?, ?)"
                " ON CONFLICT (triplet) DO UPDATE SET first_seen = excluded.first_seen,"
                " passed = excluded.passed", (key, first_seen, passed))

    def expire_triplets(self, before: float) -> int:
        """Forget triplets neither seen nor passed since `before`."""
        with self.lock:
            cur = self.db.execute("DELETE FROM greylist WHERE max(first_seen,"
                                  " coalesce(passed, 0)) < ?", (before,))
        return cur.rowcount
