"""What the PostgreSQL SearchIndex must do beyond the shared contract: answer exactly as the
SQLite engine does on random documents and query trees (a differential test over both real
engines), keep working on documents past tsvector's limits, use its account-first indexes,
and refuse a schema newer than it knows."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailyard.core import query as q
from mailyard.store.ports import IndexDocument
from mailyard.store.postgres.search import PostgresSearchIndex
from mailyard.store.sqlite.search import SqliteSearchIndex
from tests.pgserver import TestDatabase

R = TypeVar("R")
ACCOUNT, OTHER = "a-diff", "a-other"
WORDS = ["alpha", "Beta", "gamma", "café", "cafe", "Zürich", "zurich", "ÉTÉ", "ete", "x1", "42",
         "and", "not", "or", "near"]
GLUE = [" ", " ", " ", ", ", "-", "@", ".", " <b>", "&", "'", '"', "*", "(", ":"]
FIELDS = [None, "subject", "from", "to", "cc", "bcc", "body", "filename", "list"]


def text(rng: random.Random, most: int) -> str:
    out = ""
    for _ in range(rng.randint(0, most)):
        out += rng.choice(WORDS) + rng.choice(GLUE)
    return out


def documents(seed: int, count: int) -> list[IndexDocument]:
    rng = random.Random(seed)
    return [IndexDocument(
        ACCOUNT, f"e{n:03d}", 1_000 + rng.randint(0, count // 2) * 1000,  # ties included
        subject=text(rng, 4), from_=text(rng, 3), to=text(rng, 2), cc=text(rng, 1),
        bcc=text(rng, 1), body=text(rng, 30), filenames=text(rng, 2),
        attachment_text=text(rng, 5), list_id=text(rng, 1)) for n in range(count)]


texts = st.builds(q.Text, st.lists(st.sampled_from(WORDS + GLUE), min_size=1, max_size=3)
                  .map("".join), st.sampled_from(FIELDS), st.booleans())
trees = st.recursive(texts, lambda inner: st.one_of(
    st.builds(q.Not, inner),
    st.lists(inner, max_size=3).map(lambda items: q.And(tuple(items))),
    st.lists(inner, max_size=3).map(lambda items: q.Or(tuple(items)))), max_leaves=6)


class Both:
    """The two engines side by side, on one event loop the synchronous hypothesis test drives."""

    def __init__(self, directory: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.database = TestDatabase()
        self.sqlite = SqliteSearchIndex(directory / "search.db")
        self.postgres = self.run(self._connect())

    async def _connect(self) -> PostgresSearchIndex:
        return await PostgresSearchIndex.connect(await self.database.dsn())

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.postgres.close()
        self.sqlite.close()
        self.run(self.database.drop())
        self.loop.close()


@pytest.fixture
def both(tmp_path: Path) -> Iterator[Both]:
    engines = Both(tmp_path)
    try:
        yield engines
    finally:
        engines.close()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), nodes=st.lists(trees, min_size=1, max_size=8),
       needles=st.lists(st.tuples(st.sampled_from([None, "subject", "addresses", "body"]),
                                  st.integers(0, 2_000), st.integers(1, 8)), max_size=4))
def test_answers_as_the_sqlite_engine_does(both: Both, seed: int, nodes: list[q.Node],
                                           needles: list[tuple[str | None, int, int]]) -> None:
    docs = documents(seed, 30)
    # Ties in received_at are ordered by insertion in SQLite and by email id here: give the
    # documents increasing ids in insertion order so the two orders are the same.
    docs.sort(key=lambda d: d.email_id)

    async def check() -> None:
        for engine in (both.sqlite, both.postgres):
            await engine.clear(ACCOUNT)
            await engine.index(docs)
            await engine.index([IndexDocument(OTHER, "e-other", 5_000, subject=" ".join(WORDS),
                                              body=" ".join(WORDS))])
        for node in nodes:
            want = await both.sqlite.query(ACCOUNT, node, total=True)
            got = await both.postgres.query(ACCOUNT, node, total=True)
            assert got.ids == want.ids, q.format(node)
            assert got.total == want.total
            for order in ("oldest", "relevance"):
                want = await both.sqlite.query(ACCOUNT, node, order=order, limit=7, position=3)
                got = await both.postgres.query(ACCOUNT, node, order=order, limit=7, position=3)
                if order == "oldest":
                    assert got.ids == want.ids, q.format(node)
                else:  # ranked differently, but the same number of hits on the page
                    assert len(got.ids) == len(want.ids), q.format(node)
            among = [d.email_id for d in docs[::3]] + ["e-other"]
            want = await both.sqlite.query(ACCOUNT, node, among=among, total=True)
            got = await both.postgres.query(ACCOUNT, node, among=among, total=True)
            assert (got.ids, got.total) == (want.ids, want.total), q.format(node)
            want = await both.sqlite.query(ACCOUNT, node, total=True, received=(3_000, 12_000))
            got = await both.postgres.query(ACCOUNT, node, total=True, received=(3_000, 12_000))
            assert (got.ids, got.total) == (want.ids, want.total), q.format(node)
            ids = [d.email_id for d in docs]
            assert (await both.postgres.snippets(ACCOUNT, node, ids)
                    == await both.sqlite.snippets(ACCOUNT, node, ids)), q.format(node)
        for field, at, length in needles:
            source = docs[at % len(docs)]
            haystack = {"subject": source.subject, "body": source.body}.get(
                field or "", source.from_ + " " + source.to)
            start = at % max(1, len(haystack))
            needle = haystack[start:start + length].swapcase()
            assert (await both.postgres.substring(ACCOUNT, field, needle)
                    == await both.sqlite.substring(ACCOUNT, field, needle)), (field, needle)

    both.run(check())


async def explain(conn: asyncpg.Connection, sql: str, *args: object) -> str:
    return "\n".join(r[0] for r in await conn.fetch(sql, *args))


@pytest.fixture
async def index() -> AsyncIterator[PostgresSearchIndex]:
    database = TestDatabase()
    opened = await PostgresSearchIndex.connect(await database.dsn())
    try:
        yield opened
    finally:
        opened.close()
        await database.drop()


async def test_documents_past_tsvector_limits(index: PostgresSearchIndex) -> None:
    """40,000 body words (positions stop at 16,383), then 100,000 distinct words (~1.3 MB;
    a tsvector holds under 1 MB) in the body and the attachment: indexed, and the words that
    fit are found in their fields."""
    distinct = " ".join(f"term{n:07d}x" for n in range(100_000))
    body = " ".join(f"w{n}" for n in range(40_000)) + f" omega {distinct}"
    attachment = f"{distinct} {distinct}"  # past the last position: slots C and D each
    document = IndexDocument(ACCOUNT, "e-big", 1, subject="big one", body=body,
                             attachment_text=attachment)
    await index.index([document])
    assert (await index.query(ACCOUNT, q.Text("omega", field="body"))).ids == ["e-big"]
    assert (await index.query(ACCOUNT, q.Text("w39999", field="body"))).ids == ["e-big"]
    assert (await index.query(ACCOUNT, q.Text("omega", field="subject"))).ids == []
    assert (await index.query(ACCOUNT, q.Text("w1 w2", phrase=True))).ids == ["e-big"]
    assert (await index.query(ACCOUNT, q.Text("term0000001x"))).ids == ["e-big"]
    assert await index.substring(ACCOUNT, "body", "W39999 OMEGA") == {"e-big"}
    [snippet] = await index.snippets(ACCOUNT, q.Text("omega"), ["e-big"])
    assert snippet.preview is not None and "w39999 <mark>omega</mark> term0000000x" in (
        snippet.preview)
    assert (await index.query(ACCOUNT, q.Text("term0000001x", field="body"))).ids == ["e-big"]
    assert (await index.query(ACCOUNT, q.Text("term0099999x"))).ids == []  # past the budget


async def test_text_postgresql_cannot_store_is_cleaned(index: PostgresSearchIndex) -> None:
    await index.index([IndexDocument(ACCOUNT, "e-nul", 1, subject="nul\x00byte \udcff here",
                                     body="zero\x00width")])
    assert (await index.query(ACCOUNT, q.Text("byte"))).ids == ["e-nul"]
    assert await index.substring(ACCOUNT, "body", "zero\x00wid") == {"e-nul"}


async def test_concurrent_batches_over_the_same_emails(index: PostgresSearchIndex) -> None:
    """Reindexing workers may write overlapping batches at once: no deadlock, one row each."""
    batches = [[IndexDocument(ACCOUNT, f"e{n:02d}", n, subject=f"round {r}")
                for n in (range(20) if r % 2 else reversed(range(20)))] for r in range(6)]
    await asyncio.gather(*(index.index(b) for b in batches))
    assert await index.count(ACCOUNT) == 20
    assert (await index.query(ACCOUNT, q.Text("round"), total=True)).total == 20


async def test_rare_words_and_substrings_are_answered_by_the_gin_indexes(
        index: PostgresSearchIndex) -> None:
    """Not by reading every document of the account: the plans of the adapter's statements
    for a rare word (intersected with the account's lexeme) and a substring, on 6,000
    documents of two accounts, vacuumed and analysed as autovacuum would."""
    rng = random.Random(1)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=12)) for _ in range(3000)]
    await index.index([IndexDocument(account, f"e{n}", n, subject=f"common word{n % 500}",
                                     body=f"body {words[n]}")
                       for n in range(3000) for account in (ACCOUNT, OTHER)])
    conn = await asyncpg.connect(index.dsn)
    try:
        await conn.execute("VACUUM ANALYZE search_docs")  # GIN's pending list merged
        plan = await explain(conn,
            "EXPLAIN ANALYZE SELECT email_id FROM search_docs WHERE account_id = $1"
            " AND doc @@ $2::text::tsquery ORDER BY received_at DESC, email_id DESC LIMIT 50",
            ACCOUNT, f"'account:{ACCOUNT}' & '{words[7]}'")
        assert "Bitmap Index Scan on search_docs_words" in plan, plan
        assert "Rows Removed by Filter" not in plan, plan  # the other account's twin
        plan = await explain(conn,
            "EXPLAIN SELECT email_id FROM search_docs WHERE account_id = $1"
            " AND body_fold LIKE $2", ACCOUNT, f"%{words[7][2:9]}%")
        assert "Bitmap Index Scan on search_docs_body_grams" in plan, plan
    finally:
        await conn.close()
    hits = await index.query(ACCOUNT, q.Text(words[7]), total=True)
    assert (hits.ids, hits.total) == (["e7"], 1)
    assert await index.substring(OTHER, "body", words[7][2:9].upper()) == {"e7"}


async def test_a_newer_schema_is_refused() -> None:
    database = TestDatabase()
    try:
        dsn = await database.dsn()
        PostgresSearchIndex(dsn).close()  # nothing opened before first use
        first, second = await asyncio.gather(PostgresSearchIndex.connect(dsn),
                                             PostgresSearchIndex.connect(dsn))
        first.close()
        second.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "UPDATE schema_version SET version = version + 1 WHERE component = 'search'")
        finally:
            await conn.close()
        with pytest.raises(RuntimeError, match="newer"):
            await PostgresSearchIndex.connect(dsn)
    finally:
        await database.drop()
