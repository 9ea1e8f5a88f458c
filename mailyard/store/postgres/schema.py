"""The PostgreSQL schema of the MailStore, as numbered migrations.

Each entry of MIGRATIONS is applied once, in order, in one transaction with its version number
recorded beside it; a database made by an older build is brought forward by the steps it lacks.
Several processes may start at once against one database: a transaction-scoped advisory lock
makes the second wait for the first instead of both creating the same tables.

Every table is keyed by account first (the partition key of the seed's wide-column store, and
what a later split over shards moves as a unit). Every text column collates "C": ids are
time-ordered by their bytes, and "C" orders them (and names) exactly as SQLite does, whatever
locale the database was created with.
"""

from __future__ import annotations

import asyncpg

COMPONENT = "mailstore"
_LOCK_KEY = 0x6D61696C79617264  # "mailyard": serialises migrations across processes

T = 'text COLLATE "C"'

MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE domains (name {T} PRIMARY KEY, created_at double precision NOT NULL);
    CREATE TABLE dkim_keys (
        domain {T} NOT NULL,
        selector {T} NOT NULL,
        algorithm {T} NOT NULL,
        private_key bytea NOT NULL,
        created_at double precision NOT NULL,
        active boolean NOT NULL DEFAULT true,
        PRIMARY KEY (domain, selector)
    );
    CREATE TABLE accounts (
        id {T} PRIMARY KEY,
        address {T} NOT NULL UNIQUE,
        password_hash {T} NOT NULL,
        quota bigint NOT NULL,
        used bigint NOT NULL DEFAULT 0,
        modseq bigint NOT NULL DEFAULT 0,
        created_at double precision NOT NULL
    );
    CREATE TABLE mailboxes (
        account_id {T} NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        id {T} NOT NULL,
        position bigint GENERATED ALWAYS AS IDENTITY,
        name {T} NOT NULL,
        role {T},
        uidvalidity bigint NOT NULL,
        uidnext bigint NOT NULL DEFAULT 1,
        subscribed boolean NOT NULL DEFAULT true,
        modseq bigint NOT NULL DEFAULT 0,
        total bigint NOT NULL DEFAULT 0,
        unseen bigint NOT NULL DEFAULT 0,
        bytes bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (account_id, id),
        UNIQUE (account_id, name)
    );
    CREATE UNIQUE INDEX mailboxes_role ON mailboxes (account_id, role) WHERE role IS NOT NULL;
    CREATE TABLE emails (
        account_id {T} NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        id {T} NOT NULL,
        thread_id {T} NOT NULL,
        delivery_key {T} NOT NULL,
        content_sha256 {T} NOT NULL,
        blob_id {T} NOT NULL,
        size bigint NOT NULL,
        received_at bigint NOT NULL,
        sent_at bigint,
        message_id {T},
        subject {T} NOT NULL,
        thread_subject {T} NOT NULL,
        from_addr {T} NOT NULL,
        headers bytea NOT NULL,
        preview {T} NOT NULL,
        has_attachment boolean NOT NULL,
        attachments bytea NOT NULL,
        envelope bytea NOT NULL,
        bodystructure bytea NOT NULL,
        body bytea NOT NULL,
        parts bytea NOT NULL,
        blob_refs bytea NOT NULL,
        keywords text[] COLLATE "C" NOT NULL,
        modseq bigint NOT NULL,
        head bytea NOT NULL DEFAULT '',
        PRIMARY KEY (account_id, id),
        UNIQUE (account_id, delivery_key)
    );
    CREATE INDEX emails_newest ON emails (account_id, received_at DESC, id DESC);
    CREATE INDEX emails_thread ON emails (account_id, thread_id);
    CREATE INDEX emails_msgid ON emails (account_id, message_id);
    CREATE INDEX emails_subject ON emails (account_id, thread_subject, received_at);
    CREATE INDEX emails_modseq ON emails (account_id, modseq);
    CREATE INDEX emails_keywords ON emails USING gin (keywords);
    CREATE TABLE thread_keys (
        account_id {T} NOT NULL,
        msgid {T} NOT NULL,
        thread_id {T} NOT NULL,
        PRIMARY KEY (account_id, msgid)
    );
    CREATE INDEX thread_keys_thread ON thread_keys (account_id, thread_id);
    CREATE TABLE mailbox_emails (
        account_id {T} NOT NULL,
        mailbox_id {T} NOT NULL,
        uid bigint NOT NULL,
        email_id {T} NOT NULL,
        modseq bigint NOT NULL,
        received_at bigint NOT NULL,
        PRIMARY KEY (account_id, mailbox_id, uid),
        UNIQUE (account_id, mailbox_id, email_id),
        FOREIGN KEY (account_id, mailbox_id) REFERENCES mailboxes ON DELETE CASCADE,
        FOREIGN KEY (account_id, email_id) REFERENCES emails ON DELETE CASCADE
    );
    CREATE INDEX mailbox_emails_email ON mailbox_emails (account_id, email_id);
    CREATE INDEX mailbox_emails_newest
        ON mailbox_emails (account_id, mailbox_id, received_at DESC, email_id DESC);
    CREATE TABLE vanished (
        account_id {T} NOT NULL,
        mailbox_id {T} NOT NULL,
        uid bigint NOT NULL,
        modseq bigint NOT NULL,
        PRIMARY KEY (account_id, mailbox_id, uid),
        FOREIGN KEY (account_id, mailbox_id) REFERENCES mailboxes ON DELETE CASCADE
    );
    CREATE INDEX vanished_modseq ON vanished (account_id, mailbox_id, modseq);
    CREATE TABLE changes (
        account_id {T} NOT NULL,
        modseq bigint NOT NULL,
        kind {T} NOT NULL,
        object_id {T} NOT NULL,
        op {T} NOT NULL,
        PRIMARY KEY (account_id, modseq, kind, object_id)
    );
    CREATE TABLE objects (
        account_id {T} NOT NULL,
        kind {T} NOT NULL,
        id {T} NOT NULL,
        data bytea NOT NULL,
        modseq bigint NOT NULL,
        PRIMARY KEY (account_id, kind, id)
    );
    """,
    # 2: the last UIDVALIDITY each account gave, so that a mailbox deleted and created again
    # (even within one second) never gets the same one (RFC 3501 §2.3.1.1).
    """
    ALTER TABLE accounts ADD COLUMN last_uidvalidity bigint NOT NULL DEFAULT 0;
    UPDATE accounts a SET last_uidvalidity = coalesce(
        (SELECT max(uidvalidity) FROM mailboxes m WHERE m.account_id = a.id), 0);
    """,
    # 3: JMAP Email/query's size and sentAt sorts read these in order (ties newest first),
    # and the subject sort reads its rows from the last one, not the wide emails rows.
    """
    CREATE INDEX emails_sort_size ON emails (account_id, size, received_at DESC, id DESC);
    CREATE INDEX emails_sort_sent ON emails
        (account_id, sent_at NULLS FIRST, received_at DESC, id DESC);
    CREATE INDEX emails_sort_subject ON emails (account_id, received_at, id)
        INCLUDE (thread_id, subject);
    """,
)


async def migrate(conn: asyncpg.Connection, component: str = COMPONENT,
                  migrations: tuple[str, ...] = MIGRATIONS) -> int:
    """Apply the migrations `conn`'s database lacks; returns the version it is at now."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version"
            ' (component text COLLATE "C" PRIMARY KEY, version integer NOT NULL)')
        current = await conn.fetchval(
            "SELECT version FROM schema_version WHERE component = $1", component) or 0
        if current > len(migrations):
            raise RuntimeError(f"the database's {component} schema is version {current}, newer"
                               f" than this build knows ({len(migrations)})")
        for sql in migrations[current:]:
            await conn.execute(sql)
        await conn.execute(
            "INSERT INTO schema_version (component, version) VALUES ($1, $2)"
            " ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
            component, len(migrations))
    return len(migrations)
