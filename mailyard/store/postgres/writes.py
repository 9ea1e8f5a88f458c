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
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from mailyard.core.ids import next_uidvalidity
from mailyard.core.threading import REPLY_WINDOW_MS, thread_keys, wants_subject_fallback
from mailyard.model import keywords
from mailyard.store.ports import (
    DeliveryResult,
    EmailFlags,
    NewEmail,
    NotFound,
    QuotaExceeded,
)

ALL = "all"
"""The role of the mailbox every email is in (Gmail's All Mail)."""
DESTROYING_ROLES = frozenset({"all", "trash"})
SEEN = "$seen"


def clean(value: str) -> str:
    """Text PostgreSQL can store: no NUL (which `text` refuses), no lone surrogates (which are
    not UTF-8). Parsed mail can carry either in an encoded word; both become U+FFFD / '?'."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def clean_opt(value: str | None) -> str | None:
    return None if value is None else clean(value)


@dataclass(slots=True)
class Info:
    """What the mailbox counters need to know about an email being labelled or unlabelled."""

    size: int
    seen: bool
    received_at: int


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


class PostgresMailTx:
    """The mail model's primitives (store.ports.MailTx) on one account's rows inside
    `tx`."""

    def __init__(self, tx: Tx, account_id: str) -> None:
        self.tx = tx
        self.conn = tx.conn
        self.account_id = account_id

    async def lock_account(self) -> None:
        if await self.conn.fetchval("SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE",
                                    self.account_id) is None:
            raise NotFound(f"no account {self.account_id}")

    async def next_modseq(self) -> int:
        return await self.tx.next_modseq(self.account_id)

    def log(self, modseq: int, kind: str, object_id: str, op: str) -> None:
        self.tx.log(self.account_id, modseq, kind, object_id, op)

    async def email_flags(self, email_ids: Sequence[str]) -> dict[str, EmailFlags]:
        return {r["id"]: EmailFlags(list(r["keywords"]), r["modseq"]) for r in
                await self.conn.fetch("SELECT id, keywords, modseq FROM emails"
                                      " WHERE account_id = $1 AND id = ANY($2::text[])",
                                      self.account_id, [clean(e) for e in email_ids])}

    async def write_keywords(self, email_id: str, keywords: Sequence[str]) -> None:
        await self.conn.execute("UPDATE emails SET keywords = $3 WHERE account_id = $1"
                                " AND id = $2", self.account_id, email_id, list(keywords))

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


async def uidvalidity(conn: asyncpg.Connection, account_id: str) -> int:
    """A UIDVALIDITY the account never gave before (core.ids.next_uidvalidity), within the
    caller's transaction (which holds the account's row lock from next_modseq)."""
    last = await conn.fetchval("SELECT last_uidvalidity FROM accounts WHERE id = $1",
                               account_id)
    value = next_uidvalidity(int(last or 0), time.time())
    await conn.execute("UPDATE accounts SET last_uidvalidity = $2 WHERE id = $1",
                       account_id, value)
    return value


async def infos(conn: asyncpg.Connection, account_id: str, email_ids: list[str]
                ) -> dict[str, Info]:
    rows = await conn.fetch(
        "SELECT id, size, keywords @> ARRAY['$seen'::text] AS seen, received_at FROM emails"
        " WHERE account_id = $1 AND id = ANY($2::text[])", account_id, email_ids)
    return {r["id"]: Info(r["size"], r["seen"], r["received_at"]) for r in rows}


async def label(tx: Tx, account_id: str, email_id: str, mailbox_id: str, modseq: int,
                info: Info, *, fresh: bool = False) -> int:
    """Put an email in a mailbox under the mailbox's next UID (or return the UID it has)."""
    if not fresh:
        have = await tx.conn.fetchval(
            "SELECT uid FROM mailbox_emails WHERE account_id = $1 AND mailbox_id = $2"
            " AND email_id = $3", account_id, mailbox_id, email_id)
        if have is not None:
            return int(have)
    uid = await tx.conn.fetchval(
        "WITH b AS (UPDATE mailboxes SET uidnext = uidnext + 1, modseq = $3,"
        "  total = total + 1, unseen = unseen + $4, bytes = bytes + $5"
        "  WHERE account_id = $1 AND id = $2 RETURNING uidnext - 1 AS uid)"
        " INSERT INTO mailbox_emails (account_id, mailbox_id, uid, email_id, modseq, received_at)"
        " SELECT $1, $2, b.uid, $6, $3, $7 FROM b RETURNING uid",
        account_id, mailbox_id, modseq, 0 if info.seen else 1, info.size, email_id,
        info.received_at)
    if uid is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    tx.log(account_id, modseq, "Mailbox", mailbox_id, "updated")
    return int(uid)


async def unlabel(tx: Tx, account_id: str, email_id: str, mailbox_id: str, modseq: int,
                  info: Info) -> int | None:
    """Take the email out of the mailbox, remembering the UID as vanished (QRESYNC)."""
    uid = await tx.conn.fetchval(
        "WITH d AS (DELETE FROM mailbox_emails WHERE account_id = $1 AND mailbox_id = $2"
        "  AND email_id = $3 RETURNING uid),"
        " b AS (UPDATE mailboxes SET total = total - 1, unseen = unseen - $5,"
        "  bytes = bytes - $6, modseq = $4"
        "  WHERE account_id = $1 AND id = $2 AND EXISTS (SELECT 1 FROM d)),"
        " v AS (INSERT INTO vanished (account_id, mailbox_id, uid, modseq)"
        "  SELECT $1, $2, uid, $4 FROM d"
        "  ON CONFLICT (account_id, mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq)"
        " SELECT uid FROM d",
        account_id, mailbox_id, email_id, modseq, 0 if info.seen else 1, info.size)
    if uid is None:
        return None
    tx.log(account_id, modseq, "Mailbox", mailbox_id, "updated")
    return int(uid)


async def destroy(tx: Tx, account_id: str, email_id: str, modseq: int, info: Info) -> None:
    """Remove an email everywhere; its blobs stay (shared, content-addressed) for a later GC."""
    conn = tx.conn
    for (mailbox_id,) in await conn.fetch(
            "SELECT mailbox_id FROM mailbox_emails WHERE account_id = $1 AND email_id = $2",
            account_id, email_id):
        await unlabel(tx, account_id, email_id, mailbox_id, modseq, info)
    row = await conn.fetchrow(
        "DELETE FROM emails WHERE account_id = $1 AND id = $2 RETURNING size, thread_id",
        account_id, email_id)
    if row is None:
        return
    await conn.execute("UPDATE accounts SET used = greatest(0, used - $2) WHERE id = $1",
                       account_id, row["size"])
    tx.log(account_id, modseq, "Email", email_id, "destroyed")
    left = await conn.fetchval(
        "SELECT 1 FROM emails WHERE account_id = $1 AND thread_id = $2 LIMIT 1",
        account_id, row["thread_id"])
    tx.log(account_id, modseq, "Thread", row["thread_id"], "updated" if left else "destroyed")
    if not left:
        await conn.execute("DELETE FROM thread_keys WHERE account_id = $1 AND thread_id = $2",
                           account_id, row["thread_id"])


async def touch_email(tx: Tx, account_id: str, email_id: str, modseq: int) -> None:
    await keywords.touch(PostgresMailTx(tx, account_id), email_id, modseq)


async def _find_duplicate(conn: asyncpg.Connection, email: NewEmail) -> Any:
    row = await conn.fetchrow(
        "SELECT id, thread_id, modseq FROM emails WHERE account_id = $1 AND delivery_key = $2",
        email.account_id, clean(email.delivery_key))
    if row is None and email.message_id and email.same_content_is_same_email:
        row = await conn.fetchrow(
            "SELECT id, thread_id, modseq FROM emails WHERE account_id = $1"
            " AND message_id = $2 AND content_sha256 = $3 LIMIT 1",
            email.account_id, clean(email.message_id), email.content_sha256)
    return row


async def _resolve_thread(tx: Tx, email: NewEmail, keys: list[str], modseq: int) -> str:
    """The thread the email joins; merges every thread its keys touch into the oldest one."""
    conn, account = tx.conn, email.account_id
    found: set[str] = set()
    if keys:
        found = {r[0] for r in await conn.fetch(
            "SELECT thread_id FROM thread_keys WHERE account_id = $1 AND msgid = ANY($2::text[])",
            account, keys)}
    if not found and wants_subject_fallback(
            email.subject, email.thread_subject, bool(email.in_reply_to or email.references)):
        other = await conn.fetchval(
            "SELECT thread_id FROM emails WHERE account_id = $1 AND thread_subject = $2"
            " AND received_at > $3 ORDER BY received_at DESC LIMIT 1",
            account, clean(email.thread_subject), email.received_at - REPLY_WINDOW_MS)
        if other is not None:
            found.add(other)
    if not found:
        thread_id = "t" + email.email_id[1:]
        tx.log(account, modseq, "Thread", thread_id, "created")
        return thread_id
    thread_id = min(found)  # ids are time-ordered: the oldest thread absorbs the others
    for other in sorted(found - {thread_id}):
        for (moved_id,) in await conn.fetch(
                "UPDATE emails SET thread_id = $1, modseq = $2 WHERE account_id = $3"
                " AND thread_id = $4 RETURNING id", thread_id, modseq, account, other):
            tx.log(account, modseq, "Email", moved_id, "updated")
        await conn.execute(
            "UPDATE thread_keys SET thread_id = $1 WHERE account_id = $2 AND thread_id = $3",
            thread_id, account, other)
        tx.log(account, modseq, "Thread", other, "destroyed")
    tx.log(account, modseq, "Thread", thread_id, "updated")
    return thread_id


async def deliver(tx: Tx, email: NewEmail) -> DeliveryResult:
    """Write one delivery: dedupe, quota, thread, the email row, its labels, the change log."""
    conn, account = tx.conn, email.account_id
    # The account lock first: a concurrent redelivery of the same item waits here and then
    # finds this one's email (READ COMMITTED: each later statement sees what committed).
    quota = await conn.fetchrow(
        "SELECT quota, used FROM accounts WHERE id = $1 FOR NO KEY UPDATE", account)
    existing = await _find_duplicate(conn, email)
    if existing is not None:
        return DeliveryResult(email_id=existing["id"], thread_id=existing["thread_id"],
                              created=False, modseq=existing["modseq"])
    if quota is None:
        raise NotFound(f"no account {account}")
    if quota["used"] + email.size > quota["quota"]:
        raise QuotaExceeded(
            f"mailbox full: {quota['used']} + {email.size} bytes > quota {quota['quota']}")
    modseq = await tx.next_modseq(account)
    keys = list(dict.fromkeys(
        clean(k) for k in thread_keys(email.message_id, email.in_reply_to, email.references)))
    thread_id = await _resolve_thread(tx, email, keys, modseq)
    if keys:
        await conn.execute(
            "INSERT INTO thread_keys (account_id, msgid, thread_id)"
            " SELECT $1, unnest($2::text[]), $3"
            " ON CONFLICT (account_id, msgid) DO UPDATE SET thread_id = EXCLUDED.thread_id",
            account, keys, thread_id)
    headers: dict[str, Any] = {
        "from": email.from_, "to": email.to, "cc": email.cc, "bcc": email.bcc,
        "reply_to": email.reply_to, "sender": email.sender,
        "in_reply_to": email.in_reply_to, "references": email.references,
    }
    keywords = list(dict.fromkeys(clean(k) for k in email.keywords))
    await conn.execute(
        "INSERT INTO emails (account_id, id, thread_id, delivery_key, content_sha256, blob_id,"
        " size, received_at, sent_at, message_id, subject, thread_subject, from_addr, headers,"
        " preview, has_attachment, attachments, envelope, bodystructure, body, parts, blob_refs,"
        " keywords, modseq, head) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
        " $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)",
        account, email.email_id, thread_id, clean(email.delivery_key), email.content_sha256,
        email.blob_id, email.size, email.received_at, email.sent_at,
        clean_opt(email.message_id), clean(email.subject), clean(email.thread_subject),
        clean(email.from_[0]["email"]) if email.from_ else "", orjson.dumps(headers),
        clean(email.preview), email.has_attachment, orjson.dumps(email.attachments),
        email.envelope, email.bodystructure, email.body, orjson.dumps(email.parts),
        orjson.dumps(email.blob_refs), keywords, modseq, email.head)
    tx.log(account, modseq, "Email", email.email_id, "created")
    roles = list(dict.fromkeys([*email.mailbox_roles, ALL]))
    by_role = {r["role"]: r["id"] for r in await conn.fetch(
        "SELECT id, role FROM mailboxes WHERE account_id = $1 AND role = ANY($2::text[])",
        account, roles)}
    for role in roles:
        if role not in by_role:
            raise NotFound(f"account {account} has no {role} mailbox")
    info = Info(email.size, SEEN in keywords, email.received_at)
    uids = {mailbox_id: await label(tx, account, email.email_id, mailbox_id, modseq, info,
                                    fresh=True)
            for mailbox_id in dict.fromkeys([*email.mailbox_ids, *(by_role[r] for r in roles)])}
    await conn.execute("UPDATE accounts SET used = used + $2 WHERE id = $1", account, email.size)
    return DeliveryResult(email_id=email.email_id, thread_id=thread_id, created=True,
                          modseq=modseq, uids=uids)
