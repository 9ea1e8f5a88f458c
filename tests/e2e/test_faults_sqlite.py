"""Faults that used to stop delivery silently on the SQLite engine (issue 17), made for real:
SMTP clients that reset the connection right after the final dot (their sessions are cancelled
while their writes wait for the SQLite writer), and a full disk under the pipeline worker.

After each, the server must still accept mail, deliver it and answer IMAP, without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import errno
import imaplib
import json
import os
import random
import signal
import smtplib
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailyard import config as configuration
from mailyard.app import Runtime, ops_app
from mailyard.pipeline.worker import Supervised
from mailyard.store.fs.blobstore import FsBlobStore
from tests.e2e.server import Server

ALICE = "alice@example.test"
BOB = "bob@example.test"
PASSWORD = "secret-password"


# ------------------------------------------------------------------ helpers


def _reply(f: object) -> str:
    lines = []
    while True:
        line = f.readline().decode()  # type: ignore[attr-defined]
        if not line:
            raise ConnectionError("connection closed")
        lines.append(line)
        if line[3:4] != "-":
            return "".join(lines)


def _reset(s: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the server sees the connection die at once."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


def send_and_reset(port: int, rcpt: str, tag: str, after: float, *,
                   login: str | None = None) -> None:
    """One message up to and including its final dot, then, `after` seconds later, a reset
    instead of reading the answer to it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        f = s.makefile("rb")
        _reply(f)
        s.sendall(b"EHLO reset.test\r\n")
        _reply(f)
        if login:
            token = base64.b64encode(f"\0{login}\0{PASSWORD}".encode()).decode()
            s.sendall(f"AUTH PLAIN {token}\r\n".encode())
            assert _reply(f).startswith("235")
        sender = login or "carol@elsewhere.test"
        for line in (f"MAIL FROM:<{sender}>", f"RCPT TO:<{rcpt}>", "DATA"):
            s.sendall(line.encode() + b"\r\n")
            assert _reply(f)[0] in "23"
        s.sendall(f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {tag}\r\n\r\n".encode()
                  + b"x" * 70 + b"\r\n" + b"y" * 70 + b"\r\n.\r\n")
        time.sleep(after)
    finally:
        _reset(s)


def imap_create(srv: Server, mailbox: str) -> None:
    with imaplib.IMAP4("127.0.0.1", srv.imap_port, timeout=30) as imap:
        imap.login(ALICE, PASSWORD)
        typ, data = imap.create(mailbox)
        assert typ == "OK", data


def send(srv: Server, rcpt: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=30) as smtp:
        smtp.sendmail("carol@elsewhere.test", [rcpt],
                      f"From: carol@elsewhere.test\r\nSubject: {subject}\r\n\r\nHi.\r\n"
                      .encode())


def subjects(srv: Server, address: str) -> list[str]:
    return [str(e.get("subject")) for e in srv.emails(address)]


def wait_subject(srv: Server, address: str, subject: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while subject not in subjects(srv, address):
        assert time.monotonic() < deadline, f"{subject!r} never delivered:\n" + tail(srv)
        time.sleep(0.2)


def tail(srv: Server, n: int = 60) -> str:
    return "\n".join(srv.log_path.read_text(errors="replace").splitlines()[-n:])


# ------------------------------------------------------------- cancelled callers


def test_clients_resetting_after_the_final_dot_stop_nothing(server: Server) -> None:
    """Forty clients at a time send a message and reset the connection right after the
    final dot, on the MX and on submission: their sessions are cancelled at every stage of
    making the message durable, some while their writes wait for the SQLite writers. That
    used to kill the writer (InvalidStateError: CANCELLED), after which the MX still said 250
    but nothing was delivered and IMAP CREATE never answered."""
    errors: list[BaseException] = []
    moments = random.Random(17)  # when each client resets: from at once to 40 ms later
    delays = [moments.uniform(0, 0.04) for _ in range(200)]

    def client(n: int) -> None:
        try:
            if n % 2:
                send_and_reset(server.submission_port, BOB, f"reset {n}", delays[n],
                               login=ALICE)
            else:
                send_and_reset(server.smtp_port, ALICE, f"reset {n}", delays[n])
        except BaseException as e:  # reported below
            errors.append(e)

    for round_ in range(5):
        threads = [threading.Thread(target=client, args=(round_ * 40 + n,)) for n in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, errors[:3]

    # Everything still works: IMAP CREATE (a mail.db write), the MX, submission, delivery.
    imap_create(server, "After-resets")
    send(server, ALICE, "after the resets")
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as smtp:
        smtp.login(ALICE, PASSWORD)
        smtp.sendmail(ALICE, [BOB], f"From: {ALICE}\r\nSubject: submitted after\r\n\r\nHi.\r\n"
                      .encode())
    wait_subject(server, ALICE, "after the resets")
    wait_subject(server, BOB, "submitted after")
    log = server.log_path.read_text(errors="replace")
    assert "InvalidStateError" not in log
    assert "has stopped" not in log


# -------------------------------------------------------------- a full disk


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


def worker_pids(srv: Server) -> list[int]:
    """The `--workers` processes of the server (spawned: "--multiprocessing-fork")."""
    assert srv.process is not None
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if ppid == srv.process.pid and b"multiprocessing-fork" in cmdline:
            found.append(int(entry))
    return found


def wait_for(what: str, condition, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


def queue_rows(data: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(data / "queue.db", timeout=30)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def truncate_wal(path: Path) -> None:
    """Checkpoint `path` and cut its WAL to nothing, so the next write must grow the file:
    with the disk full, that write fails for sure (a WAL reused from its start would not)."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        wait_for(f"a checkpoint of {path.name}", lambda: conn.execute(
            "PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0)
    finally:
        conn.close()
    assert Path(f"{path}-wal").stat().st_size == 0


def open_fifo_writer(path: Path) -> int:
    """The write end of the FIFO at `path`, once a reader is waiting on it."""
    def attempt() -> int | None:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            return None

    fd: int = wait_for("the worker to read the spooled message", attempt)
    return fd


def test_a_full_disk_under_the_pipeline_worker_stops_nothing(tmp_path: Path) -> None:
    """The disk fills while the worker processes a message: storing it fails, and so does
    `queue.retry`, which records that failure. That used to end the worker's loop (its
    process exited; in-process, the task died without a word), and afterwards mail was
    acknowledged with 250 and never delivered. Now the error is logged, the loop pauses and
    goes on, and once space is freed the message and later ones are delivered, once each.

    To make the disk fill at that exact moment, the worker is paused (SIGSTOP) while the
    message is accepted, and its spool file is swapped for a FIFO: the worker, resumed, leases
    the item and waits on the FIFO; the test fills the disk, then feeds the FIFO."""
    srv = Server(tmp_path, workers=1, metadata="", blobs="", queue={
        "lease_seconds": 3, "backoff_base": 1, "max_attempts": 50, "worker_nice": 0})
    stopped: list[int] = []
    with small_filesystem(srv.data_dir, 64) as data:
        srv.add_user(ALICE)
        srv.start()
        try:
            send(srv, ALICE, "before the fault")
            wait_subject(srv, ALICE, "before the fault")
            (worker,) = wait_for("the worker process", lambda: worker_pids(srv))

            os.kill(worker, signal.SIGSTOP)
            stopped.append(worker)
            send(srv, ALICE, "stuck")
            ((payload,),) = queue_rows(data, "SELECT payload FROM items")
            assert isinstance(payload, bytes)
            spool = FsBlobStore(srv.data_dir / "blobs").path(json.loads(payload)["spool"])
            kept = spool.with_name(spool.name + ".kept")
            spool.rename(kept)
            os.mkfifo(spool)
            os.kill(worker, signal.SIGCONT)

            fifo = open_fifo_writer(spool)  # the worker has leased the item and reads it
            kept.rename(spool)  # for the retry: the worker holds the FIFO already
            truncate_wal(data / "queue.db")
            truncate_wal(data / "mail.db")
            filler = fill(data)
            os.write(fifo, spool.read_bytes())
            os.close(fifo)

            wait_for("the failed queue update in the log",
                     lambda: "cannot update the queue" in srv.log_path.read_text())
            filler.unlink()

            wait_subject(srv, ALICE, "stuck")
            send(srv, ALICE, "after the fault")
            wait_subject(srv, ALICE, "after the fault")
            srv.wait_queue_empty()
            assert subjects(srv, ALICE).count("stuck") == 1
            assert worker_pids(srv) == [worker]  # the loop went on: no restart was needed
        finally:
            for pid in stopped:  # a failed test must not leave a stopped process behind
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            srv.stop()


# --------------------------------------------------------------- supervision


def test_a_worker_process_that_dies_is_started_again(tmp_path: Path) -> None:
    """A `--workers` process that ends (here SIGKILL; a bug or a store it cannot use
    would do the same) is started again by the listener, and the mail it left leased is
    delivered; before, the queue grew while SMTP kept answering 250."""
    srv = Server(tmp_path, workers=1, queue={"lease_seconds": 3, "worker_nice": 0})
    srv.add_user(ALICE)
    srv.start()
    try:
        (first,) = wait_for("the worker process", lambda: worker_pids(srv))
        os.kill(first, signal.SIGKILL)
        send(srv, ALICE, "after the kill")
        (second,) = wait_for("a new worker process",
                             lambda: [p for p in worker_pids(srv) if p != first])
        wait_subject(srv, ALICE, "after the kill")
        assert second != first
        assert "process mailyard-worker-0 ended" in srv.log_path.read_text()
    finally:
        srv.stop()


async def test_supervised_loops_are_started_again_and_reported() -> None:
    """`Supervised` restarts a loop that raises or returns before `stop`, and says it is
    down meanwhile (what /readyz shows)."""
    stop = asyncio.Event()
    runs: list[str] = []
    resumed = asyncio.Event()

    def make():  # type: ignore[no-untyped-def]
        async def loop(stop: asyncio.Event) -> None:
            runs.append("run")
            if len(runs) == 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            if len(runs) == 2:
                return  # a loop that ends by itself is restarted too
            resumed.set()
            await stop.wait()

        return loop

    supervised = Supervised("test loop", make)
    task = asyncio.create_task(supervised.run(stop))
    await asyncio.sleep(0)
    await asyncio.wait_for(resumed.wait(), 30)
    assert supervised.problem() is None
    assert supervised.restarts == 2
    stop.set()
    await asyncio.wait_for(task, 30)
    assert supervised.problem() == "the test loop is not running"
    assert runs == ["run"] * 3


def _raise_in_thread(thread: threading.Thread, exc: type[BaseException]) -> None:
    """Have `thread` raise `exc` at its next Python instruction: a bug in the writer loop
    itself, the one failure its own guards cannot catch."""
    assert thread.ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                               ctypes.py_object(exc))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_readyz_fails_when_a_writer_or_a_loop_is_down(tmp_path: Path) -> None:
    """A dead SQLite writer or a pipeline loop that is not running makes /readyz answer
    503 with the reason, so a load balancer stops sending mail to a server that would take
    it and never deliver it."""
    # Writes the config (SQLite and files, whatever the stage); the server is not started.
    srv = Server(tmp_path, metadata="", blobs="")
    runtime = Runtime.open(configuration.load(str(srv.config_path)))
    down: list[str] = []
    try:
        app = ops_app(runtime, [lambda: down[0] if down else None])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ops") as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            down.append("the pipeline worker is not running")
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert "pipeline worker is not running" in ready.json()["queue"]
            down.clear()

            db = runtime.store.db  # type: ignore[union-attr]
            for _ in range(10):  # should it land inside a job, the job fails alone
                _raise_in_thread(db._writer, SystemExit)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(db.write(lambda conn: None), 30)
                if not db.alive:
                    break
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            body = ready.json()
            assert "mail.db" in body["mailstore"] and body["queue"] == "ok", body
    finally:
        runtime.close()


def test_a_full_disk_is_a_4xx_and_the_server_recovers_when_space_is_back(
        tmp_path: Path) -> None:
    """With the data directory's disk full, SMTP answers 4xx (the sender keeps the message)
    and IMAP CREATE answers NO; once space is freed the same server process accepts,
    delivers and creates again: the SQLite writers got the disk's error ("database or disk
    is full", never "no such savepoint") and went on."""
    srv = Server(tmp_path, metadata="", blobs="")
    with small_filesystem(srv.data_dir, 64) as data:
        srv.add_user(ALICE)
        srv.start()
        try:
            send(srv, ALICE, "before the disk filled")
            wait_subject(srv, ALICE, "before the disk filled")
            for name in ("queue.db", "mail.db"):
                truncate_wal(data / name)
            filler = fill(data)
            with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=30) as smtp:
                with pytest.raises(smtplib.SMTPResponseException) as refused:
                    smtp.sendmail("carol@elsewhere.test", [ALICE],
                                  b"Subject: while full\r\n\r\nHi.\r\n")
                assert 400 <= refused.value.smtp_code < 500, refused.value
            with imaplib.IMAP4("127.0.0.1", srv.imap_port, timeout=30) as imap:
                imap.login(ALICE, PASSWORD)
                typ, data_ = imap.create("While-full")
                assert typ == "NO", data_
                assert b"Traceback" not in data_[0], data_
            filler.unlink()

            send(srv, ALICE, "after space came back")
            wait_subject(srv, ALICE, "after space came back")
            imap_create(srv, "After-full")
            assert "while full" not in subjects(srv, ALICE)
            log = srv.log_path.read_text(errors="replace")
            assert "no such savepoint" not in log
            assert "has stopped" not in log
        finally:
            srv.stop()
