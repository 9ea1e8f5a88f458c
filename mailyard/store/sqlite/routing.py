"""The routing rules on SQLite: one small table in routing.db beside mail.db.

A file of its own (as policy.db and counters.db are), so that its schema moves with its own
version and never with the mail store's. The CLI writes while the server runs; the server
reads the file on every look-up (a primary-key read, microseconds), so a rule added takes
effect at the next RCPT without a restart.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from mailyard.store.ports import Conflict, RouteKind, RouteRow
from mailyard.store.sqlite.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS routes (
    kind TEXT NOT NULL CHECK (kind IN ('alias', 'domain', 'catchall')),
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    position INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (kind, source, target)
);
"""
VERSION = 1


class SqliteRoutingStore:
    def __init__(self, path: Path) -> None:
        self.db = Database(path, SCHEMA, version=VERSION)

    def close(self) -> None:
        self.db.close()

    async def add_route(self, row: RouteRow) -> None:
        def add(conn: sqlite3.Connection) -> None:
            position = conn.execute(
                "SELECT coalesce(max(position), 0) + 1 FROM routes WHERE kind = ? AND source = ?",
                (row.kind, row.source)).fetchone()[0]
            try:
                conn.execute("INSERT INTO routes VALUES (?, ?, ?, ?, ?)",
                             (row.kind, row.source, row.target, position, time.time()))
            except sqlite3.IntegrityError:
                raise Conflict(f"{row.source} already routes to {row.target}") from None

        await self.db.write(add)

    async def remove_routes(self, kind: RouteKind, source: str,
                            target: str | None = None) -> int:
        def remove(conn: sqlite3.Connection) -> int:
            if target is None:
                return conn.execute("DELETE FROM routes WHERE kind = ? AND source = ?",
                                    (kind, source)).rowcount
            return conn.execute("DELETE FROM routes WHERE kind = ? AND source = ? AND target = ?",
                                (kind, source, target)).rowcount

        return await self.db.write(remove)

    async def targets(self, kind: RouteKind, source: str) -> list[str]:
        return await self.db.read(lambda c: [r[0] for r in c.execute(
            "SELECT target FROM routes WHERE kind = ? AND source = ? ORDER BY position",
            (kind, source))])

    async def routes(self, kind: RouteKind | None = None) -> list[RouteRow]:
        sql = "SELECT kind, source, target FROM routes"
        args: tuple[str, ...] = ()
        if kind is not None:
            sql, args = sql + " WHERE kind = ?", (kind,)
        rows = await self.db.read(lambda c: c.execute(
            sql + " ORDER BY kind, source, position", args).fetchall())
        return [RouteRow(r[0], r[1], r[2]) for r in rows]
