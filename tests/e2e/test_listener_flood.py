"""One client's flood must not freeze the others (issue 17): a whole pipelined read of an SMTP
client is answered with the event loop yielding between its commands, and a client that sends
junk (empty lines, bad syntax, commands out of sequence) is closed with `421 4.7.0` after
`ERROR_LIMIT` errors, as Postfix's smtpd_hard_error_limit does.

The other connection's EHLO is timed while the flood is being answered, against a baseline
measured in the same test: it must answer within max(250 ms, 5x that baseline)."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import Server
from tests.e2e.smtp_client import RawSMTP

ALICE, PASSWORD = "alice@example.test", "secret-password"
FLOOD = 65_536
ERROR_LIMIT = 20
"""mailyard.protocols.smtp.base.ERROR_LIMIT: protocol errors one connection may make."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("listener-flood"))
    srv.add_user(ALICE, PASSWORD)
    srv.start()
    yield srv
    srv.stop()


def timed_ehlo(client: RawSMTP) -> float:
    started = time.perf_counter()
    reply = client.cmd("EHLO probe.test")
    took = time.perf_counter() - started
    assert reply.startswith("250-"), reply
    return took


def baseline(client: RawSMTP) -> float:
    return statistics.median(timed_ehlo(client) for _ in range(20))


class Flood:
    """A client that sends `payload` in one write and reads every reply line in a thread of
    its own (so that the server's writes never wait on it), until the server closes."""

    def __init__(self, port: int, payload: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"220 ")
        self.lines: list[bytes] = []
        self.first = threading.Event()
        self.done = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.writer = threading.Thread(target=self.sock.sendall, args=(payload,), daemon=True)
        self.writer.start()

    def _read(self) -> None:
        try:
            for line in self.file:
                self.lines.append(line)
                self.first.set()
        except OSError:
            pass
        finally:
            self.first.set()
            self.done.set()

    def close(self) -> None:
        self.sock.close()


def probe_during(port: int, flood: Flood, limit: float) -> list[tuple[float, bool]]:
    """EHLO on another connection, again and again while the flood is answered: (seconds,
    whether the flood was still being answered when the EHLO's reply came)."""
    probe = RawSMTP(port)
    try:
        assert flood.first.wait(60), "the flood got no reply"
        times: list[tuple[float, bool]] = []
        while not flood.done.is_set() and len(times) < 200:
            took = timed_ehlo(probe)
            times.append((took, not flood.done.is_set()))
            if took > limit:
                break
        return times
    finally:
        probe.close()


def test_empty_lines_flood_is_closed_after_the_error_limit_and_others_keep_answering(
        server: Server) -> None:
    probe = RawSMTP(server.smtp_port)
    try:
        limit = max(0.25, 5 * baseline(probe))
    finally:
        probe.close()
    flood = Flood(server.smtp_port, b"EHLO x\r\n" + b"\r\n" * FLOOD)
    try:
        times = probe_during(server.smtp_port, flood, limit)
        worst = max((t for t, _ in times), default=0.0)
        assert worst <= limit, f"EHLO took {worst:.3f} s during the flood (limit {limit:.3f} s)"
        assert flood.done.wait(60), "the flood's connection was not closed"
    finally:
        flood.close()
    replies = [line for line in flood.lines if line[3:4] == b" "]
    assert replies[0].startswith(b"250 "), replies[:3]
    errors = [r for r in replies[1:] if r.startswith(b"500 ")]
    assert len(errors) <= ERROR_LIMIT, f"{len(errors)} errors answered before the close"
    # The 421 is written, but closing with the flood's unread octets in the kernel's buffer
    # sends a RST, which may discard it at the client: the interactive test below sees it.
    assert replies[-1].startswith((b"421 4.7.0 Too many errors", b"500 ")), replies[-3:]


def test_pipelined_noop_flood_yields_to_other_connections(server: Server) -> None:
    """65,536 valid commands in one write: each is answered (no error), and the loop serves
    the other connection between them."""
    probe = RawSMTP(server.smtp_port)
    try:
        limit = max(0.25, 5 * baseline(probe))
    finally:
        probe.close()
    flood = Flood(server.smtp_port, b"EHLO x\r\n" + b"NOOP\r\n" * FLOOD + b"QUIT\r\n")
    try:
        times = probe_during(server.smtp_port, flood, limit)
        worst = max((t for t, _ in times), default=0.0)
        assert worst <= limit, f"EHLO took {worst:.3f} s during the flood (limit {limit:.3f} s)"
        assert flood.done.wait(120), "the flood's connection was not closed after QUIT"
    finally:
        flood.close()
    during = [t for t, running in times if running]
    assert during, "no EHLO was answered while the flood was: the test proved nothing"
    replies = [line for line in flood.lines if line[3:4] == b" "]
    assert sum(r.startswith(b"250 ") for r in replies) == FLOOD + 1  # EHLO's and each NOOP's
    assert replies[-1].startswith(b"221 "), replies[-3:]


@pytest.mark.parametrize("junk", [b"\r\n", b"MAIL x\r\n", b"RCPT TO:<a@b>\r\n"],
                         ids=["empty", "syntax", "sequence"])
@pytest.mark.parametrize("listener", ["smtp", "submission"])
def test_error_limit_closes_with_421(server: Server, listener: str, junk: bytes) -> None:
    """Each kind of protocol error counts, on both listeners; the errors before the limit
    are answered one by one (a client's few mistakes are fine)."""
    client = RawSMTP(getattr(server, f"{listener}_port"))
    try:
        assert client.cmd("EHLO client.test").startswith("250-")
        codes = []
        for _ in range(ERROR_LIMIT + 5):
            client.send(junk)
            try:
                reply = client.reply()
            except ConnectionError:
                break
            codes.append(reply[:3])
            if reply.startswith("421"):
                assert reply.startswith("421 4.7.0 Too many errors"), reply
                break
        assert codes[-1] == "421", codes
        assert len(codes) == ERROR_LIMIT + 1, codes
        assert all(code.startswith("5") for code in codes[:-1]), codes
        with pytest.raises(ConnectionError):
            client.reply()
    finally:
        client.close()


def test_errors_below_the_limit_leave_the_session_working(server: Server) -> None:
    client = RawSMTP(server.smtp_port)
    try:
        assert client.cmd("EHLO client.test").startswith("250-")
        for _ in range(ERROR_LIMIT - 1):
            assert client.cmd("").startswith("500")
        assert client.cmd("MAIL FROM:<carol@remote.test>").startswith("250")
        assert client.cmd(f"RCPT TO:<{ALICE}>").startswith("250")
        assert client.cmd("DATA").startswith("354")
        reply = client.cmd("Subject: after errors\r\n\r\nHello.\r\n.")
        assert reply.startswith("250 2.0.0"), reply
        assert client.cmd("QUIT").startswith("221")
    finally:
        client.close()
    assert any(e["subject"] == "after errors" for e in server.wait_emails(ALICE, 1))


def test_submission_counts_errors_before_auth(server: Server, tmp_path: Path) -> None:
    """Before AUTH, submission refuses MAIL with 530: a client that goes on is closed too."""
    client = RawSMTP(server.submission_port)
    try:
        assert client.cmd("EHLO client.test").startswith("250-")
        client.send(b"MAIL FROM:<a@b>\r\n" * (ERROR_LIMIT + 5))
        codes: list[str] = []
        while True:
            try:
                codes.append(client.reply()[:3])
            except ConnectionError:
                break
        assert codes[-1] == "421", codes
        assert len(codes) == ERROR_LIMIT + 1, codes
    finally:
        client.close()


def test_unknown_verbs_flood_is_closed_without_reading_the_rest(server: Server) -> None:
    """aiosmtpd closes after 5 unknown verbs; the 16,000 lines after them are not run (the
    fuzzer's folded header sent as commands held EHLO elsewhere 3.7 s)."""
    probe = RawSMTP(server.smtp_port)
    try:
        limit = max(0.25, 5 * baseline(probe))
    finally:
        probe.close()
    flood = Flood(server.smtp_port, b"Subject: a\r\n" + b" b\r\n" * 200_000)
    try:
        times = probe_during(server.smtp_port, flood, limit)
        worst = max((t for t, _ in times), default=0.0)
        assert worst <= limit, f"EHLO took {worst:.3f} s during the flood (limit {limit:.3f} s)"
        assert flood.done.wait(60), "the flood's connection was not closed"
    finally:
        flood.close()
    replies = [line for line in flood.lines if line[3:4] == b" "]
    assert len(replies) <= 6 and replies[-1].startswith(b"502 "), replies


def test_auth_response_line_over_the_limit_is_500_5_5_6(server: Server) -> None:
    client = RawSMTP(server.submission_port)
    start = server.log_path.stat().st_size
    try:
        assert client.cmd("EHLO client.test").startswith("250-")
        assert client.cmd("AUTH PLAIN").startswith("334")
        reply = client.cmd("A" * 200_000)
        assert reply.startswith("500 5.5.6"), reply
        # The rest of the long line may still be read as a command (500 too long): then on.
        assert any(client.cmd("NOOP").startswith("250") for _ in range(3))
    finally:
        client.close()
    log = server.log_path.read_bytes()[start:].decode(errors="replace")
    assert "Traceback" not in log and " ERROR " not in log, log[-2000:]


def test_a_second_starttls_is_503_and_the_session_goes_on(server: Server) -> None:
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    start = server.log_path.stat().st_size
    sock = socket.create_connection(("127.0.0.1", server.smtp_port), timeout=30)
    try:
        plain = sock.makefile("rb")
        assert plain.readline().startswith(b"220 ")
        sock.sendall(b"STARTTLS\r\n")
        assert plain.readline().startswith(b"220 ")
        with ctx.wrap_socket(sock) as tls:
            f = tls.makefile("rb")
            tls.sendall(b"EHLO x\r\nSTARTTLS\r\n")
            lines = [f.readline()]
            while lines[-1][3:4] != b" ":
                lines.append(f.readline())
            second = f.readline()
            assert second.startswith(b"503 5.5.1"), second
            tls.sendall(b"NOOP\r\n")
            assert f.readline().startswith(b"250")
    finally:
        sock.close()
    log = server.log_path.read_bytes()[start:].decode(errors="replace")
    assert "Traceback" not in log and "Fatal error" not in log, log[-2000:]
