"""MailStore over several PostgreSQL databases (shards), accounts spread by a directory.

Every account lives whole in one shard (every table is keyed by account first, schema.py), so
each account-scoped call is the single-database store's call on that shard. Which shard is
written in the directory table, in the database of the first DSN (shard "0"), which also holds
what is not per account: domains and DKIM keys. The directory is read once per account and kept
in memory; `mailyard account move` (move.py) changes it and sends a NOTIFY on `CHANNEL`, on
which every store listens and forgets that account.

A new account goes to the shard with the fewest accounts. Shards are named by their position in
`[store] metadata` ("0", "1", ...): the list may grow at its end, never be reordered, and each
database records its name on first use so that a reordered list is refused at start.

A read routed by a stale cache entry (the NOTIFY not yet arrived) in the moment after a move
would find the account empty on its old shard; the mover waits a moment between the switch
and the removal of the old rows for the notifications to land (move.GRACE).

A write that waited on the account's row lock while the account moved finds the row gone
(the mover deletes the source's rows as it releases the lock) and fails with NotFound; the call
is then routed again from the directory as it is now, and retried on the new shard.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from mailyard.core.emailsort import SortKey
from mailyard.core.ids import new_id
from mailyard.core.query import Node
from mailyard.model import accounts, reads
from mailyard.model.views import MailReads
from mailyard.model.writes import DomainWrites, MailWrites
from mailyard.store.ports.errors import Conflict, NotFound
from mailyard.store.ports.mailtx import DomainTx, MailReader, StoreTx
from mailyard.store.ports.records import (
    Account,
    Change,
    DKIMKeyRecord,
    EmailHead,
    EmailRecord,
    Mailbox,
    StoredObject,
)
from mailyard.store.ports.search import Hits, Order
from mailyard.store.postgres import schema
from mailyard.store.postgres.mailstore import PostgresMailStore

R = TypeVar("R")

CHANNEL = "mailyard_directory"
"""NOTIFY channel: the payload is the id of an account whose directory entry changed."""
STALE_CREATE = 60.0
"""Seconds after which a "creating" entry whose account never appeared is taken for the trace
of a crashed `create_account`, and may be replaced."""
_REROUTES = 3
RELISTEN = 5.0
"""Seconds between attempts to reopen a lost LISTEN connection."""

DIRECTORY_MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE account_directory (
        account_id {schema.T} PRIMARY KEY,
        address {schema.T} NOT NULL UNIQUE,
        shard {schema.T} NOT NULL,
        state {schema.T} NOT NULL DEFAULT 'active'
            CHECK (state IN ('creating', 'active', 'moving')),
        target {schema.T},
        changed_at double precision NOT NULL
    );
    CREATE INDEX account_directory_shard ON account_directory (shard);
    CREATE TABLE directory_backfill (done boolean PRIMARY KEY);
    """,
)
SHARD_MIGRATIONS: tuple[str, ...] = (
    f"CREATE TABLE shard_identity (name {schema.T} PRIMARY KEY);",
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One account's line of the directory."""

    account_id: str
    address: str
    shard: str
    state: str
    target: str | None


def _entry(row: Any) -> Entry:
    return Entry(row["account_id"], row["address"], row["shard"], row["state"], row["target"])


class ShardedMailStore(MailWrites, DomainWrites, MailReads):
    """The MailStore port over several PostgresMailStores, one per shard."""

    def __init__(self, dsns: Sequence[str], *, min_size: int = 1, max_size: int = 10) -> None:
        if not dsns:
            raise ValueError("a sharded store needs at least one DSN")
        self.shards: dict[str, PostgresMailStore] = {
            str(n): PostgresMailStore(dsn, min_size=min_size, max_size=max_size)
            for n, dsn in enumerate(dsns)}
        self.home = self.shards["0"]
        """Shard "0": the directory, domains and DKIM keys."""
        self._by_id: dict[str, Entry] = {}
        self._by_address: dict[str, str] = {}
        self._listener: asyncpg.Connection | None = None
        self._opening: asyncio.Lock | None = None
        self._ready_done = False
        self._listen_tried = 0.0
        self.reroutes = 0
        """Calls that found their account moved away under them and were sent again."""

    @classmethod
    async def connect(cls, dsns: Sequence[str], *, min_size: int = 1, max_size: int = 10
                      ) -> ShardedMailStore:
        store = cls(dsns, min_size=min_size, max_size=max_size)
        await store._ready()
        return store

    async def _ready(self) -> None:
        """Open every shard (migrating it), check its name, open the directory and listen."""
        if self._ready_done:
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._ready_done:
                return
            for name, shard in self.shards.items():
                async with (await shard.pool()).acquire() as conn:
                    await schema.migrate(conn, "shard", SHARD_MIGRATIONS)
                    await conn.execute("INSERT INTO shard_identity VALUES ($1)"
                                       " ON CONFLICT DO NOTHING", name)
                    names = [r[0] for r in await conn.fetch("SELECT name FROM shard_identity")]
                if names != [name]:
                    raise RuntimeError(
                        f"[store] metadata: the database at position {name} is shard"
                        f" {', '.join(names)}; the list of shards must keep its order")
            async with (await self.home.pool()).acquire() as conn:
                await schema.migrate(conn, "directory", DIRECTORY_MIGRATIONS)
            await self._backfill()
            await self._listen()
            self._ready_done = True

    async def _listen(self) -> None:
        """LISTEN for directory changes. While this connection is down the cache is not
        trusted: every lookup reads the directory, and a new connection is tried."""
        self._listen_tried = time.monotonic()
        try:
            listener = await asyncpg.connect(self.home.dsn)
            await listener.add_listener(CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError):
            return
        listener.add_termination_listener(self._listener_lost)
        self._listener = listener

    def _listener_lost(self, conn: Any) -> None:
        self._listener = None
        self._by_id.clear()
        self._by_address.clear()

    async def _backfill(self) -> None:
        """Once per installation: accounts made before the directory existed (one database
        grown into shards) are entered as living where they are."""
        home = await self.home.pool()
        async with home.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE directory_backfill")
            if await conn.fetchval("SELECT done FROM directory_backfill"):
                return
            for name, shard in self.shards.items():
                rows = await (await shard.pool()).fetch("SELECT id, address FROM accounts")
                await conn.executemany(
                    "INSERT INTO account_directory (account_id, address, shard, changed_at)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    [(r["id"], r["address"], name, time.time()) for r in rows])
            await conn.execute("INSERT INTO directory_backfill VALUES (true)")

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self.forget(payload)

    def forget(self, account_id: str) -> None:
        """Drop one account's cached directory entry (it moved, or was deleted)."""
        entry = self._by_id.pop(account_id, None)
        if entry is not None:
            self._by_address.pop(entry.address, None)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.terminate()
            self._listener = None
        for shard in self.shards.values():
            shard.close()
        self._ready_done = False
        self._by_id.clear()
        self._by_address.clear()

    # ------------------------------------------------------------------ the directory

    async def directory_pool(self) -> asyncpg.Pool:
        await self._ready()
        if self._listener is None and time.monotonic() - self._listen_tried > RELISTEN:
            await self._listen()
        return await self.home.pool()

    async def lookup(self, account_id: str, *, fresh: bool = False) -> Entry | None:
        """The account's directory entry (cached unless `fresh`); None if it has none."""
        if not fresh and self._listener is not None and account_id in self._by_id:
            return self._by_id[account_id]
        row = await (await self.directory_pool()).fetchrow(
            "SELECT * FROM account_directory WHERE account_id = $1", account_id)
        return self._remember(row)

    async def lookup_address(self, address: str, *, fresh: bool = False) -> Entry | None:
        address = accounts.stored_address(address)
        if not fresh and self._listener is not None and address in self._by_address:
            return self._by_id[self._by_address[address]]
        row = await (await self.directory_pool()).fetchrow(
            "SELECT * FROM account_directory WHERE address = $1", address)
        return self._remember(row)

    def _remember(self, row: Any) -> Entry | None:
        if row is None:
            return None
        entry = _entry(row)
        self.forget(entry.account_id)
        if entry.state != "creating" and self._listener is not None:
            self._by_id[entry.account_id] = entry
            self._by_address[entry.address] = entry.account_id
        return entry

    async def _on(self, account_id: str, call: Callable[[PostgresMailStore], Awaitable[R]]
                  ) -> R:
        """Run `call` on the account's shard; re-routed when it failed because the account
        had moved away under it. An account the directory does not know goes to shard "0",
        which answers for it as a single store answers for an unknown account."""
        entry = await self.lookup(account_id)
        for _ in range(_REROUTES):
            shard = entry.shard if entry else "0"
            try:
                return await call(self.shards[shard])
            except NotFound:
                entry = await self.lookup(account_id, fresh=True)
                if (entry.shard if entry else "0") == shard:
                    raise
                self.reroutes += 1
        return await call(self.shards[entry.shard if entry else "0"])

    async def _on_address(self, address: str,
                          call: Callable[[PostgresMailStore], Awaitable[R]]) -> R:
        entry = await self.lookup_address(address)
        if entry is None:
            raise NotFound(f"no account {address}")
        return await self._on(entry.account_id, call)

    # ------------------------------------------------------------------ transactions

    async def write_mail(self, account_id: str,
                         step: Callable[[StoreTx], Coroutine[Any, Any, R]]) -> R:
        """On the account's shard, routed again when the account moved away meanwhile."""
        return await self._on(account_id, lambda s: s.write_mail(account_id, step))

    async def read_mail(self, account_id: str,
                        step: Callable[[MailReader], Coroutine[Any, Any, R]]) -> R:
        return await self._on(account_id, lambda s: s.read_mail(account_id, step))

    async def write_domains(self, step: Callable[[DomainTx], Coroutine[Any, Any, R]]) -> R:
        """On shard "0", which holds what is not per account."""
        await self._ready()
        return await self.home.write_domains(step)

    # ------------------------------------------------------------------ global: shard 0

    async def list_domains(self) -> list[str]:
        await self._ready()
        return await self.home.list_domains()

    async def dkim_keys(self, domain: str) -> list[DKIMKeyRecord]:
        await self._ready()
        return await self.home.dkim_keys(domain)

    # ------------------------------------------------------------------ accounts

    async def least_loaded(self) -> str:
        """The shard with the fewest accounts (the first of equals)."""
        counts = {name: 0 for name in self.shards}
        for r in await (await self.directory_pool()).fetch(
                "SELECT shard, count(*) FROM account_directory GROUP BY shard"):
            if r[0] in counts:
                counts[r[0]] = r[1]
        return min(counts, key=lambda name: (counts[name], int(name)))

    async def create_account(self, address: str, password_hash: str, quota: int) -> Account:
        """Claim the address in the directory first (its UNIQUE is what makes an address one
        account across shards), create the account on the chosen shard, then mark it active."""
        address = accounts.stored_address(address)
        pool = await self.directory_pool()
        account_id = new_id("a")
        shard = await self.least_loaded()
        for _ in range(2):
            try:
                await pool.execute(
                    "INSERT INTO account_directory (account_id, address, shard, state,"
                    " changed_at) VALUES ($1, $2, $3, 'creating', $4)",
                    account_id, address, shard, time.time())
                break
            except asyncpg.UniqueViolationError:
                # A crashed creation leaves a "creating" claim: taken back once it is old.
                if await pool.execute(
                        "DELETE FROM account_directory WHERE address = $1"
                        " AND state = 'creating' AND changed_at < $2",
                        address, time.time() - STALE_CREATE) != "DELETE 1":
                    raise Conflict(f"account {address} exists") from None
        else:
            raise Conflict(f"account {address} exists")
        try:
            account = await self.shards[shard].create_account(
                address, password_hash, quota, account_id=account_id)
        except BaseException:
            await pool.execute("DELETE FROM account_directory WHERE account_id = $1",
                               account_id)
            raise
        await pool.execute("UPDATE account_directory SET state = 'active', changed_at = $2"
                           " WHERE account_id = $1", account_id, time.time())
        return account

    async def get_account(self, address: str) -> Account:
        return await self._on_address(address, lambda s: s.get_account(address))

    async def get_account_by_id(self, account_id: str) -> Account:
        await self._ready()
        return await self._on(account_id, lambda s: s.get_account_by_id(account_id))

    async def list_accounts(self) -> list[Account]:
        """Every shard's accounts that the directory places there (a copy being moved in is
        not yet the account, a left-over of a crashed move no longer is)."""
        placed = {(r[0], r[1]) for r in await (await self.directory_pool()).fetch(
            "SELECT account_id, shard FROM account_directory WHERE state <> 'creating'")}
        found: list[Account] = []
        for name, shard in self.shards.items():
            found += [a for a in await shard.list_accounts() if (a.id, name) in placed]
        return reads.by_address(found)

    async def delete_account(self, address: str) -> None:
        entry = await self.lookup_address(address, fresh=True)
        if entry is None:
            raise NotFound(f"no account {address}")
        await self._on(entry.account_id, lambda s: s.delete_account(address))
        await (await self.directory_pool()).execute(
            "DELETE FROM account_directory WHERE account_id = $1", entry.account_id)
        self.forget(entry.account_id)

    async def set_password(self, address: str, password_hash: str) -> None:
        await self._on_address(address, lambda s: s.set_password(address, password_hash))

    async def set_quota(self, address: str, quota: int) -> None:
        await self._on_address(address, lambda s: s.set_quota(address, quota))

    # ------------------------------------------------------------------ mailboxes

    async def list_mailboxes(self, account_id: str) -> list[Mailbox]:
        return await self._on(account_id, lambda s: s.list_mailboxes(account_id))

    async def find_mailbox(self, account_id: str, name: str) -> Mailbox | None:
        return await self._on(account_id, lambda s: s.find_mailbox(account_id, name))

    async def thread_counts(self, account_id: str) -> dict[str, tuple[int, int]]:
        return await self._on(account_id, lambda s: s.thread_counts(account_id))

    # ------------------------------------------------------------------ delivery and reading

    async def has_delivery(self, account_id: str, delivery_key: str) -> bool:
        return await self._on(account_id, lambda s: s.has_delivery(account_id, delivery_key))

    async def list_emails(self, account_id: str, mailbox: str | None = None,
                          limit: int = 100) -> list[EmailRecord]:
        return await self._on(account_id, lambda s: s.list_emails(account_id, mailbox, limit))

    async def get_emails(self, account_id: str, email_ids: Sequence[str], *,
                         brief: bool = False) -> list[EmailRecord]:
        return await self._on(account_id,
                              lambda s: s.get_emails(account_id, email_ids, brief=brief))

    async def get_heads(self, account_id: str, email_ids: Sequence[str]) -> list[EmailHead]:
        return await self._on(account_id, lambda s: s.get_heads(account_id, email_ids))

    async def query_emails(self, account_id: str, node: Node, *,
                           among: Sequence[str] | None = None, order: Order = "newest",
                           limit: int | None = None, position: int = 0,
                           total: bool = False, sort: Sequence[SortKey] = (),
                           collapse_threads: bool = False) -> Hits:
        return await self._on(account_id, lambda s: s.query_emails(
            account_id, node, among=among, order=order, limit=limit, position=position,
            total=total, sort=sort, collapse_threads=collapse_threads))

    async def thread_emails(self, account_id: str,
                            thread_ids: Sequence[str]) -> dict[str, list[str]]:
        return await self._on(account_id, lambda s: s.thread_emails(account_id, thread_ids))

    async def email_ids(self, account_id: str, *, after: str = "",
                        limit: int = 1000) -> list[str]:
        return await self._on(account_id,
                              lambda s: s.email_ids(account_id, after=after, limit=limit))

    async def changes_since(self, account_id: str, modseq: int) -> list[Change]:
        return await self._on(account_id, lambda s: s.changes_since(account_id, modseq))

    # ------------------------------------------------------------------ objects

    async def get_objects(self, account_id: str, kind: str,
                          ids: Sequence[str] | None = None) -> list[StoredObject]:
        return await self._on(account_id, lambda s: s.get_objects(account_id, kind, ids))

    # ------------------------------------------------------------------ maintenance

    async def blob_refs(self, account_id: str,
                        email_ids: Sequence[str]) -> dict[str, list[str]]:
        """ports.Maintenance, on the account's shard."""
        return await self._on(account_id, lambda s: s.blob_refs(account_id, email_ids))

    async def set_blob_refs(self, account_id: str, email_id: str, refs: Sequence[str]) -> None:
        await self._on(account_id, lambda s: s.set_blob_refs(account_id, email_id, refs))



async def notify(conn: asyncpg.Connection, account_id: str) -> None:
    """Tell every store's cache that this account's entry changed (delivered at commit)."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, account_id)
