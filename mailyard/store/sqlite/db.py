"""One SQLite database file served to an event loop without blocking it.

Writes go to a single writer thread that drains every write waiting at that moment and runs them
in one transaction (group commit): under load, twenty SMTP sessions finishing DATA together cost
one fsync, not twenty. Each write runs inside its own SAVEPOINT, so one failing write rolls back
alone and the others still commit.

Reads run on the calling thread (the event loop's), on a connection of that thread's own; WAL
lets them proceed while the writer commits. They used to run on a pool of reader threads, and
that cost more than the reads: each one was two thread hand-offs, and a reader that finished its
SQLite step then waited for the GIL held by the busy event loop. Under the IMAP command mix
(bench/imap_load.py, 10 clients) the listener spent about 40 % of its CPU in the kernel switching
threads; reading on the loop took the mix from 635 to 1,054 commands/s and a SEARCH FROM from
47 to 4 ms (docs/BENCHMARKS.md). The rows a read turns into Python objects need the GIL on any
thread, so a pool bought no parallelism for them either.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_STOP = object()
_MAX_BATCH = 256

log = logging.getLogger("mailyard.store")


class SchemaTooNew(RuntimeError):
    """The file was written by a newer Mailyard: running on it could corrupt it."""


def check_schema(conn: sqlite3.Connection, path: Path, version: int) -> int:
    """The file's schema version (PRAGMA user_version); refuses one newer than `version`."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > version:
        raise SchemaTooNew(
            f"{path} has schema version {found}, newer than this Mailyard's {version}: run the"
            " newer Mailyard again, or restore the backup taken before upgrading")
    return found


def migrate_schema(conn: sqlite3.Connection, path: Path, version: int,
                   migrate: Callable[[sqlite3.Connection, int], None] | None,
                   existed: bool) -> None:
    """Bring the file to `version` in one transaction: `migrate(conn, found)` runs the steps
    after `found` (0: a file from before schema versions), then user_version is set. Another
    process opening the file at the same moment waits for the lock and finds nothing to do."""
    _begin_immediate(conn)
    try:
        found = check_schema(conn, path, version)
        if found < version:
            if existed:
                log.warning("%s: migrating the schema from version %d to %d; keep a backup"
                            " of the data directory taken before an upgrade (e.g. sqlite3 %s"
                            " \".backup pre-upgrade.db\") to go back", path, found, version,
                            path)
            if migrate is not None:
                migrate(conn, found)
            conn.execute(f"PRAGMA user_version = {int(version)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _begin_immediate(conn: sqlite3.Connection, timeout: float = 30.0) -> None:
    """Take the write lock, polling every fraction of a millisecond while another process has it.

    SQLite's own busy handler backs off to sleeps of 25-100 ms; with the listener and the worker
    processes sharing a queue file, that alone made a 250 wait 100 ms. Write transactions here
    are short, so a tight poll is both faster and cheap.
    """
    deadline = time.monotonic() + timeout
    pause = 0.0002
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 1.5, 0.005)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection set up the way every Mailyard database is used."""
    conn = sqlite3.connect(
        path, timeout=30.0, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk when it returns, which is what allows SMTP to say 250.
        conn.execute("PRAGMA synchronous = FULL")
    return conn


class Database:
    """A SQLite file with a group-committing writer thread; reads on the caller's thread."""

    def __init__(self, path: Path, schema: str, *,
                 setup: Callable[[sqlite3.Connection], None] | None = None,
                 version: int = 1,
                 migrate: Callable[[sqlite3.Connection, int], None] | None = None) -> None:
        """`version` is the schema version this build writes (bump it with every change of
        `schema`, and give `migrate` the step); a newer file raises SchemaTooNew."""
        self.path = path
        self._setup = setup
        """Run on every connection (SQL functions the adapter's queries call)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(path)
        try:
            check_schema(conn, path, version)
        except SchemaTooNew:
            conn.close()
            raise
        existed = conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None
        if setup:
            setup(conn)
        with conn:
            conn.executescript(schema)
        migrate_schema(conn, path, version, migrate, existed)
        conn.execute("PRAGMA busy_timeout = 0")  # _begin_immediate polls instead
        self._writer_conn = conn
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name=f"sqlite-writer:{path.name}",
                                        daemon=True)
        self._writer.start()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self.commits = 0
        """How many transactions the writer committed (group commit makes this < writes)."""

    # ------------------------------------------------------------------ writes

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in the next group transaction; return once that transaction is committed."""
        if self._closed:
            raise RuntimeError(f"database {self.path} is closed")
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        return await asyncio.wrap_future(fut)

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError(f"database {self.path} is closed")
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        return fut.result()

    def _write_loop(self) -> None:
        conn = self._writer_conn
        while True:
            job = self._jobs.get()
            if job is _STOP:
                break
            batch = [job]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            self._run_batch(conn, batch)
            if stop:
                break
        conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        results: list[tuple[Future[Any], bool, Any]] = []
        try:
            _begin_immediate(conn)
            for fn, fut in batch:
                conn.execute("SAVEPOINT job")
                try:
                    value = fn(conn)
                except BaseException as e:  # one job's failure must not sink the batch
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    results.append((fut, False, e))
                else:
                    conn.execute("RELEASE job")
                    results.append((fut, True, value))
            conn.execute("COMMIT")
            self.commits += 1
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for _fn, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        for fut, ok, value in results:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    # ------------------------------------------------------------------ reads

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            if self._setup:
                self._setup(conn)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on this thread's reader connection in a consistent snapshot (see the
        module's docstring for why not on another thread)."""
        if self._closed:
            raise RuntimeError(f"database {self.path} is closed")
        return self.read_sync(fn)

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    # ------------------------------------------------------------------ life

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._jobs.put(_STOP)
        self._writer.join(timeout=30)
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
