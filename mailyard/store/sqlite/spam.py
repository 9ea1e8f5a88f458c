"""SpamModel on SQLite, in its own database file.

Kept apart from the mail store's file: training writes a few thousand token rows per lesson,
and that must never hold the lock that delivery and flag changes need. Token rows are keyed
(model, token) WITHOUT ROWID, so a message's token set is one index probe per token in a single
query. Counts are REAL: user lessons reach the global model weighted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from mailyard.core.addresses import normalize
from mailyard.core.spam import Counts
from mailyard.store.sqlite.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    model TEXT NOT NULL, token INTEGER NOT NULL,
    spam REAL NOT NULL DEFAULT 0, ham REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (model, token)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS models (
    model TEXT PRIMARY KEY, nspam REAL NOT NULL DEFAULT 0, nham REAL NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lessons (
    account_id TEXT NOT NULL, message_key TEXT NOT NULL, is_spam INTEGER NOT NULL,
    weight REAL NOT NULL, tokens BLOB NOT NULL,
    PRIMARY KEY (account_id, message_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reports (
    kind TEXT NOT NULL, key TEXT NOT NULL, account_id TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (kind, key, account_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS allowed_senders (
    account_id TEXT NOT NULL, sender TEXT NOT NULL, PRIMARY KEY (account_id, sender)
) WITHOUT ROWID;
"""

_CHUNK = 900
"""Tokens per IN (...) list: under every SQLite build's variable limit."""


def _pack(tokens: Sequence[int]) -> bytes:
    return b"".join(t.to_bytes(8, "big", signed=True) for t in tokens)


def _unpack(blob: bytes) -> list[int]:
    return [int.from_bytes(blob[i : i + 8], "big", signed=True) for i in range(0, len(blob), 8)]


def _apply(conn: sqlite3.Connection, model: str, tokens: Sequence[int], is_spam: bool,
           weight: float) -> None:
    column = "spam" if is_spam else "ham"
    total = "nspam" if is_spam else "nham"
    conn.executemany(
        f"INSERT INTO tokens (model, token, {column}) VALUES (?, ?, max(?, 0))"
        f" ON CONFLICT (model, token) DO UPDATE SET {column} = max({column} + ?, 0)",
        [(model, t, weight, weight) for t in tokens])
    conn.execute("DELETE FROM tokens WHERE model = ? AND spam <= 0 AND ham <= 0 AND token IN"
                 " (SELECT value FROM json_each(?))", (model, "[" + ",".join(map(str, tokens))
                                                       + "]"))
    conn.execute(
        f"INSERT INTO models (model, {total}) VALUES (?, max(?, 0)) ON CONFLICT (model)"
        f" DO UPDATE SET {total} = max({total} + ?, 0)", (model, weight, weight))


class SqliteSpamModel:
    def __init__(self, path: Path) -> None:
        self.db = Database(path, SCHEMA)

    def close(self) -> None:
        self.db.close()

    async def counts(self, model: str, tokens: Sequence[int]) -> Counts:
        unique = list(dict.fromkeys(tokens))

        def read(conn: sqlite3.Connection) -> Counts:
            row = conn.execute("SELECT nspam, nham FROM models WHERE model = ?",
                               (model,)).fetchone()
            if row is None:
                return Counts()
            found: dict[int, tuple[float, float]] = {}
            for i in range(0, len(unique), _CHUNK):
                chunk = unique[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for token, spam, ham in conn.execute(
                        f"SELECT token, spam, ham FROM tokens WHERE model = ? AND token IN"
                        f" ({marks})", (model, *chunk)):
                    found[token] = (spam, ham)
            return Counts(row[0], row[1], found)

        return await self.db.read(read)

    async def totals(self, model: str) -> tuple[float, float]:
        def read(conn: sqlite3.Connection) -> tuple[float, float]:
            row = conn.execute("SELECT nspam, nham FROM models WHERE model = ?",
                               (model,)).fetchone()
            return (0.0, 0.0) if row is None else (row[0], row[1])

        return await self.db.read(read)

    async def learn(self, account_id: str, message_key: str, tokens: Sequence[int],
                    is_spam: bool, *, global_weight: float) -> bool:
        unique = list(dict.fromkeys(tokens))

        def write(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT is_spam, weight, tokens FROM lessons WHERE account_id = ?"
                               " AND message_key = ?", (account_id, message_key)).fetchone()
            if row is not None:
                if bool(row[0]) == is_spam:
                    return False
                earlier = _unpack(row[2])
                _apply(conn, account_id, earlier, bool(row[0]), -1.0)
                if row[1]:
                    _apply(conn, "", earlier, bool(row[0]), -row[1])
            _apply(conn, account_id, unique, is_spam, 1.0)
            if global_weight:
                _apply(conn, "", unique, is_spam, global_weight)
            conn.execute("INSERT OR REPLACE INTO lessons VALUES (?, ?, ?, ?, ?)",
                         (account_id, message_key, int(is_spam), global_weight, _pack(unique)))
            return True

        return await self.db.write(write)

    async def report(self, kind: str, key: str, account_id: str, at: float) -> None:
        await self.db.write(lambda conn: conn.execute(
            "INSERT INTO reports VALUES (?, ?, ?, ?) ON CONFLICT (kind, key, account_id)"
            " DO UPDATE SET at = max(at, excluded.at)", (kind, key, account_id, at)))

    async def retract(self, kind: str, key: str, account_id: str) -> None:
        await self.db.write(lambda conn: conn.execute(
            "DELETE FROM reports WHERE kind = ? AND key = ? AND account_id = ?",
            (kind, key, account_id)))

    async def reporters(self, kind: str, key: str, since: float) -> int:
        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM reports WHERE kind = ? AND key = ?"
                                    " AND at >= ?", (kind, key, since)).fetchone()[0])

        return await self.db.read(read)

    async def allow_sender(self, account_id: str, sender: str) -> None:
        await self.db.write(lambda conn: conn.execute(
            "INSERT OR IGNORE INTO allowed_senders VALUES (?, ?)",
            (account_id, normalize(sender))))

    async def disallow_sender(self, account_id: str, sender: str) -> None:
        await self.db.write(lambda conn: conn.execute(
            "DELETE FROM allowed_senders WHERE account_id = ? AND sender = ?",
            (account_id, normalize(sender))))

    async def sender_allowed(self, account_id: str, sender: str) -> bool:
        def read(conn: sqlite3.Connection) -> bool:
            return conn.execute("SELECT 1 FROM allowed_senders WHERE account_id = ? AND"
                                " sender = ?", (account_id, normalize(sender))).fetchone() \
                is not None

        return await self.db.read(read)
