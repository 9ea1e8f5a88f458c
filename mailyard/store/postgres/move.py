"""Moving one account between shards while it is in use (`mailyard account move`).

1. The directory marks the account "moving" (an advisory lock on the directory database keeps
   a second mover of the same account out; a "moving" entry nobody holds is a crashed move,
   whose half copy on the target is removed first).
2. Bulk copy: every row of the account, table by table in foreign-key order, read from one
   REPEATABLE READ snapshot of the source and written to the target with COPY in batches.
   The snapshot's account modseq is the watermark W. Mail keeps arriving meanwhile.
3. Final phase, short: the source's accounts row is locked FOR UPDATE. Every writer takes that
   row's lock first (the modseq, writes.py), so from here on the account's writers wait. What
   changed since the snapshot is carried over in one target transaction: rows whose modseq is
   above W, the rows that have no modseq of their own (the account row, mailboxes' counters,
   thread keys) whole, and deletions found by comparing keys. Then the directory is switched
   (with a NOTIFY that empties every store's cache), and the source's rows are deleted in the
   transaction that holds the lock. The waiting writers then find no account row, fail with
   NotFound, and the sharded store routes them again, to the new shard.

UIDs, UIDVALIDITY, modseqs and the change log are copied as they are, so a client's saved state
(QRESYNC, JMAP state strings) stays valid across the move.

A crash before the directory switch leaves the account where it was (the next run starts over);
a crash after it leaves rows on the source that the next run of the same move deletes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from mailyard.store.ports.errors import Conflict, NotFound
from mailyard.store.postgres.sharded import ShardedMailStore, notify

BATCH = 1000
"""Rows per COPY of the bulk phase."""
GRACE = 0.2
"""Seconds between the directory switch and the source's release: time for the NOTIFY to
reach every store, so that readers stop asking the source before its rows are gone."""

TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("accounts", ("id",)),
    ("mailboxes", ("account_id", "id")),
    ("emails", ("account_id", "id")),
    ("mailbox_emails", ("account_id", "mailbox_id", "uid")),
    ("vanished", ("account_id", "mailbox_id", "uid")),
    ("thread_keys", ("account_id", "msgid")),
    ("changes", ("account_id", "modseq", "kind", "object_id")),
    ("objects", ("account_id", "kind", "id")),
)
"""Every table holding an account's rows, parents before children, with its primary key."""
_WHOLE = frozenset({"accounts", "mailboxes", "thread_keys"})
"""Tables some of whose changes leave no modseq on the row: carried over whole."""
_INSERT_ONLY = frozenset({"changes"})
"""Tables nothing deletes from while the account exists: no key comparison needed."""


@dataclass
class MoveReport:
    account_id: str
    source: str
    target: str
    copied: int = 0
    """Rows of the bulk copy."""
    caught_up: int = 0
    """Rows written or deleted in the final phase."""
    final_seconds: float = 0.0
    """How long the account's writers were held."""
    seconds: float = 0.0
    cleaned: int = 0
    """Left-over rows of an earlier, interrupted move that were deleted."""


def _account_column(table: str) -> str:
    return "id" if table == "accounts" else "account_id"


async def _columns(conn: asyncpg.Connection, table: str) -> list[str]:
    return [r[0] for r in await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema ="
        " current_schema() AND table_name = $1 ORDER BY ordinal_position", table)]


async def delete_rows(conn: asyncpg.Connection, account_id: str) -> int:
    """Every row of the account in this database (children first); how many went."""
    count = 0
    for table, _ in reversed(TABLES):
        status = await conn.execute(
            f"DELETE FROM {table} WHERE {_account_column(table)} = $1", account_id)
        count += int(status.split()[-1])
    return count


async def move_account(store: ShardedMailStore, address: str, target: str, *,
                       batch: int = BATCH, grace: float = GRACE) -> MoveReport:
    """Move the account of `address` to shard `target`, online. Returns what it did."""
    if target not in store.shards:
        raise NotFound(f"no shard {target} (shards: {', '.join(store.shards)})")
    started = time.monotonic()
    directory = await store.directory_pool()
    entry = await store.lookup_address(address, fresh=True)
    if entry is None or entry.state == "creating":
        raise NotFound(f"no account {address}")
    account_id = entry.account_id
    async with directory.acquire() as guard:
        if not await guard.fetchval("SELECT pg_try_advisory_lock(hashtext($1))",
                                    "move " + account_id):
            raise Conflict(f"{address} is being moved by another process")
        try:
            report = MoveReport(account_id, entry.shard, target)
            if entry.shard == target:
                report.cleaned = await _clean_others(store, account_id, target)
            else:
                await _move(store, account_id, entry.shard, target, batch, grace, report)
            report.seconds = time.monotonic() - started
            return report
        finally:
            await guard.execute("SELECT pg_advisory_unlock(hashtext($1))", "move " + account_id)


async def _clean_others(store: ShardedMailStore, account_id: str, home: str) -> int:
    """Rows of the account on shards other than its own: traces of an interrupted move."""
    count = 0
    for name, shard in store.shards.items():
        if name != home:
            async with (await shard.pool()).acquire() as conn, conn.transaction():
                count += await delete_rows(conn, account_id)
    return count


async def _move(store: ShardedMailStore, account_id: str, source: str, target: str,
                batch: int, grace: float, report: MoveReport) -> None:
    directory = await store.directory_pool()
    await directory.execute(
        "UPDATE account_directory SET state = 'moving', target = $2, changed_at = $3"
        " WHERE account_id = $1", account_id, target, time.time())
    src_pool = await store.shards[source].pool()
    dst_pool = await store.shards[target].pool()
    try:
        report.cleaned = await _clean_others(store, account_id, source)
        watermark = await _bulk_copy(src_pool, dst_pool, account_id, batch, report)
        await _final_phase(store, src_pool, dst_pool, account_id, source, target, watermark,
                           grace, report)
    except BaseException:
        # Not switched: the account stays where it was and the half copy goes. Switched (only
        # the source's clean-up failed): the next run of the same move deletes the source's.
        await directory.execute(
            "UPDATE account_directory SET state = 'active', target = NULL, changed_at = $2"
            " WHERE account_id = $1 AND state = 'moving'", account_id, time.time())
        now = await store.lookup(account_id, fresh=True)
        if now is None or now.shard != target:
            async with dst_pool.acquire() as conn, conn.transaction():
                await delete_rows(conn, account_id)
        raise


async def _bulk_copy(src_pool: asyncpg.Pool, dst_pool: asyncpg.Pool, account_id: str,
                     batch: int, report: MoveReport) -> int:
    """Copy the account as one snapshot shows it; returns that snapshot's account modseq."""
    async with src_pool.acquire() as src, src.transaction(isolation="repeatable_read",
                                                          readonly=True):
        watermark = await src.fetchval("SELECT modseq FROM accounts WHERE id = $1", account_id)
        if watermark is None:
            raise NotFound(f"no account {account_id}")
        for table, _ in TABLES:
            columns = await _columns(src, table)
            rows: list[tuple[Any, ...]] = []
            async for record in src.cursor(
                    f"SELECT {', '.join(columns)} FROM {table}"
                    f" WHERE {_account_column(table)} = $1", account_id, prefetch=batch):
                rows.append(tuple(record))
                if len(rows) >= batch:
                    await dst_pool.copy_records_to_table(table, records=rows, columns=columns)
                    report.copied += len(rows)
                    rows = []
            if rows:
                await dst_pool.copy_records_to_table(table, records=rows, columns=columns)
                report.copied += len(rows)
    return int(watermark)


async def _final_phase(store: ShardedMailStore, src_pool: asyncpg.Pool,
                       dst_pool: asyncpg.Pool, account_id: str, source: str, target: str,
                       watermark: int, grace: float, report: MoveReport) -> None:
    async with src_pool.acquire() as src, src.transaction():
        if await src.fetchval("SELECT modseq FROM accounts WHERE id = $1 FOR UPDATE",
                              account_id) is None:
            raise NotFound(f"account {account_id} was deleted while it moved")
        held = time.monotonic()
        async with dst_pool.acquire() as dst, dst.transaction():
            report.caught_up = await _catch_up(src, dst, account_id, watermark)
            await _advance_positions(dst)
        async with (await store.directory_pool()).acquire() as conn, conn.transaction():
            switched = await conn.execute(
                "UPDATE account_directory SET shard = $2, state = 'active', target = NULL,"
                " changed_at = $3 WHERE account_id = $1 AND shard = $4 AND state = 'moving'",
                account_id, target, time.time(), source)
            if switched != "UPDATE 1":
                raise Conflict(f"the directory entry of {account_id} changed during the move")
            await notify(conn, account_id)
        store.forget(account_id)
        await asyncio.sleep(grace)
        await delete_rows(src, account_id)
    report.final_seconds = time.monotonic() - held


async def _catch_up(src: asyncpg.Connection, dst: asyncpg.Connection, account_id: str,
                    watermark: int) -> int:
    """Make the target's rows of the account equal to the source's (which is locked)."""
    count = 0
    # Deletions first, children before parents: keys the target has and the source lost.
    for table, keys in reversed(TABLES):
        if table in _INSERT_ONLY:
            continue
        column = _account_column(table)
        gone = {tuple(r) for r in await dst.fetch(
            f"SELECT {', '.join(keys)} FROM {table} WHERE {column} = $1", account_id)}
        gone -= {tuple(r) for r in await src.fetch(
            f"SELECT {', '.join(keys)} FROM {table} WHERE {column} = $1", account_id)}
        if gone:
            await dst.executemany(
                f"DELETE FROM {table} WHERE "
                + " AND ".join(f"{k} = ${n}" for n, k in enumerate(keys, 1)), sorted(gone))
            count += len(gone)
    # Names and roles are unique per account: park the target's before renamed rows land.
    await dst.execute(
        "UPDATE mailboxes SET name = E'\\x01moving ' || id, role = NULL WHERE account_id = $1",
        account_id)
    for table, keys in TABLES:
        columns = await _columns(src, table)
        sql = f"SELECT {', '.join(columns)} FROM {table} WHERE {_account_column(table)} = $1"
        args: list[Any] = [account_id]
        if table not in _WHOLE:
            sql += " AND modseq > $2"
            args.append(watermark)
        rows = [tuple(r) for r in await src.fetch(sql, *args)]
        if table in _WHOLE and table != "mailboxes":  # (mailboxes were parked: all go)
            same = {tuple(r) for r in await dst.fetch(sql, *args)}
            rows = [r for r in rows if r not in same]
        count += await _upsert(dst, table, columns, keys, rows)
    return count


async def _upsert(dst: asyncpg.Connection, table: str, columns: list[str],
                  keys: Sequence[str], rows: list[tuple[Any, ...]]) -> int:
    if not rows:
        return 0
    staging = f"move_{table}"
    await dst.execute(f"CREATE TEMP TABLE {staging} (LIKE {table}) ON COMMIT DROP")
    await dst.copy_records_to_table(staging, records=rows, columns=columns)
    names = ", ".join(columns)
    # position is an identity column: kept as the source numbered it, never updated.
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns
                     if c not in keys and c != "position")
    overriding = " OVERRIDING SYSTEM VALUE" if "position" in columns else ""
    await dst.execute(
        f"INSERT INTO {table} ({names}){overriding} SELECT {names} FROM {staging}"
        f" ON CONFLICT ({', '.join(keys)}) DO "
        + (f"UPDATE SET {sets}" if sets else "NOTHING"))
    return len(rows)


async def _advance_positions(dst: asyncpg.Connection) -> None:
    """Mailboxes made on the target after the move must sort after the copied ones."""
    sequence = await dst.fetchval("SELECT pg_get_serial_sequence('mailboxes', 'position')")
    await dst.execute(
        f"SELECT setval($1, greatest((SELECT last_value FROM {sequence}),"
        " (SELECT coalesce(max(position), 1) FROM mailboxes)))", sequence)
