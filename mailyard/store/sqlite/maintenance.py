"""What `mailyard fsck` needs of the SQLite MailStore beyond the port: the attachment
references each email records (which `mailyard gc` trusts) and a recount of the counters
that are kept incrementally (quota usage; each mailbox's total, unseen and bytes).

A mixin of SqliteMailStore, kept apart so the adapter's hot paths stay readable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from mailyard.store.sqlite.db import Database

_SEEN = "%\"$seen\"%"


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
        await self.db.write(lambda conn: conn.execute(
            "UPDATE emails SET blob_refs = ? WHERE account_id = ? AND id = ?",
            (orjson.dumps(list(refs)), account_id, email_id)))

    async def recount(self, account_id: str) -> None:
        """Set quota usage and the mailbox counters from what the account holds, and raise
        a UIDNEXT that fell to or below a UID in use (a UID must never be given twice)."""
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE accounts SET used = (SELECT coalesce(sum(size), 0) FROM emails"
                " WHERE account_id = accounts.id) WHERE id = ?", (account_id,))
            conn.execute(
                "UPDATE mailboxes SET"
                " total = (SELECT count(*) FROM mailbox_emails me"
                "  WHERE me.mailbox_id = mailboxes.id),"
                " unseen = (SELECT count(*) FROM mailbox_emails me JOIN emails e"
                "  ON e.id = me.email_id WHERE me.mailbox_id = mailboxes.id"
                "  AND e.keywords NOT LIKE ?),"
                " bytes = (SELECT coalesce(sum(e.size), 0) FROM mailbox_emails me"
                "  JOIN emails e ON e.id = me.email_id WHERE me.mailbox_id = mailboxes.id),"
                " uidnext = max(uidnext, 1 + (SELECT coalesce(max(uid), 0) FROM mailbox_emails"
                "  me WHERE me.mailbox_id = mailboxes.id))"
                " WHERE account_id = ?", (_SEEN, account_id))

        await self.db.write(write)
