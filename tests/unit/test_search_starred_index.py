"""mail.db schema 5: the starred emails have their own partial index (emails_flagged), which
is:starred, IMAP FLAGGED and JMAP hasKeyword $flagged read instead of every email's keywords
(issue 18: a count of is:starred walked 100,000 index entries), with the same answers; a
version-4 file gains the index on open. `larger:` a rare size reads the size index."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from mailyard.core import query as q
from mailyard.store.sqlite import filters
from mailyard.store.sqlite.mailstore import SCHEMA_VERSION, SqliteMailStore

from .test_schema_versions import first_release_db, user_version


def plan(path: Path, node: q.Node, order_by: str = "") -> str:
    """SQLite's plan for the store's query of `node` over account a1 (the SQL the store runs:
    its WHERE from filters.compile_where)."""
    args: list[Any] = ["a1"]
    where = filters.compile_where(node, args)
    with sqlite3.connect(path) as conn:
        filters.register(conn)
        rows = conn.execute(f"EXPLAIN QUERY PLAN SELECT e.id FROM emails e WHERE"
                            f" e.account_id = ? AND {where} {order_by}", args).fetchall()
    return " ".join(str(r[3]) for r in rows)


async def test_a_version_4_file_gains_the_starred_index(tmp_path: Path) -> None:
    path = tmp_path / "mail.db"
    first_release_db(path)
    store = SqliteMailStore(path)
    try:
        await store.set_keywords("a1", ["e1"], add=["$flagged"])
        await store.set_keywords("a1", ["e2"], add=["$flaggedish", "$seen"])
    finally:
        store.close()
    with sqlite3.connect(path) as conn:  # as schema 4 left it
        conn.execute("DROP INDEX emails_flagged")
        conn.execute("PRAGMA user_version = 4")
    assert "emails_flagged" not in plan(path, q.Keyword("$flagged"))
    store = SqliteMailStore(path)
    try:
        assert user_version(path) == SCHEMA_VERSION == 5
        assert "USING INDEX emails_flagged" in plan(path, q.Keyword("$flagged"))
        starred = await store.query_emails("a1", q.Keyword("$flagged"), total=True)
        assert (starred.ids, starred.total) == (["e1"], 1)
        # The uppercase spelling JMAP may send, a NOT, and a keyword the pattern must not
        # confuse with it answer as before.
        assert (await store.query_emails("a1", q.Keyword("$Flagged"))).ids == ["e1"]
        assert (await store.query_emails("a1", q.Not(q.Keyword("$flagged")))).ids == ["e2"]
        assert (await store.query_emails("a1", q.Keyword("$flaggedish"))).ids == ["e2"]
        # A flag change reaches the index in the same write.
        await store.set_keywords("a1", ["e1"], remove=["$flagged"])
        await store.set_keywords("a1", ["e2"], add=["$flagged"])
        starred = await store.query_emails("a1", q.Keyword("$flagged"), total=True)
        assert (starred.ids, starred.total) == (["e2"], 1)
        among = await store.query_emails("a1", q.Keyword("$flagged"), among=["e1", "e2"])
        assert among.ids == ["e2"]
    finally:
        store.close()


MAILBOX_100K = [
    ("emails_thread_of", "100000 1 1"), ("emails_sort_subject", "100000 100000 1 1 1 1"),
    ("emails_sort_sent", "100000 100000 1 1 1 1"), ("emails_sort_size", "100000 100000 8 1 1 1"),
    ("emails_narrow", "100000 100000 1 1 1 1"), ("emails_modseq", "100000 100000 1"),
    ("emails_received", "100000 100000 1"), ("emails_subject", "100000 100000 2 1"),
    ("emails_msgid", "100000 100000 1"), ("emails_thread", "100000 100000 2"),
    ("sqlite_autoindex_emails_2", "100000 100000 1"), ("sqlite_autoindex_emails_1", "100000 1")]
"""sqlite_stat1 of one account's 100,000 emails (bench/search.py's mailbox after ANALYZE):
with these, `e.size > ?` alone was read by walking emails_sort_subject newest first."""


async def test_larger_than_a_rare_size_reads_the_size_index(tmp_path: Path) -> None:
    path = tmp_path / "mail.db"
    first_release_db(path)  # e1 100 octets, e2 250
    SqliteMailStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("ANALYZE")
        conn.execute("DELETE FROM sqlite_stat1")
        conn.executemany("INSERT INTO sqlite_stat1 VALUES ('emails', ?, ?)", MAILBOX_100K)
    store = SqliteMailStore(path)
    try:
        for size, found in ((1 << 20, []), (200, ["e2"]), (50, ["e2", "e1"])):
            hits = await store.query_emails("a1", q.Size("larger", size), total=True)
            assert (hits.ids, hits.total) == (found, len(found))
        newest = "ORDER BY e.received_at DESC, e.id DESC LIMIT 50"
        assert "emails_sort_size (account_id=? AND size>?)" in plan(
            path, q.Size("larger", 1 << 20), newest)
    finally:
        store.close()
