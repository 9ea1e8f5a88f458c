"""MailStore on PostgreSQL: accounts, mailboxes, email metadata and changes for many nodes.

The same schema ideas as the SQLite engine (schema.py), written for a server several processes
and nodes share: every key starts with the account, per-account modseqs and per-mailbox UIDs
are taken under the account's row lock inside the writing transaction (writes.py), and reads
that need more than one statement run in one REPEATABLE READ snapshot. Commits are PostgreSQL's
own (synchronous_commit), so a method returns only once its change is durable; concurrent
commits share WAL flushes, which is the group commit the SQLite engine builds by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import orjson

from mailyard.core.emailsort import SortKey
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
from mailyard.store.postgres import filters, maintenance, schema
from mailyard.store.postgres.pool import LazyPool
from mailyard.store.postgres.writes import (
    PostgresAccountTx,
    PostgresDomainTx,
    PostgresMailReader,
    PostgresMailTx,
    Tx,
)
from mailyard.store.postgres.writes import account as _account
from mailyard.store.postgres.writes import mailbox as _mailbox

R = TypeVar("R")

_RETRIES = 5
"""Attempts of a write that PostgreSQL aborted as a deadlock or serialization failure."""

async def _labels(conn: asyncpg.Connection, account_id: str, email_ids: list[str]
                  ) -> dict[str, dict[str, int]]:
    """Mailbox name -> UID for each email, in one query for the whole batch."""
    out: dict[str, dict[str, int]] = {e: {} for e in email_ids}
    for r in await conn.fetch(
            "SELECT me.email_id, m.name, me.uid FROM mailbox_emails me"
            " JOIN mailboxes m ON m.account_id = me.account_id AND m.id = me.mailbox_id"
            " WHERE me.account_id = $1 AND me.email_id = ANY($2::text[]) ORDER BY m.position",
            account_id, email_ids):
        out[r["email_id"]][r["name"]] = r["uid"]
    return out


async def _records(conn: asyncpg.Connection, account_id: str, rows: list[Any]
                   ) -> list[EmailRecord]:
    labels = await _labels(conn, account_id, [r["id"] for r in rows]) if rows else {}
    return [emailrows.email_record(r, list(r["keywords"]), labels[r["id"]]) for r in rows]


class PostgresEmailQuery:
    """One query's reads (store.ports.EmailQuery) in one read-only snapshot; given ids are
    one more condition (`= ANY`), ordered and paged like any other."""

    orders_among = True

    def __init__(self, conn: asyncpg.Connection, body: str, args: list[Any]) -> None:
        self.conn, self.body, self.args = conn, body, args

    @classmethod
    async def open(cls, conn: asyncpg.Connection, account_id: str, node: Node,
                   among: Sequence[str] | None) -> PostgresEmailQuery:
        """Header conditions first (filters.header_nodes: SQL narrows to the header blocks
        that name the field, Python decodes and compares them), then the WHERE."""
        headers = {h: await _header_ids(conn, account_id, h, among)
                   for h in dict.fromkeys(filters.header_nodes(node))}
        args: list[Any] = [account_id]
        compiler = filters.Compiler(args, headers)
        where = compiler.where(node)
        if among is not None:
            where += f" AND e.id = ANY({compiler.param(list(among), '::text[]')})"
        return cls(conn, f"FROM emails e WHERE e.account_id = $1 AND {where}", args)

    def _keyed(self, sort: Sequence[SortKey]) -> tuple[sqlsort.SortColumns, list[Any]]:
        args = list(self.args)
        return sqlsort.columns(sort, "postgres", filters.Compiler(args).param), args

    async def page(self, sort: Sequence[SortKey], *, then: Order, collapse: bool,
                   limit: int | None, position: int) -> list[str]:
        cols, args = self._keyed(sort)
        sql = sqlsort.select(sort, cols, self.body, collapse, "postgres", then)
        return [r[0] for r in await self.conn.fetch(
            f"{sql} LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}", *args, limit, position)]

    async def count(self, *, threads: bool) -> int:
        return int(await self.conn.fetchval(
            f"SELECT count({'DISTINCT e.thread_id' if threads else '*'}) {self.body}",
            *self.args))

    async def rows(self, sort: Sequence[SortKey]) -> list[KeyRow]:
        cols, args = self._keyed(sort)
        return [tuple(r) for r in await self.conn.fetch(sqlsort.rows_select(cols, self.body),
                                                        *args)]

    async def threads(self, take: Callable[[str, str], bool]) -> None:
        async for r in self.conn.cursor(f"SELECT e.id, e.thread_id {self.body}"
                                        " ORDER BY e.received_at DESC, e.id DESC",
                                        *self.args, prefetch=500):
            if not take(r[0], r[1]):
                return


async def _header_ids(conn: asyncpg.Connection, account_id: str, header: Any,
                      among: Sequence[str] | None) -> list[str]:
    """The emails whose stored header block matches a Header condition."""
    name = header.name.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    sql = ("SELECT id, head FROM emails WHERE account_id = $1"
           " AND lower(encode(head, 'escape')) LIKE $2")
    args: list[Any] = [account_id, f"%{name}%"]
    if among is not None:
        sql += " AND id = ANY($3::text[])"
        args.append(list(among))
    return [r["id"] for r in await conn.fetch(sql, *args)
            if filters.header_matches(r["head"], header.name, header.value)]


class PostgresMailStore(ModelWrites, MailReads, StoreReads):
    """The MailStore port over one PostgreSQL database, through a pool of connections."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        """Nothing is opened yet: the pool belongs to the event loop that first uses it (the
        composition root builds adapters before the loop that serves with them runs)."""
        self.dsn = dsn
        self._pool = LazyPool(dsn, schema.migrate, min_size=min_size, max_size=max_size)

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 10
                      ) -> PostgresMailStore:
        """Open a pool on `dsn` now and bring the schema up to date."""
        store = cls(dsn, min_size=min_size, max_size=max_size)
        await store._ready()
        return store

    async def _ready(self) -> asyncpg.Pool:
        return await self._pool.get()

    async def pool(self) -> asyncpg.Pool:
        """The open pool (opened and migrated on first use): for tools that work on the
        database's rows directly, such as moving an account between shards (move.py)."""
        return await self._ready()

    def close(self) -> None:
        """Synchronous, as the composition root closes every adapter."""
        self._pool.close()

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        return list(await (await self._ready()).fetch(sql, *args))

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        return await (await self._ready()).fetchrow(sql, *args)

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        return await (await self._ready()).fetchval(sql, *args)

    async def _execute(self, sql: str, *args: Any) -> str:
        return str(await (await self._ready()).execute(sql, *args))

    # ------------------------------------------------------------------ plumbing

    async def _write(self, fn: Callable[[Tx], Awaitable[R]]) -> R:
        """Run `fn` in one transaction with its change log; retried when PostgreSQL gave up
        on it as a deadlock or serialization failure (nothing of it was committed)."""
        for attempt in range(_RETRIES):
            try:
                async with (await self._ready()).acquire() as conn, conn.transaction():
                    tx = Tx(conn)
                    result = await fn(tx)
                    await tx.flush()
                    return result
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def write_mail(self, account_id: str,
                         step: Callable[[StoreTx], Coroutine[Any, Any, R]]) -> R:
        return await self._write(lambda tx: step(PostgresMailTx(tx, account_id)))

    async def write_accounts(self, step: Callable[[AccountTx], Coroutine[Any, Any, R]]) -> R:
        return await self._write(lambda tx: step(PostgresAccountTx(tx)))

    async def write_domains(self, step: Callable[[DomainTx], Coroutine[Any, Any, R]]) -> R:
        return await self._write(lambda tx: step(PostgresDomainTx(tx)))

    async def read_mail(self, account_id: str,
                        step: Callable[[MailReader], Coroutine[Any, Any, R]]) -> R:
        async with self._snapshot() as conn:
            return await step(PostgresMailReader(conn, account_id))

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection in one read-only snapshot, for reads of more than one statement."""
        async with (await self._ready()).acquire() as conn, conn.transaction(
                isolation="repeatable_read", readonly=True):
            yield conn

    # ------------------------------------------------------------------ domains

    async def list_domains(self) -> list[str]:
        return [r[0] for r in await self._fetch("SELECT name FROM domains ORDER BY name")]

    async def dkim_rows(self, domain: str) -> list[DKIMKeyRecord]:
        return [DKIMKeyRecord(r["domain"], r["selector"], r["algorithm"], r["private_key"],
                              r["created_at"], r["active"])
                for r in await self._fetch("SELECT * FROM dkim_keys WHERE domain = $1", domain)]

    # ------------------------------------------------------------------ accounts

    async def account_rows(self, key: AccountKey | None = None, value: str = ""
                           ) -> list[Account]:
        if key is None:
            return [_account(r) for r in await self._fetch("SELECT * FROM accounts")]
        return [_account(r) for r in await self._fetch(
            f"SELECT * FROM accounts WHERE {key} = $1", value)]

    # ------------------------------------------------------------------ mailboxes

    async def list_mailboxes(self, account_id: str) -> list[Mailbox]:
        return [_mailbox(r) for r in await self._fetch(
            "SELECT * FROM mailboxes WHERE account_id = $1 ORDER BY position", account_id)]

    async def mailbox_rows(self, account_id: str, key: MailboxKey, value: str
                           ) -> list[Mailbox]:
        """By UNIQUE (account_id, name), or the partial index mailboxes_role."""
        return [_mailbox(r) for r in await self._fetch(
            f"SELECT * FROM mailboxes WHERE account_id = $1 AND {key} = $2", account_id,
            value)]

    async def thread_counts(self, account_id: str) -> dict[str, tuple[int, int]]:
        args: list[Any] = [account_id]
        unread = filters.Compiler(args).where(keywords.UNREAD)
        return {r[0]: (r[1], r[2]) for r in await self._fetch(
            "SELECT me.mailbox_id, count(DISTINCT e.thread_id),"
            f" count(DISTINCT e.thread_id) FILTER (WHERE {unread})"
            " FROM mailbox_emails me JOIN emails e"
            " ON e.account_id = me.account_id AND e.id = me.email_id"
            " WHERE me.account_id = $1 GROUP BY me.mailbox_id", *args)}

    # ------------------------------------------------------------------ delivery

    async def delivery_exists(self, account_id: str, delivery_key: str) -> bool:
        return await self._fetchval(
            "SELECT 1 FROM emails WHERE account_id = $1 AND delivery_key = $2",
            account_id, delivery_key) is not None

    # ------------------------------------------------------------------ reading

    async def get_emails(self, account_id: str, email_ids: Sequence[str], *,
                         brief: bool = False) -> list[EmailRecord]:
        if not email_ids:
            return []
        async with self._snapshot() as conn:
            rows = await conn.fetch(
                f"SELECT {emailrows.BRIEF_COLUMNS if brief else emailrows.FULL_COLUMNS} FROM emails"
                " WHERE account_id = $1 AND id = ANY($2::text[])", account_id, list(email_ids))
            return await _records(conn, account_id, rows)

    async def get_heads(self, account_id: str, email_ids: Sequence[str]) -> list[EmailHead]:
        return [EmailHead(*r) for r in await self._fetch(
            "SELECT id, thread_id, size, received_at, modseq, head FROM emails"
            " WHERE account_id = $1 AND id = ANY($2::text[])", account_id, list(email_ids))]

    async def read_query(self, account_id: str, node: Node, among: Sequence[str] | None,
                         step: Callable[[EmailQuery], Coroutine[Any, Any, R]]) -> R:
        async with self._snapshot() as conn:
            return await step(await PostgresEmailQuery.open(conn, account_id, node, among))

    async def thread_emails(self, account_id: str,
                            thread_ids: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in await self._fetch(
                "SELECT thread_id, id FROM emails WHERE account_id = $1"
                " AND thread_id = ANY($2::text[]) ORDER BY received_at, id",
                account_id, list(thread_ids)):
            out.setdefault(r["thread_id"], []).append(r["id"])
        return out

    async def email_ids(self, account_id: str, *, after: str = "",
                        limit: int = 1000) -> list[str]:
        return [r[0] for r in await self._fetch(
            "SELECT id FROM emails WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            account_id, after, limit)]

    async def changes_since(self, account_id: str, modseq: int) -> list[Change]:
        return [Change(modseq=r["modseq"], kind=r["kind"], object_id=r["object_id"], op=r["op"])
                for r in await self._fetch(
                    "SELECT modseq, kind, object_id, op FROM changes WHERE account_id = $1"
                    " AND modseq > $2 ORDER BY modseq, kind, object_id", account_id, modseq)]

    # ------------------------------------------------------------------ objects

    async def object_rows(self, account_id: str, kind: str, ids: Sequence[str] | None
                          ) -> list[StoredObject]:
        sql = "SELECT id, data, modseq FROM objects WHERE account_id = $1 AND kind = $2"
        more = [] if ids is None else [list(ids)]
        return [StoredObject(kind, r["id"], orjson.loads(r["data"]), r["modseq"])
                for r in await self._fetch(sql + (" AND id = ANY($3::text[])" if more else ""),
                                           account_id, kind, *more)]

    # ------------------------------------------------------------------ maintenance

    async def blob_refs(self, account_id: str,
                        email_ids: Sequence[str]) -> dict[str, list[str]]:
        """ports.Maintenance (maintenance.py)."""
        return await maintenance.blob_refs(await self._ready(), account_id, email_ids)

    async def set_blob_refs(self, account_id: str, email_id: str, refs: Sequence[str]) -> None:
        await maintenance.set_blob_refs(await self._ready(), account_id, email_id, refs)

