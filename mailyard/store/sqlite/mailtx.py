"""SQLite's MailTx (store.ports): the mail model's primitives on mail.db's tables.

A model function is a coroutine; here every primitive runs at once on the writer thread's
connection and never suspends, so `run_now` drives the coroutine to its end inside the
writer's transaction, with no event loop (the writer thread has none).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import orjson

from mailyard.store.ports import EmailFlags, NotFound

R = TypeVar("R")


def run_now(step: Coroutine[Any, Any, R]) -> R:
    """The result of a model coroutine whose awaits all complete at once (SQLite's
    primitives); a coroutine that suspended would wait for an event loop the writer thread
    does not have, so that is an error, and the transaction is rolled back."""
    try:
        step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    step.close()
    raise RuntimeError("a mail model step suspended inside a SQLite write transaction")


class SqliteMailTx:
    """One account's rows inside the writer's transaction (`conn`)."""

    def __init__(self, conn: sqlite3.Connection, account_id: str) -> None:
        self.conn = conn
        self.account_id = account_id

    async def lock_account(self) -> None:
        # The one writer already excludes every other; only the account's existence is left.
        if self.conn.execute("SELECT 1 FROM accounts WHERE id = ?",
                             (self.account_id,)).fetchone() is None:
            raise NotFound(f"no account {self.account_id}")

    async def next_modseq(self) -> int:
        return next_modseq(self.conn, self.account_id)

    def log(self, modseq: int, kind: str, object_id: str, op: str) -> None:
        log(self.conn, self.account_id, modseq, kind, object_id, op)

    async def email_flags(self, email_ids: Sequence[str]) -> dict[str, EmailFlags]:
        found = {}
        for email_id in dict.fromkeys(email_ids):
            row = self.conn.execute("SELECT keywords, modseq FROM emails WHERE account_id = ?"
                                    " AND id = ?", (self.account_id, email_id)).fetchone()
            if row is not None:
                found[email_id] = EmailFlags(orjson.loads(row[0]), row[1])
        return found

    async def write_keywords(self, email_id: str, keywords: Sequence[str]) -> None:
        self.conn.execute("UPDATE emails SET keywords = ? WHERE id = ?",
                          (orjson.dumps(list(keywords)).decode(), email_id))

    async def add_unread(self, email_id: str, change: int) -> None:
        self.conn.execute("UPDATE mailboxes SET unseen = unseen + ? WHERE id IN"
                          " (SELECT mailbox_id FROM mailbox_emails WHERE email_id = ?)",
                          (change, email_id))

    async def stamp_email(self, email_id: str, modseq: int) -> None:
        self.conn.execute("UPDATE emails SET modseq = ? WHERE id = ?", (modseq, email_id))
        self.conn.execute("UPDATE mailboxes SET modseq = ? WHERE id IN (SELECT mailbox_id"
                          " FROM mailbox_emails WHERE email_id = ?)", (modseq, email_id))


def next_modseq(conn: sqlite3.Connection, account_id: str) -> int:
    row = conn.execute(
        "UPDATE accounts SET modseq = modseq + 1 WHERE id = ? RETURNING modseq", (account_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no account {account_id}")
    return int(row[0])


def log(conn: sqlite3.Connection, account_id: str, modseq: int, kind: str, object_id: str,
        op: str) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO changes (account_id, modseq, kind, object_id, op)"
        " VALUES (?, ?, ?, ?, ?)", (account_id, modseq, kind, object_id, op),
    )
