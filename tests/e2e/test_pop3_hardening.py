"""POP3 around STLS, against a running server (issue 17): what the client pipelined after STLS
in plain text is thrown away (the CVE-2011-0411 class: a USER/PASS injected by a man in the
middle must not log the TLS session in), and a failed handshake leaves no traceback."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from tests.clientfaults import bad_record_after_handshake, reset_after
from tests.e2e.server import Server, serving

PASSWORD = b"secret-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("pop3-hardening"), ["alice", "bob"]) as srv:
        yield srv


class Wire:
    """A raw POP3 connection: exact octets out, lines in, and a TLS switch that proves no
    octet was read past the STLS reply."""

    def __init__(self, port: int) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=30)
        self.buf = b""
        assert self.line().startswith(b"+OK")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        """The next line; b"" at EOF."""
        while b"\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def multiline(self) -> list[bytes]:
        lines: list[bytes] = []
        while (line := self.line()) != b".\r\n":
            assert line, lines
            lines.append(line)
        return lines

    def start_tls(self) -> None:
        assert self.buf == b"", self.buf  # nothing after the +OK came in plain text
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock)

    def close(self) -> None:
        self.sock.close()


def test_stls_drops_a_login_pipelined_in_plain_text(server: Server) -> None:
    w = Wire(server.pop3_port)
    w.send(b"STLS\r\nUSER bob@example.test\r\nPASS " + PASSWORD + b"\r\n")
    reply = w.line()
    assert reply.startswith(b"+OK"), reply
    w.start_tls()
    # Were USER and PASS run, their +OKs would come first, and STAT would be valid.
    w.send(b"STAT\r\n")
    reply = w.line()
    assert reply.startswith(b"-ERR") and b"not valid in this state" in reply, reply
    w.send(b"CAPA\r\n")
    assert w.line().startswith(b"+OK")
    caps = w.multiline()
    assert b"USER\r\n" in caps and b"STLS\r\n" not in caps, caps  # AUTHORIZATION, over TLS
    # The session is sound: a login over TLS works, as the right user.
    w.send(b"USER alice@example.test\r\n")
    assert w.line().startswith(b"+OK")
    w.send(b"PASS " + PASSWORD + b"\r\n")
    reply = w.line()
    assert reply.startswith(b"+OK Maildrop"), reply
    w.send(b"QUIT\r\n")
    assert w.line().startswith(b"+OK")
    w.close()


def test_stls_drops_a_pipelined_sasl_login(server: Server) -> None:
    import base64

    w = Wire(server.pop3_port)
    plain = base64.b64encode(b"\0bob@example.test\0" + PASSWORD)
    w.send(b"STLS\r\nAUTH PLAIN " + plain + b"\r\n")
    assert w.line().startswith(b"+OK")
    w.start_tls()
    w.send(b"LIST\r\n")
    reply = w.line()
    assert reply.startswith(b"-ERR") and b"not valid in this state" in reply, reply
    w.close()


def test_a_failed_stls_handshake_logs_no_traceback(server: Server) -> None:
    offset = server.log_path.stat().st_size
    w = Wire(server.pop3_port)
    w.send(b"STLS\r\n")
    assert w.line().startswith(b"+OK")
    w.send(b"this is not a ClientHello\r\n" * 10)
    assert w.line() == b""  # closed, no -ERR in plain text
    w.close()
    # The server goes on serving, and its log has no traceback for what the client did.
    w = Wire(server.pop3_port)
    w.send(b"QUIT\r\n")
    assert w.line().startswith(b"+OK")
    w.close()
    log = server.log_path.read_bytes()[offset:]
    assert b"Traceback" not in log and b"failed" not in log, log.decode(errors="replace")


def test_quit_before_login_says_ok_and_closes(server: Server) -> None:
    """RFC 1939 §5: QUIT is valid in the AUTHORIZATION state (it was answered -ERR when the
    TRANSACTION state's QUIT replaced it in the command table)."""
    w = Wire(server.pop3_port)
    w.send(b"QUIT\r\n")
    reply = w.line()
    assert reply.startswith(b"+OK"), reply
    assert w.line() == b""
    w.close()


def test_a_pipelined_flood_does_not_hold_the_other_connections(server: Server) -> None:
    """20,000 commands in one write are read from the buffer without waiting; the reader lets
    the loop go every few (reader.YIELD_EVERY), so a command on another connection, sent once
    the flood is being answered, is answered before the flood's last one. (On Python 3.11
    the session's asyncio.wait_for per line yields too, by running the read as a task of its
    own; from 3.12 on wait_for awaits in place, and the reader's yield is the only one.)"""
    flood, other = Wire(server.pop3_port), Wire(server.pop3_port)
    flood.send(b"NOOP\r\n" * 20_000 + b"USER marker@example.test\r\n")
    assert flood.line().startswith(b"-ERR")  # the server is in the middle of the flood
    ends: dict[str, float] = {}

    def drain_flood() -> None:
        while not (line := flood.line()).startswith(b"+OK"):
            assert line.startswith(b"-ERR"), line
        ends["flood"] = time.monotonic()

    reader = threading.Thread(target=drain_flood)
    reader.start()
    other.send(b"CAPA\r\n")
    reply = other.line()
    ends["other"] = time.monotonic()
    reader.join(60)
    assert reply.startswith(b"+OK"), reply
    assert "flood" in ends
    assert ends["other"] < ends["flood"], ends
    flood.close()
    other.close()






def test_clients_that_vanish_around_tls_leave_no_traceback(server: Server) -> None:
    offset = server.log_path.stat().st_size
    reset_after(server.pop3_port, b"STLS\r\n")
    reset_after(server.pop3_port, b"CAPA\r\nCAPA\r\n")
    for _ in range(5):
        bad_record_after_handshake(server.pop3s_port)
    w = Wire(server.pop3_port)  # the server goes on
    w.send(b"QUIT\r\n")
    assert w.line().startswith(b"+OK")
    w.close()
    log = server.log_path.read_bytes()[offset:]
    assert b"Traceback" not in log and b"Unhandled" not in log, log.decode(errors="replace")
