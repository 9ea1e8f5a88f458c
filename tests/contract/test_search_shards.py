"""The search index sharded with the MailStore (search_shards.py) and moved with the account
(search_move.py), on two real PostgreSQL databases.

The writers are stores and indexes of their own (their own pools and directory caches), as
another node's would be; the mover is one more. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mailyard.core.query import Text
from mailyard.store.ports import IndexDocument
from mailyard.store.postgres.search_move import COLUMNS, SELECT, move_with_index
from mailyard.store.postgres.search_shards import ShardedSearchIndex
from mailyard.store.postgres.sharded import ShardedMailStore
from tests.contract.conftest import make_new_email
from tests.pgserver import TestDatabase

_INSERT = (f"INSERT INTO search_docs ({', '.join(COLUMNS)}) VALUES ("
           + ", ".join(f"${n}::tsvector" if c == "doc" else f"${n}"
                       for n, c in enumerate(COLUMNS, 1)) + ")")


@pytest.fixture
async def dsns() -> AsyncIterator[list[str]]:
    databases = [TestDatabase(), TestDatabase()]
    try:
        yield [await d.dsn() for d in databases]
    finally:
        for d in databases:
            await d.drop()


async def _open(dsns: list[str]) -> tuple[ShardedMailStore, ShardedSearchIndex]:
    store = await ShardedMailStore.connect(dsns, max_size=4)
    return store, ShardedSearchIndex(store, max_size=4)


async def _docs_on(index: ShardedSearchIndex, shard: str, account_id: str) -> set[str]:
    pool = await index.shards[shard]._ready()
    return {r[0] for r in await pool.fetch(
        "SELECT email_id FROM search_docs WHERE account_id = $1", account_id)}


async def _deliver(store: ShardedMailStore, index: ShardedSearchIndex, account_id: str,
                   word: str) -> str:
    """One email delivered and indexed as the pipeline does it: store first, then index."""
    email = make_new_email(account_id, subject=f"report {word}")
    result = await store.deliver(email)
    await index.index([IndexDocument(account_id, result.email_id, email.received_at,
                                     subject=f"report {word}",
                                     body=f"quarterly {word} figures " + "filler " * 200)])
    return result.email_id


async def test_each_account_is_indexed_in_its_own_shard(dsns: list[str]) -> None:
    store, index = await _open(dsns)
    try:
        alice = await store.create_account("alice@example.test", "x", 10**9)
        bob = await store.create_account("bob@example.test", "x", 10**9)
        assert {(await store.lookup(a.id)).shard for a in (alice, bob)} == {"0", "1"}  # type: ignore[union-attr]
        a_ids = {await _deliver(store, index, alice.id, f"w{n}") for n in range(3)}
        b_ids = {await _deliver(store, index, bob.id, f"w{n}") for n in range(2)}
        a_home = (await store.lookup(alice.id)).shard  # type: ignore[union-attr]
        b_home = (await store.lookup(bob.id)).shard  # type: ignore[union-attr]
        assert await _docs_on(index, a_home, alice.id) == a_ids
        assert await _docs_on(index, b_home, bob.id) == b_ids
        assert await _docs_on(index, b_home, alice.id) == set()
        assert await _docs_on(index, a_home, bob.id) == set()
        hits = await index.query(bob.id, Text("quarterly"), total=True)
        assert set(hits.ids) == b_ids and hits.total == 2
        await index.delete(bob.id, sorted(b_ids)[:1])
        assert await index.count(bob.id) == 1
    finally:
        index.close()
        store.close()


async def test_search_after_a_move(dsns: list[str]) -> None:
    store, index = await _open(dsns)
    try:
        alice = await store.create_account("alice@example.test", "x", 10**9)
        ids = {await _deliver(store, index, alice.id, f"w{n}") for n in range(20)}
        assert (await store.lookup(alice.id)).shard == "0"  # type: ignore[union-attr]
        moved, report = await move_with_index(store, index, "alice@example.test", "1")
        assert (moved.source, moved.target) == ("0", "1")
        assert report.copied == 20
        assert await _docs_on(index, "0", alice.id) == set()
        assert await _docs_on(index, "1", alice.id) == ids
        hits = await index.query(alice.id, Text("w7"), total=True)
        assert hits.total == 1 and len(hits.ids) == 1
        assert (await index.snippets(alice.id, Text("w7"), hits.ids))[0].subject == \
            "report <mark>w7</mark>"
        # New mail after the move is indexed on the new shard.
        new = await _deliver(store, index, alice.id, "late")
        assert new in await _docs_on(index, "1", alice.id)
        assert (await index.query(alice.id, Text("late"))).ids == [new]
    finally:
        index.close()
        store.close()


async def test_move_while_mail_is_indexed_and_unindexed(dsns: list[str]) -> None:
    """Writers on stores of their own deliver and index, and drop documents, all through the
    move; afterwards the new shard holds exactly what was indexed and not dropped, the old one
    nothing, and a writer that had the old shard cached was routed again."""
    store, index = await _open(dsns)
    w_store, w_index = await _open(dsns)
    try:
        alice = await store.create_account("alice@example.test", "x", 10**9)
        for n in range(300):
            await _deliver(store, index, alice.id, f"old{n}")
        await w_index.count(alice.id)  # the writer's cache now says shard 0
        kept: set[str] = set(await index.indexed_ids(alice.id))
        done = asyncio.Event()
        writes = 0

        async def write() -> None:
            nonlocal writes
            while not done.is_set() or writes < 5:
                email_id = await _deliver(w_store, w_index, alice.id, f"new{writes}")
                kept.add(email_id)
                if writes % 3 == 0:  # and an older one is dropped from the index
                    gone = sorted(kept)[writes % len(kept)]
                    await w_index.delete(alice.id, [gone])
                    kept.discard(gone)
                writes += 1
                await asyncio.sleep(0)

        writer = asyncio.create_task(write())
        await asyncio.sleep(0.05)
        moved, report = await move_with_index(store, index, "alice@example.test", "1")
        done.set()
        await writer
        assert moved.target == "1"
        assert writes > 5 and report.caught_up >= 1, (writes, report)
        assert await _docs_on(index, "0", alice.id) == set()
        assert await _docs_on(index, "1", alice.id) == kept
        assert (await w_index.query(alice.id, Text("quarterly"), total=True)).total == len(kept)
        assert w_index.reroutes + w_store.reroutes >= 1
    finally:
        w_index.close()
        w_store.close()
        index.close()
        store.close()


async def test_documents_left_in_shard_0_are_gathered(dsns: list[str]) -> None:
    """An index from before sharding held every account's documents in shard 0: moving an
    account to the shard it is on gathers them there; `reindex`'s clear drops them."""
    store, index = await _open(dsns)
    try:
        await store.create_account("alice@example.test", "x", 10**9)
        bob = await store.create_account("bob@example.test", "x", 10**9)
        assert (await store.lookup(bob.id)).shard == "1"  # type: ignore[union-attr]
        ids = {await _deliver(store, index, bob.id, f"w{n}") for n in range(4)}
        pool0, pool1 = await index.shards["0"]._ready(), await index.shards["1"]._ready()
        # As the unsharded index left it: bob's documents in shard 0.
        rows = [tuple(r) for r in await pool1.fetch(SELECT, bob.id)]
        await pool1.execute("DELETE FROM search_docs WHERE account_id = $1", bob.id)
        await pool0.executemany(_INSERT, rows)
        assert await index.misplaced() == 1
        assert await index.count(bob.id) == 0
        _, report = await move_with_index(store, index, "bob@example.test", "1")
        assert report.copied == 4
        assert await _docs_on(index, "1", bob.id) == ids
        assert await _docs_on(index, "0", bob.id) == set()
        assert await index.misplaced() == 0
        await pool0.executemany(_INSERT, rows)
        await index.clear(bob.id)
        assert await _docs_on(index, "0", bob.id) == set()
        assert await _docs_on(index, "1", bob.id) == set()
    finally:
        index.close()
        store.close()
