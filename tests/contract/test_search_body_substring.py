"""SearchIndex contract for IMAP BODY's substrings (issue 18): the trigram body holds what
core.indextext.body_substring_text defines — the body text, the attachments' file names and
their text — on every engine, and a SQLite index written before it did is brought forward
when it is opened, with no reindex."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailyard.store.ports import IndexDocument
from mailyard.store.postgres import schema
from mailyard.store.postgres.search import COMPONENT, MIGRATIONS, PostgresSearchIndex
from mailyard.store.sqlite.search import SqliteSearchIndex
from tests.pgserver import TestDatabase

ALICE = "a-alice"


def _docs() -> list[IndexDocument]:
    return [
        IndexDocument(ALICE, "report", 1_790_000_000_000, subject="figures",
                      body="see the attached figures", filenames="report.pdf"),
        IndexDocument(ALICE, "notes", 1_790_000_001_000, subject="notes",
                      body="notes inside", filenames="notes.txt",
                      attachment_text="the secret word is Zyxwvutonic"),
        IndexDocument(ALICE, "plain", 1_790_000_002_000, subject="plain",
                      body="nothing attached, no pdf here"),
    ]


async def test_body_substrings_cover_attachment_names_and_text(search_index: Any) -> None:
    await search_index.index(_docs())
    assert await search_index.substring(ALICE, "body", ".pdf") == {"report"}
    assert await search_index.substring(ALICE, "body", "RT.PD") == {"report"}
    assert await search_index.substring(ALICE, "body", "zyxwvuton") == {"notes"}
    assert await search_index.substring(ALICE, "body", "pdf") == {"report", "plain"}
    assert await search_index.substring(ALICE, None, "notes.txt") == {"notes"}
    assert await search_index.substring(ALICE, "subject", ".pdf") == set()


async def test_sqlite_index_of_schema_2_gets_attachment_text_on_open(tmp_path: Path) -> None:
    path = tmp_path / "search.db"
    index = SqliteSearchIndex(path)
    await index.index(_docs())
    index.close()
    # What a schema-2 build wrote: the trigram body was the body alone.
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE grams SET body = (SELECT body FROM docs WHERE docs.rowid ="
                     " grams.rowid)")
        assert conn.execute("SELECT count(*) FROM grams WHERE grams MATCH '\".pdf\"'"
                            ).fetchone() == (0,)
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    old = SqliteSearchIndex(path)
    try:
        assert await old.substring(ALICE, "body", ".pdf") == {"report"}
        assert await old.substring(ALICE, "body", "secret word") == {"notes"}
        assert await old.substring(ALICE, "body", "no pdf") == {"plain"}
    finally:
        old.close()


async def test_postgres_rows_of_schema_1_are_named_until_reindexed(
        caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL keeps no attachment text to rebuild from: rows written before are marked,
    and opening the index says to run `mailyard reindex` until none is left."""
    database = TestDatabase()
    dsn = await database.dsn()
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await schema.migrate(conn, COMPONENT, MIGRATIONS[:1])
            await conn.execute(
                "INSERT INTO search_docs (account_id, email_id, received_at, doc, subject, body,"
                " subject_fold, addresses_fold, body_fold) VALUES ($1, 'report', 1, '', '',"
                " 'see the figures', '', '', 'see the figures')", ALICE)
        finally:
            await conn.close()
        with caplog.at_level(logging.WARNING, "mailyard.store.postgres.search"):
            index = await PostgresSearchIndex.connect(dsn)
        assert "1 accounts have documents indexed before" in caplog.text
        try:
            assert await index.substring(ALICE, "body", ".pdf") == set()
            await index.index(_docs()[:1])  # what `mailyard reindex` writes
            assert await index.substring(ALICE, "body", ".pdf") == {"report"}
        finally:
            index.close()
        caplog.clear()
        with caplog.at_level(logging.WARNING, "mailyard.store.postgres.search"):
            again = await PostgresSearchIndex.connect(dsn)
        again.close()
        assert "indexed before" not in caplog.text
    finally:
        await database.drop()
