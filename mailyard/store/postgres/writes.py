"""The steps of the MailStore's write transactions on PostgreSQL.

Every write that changes an account first takes the account's next modseq with
`UPDATE accounts SET modseq = modseq + 1 ... RETURNING modseq`. That row lock is held to the
commit, so writers of one account (from any process or node) queue behind each other: modseqs are
handed out in commit order, a reader never sees N+1 before N, and a rolled-back write gives its
number back. Per-mailbox UIDs come from `UPDATE mailboxes SET uidnext = uidnext + 1 RETURNING`
under that same lock. Writers of different accounts never wait for each other.

Change-log rows are gathered in the transaction and written in one statement at its end (`Tx`),
"last op wins" per (modseq, kind, object), as the SQLite engine's INSERT OR REPLACE does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from mailyard.core.ids import next_uidvalidity
from mailyard.store import emailrows
from mailyard.store.ports.errors import NotFound
from mailyard.store.ports.mailtx import CountChange, EmailFlags, RemovedEmail
from mailyard.store.ports.records import (
    Account,
    DeliveryResult,
    DKIMKeyRecord,
    Mailbox,
    MailboxCounters,
    MailboxEntry,
    NewEmail,
)
from mailyard.store.ports.text import stored_text, stored_text_opt

clean = stored_text
"""Text PostgreSQL can store (store.ports.stored_text): what the model writes is that already;
the adapter applies it to every text it is asked to look up, which `text` could not carry."""
clean_opt = stored_text_opt


class Tx:
    """One write transaction: its connection and the change-log rows it has produced."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._log: dict[tuple[str, int, str, str], str] = {}

    def log(self, account_id: str, modseq: int, kind: str, object_id: str, op: str) -> None:
        self._log[(account_id, modseq, kind, object_id)] = op

    async def flush(self) -> None:
        if not self._log:
            return
        keys = list(self._log)
        await self.conn.execute(
            "INSERT INTO changes (account_id, modseq, kind, object_id, op)"
            " SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[])"
            " ON CONFLICT (account_id, modseq, kind, object_id) DO UPDATE SET op = EXCLUDED.op",
            [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
            [k[3] for k in keys], [self._log[k] for k in keys])
        self._log.clear()

    async def next_modseq(self, account_id: str) -> int:
        modseq = await self.conn.fetchval(
            "UPDATE accounts SET modseq = modseq + 1 WHERE id = $1 RETURNING modseq", account_id)
        if modseq is None:
            raise NotFound(f"no account {account_id}")
        return int(modseq)


class PostgresMailReader:
    """One account's rows as `conn` reads them (store.ports.MailReader): in a write
    transaction, or in one read-only snapshot."""

    def __init__(self, conn: asyncpg.Connection, account_id: str) -> None:
        self.conn = conn
        self.account_id = account_id

    async def mailbox(self, mailbox_id: str) -> Mailbox:
        row = await self.conn.fetchrow("SELECT * FROM mailboxes WHERE account_id = $1"
                                       " AND id = $2", self.account_id, clean(mailbox_id))
        if row is None:
            raise NotFound(f"no mailbox {mailbox_id}")
        return mailbox(row)

    async def entries(self, mailbox_id: str, *, changed_since: int | None = None
                      ) -> list[MailboxEntry]:
        if changed_since is None:
            rows = await self.conn.fetch(
                "SELECT me.uid, me.email_id, e.keywords, e.modseq FROM mailbox_emails me"
                " JOIN emails e ON e.account_id = me.account_id AND e.id = me.email_id"
                " WHERE me.account_id = $1 AND me.mailbox_id = $2 ORDER BY me.uid",
                self.account_id, clean(mailbox_id))
        else:
            rows = await self.conn.fetch(  # through emails_modseq
                "SELECT me.uid, me.email_id, e.keywords, e.modseq FROM emails e"
                " JOIN mailbox_emails me ON me.account_id = e.account_id"
                "  AND me.email_id = e.id AND me.mailbox_id = $2"
                " WHERE e.account_id = $1 AND e.modseq > $3 ORDER BY me.uid",
                self.account_id, clean(mailbox_id), changed_since)
        return [MailboxEntry(uid=r[0], email_id=r[1], keywords=list(r[2]), modseq=r[3])
                for r in rows]

    async def vanished(self, mailbox_id: str, since: int) -> list[int]:
        return [r[0] for r in await self.conn.fetch(
            "SELECT uid FROM vanished WHERE account_id = $1 AND mailbox_id = $2"
            " AND modseq > $3 ORDER BY uid", self.account_id, clean(mailbox_id), since)]


class PostgresMailTx(PostgresMailReader):
    """The mail model's primitives (store.ports.MailTx) on one account's rows inside
    `tx`."""

    def __init__(self, tx: Tx, account_id: str) -> None:
        super().__init__(tx.conn, account_id)
        self.tx = tx

    async def lock_account(self) -> None:
        if await self.conn.fetchval("SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE",
                                    self.account_id) is None:
            raise NotFound(f"no account {self.account_id}")

    async def next_modseq(self) -> int:
        return await self.tx.next_modseq(self.account_id)

    def log(self, modseq: int, kind: str, object_id: str, op: str) -> None:
        self.tx.log(self.account_id, modseq, clean(kind), clean(object_id), op)

    async def email_flags(self, email_ids: Sequence[str]) -> dict[str, EmailFlags]:
        return {r["id"]: EmailFlags(list(r["keywords"]), r["modseq"], r["size"],
                                    r["received_at"]) for r in await self.conn.fetch(
            "SELECT id, keywords, modseq, size, received_at FROM emails WHERE account_id = $1"
            " AND id = ANY($2::text[])", self.account_id, [clean(e) for e in email_ids])}

    async def write_keywords(self, email_id: str, keywords: Sequence[str]) -> None:
        await self.conn.execute("UPDATE emails SET keywords = $3 WHERE account_id = $1"
                                " AND id = $2", self.account_id, email_id,
                                list(keywords))

    async def add_unread(self, email_id: str, change: int) -> None:
        await self.conn.execute(
            "UPDATE mailboxes SET unseen = unseen + $3 WHERE account_id = $1 AND id IN"
            " (SELECT mailbox_id FROM mailbox_emails WHERE account_id = $1 AND email_id = $2)",
            self.account_id, email_id, change)

    async def stamp_email(self, email_id: str, modseq: int) -> None:
        await self.conn.execute(
            "WITH e AS (UPDATE emails SET modseq = $3 WHERE account_id = $1 AND id = $2)"
            " UPDATE mailboxes SET modseq = $3 WHERE account_id = $1 AND id IN"
            " (SELECT mailbox_id FROM mailbox_emails WHERE account_id = $1 AND email_id = $2)",
            self.account_id, email_id, modseq)

    async def uids(self, mailbox_id: str, email_ids: Sequence[str]) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in await self.conn.fetch(
            "SELECT email_id, uid FROM mailbox_emails WHERE account_id = $1 AND mailbox_id = $2"
            " AND email_id = ANY($3::text[])", self.account_id, clean(mailbox_id),
            [clean(e) for e in email_ids])}

    async def holders(self, email_id: str) -> dict[str, str | None]:
        return {r[0]: r[1] for r in await self.conn.fetch(
            "SELECT me.mailbox_id, m.role FROM mailbox_emails me JOIN mailboxes m"
            " ON m.account_id = me.account_id AND m.id = me.mailbox_id"
            " WHERE me.account_id = $1 AND me.email_id = $2", self.account_id, email_id)}

    async def insert_label(self, mailbox_id: str, email_id: str, modseq: int,
                           received_at: int, counts: CountChange) -> int | None:
        uid = await self.conn.fetchval(
            "WITH b AS (UPDATE mailboxes SET uidnext = uidnext + 1, modseq = $3,"
            "  total = total + $4, unseen = unseen + $5, bytes = bytes + $6"
            "  WHERE account_id = $1 AND id = $2 RETURNING uidnext - 1 AS uid)"
            " INSERT INTO mailbox_emails (account_id, mailbox_id, uid, email_id, modseq,"
            " received_at) SELECT $1, $2, b.uid, $7, $3, $8 FROM b RETURNING uid",
            self.account_id, mailbox_id, modseq, counts.total, counts.unread, counts.size,
            email_id, received_at)
        return None if uid is None else int(uid)

    async def delete_label(self, mailbox_id: str, email_id: str, modseq: int,
                           counts: CountChange) -> int | None:
        uid = await self.conn.fetchval(
            "WITH d AS (DELETE FROM mailbox_emails WHERE account_id = $1 AND mailbox_id = $2"
            "  AND email_id = $3 RETURNING uid),"
            " b AS (UPDATE mailboxes SET total = total + $5, unseen = unseen + $6,"
            "  bytes = bytes + $7, modseq = $4"
            "  WHERE account_id = $1 AND id = $2 AND EXISTS (SELECT 1 FROM d)),"
            " v AS (INSERT INTO vanished (account_id, mailbox_id, uid, modseq)"
            "  SELECT $1, $2, uid, $4 FROM d"
            "  ON CONFLICT (account_id, mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq)"
            " SELECT uid FROM d",
            self.account_id, mailbox_id, email_id, modseq, counts.total, counts.unread,
            counts.size)
        return None if uid is None else int(uid)

    async def delete_email(self, email_id: str) -> RemovedEmail | None:
        row = await self.conn.fetchrow("DELETE FROM emails WHERE account_id = $1 AND id = $2"
                                       " RETURNING size, thread_id", self.account_id, email_id)
        return None if row is None else RemovedEmail(row["size"], row["thread_id"])

    async def release_quota(self, size: int) -> None:
        await self.conn.execute("UPDATE accounts SET used = greatest(0, used - $2)"
                                " WHERE id = $1", self.account_id, size)

    async def thread_exists(self, thread_id: str) -> bool:
        return await self.conn.fetchval(
            "SELECT 1 FROM emails WHERE account_id = $1 AND thread_id = $2 LIMIT 1",
            self.account_id, thread_id) is not None

    async def delete_thread_keys(self, thread_id: str) -> None:
        await self.conn.execute("DELETE FROM thread_keys WHERE account_id = $1"
                                " AND thread_id = $2", self.account_id, thread_id)

    # ------------------------------------------------------------------ delivery

    async def current_modseq(self) -> int:
        current = await self.conn.fetchval(
            "SELECT modseq FROM accounts WHERE id = $1 FOR NO KEY UPDATE", self.account_id)
        if current is None:
            raise NotFound(f"no account {self.account_id}")
        return int(current)

    async def write_usage(self, used: int) -> None:
        await self.conn.execute("UPDATE accounts SET used = $2 WHERE id = $1",
                                self.account_id, used)

    async def write_counters(self, mailboxes: Sequence[MailboxCounters], modseq: int
                             ) -> list[str]:
        return [r[0] for r in await self.conn.fetch(
            "UPDATE mailboxes m SET total = n.total, unseen = n.unseen, bytes = n.bytes,"
            " uidnext = greatest(m.uidnext, n.uidnext), modseq = $2"
            " FROM unnest($3::text[], $4::bigint[], $5::bigint[], $6::bigint[],"
            "  $7::bigint[]) AS n(id, total, unseen, bytes, uidnext)"
            " WHERE m.account_id = $1 AND m.id = n.id RETURNING m.id",
            self.account_id, modseq, [b.mailbox_id for b in mailboxes],
            [b.total for b in mailboxes], [b.unseen for b in mailboxes],
            [b.size for b in mailboxes], [b.uidnext for b in mailboxes])] if mailboxes else []

    async def lock_usage(self) -> tuple[int, int] | None:
        row = await self.conn.fetchrow(
            "SELECT quota, used FROM accounts WHERE id = $1 FOR NO KEY UPDATE", self.account_id)
        return None if row is None else (row[0], row[1])

    async def find_delivery(self, delivery_key: str) -> DeliveryResult | None:
        return _found(await self.conn.fetchrow(
            "SELECT id, thread_id, modseq FROM emails WHERE account_id = $1"
            " AND delivery_key = $2", self.account_id, delivery_key))

    async def find_same_content(self, message_id: str, content_sha256: str
                                ) -> DeliveryResult | None:
        return _found(await self.conn.fetchrow(
            "SELECT id, thread_id, modseq FROM emails WHERE account_id = $1"
            " AND message_id = $2 AND content_sha256 = $3 LIMIT 1",
            self.account_id, message_id, content_sha256))

    async def add_usage(self, size: int) -> None:
        await self.conn.execute("UPDATE accounts SET used = used + $2 WHERE id = $1",
                                self.account_id, size)

    async def threads_of_keys(self, keys: Sequence[str]) -> set[str]:
        return {r[0] for r in await self.conn.fetch(
            "SELECT thread_id FROM thread_keys WHERE account_id = $1"
            " AND msgid = ANY($2::text[])", self.account_id, list(keys))}

    async def latest_thread_by_subject(self, thread_subject: str, after: int) -> str | None:
        found = await self.conn.fetchval(
            "SELECT thread_id FROM emails WHERE account_id = $1 AND thread_subject = $2"
            " AND received_at > $3 ORDER BY received_at DESC LIMIT 1",
            self.account_id, thread_subject, after)
        return None if found is None else str(found)

    async def merge_thread(self, source: str, target: str, modseq: int) -> list[str]:
        moved = await self.conn.fetch(
            "UPDATE emails SET thread_id = $1, modseq = $2 WHERE account_id = $3"
            " AND thread_id = $4 RETURNING id", target, modseq, self.account_id, source)
        await self.conn.execute("UPDATE thread_keys SET thread_id = $1 WHERE account_id = $2"
                                " AND thread_id = $3", target, self.account_id, source)
        return [r[0] for r in moved]

    async def put_thread_keys(self, keys: Sequence[str], thread_id: str) -> None:
        if keys:  # each once: ON CONFLICT may not touch a row twice
            await self.conn.execute(
                "INSERT INTO thread_keys (account_id, msgid, thread_id)"
                " SELECT $1, unnest($2::text[]), $3"
                " ON CONFLICT (account_id, msgid) DO UPDATE SET thread_id = EXCLUDED.thread_id",
                self.account_id, list(dict.fromkeys(keys)), thread_id)

    async def insert_email(self, email: NewEmail, thread_id: str, modseq: int) -> None:
        await self.conn.execute(
            "INSERT INTO emails (account_id, id, thread_id, delivery_key, content_sha256,"
            " blob_id, size, received_at, sent_at, message_id, subject, thread_subject,"
            " from_addr, headers, preview, has_attachment, attachments, envelope,"
            " bodystructure, body, parts, blob_refs, keywords, modseq, head) VALUES ($1, $2,"
            " $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,"
            " $20, $21, $22, $23, $24, $25)",
            self.account_id, email.email_id, thread_id, email.delivery_key,
            email.content_sha256, email.blob_id, email.size, email.received_at, email.sent_at,
            email.message_id, email.subject, email.thread_subject,
            emailrows.from_addr(email), emailrows.headers(email),
            email.preview, email.has_attachment, orjson.dumps(email.attachments),
            email.envelope, email.bodystructure, email.body, orjson.dumps(email.parts),
            orjson.dumps(email.blob_refs), email.keywords, modseq, email.head)

    async def mailboxes_by_role(self, roles: Sequence[str]) -> dict[str, str]:
        return {r["role"]: r["id"] for r in await self.conn.fetch(
            "SELECT id, role FROM mailboxes WHERE account_id = $1 AND role = ANY($2::text[])",
            self.account_id, list(roles))}

    # ------------------------------------------------------------------ mailboxes

    async def mailbox_named(self, name: str) -> str | None:
        found = await self.conn.fetchval("SELECT id FROM mailboxes WHERE account_id = $1"
                                         " AND name = $2", self.account_id, name)
        return None if found is None else str(found)

    async def new_uidvalidity(self) -> int:
        return await uidvalidity(self.conn, self.account_id)

    async def insert_mailboxes(self, rows: Sequence[tuple[str, str, str | None]],
                               uidvalidity: int, modseq: int) -> None:
        await self.conn.executemany(
            "INSERT INTO mailboxes (account_id, id, name, role, uidvalidity, modseq)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [(self.account_id, i, name, role, uidvalidity, modseq)
             for i, name, role in rows])

    async def mailboxes_below(self, prefix: str) -> list[tuple[str, str]]:
        return [(r["id"], r["name"]) for r in await self.conn.fetch(
            "SELECT id, name FROM mailboxes WHERE account_id = $1 AND left(name, $2) = $3",
            self.account_id, len(prefix), prefix)]

    async def rename_mailboxes(self, names: dict[str, str], modseq: int) -> None:
        # One statement: the (account, name) uniqueness holds at its end, not per row.
        await self.conn.execute(
            "UPDATE mailboxes m SET name = n.name, modseq = $2 FROM"
            " unnest($3::text[], $4::text[]) AS n(id, name)"
            " WHERE m.account_id = $1 AND m.id = n.id",
            self.account_id, modseq, list(names), list(names.values()))

    async def write_subscribed(self, mailbox_id: str, subscribed: bool) -> None:
        await self.conn.execute("UPDATE mailboxes SET subscribed = $3 WHERE account_id = $1"
                                " AND id = $2", self.account_id, mailbox_id, subscribed)

    async def mailbox_email_ids(self, mailbox_id: str) -> list[str]:
        return [r[0] for r in await self.conn.fetch(
            "SELECT email_id FROM mailbox_emails WHERE account_id = $1 AND mailbox_id = $2",
            self.account_id, mailbox_id)]

    async def delete_mailbox(self, mailbox_id: str) -> None:
        await self.conn.execute("DELETE FROM mailboxes WHERE account_id = $1 AND id = $2",
                                self.account_id, mailbox_id)

    # ------------------------------------------------------------------ objects

    async def upsert_object(self, kind: str, object_id: str, data: dict[str, Any],
                            modseq: int) -> bool:
        return bool(await self.conn.fetchval(
            "INSERT INTO objects AS o (account_id, kind, id, data, modseq)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, kind, id)"
            " DO UPDATE SET data = EXCLUDED.data, modseq = EXCLUDED.modseq"
            " RETURNING (xmax <> 0)", self.account_id, clean(kind), clean(object_id),
            orjson.dumps(data), modseq))

    async def delete_object(self, kind: str, object_id: str) -> bool:
        return await self.conn.fetchval(
            "DELETE FROM objects WHERE account_id = $1 AND kind = $2 AND id = $3 RETURNING 1",
            self.account_id, clean(kind), clean(object_id)) is not None


class PostgresAccountTx:
    """The accounts table inside one write transaction (store.ports.AccountTx)."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.conn = tx.conn

    async def insert_account(self, account_id: str, address: str, password_hash: str,
                             quota: int, created_at: float) -> bool:
        return await self.conn.fetchval(
            "INSERT INTO accounts (id, address, password_hash, quota, created_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (address) DO NOTHING RETURNING 1",
            account_id, address, password_hash, quota, created_at) is not None

    async def account_id(self, address: str) -> str | None:
        found = await self.conn.fetchval("SELECT id FROM accounts WHERE address = $1",
                                         address)
        return None if found is None else str(found)

    async def account(self, account_id: str) -> Account:
        return account(await self.conn.fetchrow("SELECT * FROM accounts WHERE id = $1",
                                                account_id))

    async def update_account(self, account_id: str, *, password_hash: str | None = None,
                             quota: int | None = None) -> None:
        await self.conn.execute(
            "UPDATE accounts SET password_hash = coalesce($2, password_hash),"
            " quota = coalesce($3, quota) WHERE id = $1", account_id, password_hash, quota)

    async def delete_account(self, account_id: str) -> None:
        # Lock the account first, as every writer does, then drop what has no cascade.
        await self.conn.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
        for table in ("changes", "thread_keys", "objects"):
            await self.conn.execute(f"DELETE FROM {table} WHERE account_id = $1", account_id)
        await self.conn.execute("DELETE FROM accounts WHERE id = $1", account_id)

    def mail(self, account_id: str) -> PostgresMailTx:
        return PostgresMailTx(self.tx, account_id)


class PostgresDomainTx:
    """The domains and DKIM keys inside one write transaction (store.ports.DomainTx)."""

    def __init__(self, tx: Tx) -> None:
        self.conn = tx.conn

    async def insert_domain(self, name: str, created_at: float) -> bool:
        return await self.conn.fetchval(
            "INSERT INTO domains VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
            name, created_at) is not None

    async def delete_domain(self, name: str) -> bool:
        status = await self.conn.execute("DELETE FROM domains WHERE name = $1", name)
        return str(status) == "DELETE 1"

    async def insert_dkim_key(self, key: DKIMKeyRecord) -> bool:
        return await self.conn.fetchval(
            "INSERT INTO dkim_keys VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
            " RETURNING 1", key.domain, key.selector, key.algorithm, key.private_key,
            key.created_at, key.active) is not None

    async def retire_dkim_key(self, domain: str, selector: str) -> bool:
        status = await self.conn.execute(
            "UPDATE dkim_keys SET active = false WHERE domain = $1 AND selector = $2",
            domain, selector)
        return str(status) == "UPDATE 1"


def account(row: Any) -> Account:
    return Account(id=row["id"], address=row["address"], password_hash=row["password_hash"],
                   quota=row["quota"], used=row["used"], modseq=row["modseq"])


def mailbox(row: Any) -> Mailbox:
    return Mailbox(id=row["id"], account_id=row["account_id"], name=row["name"],
                   role=row["role"], uidvalidity=row["uidvalidity"], uidnext=row["uidnext"],
                   total=row["total"], unread=row["unseen"], subscribed=row["subscribed"],
                   highest_modseq=row["modseq"], size=row["bytes"])


def _found(row: Any) -> DeliveryResult | None:
    return None if row is None else DeliveryResult(email_id=row["id"],
                                                   thread_id=row["thread_id"], created=False,
                                                   modseq=row["modseq"])


async def uidvalidity(conn: asyncpg.Connection, account_id: str) -> int:
    """A UIDVALIDITY the account never gave before (core.ids.next_uidvalidity), within the
    caller's transaction (which holds the account's row lock from next_modseq)."""
    last = await conn.fetchval("SELECT last_uidvalidity FROM accounts WHERE id = $1",
                               account_id)
    value = next_uidvalidity(int(last or 0), time.time())
    await conn.execute("UPDATE accounts SET last_uidvalidity = $2 WHERE id = $1",
                       account_id, value)
    return value


