"""IMAP IDLE sessions at rest ("hibernated": the session's task ends and a small protocol object
holds the connection until the client speaks), against the real listener over raw sockets: every
IDLE behaviour must survive the hand-over and the wake-up, and an idle session must cost little
memory."""

from __future__ import annotations

import contextlib
import imaplib
import itertools
import re
import resource
import socket
import ssl
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.e2e.server import Server

ALICE = "alice@example.test"
PASSWORD = "secret-password"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, imap={"connections_per_user": 3})
    srv.add_user(ALICE, PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def message(subject: str) -> bytes:
    return (f"From: bob@remote.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@remote.test>\r\n\r\nHello.\r\n").encode()


def append(server: Server, *subjects: str) -> None:
    """Deliver from another IMAP connection (APPEND: stored when answered, no queue)."""
    other = imaplib.IMAP4("127.0.0.1", server.imap_port)
    try:
        other.login(ALICE, PASSWORD)
        for subject in subjects:
            assert other.append("INBOX", "", None, message(subject))[0] == "OK"
    finally:
        other.logout()


class Raw:
    """A raw IMAP connection: lines as the server sends them."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file: BinaryIO = sock.makefile("rb")

    @classmethod
    def connect(cls, server: Server) -> Raw:
        raw = cls(socket.create_connection(("127.0.0.1", server.imap_port), timeout=60))
        assert raw.line().startswith(b"* OK")
        return raw

    def line(self) -> bytes:
        return self.file.readline()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until_tagged(self, tag: bytes) -> tuple[bytes, list[bytes]]:
        untagged = []
        while not (line := self.line()).startswith(tag + b" "):
            assert line, f"connection closed before {tag!r} was answered: {untagged}"
            untagged.append(line)
        return line, untagged

    def login_select(self) -> None:
        self.send(f"a LOGIN {ALICE} {PASSWORD}\r\nb SELECT INBOX\r\n".encode())
        assert self.until_tagged(b"a")[0].startswith(b"a OK")
        assert self.until_tagged(b"b")[0].startswith(b"b OK")

    def idle(self, tag: bytes = b"i") -> None:
        self.send(tag + b" IDLE\r\n")
        assert self.line().startswith(b"+ ")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()  # the socket's fd stays open while its makefile() is
            self.sock.close()


def idler(server: Server) -> Raw:
    raw = Raw.connect(server)
    raw.login_select()
    raw.idle()
    # The server hands the connection over once the continuation is out: give it the time
    # to, so that what follows meets a resting session (meeting one still in its task is no
    # failure either: both must behave the same).
    time.sleep(0.1)
    return raw


def idler_when_free(server: Server) -> Raw:
    """An idler once connections_per_user allows: sessions that ended give their slot back
    when the server has seen them end, which a busy machine may take a while to do."""
    deadline = time.monotonic() + 60
    while True:
        raw = Raw.connect(server)
        raw.send(f"a LOGIN {ALICE} {PASSWORD}\r\n".encode())
        answer = raw.until_tagged(b"a")[0]
        if answer.startswith(b"a OK"):
            break
        assert b"[LIMIT]" in answer and time.monotonic() < deadline, answer
        raw.close()
        time.sleep(0.1)
    raw.send(b"b SELECT INBOX\r\n")
    assert raw.until_tagged(b"b")[0].startswith(b"b OK")
    raw.idle()
    return raw


def test_resting_idle_hears_new_mail_then_done_and_commands_work(server: Server) -> None:
    append(server, "one")
    raw = idler(server)
    append(server, "two", "three")
    seen = {raw.line()}
    while b"* 3 EXISTS\r\n" not in seen:
        seen.add(raw.line())
    raw.send(b"DONE\r\n")
    assert raw.until_tagged(b"i")[0] == b"i OK IDLE terminated\r\n"
    raw.send(b"f UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
    line, untagged = raw.until_tagged(b"f")
    assert line.startswith(b"f OK")
    assert b"".join(untagged).count(b"Subject: ") == 3
    # A second IDLE rests again and wakes again.
    raw.idle(b"j")
    time.sleep(0.1)
    append(server, "four")
    assert raw.line() == b"* 4 EXISTS\r\n"
    raw.send(b"DONE\r\nn NOOP\r\n")
    assert raw.until_tagged(b"j")[0] == b"j OK IDLE terminated\r\n"
    assert raw.until_tagged(b"n")[0].startswith(b"n OK")
    raw.send(b"z LOGOUT\r\n")
    assert raw.until_tagged(b"z")[0].startswith(b"z OK")
    raw.close()


def test_resting_idle_hears_expunge_and_flag_changes(server: Server) -> None:
    append(server, "one", "two")
    raw = idler(server)
    other = imaplib.IMAP4("127.0.0.1", server.imap_port)
    other.login(ALICE, PASSWORD)
    other.select("INBOX")
    other.store("2", "+FLAGS", "\\Flagged")
    # (\Recent: the idler was the first session to select the mailbox, RFC 3501 §2.3.2)
    assert re.fullmatch(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged \\Recent\)\)\r\n", raw.line())
    other.store("1", "+FLAGS", "\\Deleted")
    other.expunge()
    lines = [raw.line()]
    while b"* 1 EXPUNGE\r\n" not in lines:
        lines.append(raw.line())
    other.logout()
    raw.send(b"DONE\r\n")
    assert raw.until_tagged(b"i")[0] == b"i OK IDLE terminated\r\n"
    raw.send(b"s SEARCH ALL\r\n")
    line, untagged = raw.until_tagged(b"s")
    assert untagged == [b"* SEARCH 1\r\n"] and line.startswith(b"s OK")
    raw.close()


def test_done_in_pieces_and_other_than_done(server: Server) -> None:
    raw = idler(server)
    raw.send(b"DO")  # wakes the session, which then waits for the rest of the line
    time.sleep(0.2)
    raw.send(b"NE\r\n")
    assert raw.until_tagged(b"i")[0] == b"i OK IDLE terminated\r\n"
    raw.idle(b"k")
    time.sleep(0.1)
    raw.send(b"NOPE\r\n")
    assert raw.until_tagged(b"k")[0] == b"k BAD Expected DONE\r\n"
    raw.send(b"n NOOP\r\n")
    assert raw.until_tagged(b"n")[0].startswith(b"n OK")
    raw.close()


def test_client_gone_during_idle_frees_its_connection_slot(server: Server) -> None:
    """connections_per_user is 3: sessions that end while resting in IDLE (the client closes,
    or resets) give their slot back, or the fourth LOGIN would be refused."""
    for _ in range(3):
        idler(server).close()
    rst = idler(server)
    rst.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    rst.close()
    held = [idler_when_free(server) for _ in range(3)]
    extra = Raw.connect(server)
    extra.send(f"a LOGIN {ALICE} {PASSWORD}\r\n".encode())
    assert b"[LIMIT]" in extra.until_tagged(b"a")[0]
    for raw in held:
        raw.close()
    deadline = time.monotonic() + 60
    for n in itertools.count():  # until the server has seen the held ones go
        tag = f"b{n}".encode()
        extra.send(tag + f" LOGIN {ALICE} {PASSWORD}\r\n".encode())
        answer = extra.until_tagged(tag)[0]
        if answer.startswith(tag + b" OK"):
            break
        assert b"[LIMIT]" in answer and time.monotonic() < deadline, answer
        time.sleep(0.1)
    extra.close()


def test_idle_timeout_while_resting_says_bye(tmp_path: Path) -> None:
    srv = Server(tmp_path, imap={"idle_timeout": 1.0})
    srv.add_user(ALICE, PASSWORD)
    srv.start()
    try:
        started = time.monotonic()  # before any activity of the session the timer counts from
        raw = idler(srv)
        assert raw.line() == b"* BYE Idle for too long\r\n"  # within the socket's timeout
        assert time.monotonic() - started >= 1.0, "BYE before idle_timeout"
        assert raw.line() == b""
        raw.close()
        # The slot and the view were given back: a new session logs in and idles.
        again = idler(srv)
        again.send(b"DONE\r\n")
        assert again.until_tagged(b"i")[0] == b"i OK IDLE terminated\r\n"
        again.close()
    finally:
        srv.stop()


def test_server_shutdown_says_bye_to_resting_idle(tmp_path: Path) -> None:
    srv = Server(tmp_path)
    srv.add_user(ALICE, PASSWORD)
    srv.start()
    try:
        raws = [idler(srv) for _ in range(3)]
        started = time.monotonic()
        srv.stop()
        # Not held up by the resting sessions: stop() would kill the server after 30 s.
        assert time.monotonic() - started < 25
        for raw in raws:
            assert raw.line() == b"* BYE Server shutting down, reconnect in a moment\r\n"
            assert raw.line() == b""
            raw.close()
    finally:
        srv.stop()


def test_idle_over_compress_and_tls(server: Server) -> None:
    """COMPRESS=DEFLATE and TLS sessions idle in their task (not hibernated): same behaviour."""
    raw = Raw.connect(server)
    raw.login_select()
    raw.send(b"c COMPRESS DEFLATE\r\n")
    assert raw.until_tagged(b"c")[0].startswith(b"c OK")
    deflate = zlib.compressobj(wbits=-15)
    inflate = zlib.decompressobj(wbits=-15)
    buffered = b""

    def send(data: bytes) -> None:
        raw.send(deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH))

    def line() -> bytes:
        nonlocal buffered
        while b"\n" not in buffered:
            chunk = raw.sock.recv(65536)
            assert chunk, "connection closed"
            buffered += inflate.decompress(chunk)
        first, _, buffered = buffered.partition(b"\n")
        return first + b"\n"

    send(b"i IDLE\r\n")
    assert line().startswith(b"+ ")
    append(server, "deflated")
    assert line() == b"* 1 EXISTS\r\n"
    assert line() == b"* 1 RECENT\r\n"  # IMAP4rev1: the first session to see it has it
    send(b"DONE\r\n")
    assert line() == b"i OK IDLE terminated\r\n"
    raw.close()

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tls = imaplib.IMAP4_SSL("127.0.0.1", server.imaps_port, ssl_context=context)
    tls.login(ALICE, PASSWORD)
    tls.select("INBOX")
    sock = tls.socket()
    sock.sendall(b"t IDLE\r\n")
    assert tls.readline().startswith(b"+ ")
    append(server, "encrypted")
    assert tls.readline() == b"* 2 EXISTS\r\n"
    assert tls.readline() == b"* 1 RECENT\r\n"
    sock.sendall(b"DONE\r\n")
    assert tls.readline() == b"t OK IDLE terminated\r\n"
    tls.logout()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _settled_rss(pid: int, seconds: float = 14.0) -> int:
    """VmRSS once the listener trimmed its heap after the logins (its sweep trims once no
    command ran for a whole 5-second round)."""
    time.sleep(seconds)
    return _rss_kib(pid)


SESSIONS = 1000
"""Sessions of each kind: the listener's heap grows in 1 MiB steps (Python's arenas), so
fewer would leave the figures per session to chance."""


@pytest.mark.slow
def test_idle_sessions_at_rest_cost_little_memory(tmp_path: Path) -> None:
    """An IDLE session at rest holds a few small objects besides its transport; a session
    waiting for its next command holds a task, its coroutine frames, stream reader, writer and
    protocol. A thousand of each, measured in the same listener once it trimmed its heap: the
    idle ones must cost well under what the waiting ones cost (measured 3-4 KiB against 6-8;
    a session that kept its task in IDLE cost as much as a waiting one, or more)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * SESSIONS + 200
    if soft < needed:
        if hard < needed:
            pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))  # the server inherits it
    srv = Server(tmp_path, imap={"connections_per_user": 0, "connections_per_ip": 0})
    srv.add_user(ALICE, PASSWORD)
    srv.start()
    socks: list[socket.socket] = []
    try:
        assert srv.process is not None
        pid = srv.process.pid

        def open_sessions(count: int, idle: bool) -> None:
            for start in range(0, count, 100):
                pending = []
                for _ in range(min(100, count - start)):
                    sock = socket.create_connection(("127.0.0.1", srv.imap_port), timeout=60)
                    sock.sendall(f"a LOGIN {ALICE} {PASSWORD}\r\nb SELECT INBOX\r\n"
                                 f"{'i IDLE' if idle else 'c NOOP'}\r\n".encode())
                    pending.append(sock)
                for sock in pending:  # each read up to the IDLE continuation or NOOP's OK
                    f = sock.makefile("rb")
                    end = b"+ " if idle else b"c OK"
                    while not (line := f.readline()).startswith(end):
                        assert line, "connection closed"
                    f.close()
                    socks.append(sock)

        open_sessions(50, idle=True)  # the first ones (and their logins) warm the process up
        start = _settled_rss(pid)
        open_sessions(SESSIONS, idle=False)
        waiting = _settled_rss(pid)
        open_sessions(SESSIONS, idle=True)
        idling = _settled_rss(pid)
        per_waiting = (waiting - start) / SESSIONS
        per_idle = (idling - waiting) / SESSIONS
        print(f"per idle session {per_idle:.2f} KiB, per waiting one {per_waiting:.2f} KiB")
        assert per_idle < 0.75 * per_waiting, \
            f"{per_idle:.1f} KiB per idle session, {per_waiting:.1f} per waiting one"
        append(srv, "wake")  # and the idle ones are all woken
        for sock in socks[50 + SESSIONS::97]:
            assert sock.makefile("rb").readline() == b"* 1 EXISTS\r\n"
    finally:
        for sock in socks:
            sock.close()
        srv.stop()
