"""The group-commit SQLite Database under every sqlite adapter (sqlite-specific, not a port)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailyard.store.sqlite.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
"""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "t.db", SCHEMA)
    yield database
    database.close()


def insert(k: str, v: int = 0):  # type: ignore[no-untyped-def]
    def fn(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, v))
        return k

    return fn


def keys(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT k FROM t")}


class Boom(Exception):
    pass


async def hold_writer(db: Database) -> tuple[threading.Event, asyncio.Future[None]]:
    """Occupy the writer thread with one job until the returned event is set, so that every
    write submitted meanwhile lands in the same next batch."""
    started, release = threading.Event(), threading.Event()

    def block(conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(10)

    held = asyncio.ensure_future(db.write(block))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
    assert started.is_set()
    return release, held


async def test_write_returns_value_after_commit(db: Database) -> None:
    assert await db.write(insert("a", 1)) == "a"
    assert await db.read(keys) == {"a"}


async def test_group_commit_batches_concurrent_writes(db: Database) -> None:
    before = db.commits
    results = await asyncio.gather(*(db.write(insert(f"k{n}", n)) for n in range(200)))
    assert results == [f"k{n}" for n in range(200)]
    assert await db.read(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 200
    commits = db.commits - before
    assert 1 <= commits <= 20, f"{commits} commits for 200 concurrent writes"


async def test_group_commit_in_one_batch(db: Database) -> None:
    release, held = await hold_writer(db)
    before = db.commits
    writes = [asyncio.ensure_future(db.write(insert(f"k{n}"))) for n in range(50)]
    await asyncio.sleep(0.1)  # every write is queued behind the held one
    release.set()
    await held
    await asyncio.gather(*writes)
    assert db.commits - before == 2  # the held job's batch, then one batch for all 50


async def test_failing_write_rolls_back_alone(db: Database) -> None:
    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (k, v) VALUES ('bad', 1)")
        conn.execute("UPDATE t SET v = 99 WHERE k = 'existing'")
        raise Boom("no")

    await db.write(insert("existing", 1))
    release, held = await hold_writer(db)
    before = db.commits
    first = asyncio.ensure_future(db.write(insert("first")))
    bad = asyncio.ensure_future(db.write(half_then_fail))
    last = asyncio.ensure_future(db.write(insert("last")))
    await asyncio.sleep(0.1)
    release.set()
    await held
    results = await asyncio.gather(first, bad, last, return_exceptions=True)

    assert results[0] == "first"
    assert isinstance(results[1], Boom)
    assert results[2] == "last"
    assert db.commits - before == 2  # they really shared a batch
    assert await db.read(keys) == {"existing", "first", "last"}
    assert await db.read(lambda c: c.execute("SELECT v FROM t WHERE k='existing'").fetchone()[0]
                         ) == 1


async def test_constraint_violation_rolls_back_alone(db: Database) -> None:
    await db.write(insert("dup"))
    release, held = await hold_writer(db)
    ok = asyncio.ensure_future(db.write(insert("fine")))
    dup = asyncio.ensure_future(db.write(insert("dup")))
    await asyncio.sleep(0.1)
    release.set()
    await held
    results = await asyncio.gather(ok, dup, return_exceptions=True)
    assert results[0] == "fine"
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert await db.read(keys) == {"dup", "fine"}


async def test_writer_keeps_working_after_a_failure(db: Database) -> None:
    def fail(conn: sqlite3.Connection) -> None:
        raise Boom("once")

    with pytest.raises(Boom):
        await db.write(fail)
    assert await db.write(insert("after")) == "after"
    assert await db.read(keys) == {"after"}


async def test_reads_see_committed_writes(db: Database) -> None:
    for n in range(30):  # more rounds than reader threads: reused connections must not go stale
        await db.write(insert(f"k{n}"))
        seen = await asyncio.gather(*(db.read(keys) for _ in range(6)))
        assert all(len(s) == n + 1 for s in seen)


async def test_read_exception_propagates_and_reader_recovers(db: Database) -> None:
    await db.write(insert("x"))

    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("SELECT nope FROM t")

    for _ in range(6):
        with pytest.raises(sqlite3.OperationalError):
            await db.read(bad)
    assert await db.read(keys) == {"x"}


async def test_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    first = Database(path, SCHEMA)
    try:
        await first.write(insert("kept", 5))
    finally:
        first.close()
    second = Database(path, SCHEMA)
    try:
        assert await second.read(keys) == {"kept"}
    finally:
        second.close()


async def test_two_databases_on_one_file_see_each_other(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    one, two = Database(path, SCHEMA), Database(path, SCHEMA)
    try:
        await asyncio.gather(*(db.write(insert(f"{name}{n}"))
                               for n in range(50) for name, db in (("a", one), ("b", two))))
        assert len(await one.read(keys)) == 100
        assert await one.read(keys) == await two.read(keys)
    finally:
        one.close()
        two.close()
