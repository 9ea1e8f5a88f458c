"""Faults for the fault stage (tests/e2e/test_fault_stage.py): SMTP load that records every
reply, a loopback TCP proxy that can cut an engine off, a full disk, and a private PostgreSQL
that can be killed and started again on the same port.

Only the outside world is faked here, and only by real means: the proxy is a real TCP hop in
front of a real S3 gateway, the full disk a real tmpfs, the crash a real `pg_ctl -m immediate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import imaplib
import os
import re
import shutil
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------- SMTP load


@dataclass
class Sent:
    """What the server answered to each message of the load, by Message-ID."""

    replies: dict[str, list[str]] = field(default_factory=dict)
    """Every final answer a message got, in order ("250", "451", "refused", ...)."""

    def acknowledged(self) -> set[str]:
        return {mid for mid, r in self.replies.items() if "250" in r}

    def permanent(self) -> dict[str, list[str]]:
        """Messages that got a 5xx at any stage: the sender would bounce them."""
        return {mid: r for mid, r in self.replies.items() if any(x.startswith("5") for x in r)}


class SmtpLoad:
    """Senders on threads, each sending messages with Message-IDs of their own to `rcpt`
    until stopped; a reply of any kind is recorded, and a message not acknowledged is kept
    for `retry_unacknowledged` (a real MTA keeps it and retries)."""

    def __init__(self, port: int, rcpt: str, tag: str, *, senders: int = 4) -> None:
        self.port = port
        self.rcpt = rcpt
        self.tag = tag
        self.senders = senders
        self.sent = Sent()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._n = 0

    def _next_id(self) -> str:
        with self._lock:
            self._n += 1
            return f"<fault-{self.tag}-{self._n}@load.test>"

    def _record(self, mid: str, reply: str) -> None:
        with self._lock:
            self.sent.replies.setdefault(mid, []).append(reply)

    def send_one(self, mid: str) -> str:
        """One SMTP transaction for `mid`; its outcome as a short string (the code of the
        first non-2xx/3xx reply, "250" when accepted, "refused"/"dropped" for the socket)."""
        body = (f"From: sender@load.test\r\nTo: {self.rcpt}\r\nSubject: fault load {mid}\r\n"
                f"Message-ID: {mid}\r\n\r\n" + "load line\r\n" * 40)
        try:
            # A sender waits as RFC 5321 §4.5.3.2 says (10 minutes for the reply to DATA's
            # end): a server waiting out an engine's read timeout (S3's 60 s on a pooled
            # connection that the fault froze) must not look like a dropped connection.
            with smtplib.SMTP("127.0.0.1", self.port, timeout=600) as smtp:
                code, _ = smtp.ehlo("load.test")
                if code != 250:
                    return str(code)
                code, _ = smtp.mail("sender@load.test")
                if code != 250:
                    return str(code)
                code, _ = smtp.rcpt(self.rcpt)
                if code not in (250, 251):
                    return str(code)
                code, _ = smtp.data(body.encode())
                return str(code)
        except smtplib.SMTPServerDisconnected:
            return "dropped"
        except smtplib.SMTPResponseException as e:
            return str(e.smtp_code)
        except OSError:
            return "refused"

    def _run(self) -> None:
        while not self._stop.is_set():
            mid = self._next_id()
            self._record(mid, self.send_one(mid))

    def start(self) -> None:
        for n in range(self.senders):
            t = threading.Thread(target=self._run, name=f"load-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(120)
        self._threads.clear()

    def wait_sent(self, count: int, timeout: float = 120.0) -> None:
        """Until `count` more transactions have ended (whatever their outcome)."""
        with self._lock:
            target = sum(len(r) for r in self.sent.replies.values()) + count
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if sum(len(r) for r in self.sent.replies.values()) >= target:
                    return
            time.sleep(0.05)
        raise AssertionError(f"the load did not get {count} more answers in {timeout:.0f} s")

    def outcomes_since(self, mark: int) -> Counter[str]:
        """The outcomes of the transactions ended after the `mark`-th."""
        with self._lock:
            flat = [(mid, r) for mid, rs in self.sent.replies.items() for r in rs]
        return Counter(r for _, r in flat[mark:])

    def retry_unacknowledged(self, timeout: float = 180.0) -> None:
        """Send every message not yet acknowledged again until it is, as the sending MTA's
        queue would."""
        deadline = time.monotonic() + timeout
        while True:
            pending = set(self.sent.replies) - self.sent.acknowledged()
            if not pending:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(pending)} messages never acknowledged after the"
                                     f" fault ended, e.g. {sorted(pending)[:3]}")
            for mid in sorted(pending):
                self._record(mid, self.send_one(mid))
            time.sleep(0.2)


def delivered_ids(imap_port: int, user: str, password: str) -> Counter[str]:
    """How many times each Message-ID is in the user's INBOX, read over IMAP."""
    imap = imaplib.IMAP4("127.0.0.1", imap_port, timeout=120)
    try:
        imap.login(user, password)
        imap.select("INBOX", readonly=True)
        typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        found: Counter[str] = Counter()
        if typ != "OK":
            return found
        for item in data:
            if isinstance(item, tuple):
                m = re.search(rb"<[^>]+>", item[1])
                if m:
                    found[m.group().decode()] += 1
        return found
    finally:
        with contextlib.suppress(Exception):
            imap.logout()


def wait_delivered(imap_port: int, user: str, password: str, expected: set[str],
                   timeout: float = 240.0) -> Counter[str]:
    """Until every id of `expected` is in the INBOX (or the time is up); the last count."""
    deadline = time.monotonic() + timeout
    while True:
        found = delivered_ids(imap_port, user, password)
        if expected <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


# ---------------------------------------------------------------------------- TCP proxy


class TcpProxy:
    """A loopback TCP hop in front of `target` (host, port). `cut()` drops every connection
    and refuses new ones, as a dead engine or a partition does; `restore()` lets them in."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self._cut.is_set():
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                _reset(s)
                with self._lock:
                    self._conns.discard(s)

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            _reset(s)

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


def _reset(s: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees a dead connection at once."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        s.close()


# ---------------------------------------------------------------------------- a full disk


@contextlib.contextmanager
def small_filesystem(path: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of `size_mb` mounted at `path` (root only: the suite runs as root in CI)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                   check=True, capture_output=True, timeout=30)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True,
                       timeout=30)


def fill(path: Path) -> Path:
    """Write a file under `path` until the filesystem has no space left; returns it."""
    filler = path / "filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb", buffering=0) as f:
        for size in (len(chunk), 4096, 1):  # the last partial megabyte and page too
            with contextlib.suppress(OSError):
                while f.write(chunk[:size]):
                    pass
    return filler


# ---------------------------------------------------------------------------- PostgreSQL


class PrivatePostgres:
    """A cluster of the test's own (scripts/postgres-up.sh) that can crash (`kill`: an
    immediate shutdown, no checkpoint, as a power cut) and start again on the same port, so
    the server's DSN stays right."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="mailyard-fault-pg-")
        out = subprocess.run([str(ROOT / "scripts" / "postgres-up.sh"), self.directory],
                             check=True, capture_output=True, text=True, timeout=180)
        self.dsn = out.stdout.strip().splitlines()[-1]
        self.port = urlsplit(self.dsn).port

    def _pg_ctl(self, *args: str) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
        pg_ctl = found[0] if found else (shutil.which("pg_ctl") or "pg_ctl")
        owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*owner, pg_ctl, "-D", f"{self.directory}/data", *args], check=True,
                       capture_output=True, timeout=120)

    def kill(self) -> None:
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        self._pg_ctl("-l", f"{self.directory}/server.log", "-w", "-t", "60", "-o",
                     f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory}"
                     " -c max_connections=200", "start")

    def database(self, name: str) -> str:
        """A new database `name` on this cluster; its DSN."""
        async def create() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        return urlsplit(self.dsn)._replace(path="/" + name).geturl()

    def remove(self) -> None:
        subprocess.run([str(ROOT / "scripts" / "postgres-up.sh"), "stop", self.directory],
                       check=False, capture_output=True, timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)
