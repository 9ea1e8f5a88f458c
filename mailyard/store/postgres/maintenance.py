"""The Maintenance port (store/ports.py) on PostgreSQL: the attachment references each email
records (which `mailyard gc` trusts) and a compare-and-set of the counters kept incrementally
(quota usage; each mailbox's total, unseen, bytes and UIDNEXT). What those counters should be
is services/fsck.py's to decide; this only reads and writes rows.

Functions over a connection or a write transaction (writes.Tx): PostgresMailStore exposes
them as methods, and the sharded store routes each call to the account's shard.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson

from mailyard.store.ports import MailboxCounters, NotFound
from mailyard.store.postgres.writes import Tx


async def blob_refs(pool: asyncpg.Pool, account_id: str,
                    email_ids: Sequence[str]) -> dict[str, list[str]]:
    return {r["id"]: list(orjson.loads(r["blob_refs"])) for r in await pool.fetch(
        "SELECT id, blob_refs FROM emails WHERE account_id = $1 AND id = ANY($2::text[])",
        account_id, list(email_ids))}


async def set_blob_refs(pool: asyncpg.Pool, account_id: str, email_id: str,
                        refs: Sequence[str]) -> None:
    status = await pool.execute(
        "UPDATE emails SET blob_refs = $3 WHERE account_id = $1 AND id = $2",
        account_id, email_id, orjson.dumps(list(refs)))
    if status != "UPDATE 1":
        raise NotFound(f"no email {email_id}")


async def set_counters(tx: Tx, account_id: str, modseq: int, used: int,
                       mailboxes: Sequence[MailboxCounters]) -> bool:
    """The account's row lock, taken first as by every writer (writes.py), holds off any
    other write of the account until the commit: the MODSEQ compared stays the MODSEQ."""
    conn = tx.conn
    current = await conn.fetchval(
        "SELECT modseq FROM accounts WHERE id = $1 FOR NO KEY UPDATE", account_id)
    if current is None:
        raise NotFound(f"no account {account_id}")
    if current != modseq:
        return False
    new = modseq + 1 if mailboxes else modseq
    await conn.execute("UPDATE accounts SET used = $2, modseq = $3 WHERE id = $1",
                       account_id, used, new)
    if mailboxes:
        for (mailbox_id,) in await conn.fetch(
                "UPDATE mailboxes m SET total = n.total, unseen = n.unseen, bytes = n.bytes,"
                " uidnext = greatest(m.uidnext, n.uidnext), modseq = $2"
                " FROM unnest($3::text[], $4::bigint[], $5::bigint[], $6::bigint[],"
                "  $7::bigint[]) AS n(id, total, unseen, bytes, uidnext)"
                " WHERE m.account_id = $1 AND m.id = n.id RETURNING m.id",
                account_id, new, [b.mailbox_id for b in mailboxes],
                [b.total for b in mailboxes], [b.unseen for b in mailboxes],
                [b.size for b in mailboxes], [b.uidnext for b in mailboxes]):
            tx.log(account_id, new, "Mailbox", mailbox_id, "updated")
    return True
