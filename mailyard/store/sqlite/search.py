"""SearchIndex on SQLite FTS5 (unicode61 with diacritics removed), in its own database file.

Kept apart from the mail store's file so that indexing, which writes a lot, never holds the lock
that delivery and flag changes need.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from mailyard.store.ports import IndexDocument
from mailyard.store.sqlite.db import Database

SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5 (
    account_id UNINDEXED, email_id UNINDEXED, subject, addresses, body, attachment_names,
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE IF NOT EXISTS grams USING fts5 (
    account_id UNINDEXED, email_id UNINDEXED, subject, addresses, body,
    tokenize = 'trigram'
);
CREATE TABLE IF NOT EXISTS doc_ids (
    account_id TEXT NOT NULL, email_id TEXT NOT NULL, rowid_ INTEGER NOT NULL,
    PRIMARY KEY (account_id, email_id)
) WITHOUT ROWID;
"""


def fts_query(text: str) -> str:
    """Plain words as an AND of quoted FTS5 strings: user text never reaches the FTS5 grammar."""
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    words = [w for w in text.split() if w]
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


MIN_SUBSTRING = 3
"""A trigram index answers substrings of three characters or more."""
SUBSTRING_FIELDS = ("subject", "addresses", "body")


class SqliteSearchIndex:
    def __init__(self, path: Path) -> None:
        self.db = Database(path, SCHEMA, readers=2)

    def close(self) -> None:
        self.db.close()

    async def index(self, documents: Sequence[IndexDocument]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            for doc in documents:
                if conn.execute("SELECT 1 FROM doc_ids WHERE account_id = ? AND email_id = ?",
                                (doc.account_id, doc.email_id)).fetchone():
                    continue  # indexing is repeated after a crash; the first copy stands
                cur = conn.execute(
                    "INSERT INTO docs (account_id, email_id, subject, addresses, body,"
                    " attachment_names) VALUES (?, ?, ?, ?, ?, ?)",
                    (doc.account_id, doc.email_id, doc.subject, doc.addresses, doc.body,
                     doc.attachment_names))
                conn.execute(
                    "INSERT INTO grams (rowid, account_id, email_id, subject, addresses, body)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (cur.lastrowid, doc.account_id, doc.email_id, doc.subject, doc.addresses,
                     doc.body))
                conn.execute("INSERT INTO doc_ids VALUES (?, ?, ?)",
                             (doc.account_id, doc.email_id, cur.lastrowid))

        await self.db.write(write)

    async def search(self, account_id: str, text: str, limit: int = 100) -> list[str]:
        query = fts_query(text)
        if not query:
            return []
        return await self.db.read(lambda c: [r[0] for r in c.execute(
            "SELECT email_id FROM docs WHERE docs MATCH ? AND account_id = ?"
            " ORDER BY email_id DESC LIMIT ?", (query, account_id, limit))])

    async def substring(self, account_id: str, field: str | None,
                        needle: str) -> set[str] | None:
        if len(needle) < MIN_SUBSTRING or field not in (None, *SUBSTRING_FIELDS):
            return None
        phrase = '"' + needle.replace('"', '""') + '"'
        query = f"{field} : {phrase}" if field else phrase

        def find(conn: sqlite3.Connection) -> set[str]:
            return {r[0] for r in conn.execute(
                "SELECT email_id FROM grams WHERE grams MATCH ? AND account_id = ?",
                (query, account_id))}

        return await self.db.read(find)

    async def delete(self, account_id: str, email_ids: Sequence[str]) -> None:
        def remove(conn: sqlite3.Connection) -> None:
            for email_id in email_ids:
                row = conn.execute(
                    "DELETE FROM doc_ids WHERE account_id = ? AND email_id = ? RETURNING rowid_",
                    (account_id, email_id)).fetchone()
                if row:
                    conn.execute("DELETE FROM docs WHERE rowid = ?", (row[0],))
                    conn.execute("DELETE FROM grams WHERE rowid = ?", (row[0],))

        await self.db.write(remove)

    async def count(self, account_id: str) -> int:
        return await self.db.read(lambda c: int(c.execute(
            "SELECT count(*) FROM doc_ids WHERE account_id = ?", (account_id,)).fetchone()[0]))
