"""`mailyard account move` with the search index in the shards (search_shards.py): the
account's documents go with its mail.

The index is derived data that no writer serialises on the account's modseq, so it is moved
around the MailStore's move (move.py) rather than inside it:

1. Before: a bulk copy of the account's documents to the target, read from one snapshot of
   the source. The snapshot is kept, and the id of the target transaction that wrote the
   copies (each row records the transaction that last wrote it: search.py's `written`).
2. The MailStore's move. Index writes keep going to the source meanwhile; once the directory
   has switched, the account's row is gone from the source and every index write is routed to
   the target (search._held), so the source's documents stop changing.
3. After: what changed on the source since the snapshot is carried over: rows whose writer the
   snapshot did not see, unless the target has rewritten the row since; copies whose email was
   deleted meanwhile are deleted. Rows are only carried for emails the target still holds
   (locked while carried, so a concurrent expunge waits). Then the source's rows go.

Between the switch and the end of step 3 (the rows indexed during the move, a fraction of a
second's worth), a search on the new shard may miss the messages delivered during the move.

A crash between the steps leaves documents on the old shard; running the same move again
(`mailyard account move ADDRESS SHARD`, the account now there) gathers them (`gather`), as it
gathers an index built before sharding, when every document was in shard "0".
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from mailyard.store.ports import Conflict
from mailyard.store.postgres.move import BATCH, MoveReport, move_account
from mailyard.store.postgres.search_shards import ShardedSearchIndex
from mailyard.store.postgres.sharded import ShardedMailStore

COLUMNS = ("account_id", "email_id", "received_at", "doc", "subject", "body", "subject_fold",
           "addresses_fold", "body_fold", "text_version")
"""What is copied: every column but `written`, which each database sets for itself."""
SELECT = ("SELECT " + ", ".join("doc::text" if c == "doc" else c for c in COLUMNS)
           + " FROM search_docs WHERE account_id = $1")
"""The account's documents, the tsvector as text (asyncpg has no binary form of it for COPY)."""


@dataclass
class IndexMoveReport:
    copied: int = 0
    """Documents of the bulk copy (or gathered from other shards)."""
    caught_up: int = 0
    """Documents written or deleted after the MailStore's move."""
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class _Before:
    snapshot: str
    """The source snapshot the bulk copy read (pg_snapshot text)."""
    xid: int
    """The target transaction that wrote the copies."""


async def move_with_index(store: ShardedMailStore, index: ShardedSearchIndex, address: str,
                          target: str, **options: Any) -> tuple[MoveReport, IndexMoveReport]:
    """move.move_account, with the account's documents moved too. One mover of an account's
    index at a time (an advisory lock on the directory database); a second one is refused."""
    entry = await store.lookup_address(address, fresh=True)
    if entry is None or target not in store.shards:
        return await move_account(store, address, target, **options), IndexMoveReport()
    started = time.monotonic()
    key = "index move " + entry.account_id
    async with (await store.directory_pool()).acquire() as guard:
        if not await guard.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
            raise Conflict(f"{address} is being moved by another process")
        try:
            report = IndexMoveReport()
            src, dst = (await index.shards[entry.shard]._ready(),
                        await index.shards[target]._ready())
            if entry.shard == target:
                moved = await move_account(store, address, target, **options)
                report.copied = await gather(index, entry.account_id, target)
            else:
                before = await _bulk_copy(src, dst, entry.account_id, report)
                try:
                    moved = await move_account(store, address, target, **options)
                except BaseException:
                    if await index.shard_of(entry.account_id, fresh=True) != target:
                        await dst.execute("DELETE FROM search_docs WHERE account_id = $1",
                                          entry.account_id)
                    raise
                report.caught_up = await _catch_up(src, dst, entry.account_id, before)
            report.seconds = time.monotonic() - started
            return moved, report
        finally:
            await guard.execute("SELECT pg_advisory_unlock(hashtext($1))", key)


async def _batches(conn: asyncpg.Connection, sql: str, *args: Any
                   ) -> AsyncIterator[list[tuple[Any, ...]]]:
    rows: list[tuple[Any, ...]] = []
    async for record in conn.cursor(sql, *args, prefetch=BATCH):
        rows.append(tuple(record))
        if len(rows) >= BATCH:
            yield rows
            rows = []
    if rows:
        yield rows


async def _bulk_copy(src: asyncpg.Pool, dst: asyncpg.Pool, account_id: str,
                     report: IndexMoveReport) -> _Before:
    """Step 1: the target's documents of the account (left-overs of an interrupted move
    first deleted) become those of one snapshot of the source."""
    async with src.acquire() as s, s.transaction(isolation="repeatable_read", readonly=True), \
            dst.acquire() as d, d.transaction():
        snapshot = await s.fetchval("SELECT pg_current_snapshot()::text")
        xid = int(await d.fetchval("SELECT pg_current_xact_id()::text"))
        await d.execute("DELETE FROM search_docs WHERE account_id = $1", account_id)
        async for rows in _batches(s, SELECT, account_id):
            await _stage(d, rows)
            await d.execute(f"INSERT INTO search_docs ({_NAMES}) SELECT {_STAGED}"
                            " FROM move_search_docs")
            report.copied += len(rows)
    return _Before(snapshot, xid)


async def _catch_up(src: asyncpg.Pool, dst: asyncpg.Pool, account_id: str,
                    before: _Before) -> int:
    """Step 3 (the source's documents no longer change): carry over what changed on the
    source since the bulk copy, then delete the source's documents."""
    changed = [tuple(r) for r in await src.fetch(
        SELECT + " AND NOT pg_visible_in_snapshot(written, $2::text::pg_snapshot)",
        account_id, before.snapshot)]
    kept = [r[0] for r in await src.fetch(
        "SELECT email_id FROM search_docs WHERE account_id = $1", account_id)]
    async with dst.acquire() as d, d.transaction():
        status = await d.execute(
            "DELETE FROM search_docs WHERE account_id = $1 AND written = $2::text::xid8"
            " AND NOT email_id = ANY($3::text[])", account_id, str(before.xid), kept)
        count = int(status.split()[-1])
        count += await _carry(d, account_id, changed, replace=str(before.xid))
    await src.execute("DELETE FROM search_docs WHERE account_id = $1", account_id)
    return count


async def _carry(d: asyncpg.Connection, account_id: str, rows: Sequence[tuple[Any, ...]], *,
                 replace: str | None) -> int:
    """Write `rows` on the target for the emails it holds (their rows locked, so an expunge
    waits and its index delete comes after). An existing document is replaced only if the
    transaction `replace` wrote it (the bulk copy), never one indexed on the target since."""
    if not rows:
        return 0
    present = {r[0] for r in await d.fetch(
        "SELECT id FROM emails WHERE account_id = $1 AND id = ANY($2::text[]) FOR KEY SHARE",
        account_id, [r[1] for r in rows])}
    rows = [r for r in rows if r[1] in present]
    if not rows:
        return 0
    await _stage(d, rows)
    if replace is None:
        action = "NOTHING"
    else:
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[2:])
        action = (f"UPDATE SET {sets}, written = pg_current_xact_id()"
                  f" WHERE search_docs.written = '{int(replace)}'::xid8")
    await d.execute(f"INSERT INTO search_docs ({_NAMES}) SELECT {_STAGED}"
                    f" FROM move_search_docs ON CONFLICT (account_id, email_id) DO {action}")
    return len(rows)


_NAMES = ", ".join(COLUMNS)
_STAGED = ", ".join("doc::tsvector" if c == "doc" else c for c in COLUMNS)


async def _stage(d: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """`rows` (as SELECT reads them) into a temporary table of this transaction, emptied
    first, where the tsvector is text."""
    await d.execute("CREATE TEMP TABLE IF NOT EXISTS move_search_docs ON COMMIT DELETE ROWS AS "
                    + SELECT.replace("doc::text", "doc::text AS doc").replace(
                        "account_id = $1", "false")
                    + " WITH NO DATA; DELETE FROM move_search_docs")
    await d.copy_records_to_table("move_search_docs", records=rows, columns=COLUMNS)


async def gather(index: ShardedSearchIndex, account_id: str, home: str) -> int:
    """Documents of the account on shards other than `home` (its own) are carried there, for
    emails `home` holds and documents it lacks, and deleted where they were."""
    count = 0
    dst = await index.shards[home]._ready()
    for name, shard in index.shards.items():
        if name == home:
            continue
        src = await shard._ready()
        async with src.acquire() as s, s.transaction(isolation="repeatable_read",
                                                     readonly=True):
            async for rows in _batches(s, SELECT, account_id):
                async with dst.acquire() as d, d.transaction():
                    count += await _carry(d, account_id, rows, replace=None)
        await src.execute("DELETE FROM search_docs WHERE account_id = $1", account_id)
    return count
