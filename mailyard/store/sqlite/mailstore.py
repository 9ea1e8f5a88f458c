"""MailStore on SQLite: the embedded engine for accounts, mailboxes, email metadata and changes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from mailyard.core import query as q
from mailyard.core.query import Node
from mailyard.model import keywords
from mailyard.model.mailboxes import MailboxKey
from mailyard.model.reads import AccountKey, StoreReads
from mailyard.model.views import MailReads
from mailyard.model.writes import ModelWrites
from mailyard.store import emailrows, sqlsort
from mailyard.store.ports.mailtx import (
    AccountTx,
    DomainTx,
    EmailQuery,
    KeyRow,
    MailReader,
    StoreTx,
)
from mailyard.store.ports.records import (
    Account,
    Change,
    DKIMKeyRecord,
    EmailHead,
    EmailRecord,
    Mailbox,
    StoredObject,
)
from mailyard.store.ports.search import Order
from mailyard.store.sqlite import filters
from mailyard.store.sqlite.db import Database
from mailyard.store.sqlite.mailtx import (
    SqliteAccountTx,
    SqliteDomainTx,
    SqliteMailReader,
    SqliteMailTx,
    run_now,
)
from mailyard.store.sqlite.mailtx import account as _account
from mailyard.store.sqlite.maintenance import MaintenanceMixin
from mailyard.store.sqlite.schema import SCHEMA, SCHEMA_VERSION, migrate

if TYPE_CHECKING:
    from mailyard.core.emailsort import SortKey

R = TypeVar("R")

class SqliteMailStore(MaintenanceMixin, ModelWrites, MailReads, StoreReads):
    def __init__(self, path: Path, *, query_seconds: float = 10.0) -> None:
        self.db = Database(path, SCHEMA, setup=filters.register, version=SCHEMA_VERSION,
                           migrate=migrate, analyze="emails")
        self.query_seconds = query_seconds
        """The budget of one query_emails (Database.read_long): a JMAP filter or a count over
        a whole mailbox is as long as the client makes it."""

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ transactions

    async def write_mail(self, account_id: str,
                         step: Callable[[StoreTx], Coroutine[Any, Any, R]]) -> R:
        return await self.db.write(lambda conn: run_now(step(SqliteMailTx(conn, account_id))))

    async def write_accounts(self, step: Callable[[AccountTx], Coroutine[Any, Any, R]]) -> R:
        return await self.db.write(lambda conn: run_now(step(SqliteAccountTx(conn))))

    async def write_domains(self, step: Callable[[DomainTx], Coroutine[Any, Any, R]]) -> R:
        return await self.db.write(lambda conn: run_now(step(SqliteDomainTx(conn))))

    async def read_mail(self, account_id: str,
                        step: Callable[[MailReader], Coroutine[Any, Any, R]]) -> R:
        return await self.db.read(lambda conn: run_now(step(SqliteMailReader(conn,
                                                                             account_id))))

    # ------------------------------------------------------------------ domains

    async def list_domains(self) -> list[str]:
        return await self.db.read(
            lambda c: [r[0] for r in c.execute("SELECT name FROM domains ORDER BY name")]
        )

    async def dkim_rows(self, domain: str) -> list[DKIMKeyRecord]:
        return await self.db.read(lambda c: [
            DKIMKeyRecord(r["domain"], r["selector"], r["algorithm"], r["private_key"],
                          r["created_at"], bool(r["active"]))
            for r in c.execute("SELECT * FROM dkim_keys WHERE domain = ?", (domain,))])

    # ------------------------------------------------------------------ accounts

    async def account_rows(self, key: AccountKey | None = None, value: str = ""
                           ) -> list[Account]:
        where, args = (f" WHERE {key} = ?", (value,)) if key else ("", ())
        return await self.db.read(lambda c: [
            _account(r) for r in c.execute("SELECT * FROM accounts" + where, args)])

    # ------------------------------------------------------------------ mailboxes

    async def list_mailboxes(self, account_id: str) -> list[Mailbox]:
        return await self.db.read(lambda c: _mailboxes(c, account_id))

    async def mailbox_rows(self, account_id: str, key: MailboxKey, value: str
                           ) -> list[Mailbox]:
        # By the (account_id, name) index: its prefix for a role (an account has a few).
        return await self.db.read(lambda c: _mailboxes(c, account_id, f" AND {key} = ?",
                                                       (value,)))

    async def thread_counts(self, account_id: str) -> dict[str, tuple[int, int]]:
        return await self.db.read(lambda c: _thread_counts(c, account_id))

    # ------------------------------------------------------------------ delivery

    async def delivery_exists(self, account_id: str, delivery_key: str) -> bool:
        return await self.db.read(lambda c: c.execute(
            "SELECT 1 FROM emails WHERE account_id = ? AND delivery_key = ?",
            (account_id, delivery_key)).fetchone() is not None)

    # ------------------------------------------------------------------ mailbox views

    async def get_emails(self, account_id: str, email_ids: Sequence[str], *,
                         brief: bool = False) -> list[EmailRecord]:
        columns = emailrows.BRIEF_COLUMNS if brief else emailrows.FULL_COLUMNS

        def read(conn: sqlite3.Connection) -> list[EmailRecord]:
            out = []
            for start in range(0, len(email_ids), 500):
                chunk = list(email_ids[start:start + 500])
                rows = conn.execute(
                    f"SELECT {columns} FROM emails WHERE id IN ({','.join('?' * len(chunk))})"
                    " AND +account_id = ?", (*chunk, account_id)).fetchall()
                labels = _labels(conn, [r["id"] for r in rows]) if rows else {}
                out += [emailrows.email_record(r, orjson.loads(r["keywords"]), labels[r["id"]])
                        for r in rows]
            return out

        return await self.db.read(read)

    async def get_heads(self, account_id: str, email_ids: Sequence[str]) -> list[EmailHead]:
        def read(conn: sqlite3.Connection) -> list[EmailHead]:
            out = []
            for start in range(0, len(email_ids), 500):
                chunk = list(email_ids[start:start + 500])
                out += [EmailHead(*r) for r in conn.execute(
                    # "+account_id": by primary key. Without statistics SQLite took an
                    # account index and walked every email of the account for 50 ids.
                    "SELECT id, thread_id, size, received_at, modseq, head FROM emails"
                    f" WHERE id IN ({','.join('?' * len(chunk))}) AND +account_id = ?",
                    (*chunk, account_id))]
            return out

        return await self.db.read(read)

    async def read_query(self, account_id: str, node: Node, among: Sequence[str] | None,
                         step: Callable[[EmailQuery], Coroutine[Any, Any, R]]) -> R:
        return await self.db.read_long(lambda conn: run_now(step(SqliteEmailQuery(
            conn, account_id, node, among))), self.query_seconds)

    async def thread_emails(self, account_id: str,
                            thread_ids: Sequence[str]) -> dict[str, list[str]]:
        def read(conn: sqlite3.Connection) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for start in range(0, len(thread_ids), 500):
                chunk = list(thread_ids[start:start + 500])
                for thread_id, email_id in conn.execute(
                        "SELECT thread_id, id FROM emails WHERE account_id = ? AND thread_id IN"
                        f" ({','.join('?' * len(chunk))}) ORDER BY received_at, id",
                        (account_id, *chunk)):
                    out.setdefault(thread_id, []).append(email_id)
            return out

        return await self.db.read(read)

    async def email_ids(self, account_id: str, *, after: str = "",
                        limit: int = 1000) -> list[str]:
        return await self.db.read(lambda c: [r[0] for r in c.execute(
            "SELECT id FROM emails WHERE account_id = ? AND id > ? ORDER BY id LIMIT ?",
            (account_id, after, limit))])

    # ------------------------------------------------------------------ reading

    async def object_rows(self, account_id: str, kind: str, ids: Sequence[str] | None
                          ) -> list[StoredObject]:
        sql = "SELECT id, data, modseq FROM objects WHERE account_id = ? AND kind = ?"

        def read(conn: sqlite3.Connection) -> list[Any]:
            if ids is None:
                return conn.execute(sql, (account_id, kind)).fetchall()
            rows = []
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                rows += conn.execute(sql + f" AND id IN ({','.join('?' * len(chunk))})",
                                     (account_id, kind, *chunk)).fetchall()
            return rows

        return [StoredObject(kind, r[0], orjson.loads(r[1]), r[2])
                for r in await self.db.read(read)]

    async def changes_since(self, account_id: str, modseq: int) -> list[Change]:
        return await self.db.read(lambda c: [
            Change(modseq=r["modseq"], kind=r["kind"], object_id=r["object_id"], op=r["op"])
            for r in c.execute(
                "SELECT * FROM changes WHERE account_id = ? AND modseq > ?"
                " ORDER BY modseq, kind, object_id",
                (account_id, modseq))
        ])


class SqliteEmailQuery:
    """One query's reads (store.ports.EmailQuery) on the reading connection. Given ids
    (`among`) are only read as rows: looked up by id, 500 at a time ("+e.account_id": an
    index on the account would walk all of its emails to find them)."""

    orders_among = False

    def __init__(self, conn: sqlite3.Connection, account_id: str, node: Node,
                 among: Sequence[str] | None) -> None:
        self.conn, self.account_id, self.node, self.among = conn, account_id, node, among
        self.tuples = conn.cursor()
        """Rows as plain tuples, not sqlite3.Row: the model indexes every one of them."""
        self.tuples.row_factory = None
        self.args: list[Any] = [account_id]
        self.where = filters.compile_where(node, self.args)
        self.body = f"FROM emails e WHERE e.account_id = ? AND {self.where}"

    @staticmethod
    def _keyed(sort: Sequence[SortKey]) -> tuple[sqlsort.SortColumns, list[Any]]:
        """The sort's columns and their values (bound before the WHERE's: `?` is by place)."""
        key_args: list[Any] = []

        def param(value: Any) -> str:
            key_args.append(value)
            return "?"

        return sqlsort.columns(sort, "sqlite", param), key_args

    async def page(self, sort: Sequence[SortKey], *, then: Order, collapse: bool,
                   limit: int | None, position: int) -> list[str]:
        cols, key_args = self._keyed(sort)
        sql = sqlsort.select(sort, cols, self.body, collapse, "sqlite", then)
        return [r[0] for r in self.conn.execute(f"{sql} LIMIT ? OFFSET ?", (
            *key_args, *self.args, -1 if limit is None else limit, position))]

    async def count(self, *, threads: bool) -> int:
        if threads:
            return int(self.conn.execute(f"SELECT count(DISTINCT e.thread_id) {self.body}",
                                         self.args).fetchone()[0])
        return _count_emails(self.conn, self.account_id, self.node, self.body, self.args)

    async def rows(self, sort: Sequence[SortKey]) -> list[KeyRow]:
        cols, key_args = self._keyed(sort)
        if self.among is None:
            return self.tuples.execute(sqlsort.rows_select(cols, self.body),
                                       (*key_args, *self.args)).fetchall()
        rows: list[KeyRow] = []
        for start in range(0, len(self.among), 500):
            chunk = list(self.among[start:start + 500])
            rows += self.tuples.execute(sqlsort.rows_select(
                cols, f"FROM emails e WHERE e.id IN ({','.join('?' * len(chunk))})"
                f" AND +e.account_id = ? AND {self.where}", ordered=False),
                (*key_args, *chunk, *self.args)).fetchall()
        return rows

    async def threads(self, take: Callable[[str, str], bool]) -> None:
        for email_id, thread_id in self.tuples.execute(
                f"SELECT e.id, e.thread_id {self.body} ORDER BY e.received_at DESC, e.id DESC",
                self.args):
            if not take(email_id, thread_id):
                return


def _labels(conn: sqlite3.Connection, email_ids: list[str]) -> dict[str, dict[str, int]]:
    """Mailbox name -> UID for each email, in one query for the whole batch."""
    out: dict[str, dict[str, int]] = {e: {} for e in email_ids}
    for email_id, name, uid in conn.execute(
            f"SELECT me.email_id, m.name, me.uid FROM mailbox_emails me"
            f" JOIN mailboxes m ON m.id = me.mailbox_id"
            f" WHERE me.email_id IN ({','.join('?' * len(email_ids))}) ORDER BY m.rowid",
            email_ids):
        out[email_id][name] = uid
    return out


def _count_emails(conn: sqlite3.Connection, account_id: str, node: Node, sql: str,
                  args: list[Any]) -> int:
    """How many emails match: from the mailbox's own rows when the query asks for one (a
    label, in:inbox), instead of testing every email of the account for membership (one
    EXISTS per email: 130 against 30 ms for in:inbox at 100,000 emails); `sql`/`args` is the
    plain form, over the account's emails."""
    split = _driving_mailbox(node)
    if split is None:
        return int(conn.execute(f"SELECT count(*) {sql}", args).fetchone()[0])
    mailbox_id, rest = split
    rest_args: list[Any] = [mailbox_id, account_id]
    where = filters.compile_where(rest, rest_args)
    return int(conn.execute(
        "SELECT count(*) FROM mailbox_emails me CROSS JOIN emails e ON e.id = me.email_id"
        f" WHERE me.mailbox_id = ? AND e.account_id = ? AND {where}", rest_args).fetchone()[0])


def _driving_mailbox(node: Node) -> tuple[str, Node] | None:
    """(mailbox id, the rest of the query) when `node` requires membership of one mailbox:
    that mailbox itself, or an And with it among its items."""
    if isinstance(node, q.Mailbox) and node.by_id:
        return node.name, q.And(())
    if isinstance(node, q.And):
        for i, item in enumerate(node.items):
            if isinstance(item, q.Mailbox) and item.by_id:
                return item.name, q.And(node.items[:i] + node.items[i + 1:])
    return None


def _mailboxes(conn: sqlite3.Connection, account_id: str, where: str = "",
               args: tuple[str, ...] = ()) -> list[Mailbox]:
    # Columns by position, not sqlite3.Row by name: IMAP finds a mailbox by name in this
    # list for every SELECT, STATUS, APPEND and LIST, so it is read several times for
    # each command loop of every client (a tenth of the listener's reads under the
    # bench/imap_load.py mix).
    return [Mailbox(id=r[0], account_id=r[1], name=r[2], role=r[3], uidvalidity=r[4],
                    uidnext=r[5], total=r[6], unread=r[7], subscribed=bool(r[8]),
                    highest_modseq=r[9], size=r[10]) for r in conn.execute(
        "SELECT id, account_id, name, role, uidvalidity, uidnext, total, unseen, subscribed,"
        f" modseq, bytes FROM mailboxes WHERE account_id = ?{where} ORDER BY rowid",
        (account_id, *args))]


def _thread_counts(c: sqlite3.Connection, account_id: str) -> dict[str, tuple[int, int]]:
    """Two reads, each kept off the wide email rows' overflow pages (where `keywords` lies):
    the threads of each of the account's mailboxes through their memberships (CROSS JOIN:
    from the account's mailboxes, not a scan of every membership in the file; each email's
    thread from emails_thread_of, which the planner would not pick by itself), and the
    unseen emails through emails_narrow, which holds `keywords` (100,000 emails: ~0.3 s and
    ~0.2 s, against ~0.7 s for one read doing both)."""
    threads = c.execute(
        "SELECT me.mailbox_id, count(DISTINCT e.thread_id) FROM mailboxes m"
        " CROSS JOIN mailbox_emails me ON me.mailbox_id = m.id"
        " CROSS JOIN emails e INDEXED BY emails_thread_of ON e.id = me.email_id"
        " WHERE m.account_id = ? GROUP BY me.mailbox_id", (account_id,)).fetchall()
    args: list[Any] = [account_id]
    unread = dict(c.execute(
        "SELECT me.mailbox_id, count(DISTINCT e.thread_id) FROM emails e INDEXED BY"
        f" emails_narrow JOIN mailbox_emails me ON me.email_id = e.id WHERE e.account_id = ?"
        f" AND {filters.compile_where(keywords.UNREAD, args)} GROUP BY me.mailbox_id",
        args).fetchall())
    return {box: (total, unread.get(box, 0)) for box, total in threads}
