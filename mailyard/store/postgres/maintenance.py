"""The Maintenance port (store/ports.py) on PostgreSQL: the attachment references each email
records (which `mailyard gc` trusts). The compare-and-set of the counters is
model/maintenance.py over PostgresMailTx.

Functions over a connection: PostgresMailStore exposes them as methods, and the sharded store
routes each call to the account's shard.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson

from mailyard.store.ports import NotFound


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
