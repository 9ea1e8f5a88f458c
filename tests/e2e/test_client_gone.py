"""A client that goes away mid-command or mid-request is no error of the server's (issue 17).

Fuzzing found three ways a client's vanishing reached the log as an ERROR with a traceback:

- IMAP: a connection reset while a command writes as it runs (IDLE's "+ idling", FETCH's
  batches) was "IMAP IDLE failed | ConnectionResetError: Connection lost"; now one INFO line;
- HTTPS: an upload whose body is cut short (the client closes mid-body) was uvicorn's
  "Exception in ASGI application | ClientDisconnect"; now one INFO line, on every route that
  reads a body;
- TLS: a record that does not decrypt, or is cut short, after the handshake, on every TLS
  listener (implicit and STARTTLS), then a reset.

Each test checks that the server saw the client go away (the INFO line, or a login after it
that proves the server went on), so that it cannot pass without having made the fault.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
import ssl
import struct
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.jmapclient import PASSWORD, Jmap
from tests.e2e.server import Server, wait_port

ALICE = "alice@example.test"
IMAP_GONE = "the client went away ("
HTTP_GONE = "the client went away mid-request"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("client-gone")))
    srv.add_user(ALICE)
    srv.start()
    wait_port(srv.http_port)  # the HTTP listener starts after SMTP's
    # A message in INBOX, so that FETCH has something to write.
    with socket.create_connection(("127.0.0.1", srv.imap_port), timeout=30) as sock:
        f = sock.makefile("rwb")
        f.readline()
        body = b"Subject: hello\r\n\r\n" + b"some text\r\n" * 2000
        f.write(b"l LOGIN " + ALICE.encode() + b" " + PASSWORD.encode() + b"\r\n"
                + b"a APPEND INBOX {" + str(len(body)).encode() + b"+}\r\n" + body + b"\r\n")
        f.flush()
        while not (line := f.readline()).startswith(b"a "):
            assert line, "EOF before APPEND's reply"
        assert line.startswith(b"a OK"), line
    yield srv
    srv.stop()


def insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a client that crashes or loses its network."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def log_since(server: Server, offset: int) -> str:
    return server.log_path.read_bytes()[offset:].decode(errors="replace")


def wait_log(server: Server, offset: int, text: str, count: int = 1) -> str:
    """The log from `offset` once `text` is in it `count` times (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        log = log_since(server, offset)
        if log.count(text) >= count or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def assert_clean(log: str) -> None:
    assert "Traceback" not in log and " ERROR " not in log, log[-4000:]


# --------------------------------------------------------------------------- IMAP


class Imap:
    """A raw IMAP connection (plain or implicit TLS), optionally deflated (RFC 4978)."""

    def __init__(self, port: int, tls: bool = False) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock: socket.socket = insecure().wrap_socket(sock) if tls else sock
        self.deflate: Callable[[bytes], bytes] | None = None
        self.inflate: zlib._Decompress | None = None
        self.buf = b""
        self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(self.deflate(data) if self.deflate else data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, f"EOF after {self.buf!r}"
            self.buf += self.inflate.decompress(chunk) if self.inflate else chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def command(self, tag: bytes, text: bytes) -> bytes:
        self.send(tag + b" " + text + b"\r\n")
        while not (line := self.line()).startswith(tag + b" "):
            pass
        assert line.startswith(tag + b" OK"), line
        return line

    def compress(self) -> None:
        self.command(b"z", b"COMPRESS DEFLATE")
        out = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        self.deflate = lambda data: out.compress(data) + out.flush(zlib.Z_SYNC_FLUSH)
        self.inflate = zlib.decompressobj(-15)

    def selected(self, compress: bool = False) -> Imap:
        self.command(b"l", b"LOGIN " + ALICE.encode() + b" " + PASSWORD.encode())
        if compress:  # after LOGIN: RFC 4978 §3
            self.compress()
        self.command(b"s", b"SELECT INBOX")
        return self


IMAP_WAYS = {
    "plain": (False, False),
    "imaps": (True, False),
    "compress": (False, True),
}
IMAP_INPUTS = {
    "idle": b"i IDLE\r\n",
    "idle-done-noop": b"i IDLE\r\nDONE\r\nn NOOP\r\n",
    "idle-done-fetch": b"i IDLE\r\nDONE\r\nf FETCH 1:* (BODY[] FLAGS)\r\n",
}


@pytest.mark.parametrize("what", IMAP_INPUTS)
@pytest.mark.parametrize("way", IMAP_WAYS)
def test_imap_client_reset_while_a_command_writes_is_info(server: Server, way: str,
                                                          what: str) -> None:
    """Sent in one segment, then a reset: the server reads the commands before it learns of
    the reset, and meets it when IDLE's continuation or FETCH's data goes out. Some of the
    tries must get there (the INFO line) and none may log an error."""
    tls, deflate = IMAP_WAYS[way]
    port = server.imaps_port if tls else server.imap_port
    offset = server.log_path.stat().st_size
    for _ in range(20):
        conn = Imap(port, tls).selected(deflate)
        conn.send(IMAP_INPUTS[what])
        reset(conn.sock)
    # A NOOP after them: the server went on, and whatever the resets logged is written.
    Imap(server.imap_port).selected().command(b"n", b"NOOP")
    log = log_since(server, offset)
    assert_clean(log)
    if not tls:  # over TLS the reset reaches the reading side first: nothing to say
        log = wait_log(server, offset, IMAP_GONE)
        assert IMAP_GONE in log, "no reset ever met a command writing (the test did nothing)"
        assert " INFO mailyard.imap IMAP " in log


def test_imap_reset_during_idle_of_a_hibernated_session(server: Server) -> None:
    """The plain-text IDLE rests hibernated (no task); a reset then ends it without a line
    of error, and so does a reset right after DONE woke it up."""
    offset = server.log_path.stat().st_size
    for tail in (b"", b"DONE\r\n", b"DONE\r\nn NOOP\r\n"):
        for _ in range(5):
            conn = Imap(server.imap_port).selected()
            conn.send(b"i IDLE\r\n")
            assert conn.line().startswith(b"+ ")
            time.sleep(0.05)  # the task ends; the Hibernation holds the transport
            if tail:
                conn.send(tail)
            reset(conn.sock)
    Imap(server.imap_port).selected().command(b"n", b"NOOP")
    assert_clean(log_since(server, offset))


# --------------------------------------------------------------------------- HTTPS


def basic() -> str:
    return "Basic " + base64.b64encode(f"{ALICE}:{PASSWORD}".encode()).decode()


def cut_short(server: Server, head: str, sent: bytes, rst: bool) -> None:
    """Send a request's head and part of its body over TLS, then close (FIN or RST)."""
    sock = insecure().wrap_socket(
        socket.create_connection(("127.0.0.1", server.http_port), timeout=30))
    sock.sendall(head.encode() + sent)
    time.sleep(0.1)  # the route is reading the body when the client goes
    if rst:
        reset(sock)
    else:
        sock.close()


@pytest.fixture(scope="module")
def account(server: Server) -> str:
    return Jmap(server, ALICE).account_id


def request_head(method: str, path: str, kind: str, length: int) -> str:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {basic()}\r\n"
            f"Content-Type: {kind}\r\nContent-Length: {length}\r\n\r\n")


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize("kind", ["application/octet-stream",
                                  "multipart/form-data; boundary=xyz"])
def test_an_upload_cut_short_ends_quietly(server: Server, account: str, kind: str,
                                          rst: bool) -> None:
    offset = server.log_path.stat().st_size
    body = b"--xyz\r\nContent-Disposition: form-data; name=f\r\n\r\n" + b"x" * 5000
    for _ in range(3):
        cut_short(server, request_head("POST", f"/jmap/upload/{account}/", kind, 1_000_000),
                  body, rst)
    log = wait_log(server, offset, HTTP_GONE, 3)
    assert log.count(HTTP_GONE) >= 3, log[-3000:]
    assert_clean(log)
    # The server goes on, and a whole upload still works.
    response = Jmap(server, ALICE).client.post(f"/jmap/upload/{account}/", content=b"hello")
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("path", ["/jmap/api", "/jmap/eventsource", "/jmap/ws",
                                  "/jmap/session", "/healthz", "/webmail/"])
def test_every_route_with_a_body_cut_short_logs_no_error(server: Server, path: str) -> None:
    """A POST (or a GET with a body) whose body never comes whole, to the routes that read
    one and those that do not."""
    offset = server.log_path.stat().st_size
    for method in ("POST", "GET"):
        for rst in (False, True):
            cut_short(server, request_head(method, path, "application/json", 100_000),
                      b'{"using": [', rst)
    Jmap(server, ALICE).call("Core/echo", hi=1)
    time.sleep(0.5)  # uvicorn logs an app's failure after the connection closed
    assert_clean(log_since(server, offset))


def test_a_websocket_frame_cut_short_logs_no_error(server: Server) -> None:
    offset = server.log_path.stat().st_size
    key = base64.b64encode(b"0123456789abcdef").decode()
    for rst in (False, True):
        sock = insecure().wrap_socket(
            socket.create_connection(("127.0.0.1", server.http_port), timeout=30))
        sock.sendall((f"GET /jmap/ws HTTP/1.1\r\nHost: 127.0.0.1:{server.http_port}\r\n"
                      f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: jmap\r\n"
                      f"Authorization: {basic()}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101 "), head
        # A masked text frame announcing 1000 octets, of which 10 come.
        sock.sendall(bytes([0x81, 0x80 | 126]) + (1000).to_bytes(2, "big") + b"\0\0\0\0"
                     + b'{"@type": ')
        time.sleep(0.1)
        if rst:
            reset(sock)
        else:
            sock.close()
    Jmap(server, ALICE).call("Core/echo", hi=1)
    time.sleep(0.5)
    assert_clean(log_since(server, offset))


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_an_unreadable_request_is_answered_400_without_an_error(server: Server,
                                                                 method: str) -> None:
    """An illegal chunk header (fuzz seed 77170): h11 cannot read the request, uvicorn
    answers 400, and for a HEAD h11 refused the 400's body with an exception into the TLS
    transport ("Fatal error on SSL protocol"). Answered, closed, nothing logged as ours."""
    offset = server.log_path.stat().st_size
    with insecure().wrap_socket(
            socket.create_connection(("127.0.0.1", server.http_port), timeout=30)) as sock:
        sock.sendall(f"{method} /webmail/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: {basic()}\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "zz\r\n".encode())
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    Jmap(server, ALICE).call("Core/echo", hi=1)  # the server answers on
    assert_clean(log_since(server, offset))


# --------------------------------------------------------------------------- TLS records


def _starttls(port: int, greeting: bytes, command: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = sock.makefile("rb")
    assert f.readline().startswith(greeting)
    if command.startswith(b"EHLO"):
        sock.sendall(command)
        while (line := f.readline())[3:4] != b" ":
            assert line
        command = b"STARTTLS\r\n"
    sock.sendall(command)
    reply = f.readline()
    assert reply.startswith((b"220", b"+OK", b"a OK")), reply
    return sock


BAD_RECORDS = {
    "undecryptable": b"\x17\x03\x03\x00\x20" + b"\x00" * 32,
    "cut-short": b"\x17\x03\x03\x40\x00" + b"\x01" * 100,
    "random": bytes(range(256)) * 2,
    "fatal-alert": b"\x15\x03\x03\x00\x02\x02\x28",
}


def tls_listeners(server: Server) -> dict[str, Callable[[], socket.socket]]:
    def plain(port: int) -> Callable[[], socket.socket]:
        return lambda: socket.create_connection(("127.0.0.1", port), timeout=30)

    return {
        "smtp-starttls": lambda: _starttls(server.smtp_port, b"220", b"EHLO x\r\n"),
        "submission-starttls": lambda: _starttls(server.submission_port, b"220",
                                                 b"EHLO x\r\n"),
        "submissions": plain(server.submissions_port),
        "imap-starttls": lambda: _starttls(server.imap_port, b"* OK", b"a STARTTLS\r\n"),
        "imaps": plain(server.imaps_port),
        "pop3-starttls": lambda: _starttls(server.pop3_port, b"+OK", b"STLS\r\n"),
        "pop3s": plain(server.pop3s_port),
        "https": plain(server.http_port),
    }


@pytest.mark.parametrize("record", BAD_RECORDS)
def test_a_broken_tls_record_after_the_handshake_then_a_reset(server: Server,
                                                              record: str) -> None:
    """After a good handshake, a record that does not decrypt (or is cut short, or is noise,
    or a fatal alert) and a reset, on every TLS listener: no traceback, no ERROR (asyncio's
    'Fatal error on SSL protocol' included), and every listener goes on."""
    offset = server.log_path.stat().st_size
    for name, connect in tls_listeners(server).items():
        for _ in range(3):
            tls = insecure().wrap_socket(connect())
            if name == "https":
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            tls.settimeout(0.5)
            with contextlib.suppress(OSError):
                tls.recv(4096)  # a greeting or a reply: the session is up
            raw = socket.socket(fileno=os.dup(tls.fileno()))
            with contextlib.suppress(OSError):
                raw.sendall(BAD_RECORDS[record])
            reset(raw)
            tls.close()
    Imap(server.imap_port).selected().command(b"n", b"NOOP")
    Jmap(server, ALICE).call("Core/echo", hi=1)
    time.sleep(0.5)
    assert_clean(log_since(server, offset))


# --------------------------------------------------------------------------- asyncio's own bugs


def _tls_inside_tls_client(port: int, garbage: bytes) -> None:
    """Outer TLS, then, where the server expects the inner ClientHello, a record that is
    none: the inner handshake fails, and CPython 3.11.7's sslproto trips over its own
    `_abort()` (#113214) while closing the outer session."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock, \
            insecure().wrap_socket(sock) as outer:
        assert outer.recv(16) == b"ready\n"
        outer.sendall(garbage)
        with contextlib.suppress(OSError):
            while outer.recv(4096):
                pass


def test_asyncio_tls_bugs_a_client_sets_off_are_one_info_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The server's loop exception handler (app.client_tls_errors), on the standard asyncio
    loop whose SSL protocol aiosmtpd's STARTTLS uses: TLS stacked on TLS, the inner handshake
    broken by the client. The known sslproto failure is one INFO line; any other error the
    loop reports still reaches asyncio's default handler as an ERROR."""
    from mailyard.app import client_tls_errors
    from mailyard.tls import ensure_self_signed, server_context

    tls = server_context(*ensure_self_signed(tmp_path, "localhost"))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(client_tls_errors)
        ended = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"ready\n")
            await writer.drain()
            with contextlib.suppress(Exception):
                await writer.start_tls(tls)
                await reader.read()
            ended.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        for garbage in (b"\x17\x03\x03\x00\x20" + b"\0" * 32, b"GET / HTTP/1.0\r\n\r\n"):
            ended.clear()
            await loop.run_in_executor(None, _tls_inside_tls_client, port, garbage)
            await asyncio.wait_for(ended.wait(), 30)
        loop.call_exception_handler({"message": "something else broke",
                                     "exception": RuntimeError("not a client's doing")})
        server.close()
        await server.wait_closed()

    caplog.set_level(logging.INFO)
    asyncio.run(main())
    mine = [r for r in caplog.records if r.name == "mailyard"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["something else broke"], caplog.text
    assert errors[0].exc_info is not None  # the default handler, with its traceback
    if sys.version_info[:3] == (3, 11, 7):  # where the bug is: it must have happened
        assert len(mine) == 2, caplog.text
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in mine), caplog.text
    assert all("_abort()" in r.getMessage() for r in mine), caplog.text
