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
