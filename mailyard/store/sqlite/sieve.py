"""Sieve scripts and the duplicate test's memory in their own file, sieve.db, in the data dir
(store.ports SieveScriptStore). A file of their own, like policy.db: the scripts are read once
per delivered recipient and written rarely, and mail.db's schema stays the MailStore's."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from mailyard.core.ids import new_id
from mailyard.store.ports import Conflict, NotFound, SieveScriptRecord
from mailyard.store.sqlite.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS sieve_scripts (
    account_id TEXT NOT NULL,
    name TEXT NOT NULL,
    content TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    script_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (account_id, name)
);
CREATE UNIQUE INDEX IF NOT EXISTS sieve_one_active ON sieve_scripts (account_id) WHERE active;
CREATE TABLE IF NOT EXISTS sieve_duplicates (
    account_id TEXT NOT NULL,
    key TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (account_id, key)
);
"""
_COLUMNS = "account_id, name, content, active, updated_at, script_id"
VERSION = 2
"""1: no script_id; 2: script_id, kept through replace and rename (JMAP's immutable id)."""


def _record(row: tuple[str, str, str, int, float, str]) -> SieveScriptRecord:
    return SieveScriptRecord(row[0], row[1], row[2], bool(row[3]), row[4], row[5])


def _migrate(conn: sqlite3.Connection, found: int) -> None:
    """Give a file from before script ids the column (a new file has it from SCHEMA), and
    every script an id."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(sieve_scripts)")}
    if "script_id" not in columns:
        conn.execute("ALTER TABLE sieve_scripts ADD COLUMN script_id TEXT NOT NULL DEFAULT ''")
    rows = conn.execute("SELECT account_id, name FROM sieve_scripts WHERE script_id = ''")
    for account_id, name in rows.fetchall():
        conn.execute("UPDATE sieve_scripts SET script_id = ? WHERE account_id = ? AND name = ?",
                     (new_id("S"), account_id, name))


class SqliteSieveStore:
    def __init__(self, path: Path) -> None:
        self.db = Database(path, SCHEMA, version=VERSION, migrate=_migrate)

    def close(self) -> None:
        self.db.close()

    async def put_script(self, account_id: str, name: str, content: str) -> None:
        now = time.time()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO sieve_scripts (account_id, name, content, updated_at, script_id)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, name) DO UPDATE"
                " SET content = excluded.content, updated_at = excluded.updated_at",
                (account_id, name, content, now, new_id("S")))
        await self.db.write(write)

    async def list_scripts(self, account_id: str) -> list[SieveScriptRecord]:
        def read(conn: sqlite3.Connection) -> list[SieveScriptRecord]:
            return [_record(r) for r in conn.execute(
                f"SELECT {_COLUMNS} FROM sieve_scripts WHERE account_id = ? ORDER BY name",
                (account_id,))]
        return await self.db.read(read)

    async def get_script(self, account_id: str, name: str) -> SieveScriptRecord:
        def read(conn: sqlite3.Connection) -> SieveScriptRecord:
            row = conn.execute(f"SELECT {_COLUMNS} FROM sieve_scripts WHERE account_id = ?"
                               " AND name = ?", (account_id, name)).fetchone()
            if row is None:
                raise NotFound(f"no script {name!r}")
            return _record(row)
        return await self.db.read(read)

    async def get_active(self, account_id: str) -> SieveScriptRecord | None:
        def read(conn: sqlite3.Connection) -> SieveScriptRecord | None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM sieve_scripts WHERE account_id = ?"
                               " AND active", (account_id,)).fetchone()
            return None if row is None else _record(row)
        return await self.db.read(read)

    async def set_active(self, account_id: str, name: str | None) -> None:
        def write(conn: sqlite3.Connection) -> None:
            if name is not None and conn.execute(
                    "SELECT 1 FROM sieve_scripts WHERE account_id = ? AND name = ?",
                    (account_id, name)).fetchone() is None:
                raise NotFound(f"no script {name!r}")
            conn.execute("UPDATE sieve_scripts SET active = 0 WHERE account_id = ? AND active",
                         (account_id,))
            if name is not None:
                conn.execute("UPDATE sieve_scripts SET active = 1 WHERE account_id = ?"
                             " AND name = ?", (account_id, name))
        await self.db.write(write)

    async def rename_script(self, account_id: str, old: str, new: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM sieve_scripts WHERE account_id = ? AND name = ?",
                            (account_id, new)).fetchone() is not None:
                raise Conflict(f"a script {new!r} exists")
            cur = conn.execute("UPDATE sieve_scripts SET name = ? WHERE account_id = ?"
                               " AND name = ?", (new, account_id, old))
            if cur.rowcount == 0:
                raise NotFound(f"no script {old!r}")
        await self.db.write(write)

    async def delete_script(self, account_id: str, name: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            cur = conn.execute("DELETE FROM sieve_scripts WHERE account_id = ? AND name = ?",
                               (account_id, name))
            if cur.rowcount == 0:
                raise NotFound(f"no script {name!r}")
        await self.db.write(write)

    async def duplicate_seen(self, account_id: str, key: str, now: float) -> bool:
        def read(conn: sqlite3.Connection) -> bool:
            return conn.execute("SELECT 1 FROM sieve_duplicates WHERE account_id = ?"
                                " AND key = ? AND expires > ?",
                                (account_id, key, now)).fetchone() is not None
        return await self.db.read(read)

    async def record_duplicate(self, account_id: str, key: str, expires: float, *,
                               last: bool) -> None:
        now = time.time()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM sieve_duplicates WHERE account_id = ? AND expires <= ?",
                         (account_id, now))
            conn.execute(
                "INSERT INTO sieve_duplicates (account_id, key, expires) VALUES (?, ?, ?)"
                " ON CONFLICT (account_id, key) DO UPDATE SET expires = excluded.expires"
                + ("" if last else " WHERE sieve_duplicates.expires <= ?"),
                (account_id, key, expires) if last else (account_id, key, expires, now))
        await self.db.write(write)
