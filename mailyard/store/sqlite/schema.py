"""mail.db's tables and indexes, and how a data directory made by an older build is brought
up to them (PostgreSQL's are in store/postgres/schema.py)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from mailyard.core.ids import new_id
from mailyard.model import keywords, labels
from mailyard.model.labels import ALL
from mailyard.store.sqlite import filters
from mailyard.store.sqlite.mailtx import SqliteMailTx, run_now
from mailyard.store.sqlite.mailtx import log as _log
from mailyard.store.sqlite.mailtx import next_modseq as _next_modseq

SCHEMA = """
CREATE TABLE IF NOT EXISTS domains (name TEXT PRIMARY KEY, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dkim_keys (
    domain TEXT NOT NULL,
    selector TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    private_key BLOB NOT NULL,
    created_at REAL NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (domain, selector)
);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    quota INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    modseq INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    last_uidvalidity INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS mailboxes (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    role TEXT,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    subscribed INTEGER NOT NULL DEFAULT 1,
    modseq INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    unseen INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account_id, name)
);
CREATE TABLE IF NOT EXISTS vanished (
    mailbox_id TEXT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vanished_modseq ON vanished (mailbox_id, modseq);
CREATE TABLE IF NOT EXISTS emails (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    thread_id TEXT NOT NULL,
    delivery_key TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    blob_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    sent_at INTEGER,
    message_id TEXT,
    subject TEXT NOT NULL,
    thread_subject TEXT NOT NULL,
    from_addr TEXT NOT NULL,
    headers BLOB NOT NULL,
    preview TEXT NOT NULL,
    has_attachment INTEGER NOT NULL,
    attachments BLOB NOT NULL,
    envelope BLOB NOT NULL,
    bodystructure BLOB NOT NULL,
    body BLOB NOT NULL,
    parts BLOB NOT NULL,
    blob_refs BLOB NOT NULL,
    keywords TEXT NOT NULL,
    modseq INTEGER NOT NULL,
    head BLOB NOT NULL DEFAULT x'',
    UNIQUE (account_id, delivery_key)
);
CREATE INDEX IF NOT EXISTS emails_thread ON emails (account_id, thread_id);
CREATE INDEX IF NOT EXISTS emails_msgid ON emails (account_id, message_id);
CREATE INDEX IF NOT EXISTS emails_subject ON emails (account_id, thread_subject, received_at);
CREATE INDEX IF NOT EXISTS emails_received ON emails (account_id, received_at);
CREATE INDEX IF NOT EXISTS emails_modseq ON emails (account_id, modseq);
-- Counts and pages of flag, size, attachment and date conditions read this index alone, not
-- every email's wide row: `is:starred` 110 -> 22 ms, `larger:1M` 205 -> 15 ms (with the
-- planner's statistics), `has:attachment before:` 99 -> 17 ms at 100,000 emails.
CREATE INDEX IF NOT EXISTS emails_narrow ON emails
    (account_id, received_at, size, has_attachment, keywords);
-- The starred emails alone (filters.FLAGGED_WHERE, which the search filter writes out so
-- that SQLite recognises it): is:starred's count at 100,000 emails 40 -> 0.3 ms.
CREATE INDEX IF NOT EXISTS emails_flagged ON emails (account_id, received_at)
    WHERE """ + filters.FLAGGED_WHERE + """;
-- JMAP Email/query's size and sentAt sorts (and the subject sort's reads) from these alone:
-- the first page of size asc at 100,000 emails in < 1 ms, not a scan of the wide rows.
CREATE INDEX IF NOT EXISTS emails_sort_size ON emails
    (account_id, size, received_at, id, thread_id);
CREATE INDEX IF NOT EXISTS emails_sort_sent ON emails
    (account_id, sent_at, received_at, id, thread_id);
CREATE INDEX IF NOT EXISTS emails_sort_subject ON emails
    (account_id, received_at, id, thread_id, subject);
-- An email's thread by its id without its wide row: the thread counts of every mailbox
-- (JMAP totalThreads, a collapsed Email/query's total) read one entry per membership here,
-- 100,000 emails: ~0.4 s against ~0.9 s through the table.
CREATE INDEX IF NOT EXISTS emails_thread_of ON emails (id, thread_id);
CREATE TABLE IF NOT EXISTS thread_keys (
    account_id TEXT NOT NULL,
    msgid TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    PRIMARY KEY (account_id, msgid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS thread_keys_thread ON thread_keys (account_id, thread_id);
CREATE TABLE IF NOT EXISTS mailbox_emails (
    mailbox_id TEXT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    email_id TEXT NOT NULL REFERENCES emails(id) ON DELETE CASCADE,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid),
    UNIQUE (mailbox_id, email_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mailbox_emails_email ON mailbox_emails (email_id);
CREATE TABLE IF NOT EXISTS changes (
    account_id TEXT NOT NULL,
    modseq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    op TEXT NOT NULL,
    PRIMARY KEY (account_id, modseq, kind, object_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    data BLOB NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (account_id, kind, id)
) WITHOUT ROWID;
"""



SCHEMA_VERSION = 5
"""PRAGMA user_version of mail.db; 0 is every file from before versions (back to the first
release, whose tables lacked the columns and the All Mail mailbox _migrate adds); 2 added
accounts.last_uidvalidity; 3 the emails_sort_* indexes (SCHEMA's IF NOT EXISTS builds them
on the first open: 1.8 s for 100,000 emails); 4 emails_thread_of (0.7 s for 100,000); 5 the
partial index emails_flagged (0.4 s for 100,000)."""


def migrate(conn: sqlite3.Connection, found: int = 0) -> None:
    """Bring a data directory made by an older build up to SCHEMA (columns added since)."""
    if found < 1:
        _migrate_first(conn)
    if found < 2:
        accounts = {r[1] for r in conn.execute("PRAGMA table_info(accounts)")}
        if "last_uidvalidity" not in accounts:
            conn.execute("ALTER TABLE accounts ADD COLUMN last_uidvalidity INTEGER NOT NULL"
                         " DEFAULT 0")
        conn.execute("UPDATE accounts SET last_uidvalidity = max(last_uidvalidity, coalesce("
                     "(SELECT max(uidvalidity) FROM mailboxes m"
                     " WHERE m.account_id = accounts.id), 0))")


def _migrate_first(conn: sqlite3.Connection) -> None:
    """From before schema versions to version 1."""
    # The first release wrote keywords as JSON bytes; LIKE (unseen counts, $seen searches)
    # matches nothing in a BLOB.
    conn.execute("UPDATE emails SET keywords = CAST(keywords AS TEXT)"
                 " WHERE typeof(keywords) = 'blob'")
    emails = {r[1] for r in conn.execute("PRAGMA table_info(emails)")}
    if "head" not in emails:
        conn.execute("ALTER TABLE emails ADD COLUMN head BLOB NOT NULL DEFAULT x''")
    boxes = {r[1] for r in conn.execute("PRAGMA table_info(mailboxes)")}
    if "total" not in boxes:
        args: list[Any] = []
        unread = filters.compile_where(keywords.UNREAD, args)
        for column in ("total", "unseen", "bytes"):
            conn.execute(f"ALTER TABLE mailboxes ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
        conn.execute(
            "UPDATE mailboxes SET"
            " total = (SELECT count(*) FROM mailbox_emails me WHERE me.mailbox_id = mailboxes.id),"
            " unseen = (SELECT count(*) FROM mailbox_emails me JOIN emails e ON e.id = me.email_id"
            f"  WHERE me.mailbox_id = mailboxes.id AND {unread}),"
            " bytes = (SELECT coalesce(sum(e.size), 0) FROM mailbox_emails me"
            "  JOIN emails e ON e.id = me.email_id WHERE me.mailbox_id = mailboxes.id)", args)
    if "modseq" not in boxes:
        conn.execute("ALTER TABLE mailboxes ADD COLUMN modseq INTEGER NOT NULL DEFAULT 0")
        conn.execute("UPDATE mailboxes SET modseq = (SELECT modseq FROM accounts a"
                     " WHERE a.id = mailboxes.account_id)")
    for (account_id,) in conn.execute(
            "SELECT id FROM accounts WHERE id NOT IN"
            " (SELECT account_id FROM mailboxes WHERE role = ?)", (ALL,)).fetchall():
        # The first release had no All Mail: every email goes in, in arrival order.
        modseq = _next_modseq(conn, account_id)
        mailbox_id = new_id("m")
        conn.execute("INSERT INTO mailboxes (id, account_id, name, role, uidvalidity, modseq)"
                     " VALUES (?, ?, ?, ?, ?, ?)",
                     (mailbox_id, account_id, "All Mail", ALL, int(time.time()), modseq))
        _log(conn, account_id, modseq, "Mailbox", mailbox_id, "created")
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM emails WHERE account_id = ? ORDER BY received_at, id",
            (account_id,)).fetchall()]
        tx = SqliteMailTx(conn, account_id)
        flags = run_now(tx.email_flags(ids))
        for email_id in ids:
            run_now(labels.label(tx, email_id, flags[email_id], mailbox_id, modseq, fresh=True))
