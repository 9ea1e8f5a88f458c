"""The Maintenance port (store/ports/mailstore.py) on SQLite: the attachment references each
email records (which `mailyard gc` trusts). The compare-and-set of the counters is the model's
(model/writes.py, model/maintenance.py) over the engine's write transaction; what those
counters should be is services/fsck.py's to decide.

A mixin of SqliteMailStore, kept apart so the adapter's hot paths stay readable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from mailyard.store.ports.errors import NotFound
from mailyard.store.sqlite.db import Database


class MaintenanceMixin:
    db: Database

    async def blob_refs(self, account_id: str, email_ids: Sequence[str]) -> dict[str, list[str]]:
        """Email id -> the attachment blobs its row says it needs."""
        def read(conn: sqlite3.Connection) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for start in range(0, len(email_ids), 500):
                chunk = list(email_ids[start:start + 500])
                for email_id, refs in conn.execute(
                        "SELECT id, blob_refs FROM emails WHERE id IN"
                        f" ({','.join('?' * len(chunk))}) AND +account_id = ?",
                        (*chunk, account_id)):
                    out[email_id] = list(orjson.loads(refs))
            return out

        return await self.db.read(read)

    async def set_blob_refs(self, account_id: str, email_id: str, refs: Sequence[str]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            if conn.execute("UPDATE emails SET blob_refs = ? WHERE account_id = ? AND id = ?",
                            (orjson.dumps(list(refs)), account_id, email_id)).rowcount != 1:
                raise NotFound(f"no email {email_id}")

        await self.db.write(write)

