"""The Maintenance port (store/ports.py) on SQLite: the attachment references each email
records (which `mailyard gc` trusts) and a compare-and-set of the counters kept incrementally
(quota usage; each mailbox's total, unseen, bytes and UIDNEXT). What those counters should be
is services/fsck.py's to decide; this only reads and writes rows.

A mixin of SqliteMailStore, kept apart so the adapter's hot paths stay readable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from mailyard.store.ports import MailboxCounters, NotFound
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

    async def set_counters(self, account_id: str, *, modseq: int, used: int,
                           mailboxes: Sequence[MailboxCounters]) -> bool:
        """The single writer makes the read of the account's MODSEQ and the writes one
        transaction: no other write of the account can come between them."""
        def write(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT modseq FROM accounts WHERE id = ?",
                               (account_id,)).fetchone()
            if row is None:
                raise NotFound(f"no account {account_id}")
            if row[0] != modseq:
                return False
            new = modseq + 1 if mailboxes else modseq
            conn.execute("UPDATE accounts SET used = ?, modseq = ? WHERE id = ?",
                         (used, new, account_id))
            for box in mailboxes:
                if conn.execute(
                        "UPDATE mailboxes SET total = ?, unseen = ?, bytes = ?,"
                        " uidnext = max(uidnext, ?), modseq = ? WHERE account_id = ? AND id = ?",
                        (box.total, box.unseen, box.size, box.uidnext, new, account_id,
                         box.mailbox_id)).rowcount:
                    # The change log row every mailbox write makes (mailstore._log).
                    conn.execute("INSERT OR REPLACE INTO changes (account_id, modseq, kind,"
                                 " object_id, op) VALUES (?, ?, 'Mailbox', ?, 'updated')",
                                 (account_id, new, box.mailbox_id))
            return True

        return await self.db.write(write)
