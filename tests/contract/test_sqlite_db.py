"""The group-commit SQLite Database under every sqlite adapter (sqlite-specific, not a port)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailyard.store.sqlite.db import Database, WriterStopped

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
    assert db.commits - before == 1  # queued while the held job ran: they joined its batch


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
    assert db.commits - before == 1  # they really shared a batch (the held job's)
    assert await db.read(keys) == {"existing", "first", "last"}
    assert await db.read(lambda c: c.execute("SELECT v FROM t WHERE k='existing'").fetchone()[0]
                         ) == 1


async def test_a_failing_first_job_rolls_back_alone(db: Database) -> None:
    """The first job of a transaction runs without a savepoint: its failure rolls back the
    transaction, which holds only its own changes, and the writes queued meanwhile still
    commit, in that same batch."""
    started, release = threading.Event(), threading.Event()

    def first_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (k, v) VALUES ('bad', 1)")
        started.set()
        release.wait(10)
        raise Boom("first")

    before = db.commits
    bad = asyncio.ensure_future(db.write(first_then_fail))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
    later = [asyncio.ensure_future(db.write(insert(f"k{n}"))) for n in range(5)]
    await asyncio.sleep(0.1)
    release.set()
    results = await asyncio.gather(bad, *later, return_exceptions=True)
    assert isinstance(results[0], Boom)
    assert results[1:] == [f"k{n}" for n in range(5)]
    assert await db.read(keys) == {f"k{n}" for n in range(5)}
    assert db.commits - before == 1


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


# ---------------------------------------------------------------- faults (issue 17)


async def test_cancelled_callers_do_not_stop_the_writer(db: Database) -> None:
    """An SMTP client that resets the connection after the final dot cancels its session's
    task while the enqueue waits for the writer; that used to kill the writer thread
    (InvalidStateError on the cancelled future) and every later write hung."""
    release, held = await hold_writer(db)
    writes = [asyncio.ensure_future(db.write(insert(f"k{n}"))) for n in range(200)]
    await asyncio.sleep(0.1)  # every write is queued behind the held one
    for w in writes[::2]:
        w.cancel()
    # Their tasks have ended (and so handed the cancellation to the writer's futures).
    await asyncio.gather(*writes[::2], return_exceptions=True)
    release.set()
    await held
    results = await asyncio.wait_for(asyncio.gather(*writes, return_exceptions=True), 30)
    for n, result in enumerate(results):
        if n % 2:
            assert result == f"k{n}"
        else:
            assert isinstance(result, asyncio.CancelledError)
    # A write whose caller left before it ran is not run: the caller heard no answer.
    assert await db.read(keys) == {f"k{n}" for n in range(1, 200, 2)}
    assert db.alive
    assert await asyncio.wait_for(db.write(insert("after")), 30) == "after"
    assert "after" in await db.read(keys)


async def test_callers_cancelled_at_any_moment_under_load(db: Database) -> None:
    """Cancellations landing before, during and after the batch that holds the write: every
    write not cancelled commits, and the writer outlives them all."""
    for round_ in range(20):
        writes = [asyncio.ensure_future(db.write(insert(f"r{round_}-{n}"))) for n in range(50)]
        for n, w in enumerate(writes):
            if n % 2 == 0:
                for _ in range(n % 7):  # let the writer take some batches meanwhile
                    await asyncio.sleep(0)
                w.cancel()
        results = await asyncio.wait_for(asyncio.gather(*writes, return_exceptions=True), 30)
        for n, result in enumerate(results):
            if n % 2:
                assert result == f"r{round_}-{n}"
    assert db.alive
    assert await asyncio.wait_for(db.write(insert("after")), 30) == "after"
    found = await db.read(keys)
    assert {f"r{r}-{n}" for r in range(20) for n in range(1, 50, 2)} <= found


def _raise_in_thread(thread: threading.Thread, exc: type[BaseException]) -> None:
    """Have `thread` raise `exc` at its next Python instruction: a bug in the writer loop
    itself, the one failure its own guards cannot catch."""
    assert thread.ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                               ctypes.py_object(exc))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_dead_writer_fails_writes_at_once(db: Database) -> None:
    await db.write(insert("before"))
    for _ in range(10):  # should it land inside a job, the job fails alone: try again
        _raise_in_thread(db._writer, SystemExit)
        with contextlib.suppress(WriterStopped, SystemExit):
            await asyncio.wait_for(db.write(insert("wake")), 30)
        if not db.alive:
            break
    assert not db.alive
    db._writer.join(30)
    assert not db._writer.is_alive()
    started = time.monotonic()
    with pytest.raises(WriterStopped):
        await asyncio.wait_for(db.write(insert("after")), 30)
    assert time.monotonic() - started < 5  # raised, not timed out
    assert await db.read(keys) >= {"before"}  # reads still work: /readyz says why


# -------------------------------------------------------------------- a full disk


@contextlib.contextmanager
def small_filesystem(path: Path, size_mb: int) -> Iterator[Path]:
    """A real tmpfs of `size_mb` at `path` (the suite runs as root)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                              str(path)], capture_output=True, text=True, timeout=30)
    assert mounted.returncode == 0, f"cannot mount a tmpfs (root needed): {mounted.stderr}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True,
                       timeout=30)


def fill(directory: Path) -> Path:
    """A file taking every byte left on the filesystem of `directory`."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while f.write(b"\0" * size):
                    pass
    return filler


def blob(k: str, size: int):  # type: ignore[no-untyped-def]
    def fn(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, size))
        conn.execute("INSERT INTO b (k, data) VALUES (?, ?)", (k, os.urandom(size)))
        return k

    return fn


async def test_a_full_disk_fails_the_batch_with_its_cause_and_recovers(tmp_path: Path) -> None:
    """SQLITE_FULL while a batch spills pages to the WAL makes SQLite roll the whole
    transaction back on its own: the savepoint is gone, and the jobs used to get "no such
    savepoint: job" instead of the cause. Once space is freed, the same Database (no
    restart) commits again."""
    with small_filesystem(tmp_path / "small", 4) as small:
        # A small page cache makes the batch spill to the WAL mid-transaction, as a large
        # batch does with the default cache.
        db = Database(small / "t.db", SCHEMA + "CREATE TABLE IF NOT EXISTS b (k TEXT, data BLOB);",
                      setup=lambda c: c.execute("PRAGMA cache_size = -32") and None)
        try:
            for n in range(10):
                await db.write(blob(f"pre{n}", 20_000))
            filler = fill(small)
            errors: list[BaseException] = []
            for round_ in range(3):
                release, held = await hold_writer(db)
                writes = [asyncio.ensure_future(db.write(blob(f"f{round_}-{n}",
                                                              30_000 if n % 3 == 1 else 100)))
                          for n in range(9)]
                await asyncio.sleep(0.1)
                release.set()
                await asyncio.gather(held, return_exceptions=True)  # its batch, with them
                results = await asyncio.wait_for(
                    asyncio.gather(*writes, return_exceptions=True), 60)
                errors += [r for r in results if isinstance(r, BaseException)]
            assert errors, "the full disk refused nothing"
            for e in errors:
                assert isinstance(e, sqlite3.OperationalError), repr(e)
                assert "full" in str(e), repr(e)  # the cause, never "no such savepoint"
            assert db.alive
            filler.unlink()
            assert await asyncio.wait_for(db.write(blob("after", 30_000)), 60) == "after"
            written = await asyncio.gather(*(db.write(blob(f"a{n}", 5_000)) for n in range(20)))
            assert written == [f"a{n}" for n in range(20)]
            found = await db.read(keys)
            assert {f"pre{n}" for n in range(10)} | {"after"} | set(written) <= found
            assert await db.read(lambda c: c.execute("PRAGMA integrity_check").fetchone()[0]
                                 ) == "ok"
        finally:
            db.close()


# --------------------------------------------------------------------- long reads (issue 18)

SLOW = ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000)"
        " SELECT count(*) FROM c")
"""A read that takes minutes: only a budget or a cancellation ends it."""


async def _loop_gaps(until: asyncio.Event) -> float:
    """The longest the event loop went without running this task, while `until` is unset."""
    longest, last = 0.0, time.monotonic()
    while not until.is_set():
        await asyncio.sleep(0.005)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    return longest


async def test_a_long_read_runs_off_the_loop_and_stops_at_its_budget(db: Database) -> None:
    from mailyard.store.ports import QueryTimeout

    done = asyncio.Event()
    gaps = asyncio.create_task(_loop_gaps(done))
    started = time.monotonic()
    with pytest.raises(QueryTimeout):
        await db.read_long(lambda c: c.execute(SLOW).fetchone(), budget=1.5)
    took = time.monotonic() - started
    done.set()
    # The loop kept running all along (it would have stood still for the whole read on it);
    # the bound is far above a busy machine's scheduling and far below the read's length.
    assert await gaps < 0.5, "the loop was held by the read"
    assert took >= 1.5
    # A read within its budget answers, on the same connections.
    await db.write(insert("after"))
    assert await db.read_long(keys, budget=5.0) == {"after"}


async def test_a_read_known_to_be_long_goes_to_the_pool_at_once(db: Database) -> None:
    # on_loop=False: never a first try on the loop's thread (a count over every match would
    # otherwise run its first part twice); a short read with the default does run there.
    threads: list[int] = []

    def where(conn: sqlite3.Connection) -> set[str]:
        threads.append(threading.get_ident())
        return keys(conn)

    await db.write(insert("x"))
    assert await db.read_long(where, budget=5.0, on_loop=False) == {"x"}
    assert await db.read_long(where, budget=5.0) == {"x"}
    assert threads[0] != threading.get_ident()
    assert threads[1] == threading.get_ident()


async def test_a_cancelled_long_read_frees_its_thread(db: Database) -> None:
    # Two: every thread of the pool busy with a read that would take minutes.
    tasks = [asyncio.create_task(db.read_long(lambda c: c.execute(SLOW).fetchone(), budget=600))
             for _ in range(2)]
    await asyncio.sleep(0.3)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with pytest.raises(asyncio.CancelledError):
            await task
    # The threads answer again within far less than the reads would have taken.
    await asyncio.wait_for(asyncio.gather(*(db.read_long(keys, budget=5.0) for _ in range(4))),
                           timeout=60)


def _stat_rows(path: Path) -> int | None:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = 't' LIMIT 1").fetchone()
    except sqlite3.OperationalError:
        return None  # no statistics were ever taken
    finally:
        conn.close()
    return int(row[0].split()[0]) if row else None


def _grow(path: Path, to: int) -> None:
    conn = sqlite3.connect(path)
    with conn:
        start = conn.execute("SELECT count(*) FROM t").fetchone()[0]
        conn.executemany("INSERT INTO t (v) VALUES (?)", ((i,) for i in range(start, to)))
    conn.close()


def test_planner_statistics_follow_the_table_by_doublings(tmp_path: Path) -> None:
    """Database(analyze=table): a full ANALYZE at opening once the table has rows enough to
    matter, again when it has doubled or halved since, not for every change in between."""
    from mailyard.store.sqlite.db import ANALYZE_MIN_ROWS

    path = tmp_path / "a.db"
    schema = "CREATE TABLE IF NOT EXISTS t (v INTEGER); CREATE INDEX IF NOT EXISTS t_v ON t (v);"

    def reopen() -> int | None:
        Database(path, schema, analyze="t").close()
        return _stat_rows(path)

    assert reopen() is None  # empty
    _grow(path, ANALYZE_MIN_ROWS - 1)
    assert reopen() is None  # small: any plan is fast
    _grow(path, ANALYZE_MIN_ROWS + 1)
    assert reopen() == ANALYZE_MIN_ROWS + 1
    _grow(path, ANALYZE_MIN_ROWS * 2)
    assert reopen() == ANALYZE_MIN_ROWS + 1  # not yet doubled: the statistics stand
    _grow(path, ANALYZE_MIN_ROWS * 2 + 3)
    assert reopen() == ANALYZE_MIN_ROWS * 2 + 3
