"""Schema versions of the SQLite stores: a file made by the first released schema is migrated
(and stamped with the current version), a file from a newer Mailyard is refused, and
`mailyard serve` says so instead of starting."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from mailyard.core import query as q
from mailyard.store.ports import NewEmail
from mailyard.store.sqlite.db import SchemaTooNew
from mailyard.store.sqlite.mailstore import SCHEMA_VERSION, SqliteMailStore
from mailyard.store.sqlite.policy import SqlitePolicyStore
from mailyard.store.sqlite.queue import SqliteQueue
from mailyard.store.sqlite.search import SCHEMA_VERSION as SEARCH_SCHEMA_VERSION
from mailyard.store.sqlite.search import SqliteSearchIndex

FIRST_SCHEMA = """
CREATE TABLE IF NOT EXISTS domains (name TEXT PRIMARY KEY, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    quota INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    modseq INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS mailboxes (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    role TEXT,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    subscribed INTEGER NOT NULL DEFAULT 1,
    UNIQUE (account_id, name)
);
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
    keywords BLOB NOT NULL,
    modseq INTEGER NOT NULL,
    UNIQUE (account_id, delivery_key)
);
CREATE INDEX IF NOT EXISTS emails_thread ON emails (account_id, thread_id);
CREATE INDEX IF NOT EXISTS emails_msgid ON emails (account_id, message_id);
CREATE INDEX IF NOT EXISTS emails_subject ON emails (account_id, thread_subject, received_at);
CREATE INDEX IF NOT EXISTS emails_received ON emails (account_id, received_at);
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
"""
"""mail.db as the first release (commit 727f7fe) created it: no All Mail mailbox, no
mailbox MODSEQ or counters, no emails.head, no objects, vanished or dkim_keys tables."""

FIRST_MAILBOXES = (("INBOX", "inbox"), ("Sent", "sent"), ("Drafts", "drafts"),
                   ("Trash", "trash"), ("Junk", "junk"), ("Archive", "archive"))


def first_release_db(path: Path) -> dict[str, str]:
    """An account with two emails in INBOX (one read), written the way the first release
    wrote them (keywords as JSON bytes)."""
    conn = sqlite3.connect(path)
    conn.executescript(FIRST_SCHEMA)
    now = time.time()
    conn.execute("INSERT INTO accounts VALUES ('a1', 'old@example.test', 'x', 1000000, 0, 2, ?)",
                 (now,))
    boxes = {}
    for n, (name, role) in enumerate(FIRST_MAILBOXES):
        boxes[role] = f"m{n}"
        conn.execute("INSERT INTO mailboxes (id, account_id, name, role, uidvalidity, uidnext)"
                     " VALUES (?, 'a1', ?, ?, 1700000000, ?)",
                     (f"m{n}", name, role, 3 if role == "inbox" else 1))
    headers = orjson.dumps({"from": [{"name": "", "email": "x@example.test"}], "to": [],
                            "cc": [], "bcc": [], "reply_to": [], "sender": [],
                            "in_reply_to": [], "references": []})
    for uid, (email_id, keywords, size) in enumerate(
            [("e1", [], 100), ("e2", ["$seen"], 250)], start=1):
        conn.execute(
            "INSERT INTO emails VALUES (?, 'a1', ?, ?, 'c', 'b', ?, ?, NULL, ?, ?, ?,"
            " 'x@example.test', ?, 'preview', 0, '[]', x'', x'', x'', '{}', '[]', ?, ?)",
            (email_id, "t" + email_id, "k" + email_id, size, 1700000000000 + uid,
             f"<{email_id}@example.test>", f"subject {email_id}", f"subject {email_id}",
             headers, orjson.dumps(keywords), uid))
        conn.execute("INSERT INTO mailbox_emails VALUES (?, ?, ?, ?)",
                     (boxes["inbox"], uid, email_id, uid))
    conn.execute("UPDATE accounts SET used = 350")
    conn.commit()
    conn.close()
    return boxes


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


async def test_first_release_database_is_migrated(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "mail.db"
    first_release_db(path)
    assert user_version(path) == 0
    with caplog.at_level(logging.WARNING, logger="mailyard.store"):
        store = SqliteMailStore(path)
    try:
        assert any("migrating the schema from version 0" in r.message and "backup" in r.message
                   for r in caplog.records)
        assert user_version(path) == SCHEMA_VERSION
        account = await store.get_account("old@example.test")
        boxes = {b.role: b for b in await store.list_mailboxes(account.id)}
        assert set(boxes) == {"inbox", "sent", "drafts", "trash", "junk", "archive", "all"}
        inbox, everything = boxes["inbox"], boxes["all"]
        assert (inbox.total, inbox.unread, inbox.size) == (2, 1, 350)
        assert (everything.total, everything.unread, everything.size) == (2, 1, 350)
        snap = await store.snapshot(account.id, everything.id)
        assert [(e.uid, e.email_id) for e in snap.entries] == [(1, "e1"), (2, "e2")]
        assert everything.uidnext == 3 and everything.highest_modseq <= account.modseq
        assert inbox.highest_modseq <= account.modseq
        emails = {e.id: e for e in await store.get_emails(account.id, ["e1", "e2"])}
        assert emails["e2"].keywords == ["$seen"] and emails["e1"].mailboxes == {
            "INBOX": 1, "All Mail": 1}
        # The migrated store works as a new one: deliver, flag, expunge from All Mail.
        result = await store.deliver(new_email(account.id))
        assert result.created
        await store.set_keywords(account.id, ["e1"], add=["$seen"])
        assert await store.remove_from_mailbox(account.id, everything.id, ["e2"]) == [2]
        hits = await store.query_emails(account.id, q.And(()), total=True)
        assert hits.total == 2
        after = {b.role: b for b in await store.list_mailboxes(account.id)}
        assert (after["inbox"].total, after["inbox"].unread) == (2, 1)
        assert (await store.get_account_by_id(account.id)).used == 100 + 42
    finally:
        store.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mailyard.store"):
        SqliteMailStore(path).close()  # a second open finds nothing to migrate
    assert not [r for r in caplog.records if "migrating" in r.message]


def new_email(account_id: str) -> NewEmail:
    return NewEmail(
        account_id=account_id, email_id="e3", delivery_key="k3", content_sha256="c3",
        blob_id="b3", size=42, received_at=1700000009000, sent_at=None,
        message_id="<e3@example.test>", in_reply_to=["<e1@example.test>"], references=[],
        subject="Re: subject e1", thread_subject="subject e1", from_=[], to=[], cc=[], bcc=[],
        reply_to=[], sender=[], preview="", has_attachment=False, attachments=[],
        envelope=b"", bodystructure=b"", body=b"", parts={}, mailbox_roles=["inbox"])


def test_fresh_files_get_the_current_version_without_a_migration_note(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mailyard.store"):
        SqliteMailStore(tmp_path / "mail.db").close()
        SqliteQueue(tmp_path / "queue.db").close()
        SqliteSearchIndex(tmp_path / "search.db").close()
        SqlitePolicyStore(tmp_path / "policy.db").close()
    assert not caplog.records
    assert user_version(tmp_path / "mail.db") == SCHEMA_VERSION
    assert user_version(tmp_path / "search.db") == SEARCH_SCHEMA_VERSION
    for name in ("queue.db", "policy.db"):
        assert user_version(tmp_path / name) == 1


@pytest.mark.parametrize("name", ["mail.db", "queue.db", "search.db", "policy.db"])
def test_a_newer_schema_is_refused_untouched(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    opener = {"mail.db": SqliteMailStore, "queue.db": SqliteQueue,
              "search.db": SqliteSearchIndex, "policy.db": SqlitePolicyStore}[name]
    opener(path).close()  # type: ignore[operator]
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    before = path.read_bytes()
    with pytest.raises(SchemaTooNew, match="schema version 99, newer than"):
        opener(path)  # type: ignore[operator]
    assert path.read_bytes() == before


def test_serve_refuses_a_newer_schema(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    SqliteMailStore(data / "mail.db").close()
    with sqlite3.connect(data / "mail.db") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    config = tmp_path / "mailyard.toml"
    config.write_text(f'data_dir = "{data}"\n[listen]\nsmtp = "127.0.0.1:0"\nimap = ""\n'
                      'imaps = ""\nsubmission = ""\nsubmissions = ""\nhttp = ""\npop3 = ""\n'
                      'pop3s = ""\n')
    result = subprocess.run([sys.executable, "-m", "mailyard.cli", "serve", "--config",
                             str(config)], capture_output=True, timeout=60)
    assert result.returncode != 0
    err = result.stderr.decode()
    assert "refusing to start" in err and "newer than this Mailyard" in err, err
    assert "Traceback" not in err
