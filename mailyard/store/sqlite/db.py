"""One SQLite database file served to an event loop without blocking it.

Writes go to a single writer thread that runs every write waiting, and every one that arrives
before the batch's last job ends, in one transaction (group commit): under load, twenty SMTP
sessions finishing DATA together cost one fsync, not twenty. Each write but the transaction's
first runs inside its own SAVEPOINT, so one failing write rolls back alone and the others still
commit (see `_run_batch`).

No caller and no batch can stop the writer: a caller cancelled while its write waits (an SMTP
client that resets the connection after the final dot) has its write skipped, and a batch lost
to a full disk fails its own writes and no more; once space is back the next batch commits. If
the thread ends anyway, writes raise WriterStopped at once (SMTP answers 451) and `alive`, read
by /readyz, turns False.

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
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from mailyard.store.ports import QueryTimeout

T = TypeVar("T")

_STOP = object()
_LONG_READS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlite-long-read")
"""Threads for `read_long`: two, so one runaway search cannot queue every other behind it,
each with its own reader connection per database (thread-local)."""
_ON_LOOP = 0.02
"""Seconds a `read_long` may run on the loop's thread before it moves to the pool."""
_PROGRESS_STEPS = 10_000
"""SQLite VM steps between two looks at the budget (well under a millisecond of work)."""
_MAX_BATCH = 256

log = logging.getLogger("mailyard.store")


class _Interrupted(Exception):
    """A read's progress handler stopped it (deadline or cancellation)."""


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


ANALYZE_CHECK = 600.0
"""Seconds between the writer's looks at whether the planner's statistics are stale."""
ANALYZE_MIN_ROWS = 10_000
"""Below this many rows any plan is fast: no statistics are kept."""


def _analyze_if_stale(conn: sqlite3.Connection, path: Path, table: str) -> None:
    """A full ANALYZE when `table` has doubled or halved since the statistics were taken
    (its rowid as the count: one index look-up); a failure (a lock, a full disk) waits for the
    next look and is logged, never raised into the writer."""
    try:
        rows = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
        if rows < ANALYZE_MIN_ROWS:
            return
        try:
            stat = conn.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = ? LIMIT 1",
                                (table,)).fetchone()
        except sqlite3.OperationalError:  # no sqlite_stat1 yet
            stat = None
        counted = int(stat[0].split()[0]) if stat and stat[0] else 0
        if counted and counted / 2 <= rows <= counted * 2:
            return
        started = time.monotonic()
        conn.execute("PRAGMA analysis_limit = 0")
        conn.execute("ANALYZE")
        conn.commit()
        log.info("planner statistics of %s taken (%d rows in %s) in %.2f s", path.name, rows,
                 table, time.monotonic() - started)
    except sqlite3.Error as error:
        log.warning("ANALYZE of %s failed: %s", path.name, error)


class WriterStopped(RuntimeError):
    """The database takes no more writes (closed, or its writer thread is gone)."""


def _undo_job(conn: sqlite3.Connection, error: BaseException) -> None:
    """Roll one failed job back to its savepoint. With SQLITE_FULL or an I/O error, SQLite
    may already have rolled the whole transaction back on its own, and the savepoint went with
    it ("no such savepoint: job"): then the batch is lost, and `error`, the real cause, is what
    every job of it gets."""
    if not conn.in_transaction:
        raise error
    try:
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
    except sqlite3.Error:
        raise error from None


def _run_first(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any],
               fut: Future[Any]) -> tuple[Future[Any], bool, Any]:
    """The transaction's first job, with no savepoint: on failure the transaction is rolled
    back, which undoes exactly it (SQLite may have done so already, on SQLITE_FULL)."""
    try:
        return fut, True, fn(conn)
    except BaseException as e:  # one job's failure must not stop the batch
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return fut, False, e


def _run_nested(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any],
                fut: Future[Any]) -> tuple[Future[Any], bool, Any]:
    """A later job of the transaction, inside its own savepoint (see _undo_job)."""
    conn.execute("SAVEPOINT job")
    try:
        value = fn(conn)
    except BaseException as e:  # one job's failure must not sink the batch
        _undo_job(conn, e)
        return fut, False, e
    conn.execute("RELEASE job")
    return fut, True, value


class _Job:
    """A write waiting for the writer: `fut` carries its outcome; `loop` and `waiter`, for a
    write awaited on an event loop, are how that loop hears it (see `_wake`)."""

    __slots__ = ("fn", "fut", "loop", "waiter")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], fut: Future[Any],
                 loop: asyncio.AbstractEventLoop | None = None,
                 waiter: asyncio.Future[Any] | None = None) -> None:
        self.fn = fn
        self.fut = fut
        self.loop = loop
        self.waiter = waiter


def _wake(jobs: list[_Job]) -> None:
    """Tell the event loops of settled jobs, with one call into each loop for all of its jobs
    (asyncio.wrap_future made one per job: each a write to the loop's self-pipe, after which
    the writer waited for the GIL that the busy loop holds before it could go on)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
    for job in jobs:
        if job.loop is not None:
            by_loop.setdefault(job.loop, []).append(job)
    for loop, mine in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_copy_outcomes, mine)


def _copy_outcomes(jobs: list[_Job]) -> None:
    """On the job's loop: give each waiter its write's outcome (a waiter already done was
    cancelled by its caller)."""
    for job in jobs:
        waiter, fut = job.waiter, job.fut
        if waiter is None or waiter.done():
            continue
        if fut.cancelled():
            waiter.cancel()
        elif (error := fut.exception()) is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(fut.result())


def _settle(fut: Future[Any], ok: bool, value: Any) -> None:
    """Give a job's future its outcome; one already settled (it cannot be, once claimed, but
    the writer must not die on it if it is) is left as it is."""
    if fut.done():
        return
    try:
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)
    except InvalidStateError:
        pass


class Database:
    """A SQLite file with a group-committing writer thread; reads on the caller's thread."""

    def __init__(self, path: Path, schema: str, *,
                 setup: Callable[[sqlite3.Connection], None] | None = None,
                 version: int = 1,
                 migrate: Callable[[sqlite3.Connection, int], None] | None = None,
                 analyze: str | None = None) -> None:
        """`version` is the schema version this build writes (bump it with every change of
        `schema`, and give `migrate` the step); a newer file raises SchemaTooNew.

`analyze`: the table whose growth keeps the query planner's statistics fresh. Without
        them SQLite guesses a table's shape and, at 100,000 emails, walks every email row for
        `larger:1M` instead of the index that answers it (205 against 15 ms); sampled
        statistics (`analysis_limit`) misjudge one account's share of the rows the same way.
        So a full `ANALYZE` runs when the table has doubled or halved since the last one
        (checked at opening and every `ANALYZE_CHECK` s after writes): a few times in a
        file's life, 0.16 s at 100,000 emails."""
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
        self._analyze = analyze
        self._analyze_at = time.monotonic() + ANALYZE_CHECK
        if analyze is not None:
            _analyze_if_stale(conn, path, analyze)
        conn.execute("PRAGMA busy_timeout = 0")  # _begin_immediate polls instead
        self._writer_conn = conn
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._state_lock = threading.Lock()
        self._running = True
        self._closed = False
        self._pending: dict[Future[Any], _Job] = {}
        """Every write not settled yet: failed together if the writer ever stops."""
        self._writer = threading.Thread(target=self._write_loop, name=f"sqlite-writer:{path.name}",
                                        daemon=True)
        self._writer.start()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._long_reads = threading.Condition()
        self._long_active = 0
        """Long reads running on pool threads: close() interrupts them and waits for them
        before it closes their connections (closing one in use crashes SQLite)."""
        self.commits = 0
        """How many transactions the writer committed (group commit makes this < writes)."""

    # ------------------------------------------------------------------ writes

    @property
    def alive(self) -> bool:
        """Whether writes are taken: False once closed, or if the writer thread has died
        (which the loop below is built never to do; /readyz reports it if it happens)."""
        return self._running and not self._closed

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in the next group transaction; return once that transaction is committed.

        A caller cancelled while its write waits in the queue (a client that hung up) takes its
        write back: the writer skips it. Once the write has started it is committed or rolled
        back with its batch, and the caller just does not hear which."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        fut: Future[T] = Future()
        self._submit(_Job(fn, fut, loop, waiter))
        try:
            return await waiter
        except asyncio.CancelledError:
            fut.cancel()  # takes the write back, unless the writer has claimed it already
            raise

    def _submit(self, job: _Job) -> None:
        """Queue a job, or raise WriterStopped at once: a write must never wait for a thread
        that will not take it (SMTP would hang instead of answering 451). The lock orders
        this against the writer's stopping, which fails every job still pending."""
        with self._state_lock:
            if self._closed:
                raise WriterStopped(f"database {self.path} is closed")
            if not self._running:
                raise WriterStopped(f"the writer of {self.path} has stopped")
            fut = job.fut
            self._pending[fut] = job
            fut.add_done_callback(self._forget)
            self._jobs.put(job)

    def _forget(self, fut: Future[Any]) -> None:
        self._pending.pop(fut, None)

    def _write_loop(self) -> None:
        conn = self._writer_conn
        try:
            while True:
                job = self._jobs.get()
                if job is _STOP:
                    break
                taken: list[_Job] = []
                try:
                    stop = self._run_batch(conn, job, taken)
                except Exception as e:  # a bug here must not end the writer: log, go on
                    log.exception("the writer of %s failed a batch of %d; it goes on",
                                  self.path, len(taken))
                    for job in taken:
                        _settle(job.fut, False, e)
                    stop = False
                _wake(taken)
                if stop:
                    break
                if self._analyze is not None and time.monotonic() >= self._analyze_at:
                    _analyze_if_stale(conn, self.path, self._analyze)
                    self._analyze_at = time.monotonic() + ANALYZE_CHECK
        finally:
            with self._state_lock:
                self._running = False
            if not self._closed:
                log.critical("the writer of %s has stopped: every write fails until a"
                             " restart", self.path)
            stopped = WriterStopped(f"the writer of {self.path} has stopped")
            left = list(self._pending.values())  # queued, or taken and not finished
            for job in left:
                _settle(job.fut, False, stopped)
            _wake(left)
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _more(self) -> tuple[_Job | None, bool]:
        """The next job already waiting, or None; True when it is the stop mark."""
        try:
            job = self._jobs.get_nowait()
        except queue.Empty:
            return None, False
        if job is _STOP:
            return None, True
        return job, False

    def _run_batch(self, conn: sqlite3.Connection, first: _Job, taken: list[_Job]) -> bool:
        """Run `first` and every job queued by the time the one before it ends (at most
        _MAX_BATCH, each appended to `taken`) in one transaction, then COMMIT; True when the
        stop mark came.

        The queue is looked at again after each job, not only when the batch starts: a write
        submitted while this batch's SQL runs joins it and is durable with its COMMIT, instead
        of waiting for the whole batch, fsync included, and then for a batch of its own.

        The first job of the transaction runs without a SAVEPOINT (should it fail, rolling the
        transaction back undoes exactly it): two statements less per batch, each a trip for
        the GIL that the busy event loop holds. Later jobs each run inside their own
        SAVEPOINT, so one failing write rolls back alone and the others still commit."""
        results: list[tuple[Future[Any], bool, Any]] = []
        claimed: list[Future[Any]] = []
        stop = False
        job: _Job | None = first
        try:
            if conn.in_transaction:  # left open by a ROLLBACK that failed in an earlier batch
                conn.execute("ROLLBACK")
            while job is not None:
                taken.append(job)
                fn, fut = job.fn, job.fut
                # Claim the future: one whose caller was cancelled meanwhile is skipped
                # (claiming also makes a later cancel() a no-op, so a result can always be set).
                if fut.set_running_or_notify_cancel():
                    claimed.append(fut)
                    if conn.in_transaction:
                        results.append(_run_nested(conn, fn, fut))
                    else:
                        _begin_immediate(conn)
                        results.append(_run_first(conn, fn, fut))
                job = None
                if len(taken) < _MAX_BATCH:
                    job, stop = self._more()
            if conn.in_transaction:
                conn.execute("COMMIT")
                self.commits += 1
        except BaseException as e:
            # The whole batch is lost: a disk full or an I/O error at COMMIT, or one that made
            # SQLite roll the transaction back itself. Every job gets that error; the next
            # batch starts afresh (after the disk is freed, it simply succeeds).
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("cannot roll back on %s", self.path)
            for fut in claimed:
                _settle(fut, False, e)
            return stop
        for fut, ok, value in results:
            _settle(fut, ok, value)
        return stop

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
            raise WriterStopped(f"database {self.path} is closed")
        return self.read_sync(fn)

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    async def read_long(self, fn: Callable[[sqlite3.Connection], T], budget: float, *,
                        on_loop: bool = True) -> T:
        """Run `fn` as `read` does, for at most `budget` seconds of SQLite's work, without
        holding the event loop: for reads whose length the client decides (a search, a count
        over a whole mailbox). On the loop's thread such a read held every other connection of
        the process (issue 18: a 15 s search made SMTP EHLO wait 5 s).

        The read first runs on the loop's thread for at most `_ON_LOOP` seconds, which is
        where the usual few-millisecond query is fastest (see the module's docstring). One
        that runs longer is interrupted and run again on a thread of the long-read pool, where
        SQLite steps without the GIL and the loop goes on. Past the budget (or when the caller
        is cancelled) the statement is interrupted and QueryTimeout raised. `fn` must be safe
        to run twice (a read that builds its answer from what it reads). `on_loop=False`: the
        caller knows the read is long (a count over every match), so it goes to the pool
        at once instead of running its first `_ON_LOOP` seconds twice."""
        if self._closed:
            raise WriterStopped(f"database {self.path} is closed")
        # A scheduling point first: a command that runs many short reads in a row (an IMAP
        # SEARCH OR of a thousand words asks the index a thousand times) lets the other
        # connections in between them, not only when one read runs long.
        await asyncio.sleep(0)
        started = time.monotonic()
        if on_loop:
            try:
                return self._read_until(fn, started + min(budget, _ON_LOOP), None)
            except _Interrupted:
                pass
        cancelled = threading.Event()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                _LONG_READS, self._read_until, fn, started + budget, cancelled)
        except _Interrupted:
            raise QueryTimeout(f"the query ran past its time budget ({budget:g} s)") from None
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def _read_until(self, fn: Callable[[sqlite3.Connection], T], deadline: float,
                    cancelled: threading.Event | None) -> T:
        with self._long_reads:
            if self._closed:
                raise WriterStopped(f"database {self.path} is closed")
            self._long_active += 1
        try:
            conn = self._reader()

            def over() -> bool:
                return time.monotonic() > deadline or self._closed or (
                    cancelled is not None and cancelled.is_set())

            conn.set_progress_handler(over, _PROGRESS_STEPS)
            try:
                return self.read_sync(fn)
            except sqlite3.OperationalError as e:
                if "interrupted" in str(e):
                    raise _Interrupted from None
                raise
            finally:
                conn.set_progress_handler(None, 0)
        finally:
            with self._long_reads:
                self._long_active -= 1
                self._long_reads.notify_all()

    # ------------------------------------------------------------------ life

    def close(self) -> None:
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(_STOP)
        self._writer.join(timeout=30)
        with self._long_reads:  # _closed interrupts them at their next progress check
            self._long_reads.wait_for(lambda: self._long_active == 0, timeout=30)
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
