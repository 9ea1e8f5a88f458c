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

from mailyard.core.indextext import body_substring_text
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


_SCHEMA_4 = """
CREATE VIRTUAL TABLE docs USING fts5 (
    acct, email_id UNINDEXED, subject, from_, to_, cc, bcc, body, filenames, attachments,
    list_id, tokenize = 'unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE grams USING fts5 (
    account_id UNINDEXED, email_id UNINDEXED, subject, addresses, body, tokenize = 'trigram');
CREATE TABLE doc_ids (account_id TEXT NOT NULL, email_id TEXT NOT NULL,
    rowid_ INTEGER NOT NULL, PRIMARY KEY (account_id, email_id)) WITHOUT ROWID;
CREATE INDEX doc_ids_rowid ON doc_ids (rowid_);
CREATE TABLE generations (account_id TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
"""


def _write_schema_4_file(path: Path, docs: list[IndexDocument], version: int) -> None:
    """A search.db as a build of `version` (2-4) wrote it: the trigram table with positions
    and its own copy of the text; before 3 its body was the body alone."""
    with sqlite3.connect(path) as conn:
        conn.executescript(_SCHEMA_4)
        for rowid, doc in enumerate(docs, 1):
            conn.execute("INSERT INTO docs (rowid, acct, email_id, subject, from_, to_, cc,"
                         " bcc, body, filenames, attachments, list_id) VALUES"
                         " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (rowid, doc.account_id.lower(), doc.email_id, doc.subject, doc.from_,
                          doc.to, doc.cc, doc.bcc, doc.body, doc.filenames,
                          doc.attachment_text, doc.list_id))
            body = doc.body if version < 3 else body_substring_text(
                doc.body, doc.filenames, doc.attachment_text, doc.part_headers)
            conn.execute("INSERT INTO grams (rowid, account_id, email_id, subject, addresses,"
                         " body) VALUES (?, ?, ?, ?, ?, ?)",
                         (rowid, doc.account_id, doc.email_id, doc.subject, doc.from_, body))
            conn.execute("INSERT INTO doc_ids VALUES (?, ?, ?)",
                         (doc.account_id, doc.email_id, rowid))
        conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


async def test_sqlite_index_of_schema_2_gets_attachment_text_on_open(tmp_path: Path) -> None:
    path = tmp_path / "search.db"
    _write_schema_4_file(path, _docs(), version=2)
    old = SqliteSearchIndex(path)
    try:
        assert await old.substring(ALICE, "body", ".pdf") == {"report"}
        assert await old.substring(ALICE, "body", "secret word") == {"notes"}
        assert await old.substring(ALICE, "body", "no pdf") == {"plain"}
    finally:
        old.close()


async def test_sqlite_index_of_schema_4_keeps_part_headers_and_deletes_cleanly(
        tmp_path: Path) -> None:
    """Schema 5's trigram table keeps no text: a schema-4 file's part headers are carried
    into `part_headers` on open, and deleting a document afterwards (FTS5 told the values it
    indexed, rebuilt from docs and part_headers) leaves none of its trigrams behind."""
    docs = [*_docs(), IndexDocument(
        ALICE, "parts", 1_790_000_003_000, subject="with parts", body="hello there",
        filenames="a.ics", part_headers="Content-Type: text/calendar; charset=qwkoi8")]
    path = tmp_path / "search.db"
    _write_schema_4_file(path, docs, version=4)
    index = SqliteSearchIndex(path)
    try:
        assert await index.substring(ALICE, "body", "charset=QWKOI8") == {"parts"}
        assert await index.substring(ALICE, None, "TEXT/calendar") == {"parts"}
        assert await index.substring(ALICE, "body", "secret word") == {"notes"}
        await index.delete(ALICE, ["parts", "notes"])
        assert await index.substring(ALICE, "body", "qwkoi8") == set()
        assert await index.substring(ALICE, "body", ".pdf") == {"report"}
    finally:
        index.close()
    with sqlite3.connect(path) as conn:
        for gram in ("qwk", "koi", "zyx", "Zyx", "a.i"):
            assert conn.execute("SELECT count(*) FROM grams WHERE grams MATCH ?",
                                (f'"{gram}"',)).fetchone() == (0,), gram
        assert conn.execute("SELECT count(*) FROM grams WHERE grams MATCH '\".pd\"'"
                            ).fetchone() == (1,)
        conn.execute("INSERT INTO grams (grams) VALUES ('integrity-check')")
        # Schema 6's heads, filled on open from docs and part_headers, emptied as well.
        assert conn.execute("SELECT count(*) FROM heads WHERE heads MATCH '\"qwkoi8\"'"
                            ).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM heads WHERE heads MATCH '\"t.pdf\"'"
                            ).fetchone() == (1,)
        conn.execute("INSERT INTO heads (heads) VALUES ('integrity-check')")
    conn.close()


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


async def test_substring_is_the_characters_in_order_case_folded(search_index: Any) -> None:
    """Every trigram of a needle being in a document is not enough (schema 5's trigram table
    knows which columns hold a trigram, not where): the characters must be there in order,
    in one column, in any case."""
    await search_index.index([
        IndexDocument(ALICE, "split", 1_790_000_000_000, subject="Été abcz",
                      from_="zbcd@example.test", body="abcX then bcd, and ZBCD"),
        IndexDocument(ALICE, "whole", 1_790_000_001_000, subject="summer",
                      body="xxABCDxx été", filenames="été.pdf"),
    ])
    assert await search_index.substring(ALICE, "body", "abcd") == {"whole"}
    assert await search_index.substring(ALICE, None, "aBcD") == {"whole"}
    assert await search_index.substring(ALICE, "subject", "ÉTÉ ABC") == {"split"}
    assert await search_index.substring(ALICE, "body", "ÉTÉ.PDF") == {"whole"}
    assert await search_index.substring(ALICE, "addresses", "zbcd@EX") == {"split"}
    assert await search_index.substring(ALICE, None, "abcz") == {"split"}
    assert await search_index.substring(ALICE, "body", "x then b") == {"split"}
    assert await search_index.substring(ALICE, "body", "then  bcd") == set()


async def test_sqlite_substring_folds_as_fts5_does(tmp_path: Path) -> None:
    """The candidates' check folds case as the trigram tokenizer does (capital, small and
    final sigma alike)."""
    index = SqliteSearchIndex(tmp_path / "search.db")
    try:
        body = "\u039f\u0394\u039f\u03a3 \u039f\u0394\u039f\u03a3\u0391"
        await index.index([IndexDocument(ALICE, "greek", 1_790_000_000_000, body=body)])
        for needle in ("\u03b4\u03bf\u03c3", "\u0394\u039f\u03a3 \u03bf",
                       "\u03bf\u03b4\u03bf\u03c2", "\u03b4\u03bf\u03c2\u03b1"):
            assert await index.substring(ALICE, "body", needle) == {"greek"}, needle
    finally:
        index.close()


async def test_sqlite_clear_of_the_only_account_keeps_the_layout(tmp_path: Path) -> None:
    """`mailyard reindex` of a one-account index empties the tables at once: they come back
    with the same settings, and what is indexed next is found (words and substrings)."""
    path = tmp_path / "search.db"
    index = SqliteSearchIndex(path)
    try:
        await index.index(_docs())
        await index.clear(ALICE)
        assert await index.count(ALICE) == 0
        assert await index.substring(ALICE, "body", "zyxwvuton") == set()
        await index.index(_docs()[1:2])
        assert await index.substring(ALICE, "body", "zyxwvuton") == {"notes"}
        assert await index.count(ALICE) == 1
    finally:
        index.close()
    with sqlite3.connect(path) as conn:
        for table in ("docs", "grams"):
            assert conn.execute(f"SELECT v FROM {table}_config WHERE k = 'automerge'"
                                ).fetchone() == (8,), table
        assert conn.execute("SELECT count(*) FROM grams WHERE grams MATCH '\"pdf\"'"
                            ).fetchone() == (0,)
    conn.close()


async def test_substring_needles_are_literal_text(search_index: Any) -> None:
    """A needle's `%`, `_` and backslash are characters like any other (SQLite checks ASCII
    needles with LIKE, which gives them meanings): candidates holding every trigram of the
    needle, and what the needle would match as a pattern, are not hits."""
    await search_index.index([
        IndexDocument(ALICE, "percent", 1_790_000_000_000, subject="sale",
                      body="now 50%_OFF everything"),
        IndexDocument(ALICE, "pattern", 1_790_000_001_000, subject="sale",
                      body="50%_o _off 50 big off, 50%Xoff"),
        IndexDocument(ALICE, "path", 1_790_000_002_000, subject="paths",
                      body="C:\\Temp\\new"),
        IndexDocument(ALICE, "escaped", 1_790_000_003_000, subject="paths",
                      body="c:t c:\\ :\\t"),
    ])
    assert await search_index.substring(ALICE, "body", "50%_off") == {"percent"}
    assert await search_index.substring(ALICE, None, "0%_Of") == {"percent"}
    assert await search_index.substring(ALICE, "body", "c:\\t") == {"path"}
    assert await search_index.substring(ALICE, "body", "\\temp\\") == {"path"}
    assert await search_index.substring(ALICE, "body", "c:\\ :") == {"escaped"}


async def test_sqlite_body_check_folds_text_past_ascii(tmp_path: Path) -> None:
    """An ASCII needle is looked for inside SQLite (LIKE folds ASCII letters only); a text
    past ASCII it does not find the needle in is checked with str.casefold as before: "Maße"
    holds "asse". The same answers with and without a document in `unfolded` (the short
    texts' check) and with a second account in the index (its documents are candidates of
    the trigram query too)."""
    index = SqliteSearchIndex(tmp_path / "search.db")
    docs = [
        IndexDocument(ALICE, "sharp", 1_790_000_000_000, subject="one", body="Maße ass sse"),
        IndexDocument(ALICE, "accent", 1_790_000_001_000, subject="two",
                      body="café ass sse"),
        IndexDocument(ALICE, "ascii", 1_790_000_002_000, subject="three", body="ass sse"),
        IndexDocument(ALICE, "upper", 1_790_000_003_000, subject="four",
                      body="été PASSE-partout"),
        IndexDocument(ALICE, "attached", 1_790_000_004_000, subject="five", body="ass sse",
                      attachment_text="GROẞE Kasse oss"),
        IndexDocument(ALICE, "kelvin", 1_790_000_005_000, subject="six",
                      body="200 \u212aelvin, kel elv lvi vin, 0 ke"),
    ]
    expected = {
        ("body", "asse"): {"sharp", "upper", "attached"},
        (None, "asse"): {"sharp", "upper", "attached"},
        ("body", "osse"): {"attached"},
        ("body", "200 kelvin"): {"kelvin"},
        (None, "kelvin,"): {"kelvin"},
        ("body", "ss ss"): {"sharp", "accent", "ascii", "attached"},
        ("body", "é pa"): {"upper"},
    }
    try:
        await index.index(docs)
        for (field, needle), hits in expected.items():
            assert await index.substring(ALICE, field, needle) == hits, (field, needle)
        # A short text past ASCII folding to ASCII: the short texts are checked again.
        await index.index([IndexDocument(ALICE, "subject", 1_790_000_006_000,
                                         subject="Maße ass sse", body="none")])
        expected[(None, "asse")] = {"sharp", "upper", "attached", "subject"}
        for (field, needle), hits in expected.items():
            assert await index.substring(ALICE, field, needle) == hits, (field, needle)
        await index.index([IndexDocument("a-bob", "bob", 1_790_000_007_000,
                                         body="Maße PASSE kelvin, 200 kelvin")])
        for (field, needle), hits in expected.items():
            assert await index.substring(ALICE, field, needle) == hits, (field, needle)
        assert await index.substring("a-bob", "body", "asse") == {"bob"}
    finally:
        index.close()


async def test_sqlite_index_of_schema_6_keeps_its_answers_with_the_body_trigrams_alone(
        tmp_path: Path) -> None:
    """Schema 7's trigram table holds the body alone (`heads` has the subject and the
    addresses): a schema-6 file (three columns, detail=column) has it rebuilt on open from
    docs and part_headers, every field's substrings answer as before, and deleting leaves no
    trigram behind."""
    docs = [*_docs(), IndexDocument(
        ALICE, "parts", 1_790_000_003_000, subject="with parts", body="hello there",
        from_="Zoë Quarx <zoe@qxmail.example>", filenames="a.ics",
        part_headers="Content-Type: text/calendar; charset=qwkoi8")]
    path = tmp_path / "search.db"
    index = SqliteSearchIndex(path)
    await index.index(docs)
    index.close()
    with sqlite3.connect(path) as conn:  # the file as schema 6 wrote it
        conn.execute("DROP TABLE grams")
        conn.execute("CREATE VIRTUAL TABLE grams USING fts5 (subject, addresses, body,"
                     " tokenize = 'trigram', detail = column, content = '')")
        for rowid, subject, from_, body, names, text, headers in conn.execute(
                "SELECT c.id, c.c2, c.c3, c.c7, c.c8, c.c9, p.text FROM docs_content c"
                " LEFT JOIN part_headers p ON p.rowid_ = c.id").fetchall():
            conn.execute("INSERT INTO grams (rowid, subject, addresses, body)"
                         " VALUES (?, ?, ?, ?)", (rowid, subject, from_ or "",
                                                  body_substring_text(body, names or "",
                                                                      text or "",
                                                                      headers or "")))
        conn.execute("PRAGMA user_version = 6")
    conn.close()
    index = SqliteSearchIndex(path)
    try:
        asked = {
            ("body", ".pdf"): {"report"}, ("body", "charset=QWKOI8"): {"parts"},
            (None, "TEXT/calendar"): {"parts"}, ("subject", "ITH PA"): {"parts"},
            ("subject", "not"): {"notes"}, ("addresses", "qxmail.EX"): {"parts"},
            ("addresses", "zoë"): {"parts"}, ("addresses", "Zoë Q"): {"parts"},
            (None, "zoe@"): {"parts"}, (None, "notes"): {"notes"}, ("body", "zoe"): set(),
            (None, "pdf"): {"report", "plain"}, ("subject", "pdf"): set(),
        }
        for (field, needle), expected in asked.items():
            assert await index.substring(ALICE, field, needle) == expected, (field, needle)
        await index.delete(ALICE, ["parts", "notes"])
        assert await index.substring(ALICE, "body", "qwkoi8") == set()
        assert await index.substring(ALICE, "addresses", "qxmail") == set()
    finally:
        index.close()
    with sqlite3.connect(path) as conn:
        assert [r[1] for r in conn.execute("PRAGMA table_info(grams)")] == ["body"]
        for gram in ("qwk", "koi", "zyx", "a.i"):
            assert conn.execute("SELECT count(*) FROM grams WHERE grams MATCH ?",
                                (f'"{gram}"',)).fetchone() == (0,), gram
        assert conn.execute("SELECT count(*) FROM grams WHERE grams MATCH '\".pd\"'"
                            ).fetchone() == (1,)
        conn.execute("INSERT INTO grams (grams) VALUES ('integrity-check')")
        assert conn.execute("PRAGMA user_version").fetchone() == (7,)
    conn.close()
