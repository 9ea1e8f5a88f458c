"""SQLite's MailTx (store.ports): the mail model's primitives on mail.db's tables.

A model function is a coroutine; here every primitive runs at once on the writer thread's
connection and never suspends, so `run_now` drives the coroutine to its end inside the
writer's transaction, with no event loop (the writer thread has none).

A flag change (model/keywords.py) writes an email's keywords, maybe its mailboxes' unread
counts, then stamps the email and its mailboxes with the new MODSEQ: four statements on two
rows. Here the first two wait (`SqliteMailTx._keywords`, `_unread`) and go out with the stamp
as two: one UPDATE of the wide email row instead of two, one of its mailboxes instead of two.
Each statement is a trip for the GIL, which the listener's busy event loop holds, so on the
writer thread a statement less is a wait less for every STORE. Whatever runs any other
statement first, and the end of the model step (`run_now`), writes what waits, so no read
of the transaction ever sees the rows without it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, TypeVar, cast

import orjson

from mailyard.core.ids import next_uidvalidity
from mailyard.store import emailrows
from mailyard.store.ports import (
    Account,
    CountChange,
    DeliveryResult,
    DKIMKeyRecord,
    EmailFlags,
    Mailbox,
    MailboxCounters,
    MailboxEntry,
    NewEmail,
    NotFound,
    RemovedEmail,
)

R = TypeVar("R")


_WAITING = threading.local()
"""The SqliteMailTxs of this thread holding a write back (`SqliteMailTx._flush`)."""


def run_now(step: Coroutine[Any, Any, R]) -> R:
    """The result of a model coroutine whose awaits all complete at once (SQLite's
    primitives); a coroutine that suspended would wait for an event loop the writer thread
    does not have, so that is an error, and the transaction is rolled back. A write a
    SqliteMailTx held back is written before the step counts as done."""
    try:
        step.send(None)
    except StopIteration as done:
        _flush_waiting()
        return done.value  # type: ignore[no-any-return]
    except BaseException:
        _drop_waiting()  # the step failed: its transaction (or savepoint) is rolled back
        raise
    step.close()
    _drop_waiting()
    raise RuntimeError("a mail model step suspended inside a SQLite write transaction")


def _flush_waiting() -> None:
    waiting: list[SqliteMailTx] | None = getattr(_WAITING, "txs", None)
    while waiting:
        waiting[-1]._flush()  # takes itself off the list


def _drop_waiting() -> None:
    waiting: list[SqliteMailTx] | None = getattr(_WAITING, "txs", None)
    if waiting:
        for tx in waiting:
            tx._keywords = tx._unread = None
        waiting.clear()


class _Flushing:
    """The writer's connection as a SqliteMailTx uses it: any statement first writes what the
    transaction held back, so reads and other writes see it (the module's docstring)."""

    __slots__ = ("_conn", "_tx")

    def __init__(self, conn: sqlite3.Connection, tx: SqliteMailTx) -> None:
        self._conn = conn
        self._tx = tx

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        if self._tx._keywords is not None:
            self._tx._flush()
        return self._conn.execute(sql, parameters)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        if self._tx._keywords is not None:
            self._tx._flush()
        return self._conn.executemany(sql, rows)


class SqliteMailReader:
    """One account's rows as `conn` reads them (store.ports.MailReader)."""

    def __init__(self, conn: sqlite3.Connection, account_id: str) -> None:
        self.conn = conn
        self.account_id = account_id

    async def mailbox(self, mailbox_id: str) -> Mailbox:
        row = self.conn.execute("SELECT * FROM mailboxes WHERE account_id = ? AND id = ?",
                                (self.account_id, mailbox_id)).fetchone()
        if row is None:
            raise NotFound(f"no mailbox {mailbox_id}")
        return mailbox(row)

    async def entries(self, mailbox_id: str, *, changed_since: int | None = None
                      ) -> list[MailboxEntry]:
        if changed_since is None:
            rows = self.conn.execute(
                "SELECT me.uid, me.email_id, e.keywords, e.modseq FROM mailbox_emails me"
                " JOIN emails e ON e.id = me.email_id WHERE me.mailbox_id = ? ORDER BY me.uid",
                (mailbox_id,))
        else:
            rows = self.conn.execute(  # through emails_modseq
                "SELECT me.uid, me.email_id, e.keywords, e.modseq FROM emails e"
                " JOIN mailbox_emails me ON me.email_id = e.id AND me.mailbox_id = ?"
                " WHERE e.account_id = ? AND e.modseq > ? ORDER BY me.uid",
                (mailbox_id, self.account_id, changed_since))
        return [MailboxEntry(uid=r[0], email_id=r[1], keywords=orjson.loads(r[2]),
                             modseq=r[3]) for r in rows]

    async def vanished(self, mailbox_id: str, since: int) -> list[int]:
        # Sorted here, not by ORDER BY uid: with it SQLite walked the primary key through
        # every UID the mailbox ever expunged (1 ms at 20,000) for each view refresh, which
        # IMAP runs after nearly every change; without it, vanished_modseq finds the few.
        return sorted(r[0] for r in self.conn.execute(
            "SELECT uid FROM vanished WHERE mailbox_id = ? AND modseq > ?",
            (mailbox_id, since)))


class SqliteMailTx(SqliteMailReader):
    """One account's rows inside the writer's transaction (`conn`)."""

    def __init__(self, conn: sqlite3.Connection, account_id: str) -> None:
        super().__init__(cast(sqlite3.Connection, _Flushing(conn, self)), account_id)
        self._raw = conn
        self._keywords: tuple[str, str] | None = None
        """(email id, keywords as JSON) written by `write_keywords`, not yet sent."""
        self._unread: int | None = None
        """The unread change of that email's mailboxes (`add_unread`), not yet sent."""

    def _flush(self) -> None:
        """Send what waits, as it would have gone had it not waited."""
        held, unread = self._keywords, self._unread
        self._keywords = self._unread = None
        waiting: list[SqliteMailTx] = getattr(_WAITING, "txs", [])
        if self in waiting:
            waiting.remove(self)
        if held is None:
            return
        email_id, keywords = held
        self._raw.execute("UPDATE emails SET keywords = ? WHERE id = ?", (keywords, email_id))
        if unread is not None:
            self._add_unread(email_id, unread, None)

    def _add_unread(self, email_id: str, change: int, modseq: int | None) -> None:
        self._raw.execute("UPDATE mailboxes SET unseen = unseen + ?, modseq = coalesce(?, modseq)"
                          " WHERE id IN (SELECT mailbox_id FROM mailbox_emails WHERE email_id = ?)",
                          (change, modseq, email_id))

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
            row = self.conn.execute(
                "SELECT keywords, modseq, size, received_at FROM emails WHERE account_id = ?"
                " AND id = ?", (self.account_id, email_id)).fetchone()
            if row is not None:
                found[email_id] = EmailFlags(orjson.loads(row[0]), row[1], row[2], row[3])
        return found

    async def write_keywords(self, email_id: str, keywords: Sequence[str]) -> None:
        if self._keywords is not None:
            self._flush()
        self._keywords = (email_id, orjson.dumps(list(keywords)).decode())
        waiting: list[SqliteMailTx] | None = getattr(_WAITING, "txs", None)
        if waiting is None:
            waiting = _WAITING.txs = []
        waiting.append(self)

    async def add_unread(self, email_id: str, change: int) -> None:
        held = self._keywords
        if held is not None and held[0] == email_id and self._unread is None:
            self._unread = change  # goes out with the stamp
            return
        if held is not None:
            self._flush()
        self._add_unread(email_id, change, None)

    async def stamp_email(self, email_id: str, modseq: int) -> None:
        held, unread = self._keywords, self._unread
        if held is None or held[0] != email_id:
            self.conn.execute("UPDATE emails SET modseq = ? WHERE id = ?", (modseq, email_id))
            self.conn.execute("UPDATE mailboxes SET modseq = ? WHERE id IN (SELECT mailbox_id"
                              " FROM mailbox_emails WHERE email_id = ?)", (modseq, email_id))
            return
        self._keywords = self._unread = None
        _WAITING.txs.remove(self)
        self._raw.execute("UPDATE emails SET keywords = ?, modseq = ? WHERE id = ?",
                          (held[1], modseq, email_id))
        self._add_unread(email_id, unread or 0, modseq)

    async def uids(self, mailbox_id: str, email_ids: Sequence[str]) -> dict[str, int]:
        found = {}
        for email_id in dict.fromkeys(email_ids):
            row = self.conn.execute("SELECT uid FROM mailbox_emails WHERE mailbox_id = ?"
                                    " AND email_id = ?", (mailbox_id, email_id)).fetchone()
            if row is not None:
                found[email_id] = int(row[0])
        return found

    async def holders(self, email_id: str) -> dict[str, str | None]:
        return dict(self.conn.execute(
            "SELECT me.mailbox_id, m.role FROM mailbox_emails me JOIN mailboxes m"
            " ON m.id = me.mailbox_id WHERE me.email_id = ?", (email_id,)).fetchall())

    async def insert_label(self, mailbox_id: str, email_id: str, modseq: int,
                           received_at: int, counts: CountChange) -> int | None:
        box = self.conn.execute(
            "UPDATE mailboxes SET uidnext = uidnext + 1, modseq = ?, total = total + ?,"
            " unseen = unseen + ?, bytes = bytes + ? WHERE account_id = ? AND id = ?"
            " RETURNING uidnext - 1", (modseq, counts.total, counts.unread, counts.size,
                                       self.account_id, mailbox_id)).fetchone()
        if box is None:
            return None
        self.conn.execute("INSERT INTO mailbox_emails (mailbox_id, uid, email_id, modseq)"
                          " VALUES (?, ?, ?, ?)", (mailbox_id, box[0], email_id, modseq))
        return int(box[0])

    async def delete_label(self, mailbox_id: str, email_id: str, modseq: int,
                           counts: CountChange) -> int | None:
        row = self.conn.execute("DELETE FROM mailbox_emails WHERE mailbox_id = ?"
                                " AND email_id = ? RETURNING uid", (mailbox_id, email_id)
                                ).fetchone()
        if row is None:
            return None
        self.conn.execute("UPDATE mailboxes SET total = total + ?, unseen = unseen + ?,"
                          " bytes = bytes + ?, modseq = ? WHERE id = ?",
                          (counts.total, counts.unread, counts.size, modseq, mailbox_id))
        self.conn.execute("INSERT OR REPLACE INTO vanished (mailbox_id, uid, modseq)"
                          " VALUES (?, ?, ?)", (mailbox_id, row[0], modseq))
        return int(row[0])

    async def delete_email(self, email_id: str) -> RemovedEmail | None:
        row = self.conn.execute("DELETE FROM emails WHERE account_id = ? AND id = ?"
                                " RETURNING size, thread_id", (self.account_id, email_id)
                                ).fetchone()
        return None if row is None else RemovedEmail(row[0], row[1])

    async def release_quota(self, size: int) -> None:
        self.conn.execute("UPDATE accounts SET used = max(0, used - ?) WHERE id = ?",
                          (size, self.account_id))

    async def thread_exists(self, thread_id: str) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM emails WHERE account_id = ? AND thread_id = ? LIMIT 1",
            (self.account_id, thread_id)).fetchone() is not None

    async def delete_thread_keys(self, thread_id: str) -> None:
        self.conn.execute("DELETE FROM thread_keys WHERE account_id = ? AND thread_id = ?",
                          (self.account_id, thread_id))

    # ------------------------------------------------------------------ maintenance

    async def current_modseq(self) -> int:
        row = self.conn.execute("SELECT modseq FROM accounts WHERE id = ?",
                                (self.account_id,)).fetchone()
        if row is None:
            raise NotFound(f"no account {self.account_id}")
        return int(row[0])

    async def write_usage(self, used: int) -> None:
        self.conn.execute("UPDATE accounts SET used = ? WHERE id = ?", (used, self.account_id))

    async def write_counters(self, mailboxes: Sequence[MailboxCounters], modseq: int
                             ) -> list[str]:
        return [box.mailbox_id for box in mailboxes if self.conn.execute(
            "UPDATE mailboxes SET total = ?, unseen = ?, bytes = ?, uidnext = max(uidnext, ?),"
            " modseq = ? WHERE account_id = ? AND id = ?",
            (box.total, box.unseen, box.size, box.uidnext, modseq, self.account_id,
             box.mailbox_id)).rowcount]

    # ------------------------------------------------------------------ delivery

    async def lock_usage(self) -> tuple[int, int] | None:
        row = self.conn.execute("SELECT quota, used FROM accounts WHERE id = ?",
                                (self.account_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    async def find_delivery(self, delivery_key: str) -> DeliveryResult | None:
        return self._found(self.conn.execute(
            "SELECT id, thread_id, modseq FROM emails WHERE account_id = ? AND delivery_key = ?",
            (self.account_id, delivery_key)).fetchone())

    async def find_same_content(self, message_id: str, content_sha256: str
                                ) -> DeliveryResult | None:
        return self._found(self.conn.execute(
            "SELECT id, thread_id, modseq FROM emails WHERE account_id = ? AND message_id = ?"
            " AND content_sha256 = ?", (self.account_id, message_id, content_sha256)).fetchone())

    @staticmethod
    def _found(row: Any) -> DeliveryResult | None:
        return None if row is None else DeliveryResult(email_id=row[0], thread_id=row[1],
                                                       created=False, modseq=row[2])

    async def add_usage(self, size: int) -> None:
        self.conn.execute("UPDATE accounts SET used = used + ? WHERE id = ?",
                          (size, self.account_id))

    async def threads_of_keys(self, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            found.update(r[0] for r in self.conn.execute(
                # No DISTINCT: with it SQLite walked every thread key of the account through
                # thread_keys_thread on each delivery (the primary key answers these
                # directly; the set drops the repeats).
                f"SELECT thread_id FROM thread_keys WHERE account_id = ?"
                f" AND msgid IN ({','.join('?' * len(chunk))})", (self.account_id, *chunk)))
        return found

    async def latest_thread_by_subject(self, thread_subject: str, after: int) -> str | None:
        row = self.conn.execute(
            "SELECT thread_id FROM emails WHERE account_id = ? AND thread_subject = ?"
            " AND received_at > ? ORDER BY received_at DESC LIMIT 1",
            (self.account_id, thread_subject, after)).fetchone()
        return None if row is None else str(row[0])

    async def merge_thread(self, source: str, target: str, modseq: int) -> list[str]:
        moved = self.conn.execute(
            "UPDATE emails SET thread_id = ?, modseq = ? WHERE account_id = ? AND thread_id = ?"
            " RETURNING id", (target, modseq, self.account_id, source)).fetchall()
        self.conn.execute("UPDATE thread_keys SET thread_id = ? WHERE account_id = ?"
                          " AND thread_id = ?", (target, self.account_id, source))
        return [r[0] for r in moved]

    async def put_thread_keys(self, keys: Sequence[str], thread_id: str) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO thread_keys (account_id, msgid, thread_id) VALUES (?, ?, ?)",
            [(self.account_id, key, thread_id) for key in keys])

    async def insert_email(self, email: NewEmail, thread_id: str, modseq: int) -> None:
        self.conn.execute(
            "INSERT INTO emails (id, account_id, thread_id, delivery_key, content_sha256,"
            " blob_id, size, received_at, sent_at, message_id, subject, thread_subject,"
            " from_addr, headers, preview, has_attachment, attachments, envelope,"
            " bodystructure, body, parts, blob_refs, keywords, modseq, head) VALUES (?, ?, ?,"
            " ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (email.email_id, self.account_id, thread_id, email.delivery_key,
             email.content_sha256, email.blob_id, email.size, email.received_at, email.sent_at,
             email.message_id, email.subject, email.thread_subject,
             emailrows.from_addr(email), emailrows.headers(email),
             email.preview, int(email.has_attachment), orjson.dumps(email.attachments),
             email.envelope, email.bodystructure, email.body, orjson.dumps(email.parts),
             orjson.dumps(email.blob_refs), orjson.dumps(email.keywords).decode(), modseq,
             email.head))

    async def mailboxes_by_role(self, roles: Sequence[str]) -> dict[str, str]:
        return dict(self.conn.execute(
            f"SELECT role, id FROM mailboxes WHERE account_id = ?"
            f" AND role IN ({','.join('?' * len(roles))})", (self.account_id, *roles)
        ).fetchall())

    # ------------------------------------------------------------------ mailboxes

    async def mailbox_named(self, name: str) -> str | None:
        row = self.conn.execute("SELECT id FROM mailboxes WHERE account_id = ? AND name = ?",
                                (self.account_id, name)).fetchone()
        return None if row is None else str(row[0])

    async def new_uidvalidity(self) -> int:
        last = self.conn.execute("SELECT last_uidvalidity FROM accounts WHERE id = ?",
                                 (self.account_id,)).fetchone()
        value = next_uidvalidity(last[0] if last else 0, time.time())
        self.conn.execute("UPDATE accounts SET last_uidvalidity = ? WHERE id = ?",
                          (value, self.account_id))
        return value

    async def insert_mailboxes(self, rows: Sequence[tuple[str, str, str | None]],
                               uidvalidity: int, modseq: int) -> None:
        self.conn.executemany(
            "INSERT INTO mailboxes (id, account_id, name, role, uidvalidity, modseq)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(i, self.account_id, name, role, uidvalidity, modseq) for i, name, role in rows])

    async def mailboxes_below(self, prefix: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.conn.execute(
            "SELECT id, name FROM mailboxes WHERE account_id = ? AND substr(name, 1, ?) = ?",
            (self.account_id, len(prefix), prefix))]

    async def rename_mailboxes(self, names: dict[str, str], modseq: int) -> None:
        self.conn.executemany("UPDATE mailboxes SET name = ?, modseq = ? WHERE id = ?",
                              [(name, modseq, i) for i, name in names.items()])

    async def write_subscribed(self, mailbox_id: str, subscribed: bool) -> None:
        self.conn.execute("UPDATE mailboxes SET subscribed = ? WHERE id = ?",
                          (int(subscribed), mailbox_id))

    async def mailbox_email_ids(self, mailbox_id: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT email_id FROM mailbox_emails WHERE mailbox_id = ?", (mailbox_id,))]

    async def delete_mailbox(self, mailbox_id: str) -> None:
        self.conn.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))

    # ------------------------------------------------------------------ objects

    async def upsert_object(self, kind: str, object_id: str, data: dict[str, Any],
                            modseq: int) -> bool:
        existed = self.conn.execute(
            "SELECT 1 FROM objects WHERE account_id = ? AND kind = ? AND id = ?",
            (self.account_id, kind, object_id)).fetchone() is not None
        self.conn.execute("INSERT OR REPLACE INTO objects (account_id, kind, id, data, modseq)"
                          " VALUES (?, ?, ?, ?, ?)",
                          (self.account_id, kind, object_id, orjson.dumps(data), modseq))
        return existed

    async def delete_object(self, kind: str, object_id: str) -> bool:
        return self.conn.execute(
            "DELETE FROM objects WHERE account_id = ? AND kind = ? AND id = ? RETURNING 1",
            (self.account_id, kind, object_id)).fetchone() is not None


class SqliteAccountTx:
    """The accounts table inside the writer's transaction (store.ports.AccountTx)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def insert_account(self, account_id: str, address: str, password_hash: str,
                             quota: int, created_at: float) -> bool:
        return self.conn.execute(
            "INSERT INTO accounts (id, address, password_hash, quota, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (address) DO NOTHING RETURNING 1",
            (account_id, address, password_hash, quota, created_at)).fetchone() is not None

    async def account_id(self, address: str) -> str | None:
        row = self.conn.execute("SELECT id FROM accounts WHERE address = ?",
                                (address,)).fetchone()
        return None if row is None else str(row[0])

    async def account(self, account_id: str) -> Account:
        return account(self.conn.execute("SELECT * FROM accounts WHERE id = ?",
                                          (account_id,)).fetchone())

    async def update_account(self, account_id: str, *, password_hash: str | None = None,
                             quota: int | None = None) -> None:
        self.conn.execute("UPDATE accounts SET password_hash = coalesce(?, password_hash),"
                          " quota = coalesce(?, quota) WHERE id = ?",
                          (password_hash, quota, account_id))

    async def delete_account(self, account_id: str) -> None:
        for table in ("changes", "thread_keys", "objects"):  # the others cascade
            self.conn.execute(f"DELETE FROM {table} WHERE account_id = ?", (account_id,))
        self.conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))

    def mail(self, account_id: str) -> SqliteMailTx:
        return SqliteMailTx(self.conn, account_id)


class SqliteDomainTx:
    """The domains and DKIM keys inside the writer's transaction (store.ports.DomainTx)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def insert_domain(self, name: str, created_at: float) -> bool:
        return self.conn.execute("INSERT INTO domains VALUES (?, ?) ON CONFLICT DO NOTHING"
                                 " RETURNING 1", (name, created_at)).fetchone() is not None

    async def delete_domain(self, name: str) -> bool:
        return self.conn.execute("DELETE FROM domains WHERE name = ?", (name,)).rowcount == 1

    async def insert_dkim_key(self, key: DKIMKeyRecord) -> bool:
        return self.conn.execute(
            "INSERT INTO dkim_keys VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1",
            (key.domain, key.selector, key.algorithm, key.private_key, key.created_at,
             int(key.active))).fetchone() is not None

    async def retire_dkim_key(self, domain: str, selector: str) -> bool:
        return self.conn.execute("UPDATE dkim_keys SET active = 0 WHERE domain = ?"
                                 " AND selector = ?", (domain, selector)).rowcount == 1


def account(row: sqlite3.Row) -> Account:
    return Account(id=row["id"], address=row["address"], password_hash=row["password_hash"],
                   quota=row["quota"], used=row["used"], modseq=row["modseq"])


def mailbox(row: sqlite3.Row) -> Mailbox:
    return Mailbox(id=row["id"], account_id=row["account_id"], name=row["name"],
                   role=row["role"], uidvalidity=row["uidvalidity"], uidnext=row["uidnext"],
                   total=row["total"], unread=row["unseen"], subscribed=bool(row["subscribed"]),
                   highest_modseq=row["modseq"], size=row["bytes"])


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
