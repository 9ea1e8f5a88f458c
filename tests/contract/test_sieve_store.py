"""The SieveScriptStore contract, on SQLite (sieve.db) and PostgreSQL alike: scripts by name,
one active at most, rename and delete with their errors, the duplicate memory's expiry."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mailyard.store.ports import Conflict, NotFound
from tests.contract.conftest import DatabaseEngine, Engine


@pytest.fixture(params=["sqlite", "postgres"])
async def sieve_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    engine: Engine
    if request.param == "sqlite":
        from mailyard.store.sqlite.sieve import SqliteSieveStore

        engine = Engine("sqlite", lambda: SqliteSieveStore(tmp_path / "sieve.db"))
    else:
        from mailyard.store.postgres.sieve import PostgresSieveStore
        from tests.pgserver import TestDatabase

        database = TestDatabase()

        async def open_pg() -> PostgresSieveStore:
            return await PostgresSieveStore.connect(await database.dsn())

        engine = DatabaseEngine("postgres", open_pg, database.drop)
    try:
        yield await engine.open()
    finally:
        await engine.close_all()


async def test_put_list_get_replace(sieve_store: Any) -> None:
    await sieve_store.put_script("a1", "work", "keep;")
    await sieve_store.put_script("a1", "home", "discard;")
    await sieve_store.put_script("a2", "work", "stop;")
    names = [(s.name, s.content, s.active) for s in await sieve_store.list_scripts("a1")]
    assert names == [("home", "discard;", False), ("work", "keep;", False)]
    await sieve_store.set_active("a1", "work")
    await sieve_store.put_script("a1", "work", "keep; stop;")
    got = await sieve_store.get_script("a1", "work")
    assert (got.content, got.active) == ("keep; stop;", True)
    assert (await sieve_store.get_script("a2", "work")).content == "stop;"
    with pytest.raises(NotFound):
        await sieve_store.get_script("a1", "nope")


async def test_one_active_script(sieve_store: Any) -> None:
    assert await sieve_store.get_active("a1") is None
    await sieve_store.put_script("a1", "one", "keep;")
    await sieve_store.put_script("a1", "two", "discard;")
    await sieve_store.set_active("a1", "one")
    await sieve_store.set_active("a1", "two")
    active = await sieve_store.get_active("a1")
    assert active is not None and active.name == "two"
    assert [s.active for s in await sieve_store.list_scripts("a1")] == [False, True]
    with pytest.raises(NotFound):
        await sieve_store.set_active("a1", "three")
    assert (await sieve_store.get_active("a1")).name == "two"  # unchanged by the failure
    await sieve_store.set_active("a1", None)
    assert await sieve_store.get_active("a1") is None


async def test_rename_and_delete(sieve_store: Any) -> None:
    await sieve_store.put_script("a1", "one", "keep;")
    await sieve_store.put_script("a1", "two", "discard;")
    await sieve_store.set_active("a1", "one")
    with pytest.raises(Conflict):
        await sieve_store.rename_script("a1", "one", "two")
    with pytest.raises(NotFound):
        await sieve_store.rename_script("a1", "zero", "three")
    await sieve_store.rename_script("a1", "one", "uno")
    active = await sieve_store.get_active("a1")
    assert active is not None and (active.name, active.content) == ("uno", "keep;")
    await sieve_store.delete_script("a1", "two")
    with pytest.raises(NotFound):
        await sieve_store.delete_script("a1", "two")
    assert [s.name for s in await sieve_store.list_scripts("a1")] == ["uno"]


async def test_duplicate_memory(sieve_store: Any) -> None:
    now = time.time()
    assert not await sieve_store.duplicate_seen("a1", "k", now)
    await sieve_store.record_duplicate("a1", "k", now + 100, last=False)
    assert await sieve_store.duplicate_seen("a1", "k", now)
    assert not await sieve_store.duplicate_seen("a2", "k", now)
    assert not await sieve_store.duplicate_seen("a1", "k", now + 101)
    # Without :last a second sighting keeps the first expiry; with :last it moves.
    await sieve_store.record_duplicate("a1", "k", now + 1000, last=False)
    assert not await sieve_store.duplicate_seen("a1", "k", now + 101)
    await sieve_store.record_duplicate("a1", "k", now + 1000, last=True)
    assert await sieve_store.duplicate_seen("a1", "k", now + 101)


async def test_a_script_keeps_its_id_through_replace_and_rename(sieve_store: Any) -> None:
    """JMAP's SieveScript id is immutable (RFC 9661): given once, kept when the content is
    replaced and when the script is renamed, never the same for two scripts."""
    await sieve_store.put_script("a1", "one", "keep;")
    await sieve_store.put_script("a1", "two", "keep;")
    first = (await sieve_store.get_script("a1", "one")).id
    assert first and first != (await sieve_store.get_script("a1", "two")).id
    await sieve_store.put_script("a1", "one", "discard;")
    assert (await sieve_store.get_script("a1", "one")).id == first
    await sieve_store.set_active("a1", "one")
    await sieve_store.rename_script("a1", "one", "uno")
    renamed = await sieve_store.get_script("a1", "uno")
    assert (renamed.id, renamed.active, renamed.content) == (first, True, "discard;")
    assert (await sieve_store.get_active("a1")).id == first
    assert [s.id for s in await sieve_store.list_scripts("a1") if s.name == "uno"] == [first]


def test_a_sieve_db_from_before_ids_gets_them(tmp_path: Path) -> None:
    """A sieve.db written before script ids (schema version 1) is migrated on opening:
    the column is added and every script given an id, its content and flag kept."""
    import sqlite3

    from mailyard.store.sqlite.sieve import SqliteSieveStore

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE sieve_scripts (account_id TEXT NOT NULL, name TEXT NOT NULL,
            content TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL, PRIMARY KEY (account_id, name));
        INSERT INTO sieve_scripts VALUES ('a1', 'old', 'keep;', 1, 1.0),
                                         ('a1', 'older', 'stop;', 0, 1.0);
        PRAGMA user_version = 1;
    """)
    conn.close()
    store = SqliteSieveStore(path)
    try:
        scripts = store.db.read_sync(lambda c: c.execute(
            "SELECT name, content, active, script_id FROM sieve_scripts ORDER BY name"
        ).fetchall())
    finally:
        store.close()
    assert [(n, c, a) for n, c, a, _ in scripts] == [("old", "keep;", 1), ("older", "stop;", 0)]
    ids = [i for *_, i in scripts]
    assert all(i.startswith("S") for i in ids) and len(set(ids)) == 2, ids
