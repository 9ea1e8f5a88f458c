"""SQLite's `heads` (schema 6): the short texts' trigrams with positions answer IMAP
SUBJECT, the address keys and BODY's attachment names and part headers by a phrase query,
with no text read, and give the same answer as the check of the candidates' text (str.casefold)
did, including for documents whose characters fold differently in FTS5 and in Python."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailyard.store.ports import IndexDocument
from mailyard.store.sqlite.search import _ASCII_FOLDED, SqliteSearchIndex

ALICE, BOB = "a-alice", "a-bob"


def _docs() -> list[IndexDocument]:
    return [
        IndexDocument(ALICE, "ascii", 1_790_000_000_000, subject="Passe-partout",
                      from_="Bob Graisbe <bob@graisbe.net>", body="see attached",
                      filenames="plan.PDF", part_headers="Content-Type: application/pdf"),
        # str.casefold makes "Maße" "masse", which holds "asse"; FTS5's trigrams do not.
        IndexDocument(ALICE, "sharp", 1_790_000_001_000, subject="Maße ass sse",
                      to="carol@example.org", body="nothing here"),
        # Every trigram of "asse" and of "graisbe.net", never the whole of either.
        IndexDocument(ALICE, "scattered", 1_790_000_002_000, subject="ass sse",
                      cc="grai sbe.n be.net <x@y.z>", body="plain .pd pdf"),
        IndexDocument(BOB, "other", 1_790_000_003_000, subject="Passe",
                      from_="bob@graisbe.net", filenames="other.pdf"),
    ]


async def test_sqlite_header_substrings_from_positions_agree_with_the_check(
        tmp_path: Path) -> None:
    index = SqliteSearchIndex(tmp_path / "search.db")
    try:
        await index.index(_docs())
        assert await index.substring(ALICE, "subject", "asse") == {"ascii", "sharp"}
        assert await index.substring(ALICE, "subject", "MAßE") == {"sharp"}
        assert await index.substring(ALICE, "subject", "ss ss") == {"sharp", "scattered"}
        assert await index.substring(ALICE, "addresses", "GRAISBE.NET") == {"ascii"}
        assert await index.substring(ALICE, "addresses", "graisbe.net <") == set()
        assert await index.substring(ALICE, "addresses", "bob graisbe") == {"ascii"}
        assert await index.substring(ALICE, "body", ".pdf") == {"ascii"}
        assert await index.substring(ALICE, None, "application/PDF") == {"ascii"}
        assert await index.substring(ALICE, None, "asse") == {"ascii", "sharp"}
        assert await index.substring(ALICE, None, "graisbe.net") == {"ascii"}
        assert await index.substring(BOB, "addresses", "graisbe.net") == {"other"}
        assert await index.substring(BOB, "body", "other.pdf") == {"other"}
    finally:
        index.close()
    with sqlite3.connect(tmp_path / "search.db") as conn:
        # Only the document whose text folds differently is left to the check.
        assert conn.execute("SELECT count(*) FROM unfolded").fetchone() == (1,)
    conn.close()


async def test_sqlite_delete_and_clear_leave_nothing_in_heads(tmp_path: Path) -> None:
    """`heads` keeps no text: a deleted document's values are given back to FTS5, so none of
    its trigrams stay behind, and it leaves `unfolded`."""
    path = tmp_path / "search.db"
    index = SqliteSearchIndex(path)
    try:
        await index.index(_docs())
        await index.delete(ALICE, ["ascii", "sharp"])
        assert await index.substring(ALICE, "subject", "asse") == set()
        assert await index.substring(ALICE, "addresses", "graisbe.net") == set()
        assert await index.substring(BOB, "addresses", "graisbe.net") == {"other"}
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM unfolded").fetchone() == (0,)
            for gram in ("ße", "plan.p", "application"):
                assert conn.execute("SELECT count(*) FROM heads WHERE heads MATCH ?",
                                    (f'"{gram}"',)).fetchone() == (0,), gram
            conn.execute("INSERT INTO heads (heads) VALUES ('integrity-check')")
        conn.close()
        await index.clear(BOB)
        await index.clear(ALICE)
        assert await index.substring(BOB, "body", "other.pdf") == set()
        await index.index(_docs()[1:2])
        assert await index.substring(ALICE, "subject", "asse") == {"sharp"}
    finally:
        index.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM heads WHERE heads MATCH '\"pdf\"'"
                            ).fetchone() == (0,)
        conn.execute("INSERT INTO heads (heads) VALUES ('integrity-check')")
    conn.close()


def test_the_characters_left_to_the_check_are_all_that_fold_to_ascii() -> None:
    derived = {ch for ch in map(chr, range(0x80, 0x110000))
               if any(ord(x) < 0x80 for x in ch.casefold() + ch.lower())}
    assert derived == _ASCII_FOLDED


async def test_sqlite_any_field_substring_without_unfolded_documents(tmp_path: Path) -> None:
    """With no document left to the check, an ASCII needle of no field is the phrase's hits
    among the short texts plus the checked candidates of the body's text alone."""
    index = SqliteSearchIndex(tmp_path / "search.db")
    try:
        await index.index([d for d in _docs() if d.email_id != "sharp"])
        assert await index.substring(ALICE, None, "asse") == {"ascii"}
        assert await index.substring(ALICE, None, "PLAIN .P") == {"scattered"}
        assert await index.substring(ALICE, None, "see attached") == {"ascii"}
        assert await index.substring(ALICE, None, "be.net <x") == {"scattered"}
        assert await index.substring(ALICE, None, "graisbe.net") == {"ascii"}
        assert await index.substring(ALICE, None, "plan.pdf") == {"ascii"}
        assert await index.substring(ALICE, None, "ss ss") == {"scattered"}
        assert await index.substring(ALICE, None, "sse plain") == set()
    finally:
        index.close()
