"""IMAP before authentication and around STARTTLS, against a running server (issue 17).

- Literals before login are small (reader.PRE_AUTH_LITERAL_MAX): a big synchronising one gets
  `NO [TOOBIG]` and no "+", a big non-synchronising one `BAD [TOOBIG]`, BYE and a closed
  connection without its data being read; five clients offering 35 MB each do not move the
  server's memory. The whole command is bounded too (reader.PRE_AUTH_COMMAND_MAX).
- STARTTLS throws away what the client pipelined after it in plain text (CVE-2011-0411): a
  LOGIN injected there is never answered, and the TLS session is not logged in.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailyard.protocols.imap.reader import PRE_AUTH_COMMAND_MAX, PRE_AUTH_LITERAL_MAX
from tests.clientfaults import bad_record_after_handshake, reset_after
from tests.e2e.server import Server, serving

PASSWORD = b"secret-password"
BIG = 36_700_160  # the 35 MB of the red-team probe: the post-login literal limit


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("imap-hardening"), ["alice", "bob"]) as srv:
        yield srv


class Wire:
    """A raw IMAP connection: exact octets out, lines in, and a TLS switch that proves no
    octet was read past the STARTTLS reply."""

    def __init__(self, port: int) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=30)
        self.buf = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        """The next line; b"" at EOF."""
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def tagged(self, tag: bytes) -> tuple[bytes, list[bytes]]:
        """Lines up to the tagged reply of `tag` (which must come before EOF)."""
        lines: list[bytes] = []
        while True:
            line = self.line()
            assert line, f"EOF before the reply to {tag!r}: {lines}"
            if line.startswith(tag + b" "):
                return line, lines
            lines.append(line)

    def command(self, tag: bytes, text: bytes) -> tuple[bytes, list[bytes]]:
        self.send(tag + b" " + text + b"\r\n")
        return self.tagged(tag)

    def eof(self) -> bool:
        """The server closed the connection (all that it sent before has been read)."""
        try:
            return self.line() == b""
        except ConnectionResetError:
            return True

    def start_tls(self) -> None:
        assert self.buf == b"", self.buf  # nothing after the OK came in plain text
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock)

    def close(self) -> None:
        self.sock.close()


def login(port: int, user: bytes = b"alice") -> Wire:
    w = Wire(port)
    reply, _ = w.command(b"l", b"LOGIN " + user + b"@example.test " + PASSWORD)
    assert reply.startswith(b"l OK"), reply
    return w


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ---------------------------------------------------------------------- literals before login

def test_big_synchronising_literal_before_login_gets_no_continuation(server: Server) -> None:
    w = Wire(server.imap_port)
    w.send(b"a LOGIN {%d}\r\n" % BIG)
    reply = w.line()
    assert reply.startswith(b"a NO [TOOBIG]"), reply  # and no "+ Ready"
    # Just over the limit: refused as well; at the limit: "+", and the command goes on.
    w.send(b"b LOGIN {%d}\r\n" % (PRE_AUTH_LITERAL_MAX + 1))
    assert w.line().startswith(b"b NO [TOOBIG]")
    w.send(b"c LOGIN {%d}\r\n" % PRE_AUTH_LITERAL_MAX)
    assert w.line().startswith(b"+ ")
    w.send(b"u" * PRE_AUTH_LITERAL_MAX + b" wrong-password\r\n")
    reply, _ = w.tagged(b"c")
    assert reply.startswith(b"c NO [AUTHENTICATIONFAILED]"), reply
    # The session is in step and logs in with literals as clients send them.
    w.send(b"d LOGIN {18}\r\n")
    assert w.line().startswith(b"+ ")
    w.send(b"alice@example.test {%d}\r\n" % len(PASSWORD))
    assert w.line().startswith(b"+ ")
    w.send(PASSWORD + b"\r\n")
    reply, _ = w.tagged(b"d")
    assert reply.startswith(b"d OK"), reply
    w.close()


def test_big_literal_plus_before_login_is_refused_and_the_connection_closed(
        server: Server) -> None:
    """RFC 7888 §4: the data of `{n+}` is already on its way and cannot be refused, so the
    server answers BAD [TOOBIG] and closes, without waiting for (or reading) the 35 MB."""
    w = Wire(server.imap_port)
    w.send(b"a LOGIN {%d+}\r\n" % BIG)
    reply = w.line()
    assert reply.startswith(b"a BAD [TOOBIG]"), reply
    assert w.line().startswith(b"* BYE")
    assert w.eof()
    w.close()
    # A small one is fine before login.
    w = Wire(server.imap_port)
    w.send(b"a LOGIN alice@example.test {%d+}\r\n%s\r\n" % (len(PASSWORD), PASSWORD))
    reply, _ = w.tagged(b"a")
    assert reply.startswith(b"a OK"), reply
    w.close()


def test_the_whole_command_and_its_lines_are_bounded_before_login(server: Server) -> None:
    w = Wire(server.imap_port)
    # Literals each under the limit, but together over the command's bound.
    w.send(b"a ID (")
    sent, refused = 0, None
    while sent < 2 * PRE_AUTH_COMMAND_MAX:
        w.send(b'"k" {%d}\r\n' % PRE_AUTH_LITERAL_MAX)
        reply = w.line()
        if not reply.startswith(b"+ "):
            refused = reply
            break
        w.send(b"v" * PRE_AUTH_LITERAL_MAX + b" ")
        sent += PRE_AUTH_LITERAL_MAX
    assert refused is not None and refused.startswith(b"a NO [TOOBIG]"), (sent, refused)
    assert sent <= PRE_AUTH_COMMAND_MAX
    # One line longer than the bound (no literal): BAD [TOOBIG], and the session goes on.
    long_line = b"b LOGIN " + b"x" * PRE_AUTH_COMMAND_MAX + b" y\r\n"
    w.send(long_line)
    reply, _ = w.tagged(b"b")
    assert reply.startswith(b"b BAD [TOOBIG]"), reply
    reply, _ = w.command(b"c", b"NOOP")
    assert reply.startswith(b"c OK"), reply
    # After login the same line is no longer too long (the post-login max_line is 64 KiB),
    # and a literal far over the pre-login limit gets its "+".
    reply, _ = w.command(b"d", b"LOGIN alice@example.test " + PASSWORD)
    assert reply.startswith(b"d OK"), reply
    reply, _ = w.command(b"e", b"NOOP " + b"x" * PRE_AUTH_COMMAND_MAX)
    assert b"TOOBIG" not in reply, reply
    message = b"Subject: big\r\n\r\n" + b"b" * (4 * PRE_AUTH_COMMAND_MAX) + b"\r\n"
    w.send(b"f APPEND INBOX {%d}\r\n" % len(message))
    assert w.line().startswith(b"+ ")
    w.send(message + b"\r\n")
    reply, _ = w.tagged(b"f")
    assert reply.startswith(b"f OK"), reply
    w.close()


def test_floods_before_login_do_not_grow_the_server(server: Server) -> None:
    """The red-team probe: five clients announce 35 MB literals before login and send them
    anyway. Nothing of it is kept: the server's RSS moves by far less than one of them."""
    assert server.process is not None
    pid = server.process.pid
    clients = [Wire(server.imap_port) for _ in range(5)]
    before = rss_kib(pid)
    chunk = b"z" * (1 << 20)
    replies = []
    for w in clients:
        w.send(b"a LOGIN {%d}\r\n" % BIG)
        replies.append(w.line())
    for _ in range(30):  # 30 MB each, no line end: one overlong line, read and dropped
        for w in clients:
            w.send(chunk)
    grown = (rss_kib(pid) - before) / 1024
    assert grown < 20, f"RSS grew by {grown:.0f} MiB for 150 MB offered"
    assert all(r.startswith(b"a NO [TOOBIG]") for r in replies), replies
    for w in clients:
        w.send(b"\r\n")
        reply = w.line()
        assert reply.startswith(b"* BAD [TOOBIG]"), reply
        reply, _ = w.command(b"b", b"NOOP")  # still in step
        assert reply.startswith(b"b OK"), reply
        w.close()
    grown = (rss_kib(pid) - before) / 1024
    assert grown < 20, f"RSS grew by {grown:.0f} MiB for 150 MB offered"


# ---------------------------------------------------------------------- STARTTLS

def test_starttls_drops_a_command_pipelined_in_plain_text(server: Server) -> None:
    w = Wire(server.imap_port)
    w.send(b"a STARTTLS\r\nx LOGIN bob@example.test " + PASSWORD + b"\r\n")
    reply = w.line()
    assert reply.startswith(b"a OK"), reply
    w.start_tls()
    # Were the LOGIN run, its "x OK" would come before anything else said over TLS.
    reply, untagged = w.command(b"y", b"NOOP")
    assert reply.startswith(b"y OK") and untagged == [], (reply, untagged)
    reply, untagged = w.command(b"z", b"CAPABILITY")
    assert reply.startswith(b"z OK") and b"AUTH=PLAIN" in untagged[0], untagged
    reply, _ = w.command(b"s", b"SELECT INBOX")
    assert reply.startswith(b"s BAD"), reply  # not authenticated
    # The session is sound: a login over TLS works.
    reply, _ = w.command(b"l", b"LOGIN alice@example.test " + PASSWORD)
    assert reply.startswith(b"l OK"), reply
    w.close()


def test_starttls_drops_a_pipelined_literal_plus_command(server: Server) -> None:
    """The injection also in the literal form, split over two plain-text writes before the
    client reads the OK (both arrive before the server answers STARTTLS)."""
    w = Wire(server.imap_port)
    w.send(b"a STARTTLS\r\nx LOGIN bob@example.test {%d+}\r\n" % len(PASSWORD) + PASSWORD
           + b"\r\ny SELECT INBOX\r\n")
    assert w.line().startswith(b"a OK")
    w.start_tls()
    reply, untagged = w.command(b"n", b"NOOP")
    assert reply.startswith(b"n OK") and untagged == [], (reply, untagged)
    reply, _ = w.command(b"s", b"SELECT INBOX")
    assert reply.startswith(b"s BAD"), reply
    w.close()


def test_a_failed_starttls_handshake_logs_no_traceback(server: Server) -> None:
    """A client that sends garbage instead of a ClientHello just loses its connection, and
    the server's log gets no traceback for it."""
    offset = server.log_path.stat().st_size
    w = Wire(server.imap_port)
    assert w.command(b"a", b"STARTTLS")[0].startswith(b"a OK")
    w.send(b"this is not a ClientHello\r\n" * 10)
    assert w.eof()
    w.close()
    # The server goes on serving (and a login after it proves the failed session ended).
    login(server.imap_port).close()
    log = server.log_path.read_bytes()[offset:]
    assert b"Traceback" not in log and b"SERVERBUG" not in log, log.decode(errors="replace")


# ---------------------------------------------------------------------- pipelined floods

def test_a_pipelined_flood_does_not_hold_the_other_connections(server: Server) -> None:
    """20,000 commands in one write (each answered BAD) are read from the buffer without
    waiting; the reader lets the loop go every reader.YIELD_EVERY commands, so a NOOP on
    another connection, sent once the flood is being answered, is answered before the
    flood's last command (it waited for all of them when the reader never yielded)."""
    flood, other = Wire(server.imap_port), Wire(server.imap_port)
    flood.send(b"a\r\n" * 20_000 + b"z NOOP\r\n")
    assert flood.line().startswith(b"* BAD")  # the server is in the middle of the flood
    ends: dict[str, float] = {}

    def drain_flood() -> None:
        flood.tagged(b"z")
        ends["flood"] = time.monotonic()

    reader = threading.Thread(target=drain_flood)
    reader.start()
    reply, _ = other.command(b"b", b"NOOP")
    ends["other"] = time.monotonic()
    reader.join(60)
    assert reply.startswith(b"b OK"), reply
    assert "flood" in ends
    assert ends["other"] < ends["flood"], ends
    flood.close()
    other.close()


# ---------------------------------------------------------------------- clients that vanish





def _no_traceback_since(server: Server, offset: int) -> None:
    # Each failed session is logged (or not) before its connection is gone; a login after
    # them proves the server went on, and gives the log time to be written in order.
    login(server.imap_port).close()
    log = server.log_path.read_bytes()[offset:]
    assert b"Traceback" not in log, log.decode(errors="replace")


def test_clients_that_vanish_around_tls_leave_no_traceback(server: Server) -> None:
    offset = server.log_path.stat().st_size
    reset_after(server.imap_port, b"a STARTTLS\r\n")
    reset_after(server.imap_port, b"a NOOP\r\nb NOOP\r\n")
    for _ in range(5):
        bad_record_after_handshake(server.imaps_port)
    _no_traceback_since(server, offset)


def test_an_overlong_authenticate_response_is_bad_and_the_session_goes_on(server: Server
                                                                          ) -> None:
    """A SASL response line over the line limit (1 MiB of "A"): tagged BAD [TOOBIG], no
    SERVERBUG and no traceback (the random-seed fuzz stage found it, seed 88432)."""
    with socket.create_connection(("127.0.0.1", server.imap_port), timeout=60) as sock:
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(b"t0 AUTHENTICATE PLAIN\r\n")
        assert f.readline() == b"+ \r\n"
        sock.sendall(b"A" * 1_048_594 + b"\r\n")
        assert f.readline() == b"t0 BAD [TOOBIG] SASL response too long\r\n"
        sock.sendall(b"t1 NOOP\r\n")
        assert f.readline() == b"t1 OK NOOP done\r\n"
    assert "CommandTooLong" not in server.log_path.read_text()
