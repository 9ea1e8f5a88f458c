"""SMTP hardening (issue 17) against the real listeners: the client's invalid octets refused at
the command that carries them, one identity rule for submission (From, Sender, AUTH's
authorization identity), nothing of a plaintext segment executed after STARTTLS, and no parse of
a large message on the listener's event loop. (Engine outages: test_smtp_hardening_outage.py.)"""

from __future__ import annotations

import base64
import smtplib
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import Server
from tests.e2e.smtp_client import RawSMTP

ALICE, BOB, PASSWORD = "alice@example.test", "bob@example.test", "secret-password"
CRLF = b"\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("smtp-hardening"))
    srv.add_user(ALICE, PASSWORD)
    srv.add_user(BOB, PASSWORD)
    srv.start()
    yield srv
    srv.stop()


def unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def plain(authzid: str, user: str, password: str = PASSWORD) -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def raw_cmd(client: RawSMTP, line: bytes) -> str:
    client.send(line + CRLF)
    return client.reply()


def leaks_nothing(reply: str) -> bool:
    """No exception text: aiosmtpd's default names the exception class in brackets."""
    return not any(word in reply for word in ("Error", "Exception", "Errno", "Traceback"))


def message(sender: str = ALICE, *, extra: bytes = b"", subject: str = "hi") -> bytes:
    return (f"From: <{sender}>\r\nTo: <{BOB}>\r\nSubject: {subject}\r\n".encode() + extra
            + b"\r\nHello.\r\n")


# ------------------------------------------------------------------- invalid UTF-8, 8-bit


@pytest.mark.parametrize("verb", [b"EHLO", b"HELO"])
@pytest.mark.parametrize("listener", ["smtp", "submission"])
def test_greeting_with_invalid_utf8_is_501_and_the_session_goes_on(
        server: Server, verb: bytes, listener: str) -> None:
    client = RawSMTP(getattr(server, f"{listener}_port"))
    try:
        for bad in (b"\xff\xfeclient.remote.test", b"client\xc3.remote.test",
                    b"client\x00.remote.test"):
            reply = raw_cmd(client, verb + b" " + bad)
            assert reply.startswith("501 5.5.2"), reply
            assert leaks_nothing(reply), reply
        reply = raw_cmd(client, b"EHLO client.remote.test")
        assert reply.startswith("250-"), reply
    finally:
        client.close()


def test_mx_refuses_bad_addresses_at_mail_and_rcpt_and_then_delivers(server: Server) -> None:
    client = RawSMTP(server.smtp_port)
    try:
        assert raw_cmd(client, b"EHLO client.remote.test").startswith("250-")
        cases = [
            (b"MAIL FROM:<car\xffol@remote.test> SMTPUTF8", "553 5.1.7"),
            (b"MAIL FROM:<car\xffol@remote.test>", "553 5.1.7"),
            (b"MAIL FROM:<car\x01ol@remote.test>", "553 5.1.7"),
            ("MAIL FROM:<jörg@remote.test>".encode(), "553 5.6.7"),  # 8-bit, no SMTPUTF8
        ]
        for line, code in cases:
            reply = raw_cmd(client, line)
            assert reply.startswith(code), (line, reply)
            assert leaks_nothing(reply), reply
        reply = raw_cmd(client, b"MAIL FROM:<carol@remote.test>")
        assert reply.startswith("250 2.1.0"), reply
        for line, code in [(b"RCPT TO:<al\xffice@example.test>", "501 5.1.3"),
                           (b"RCPT TO:<\xc3@example.test>", "501 5.1.3"),
                           ("RCPT TO:<jörg@example.test>".encode(), "553 5.6.7")]:
            reply = raw_cmd(client, line)
            assert reply.startswith(code), (line, reply)
            assert leaks_nothing(reply), reply
        reply = raw_cmd(client, b"RCPT TO:<alice@example.test>")
        assert reply.startswith("250 2.1.5"), reply
        assert raw_cmd(client, b"DATA").startswith("354")
        client.send(message("carol@remote.test", subject="after bad octets")
                    .replace(f"<{BOB}>".encode(), f"<{ALICE}>".encode()) + b".\r\n")
        reply = client.reply()
        assert reply.startswith("250 2.0.0"), reply
        assert raw_cmd(client, b"QUIT").startswith("221")
    finally:
        client.close()
    assert any(e["subject"] == "after bad octets" for e in server.wait_emails(ALICE, 1))


def test_unclosed_angle_paths_are_malformed_not_a_fault(server: Server) -> None:
    """`MAIL FROM:<` and kin made the standard library's address parser read past the end
    (IndexError: answered 451 with a traceback in the log; fuzz seed 904): a path it cannot
    read is 553 5.1.3, the session goes on, and mail is still taken."""
    client = RawSMTP(server.smtp_port)
    try:
        assert raw_cmd(client, b"EHLO client.remote.test").startswith("250-")
        for line in (b"MAIL FROM:<", b"MAIL FROM: <", b"MAIL FROM:<a@", b'MAIL FROM:<"'):
            reply = raw_cmd(client, line)
            assert reply.startswith("553 5.1.3"), (line, reply)
        assert raw_cmd(client, b"MAIL FROM:<carol@remote.test>").startswith("250 2.1.0")
        for line in (b"RCPT TO:<", b"RCPT TO:<@", b"RCPT TO:<alice@"):
            reply = raw_cmd(client, line)
            assert reply.startswith("553 5.1.3"), (line, reply)
        assert raw_cmd(client, b"RCPT TO:<alice@example.test>").startswith("250 2.1.5")
    finally:
        client.close()
    assert "IndexError" not in server.log_path.read_text()


def test_mx_takes_utf8_addresses_with_the_smtputf8_parameter(server: Server) -> None:
    client = RawSMTP(server.smtp_port)
    try:
        raw_cmd(client, b"EHLO client.remote.test")
        reply = raw_cmd(client, "MAIL FROM:<jörg@remote.test> SMTPUTF8".encode())
        assert reply.startswith("250 2.1.0"), reply
        reply = raw_cmd(client, b"RCPT TO:<\xff@example.test>")
        assert reply.startswith("501 5.1.3"), reply  # SMTPUTF8 allows UTF-8, not any octet
        reply = raw_cmd(client, "RCPT TO:<jörg@example.test>".encode())
        assert reply.startswith("550 5.1.1"), reply  # valid: looked up, and no such user
    finally:
        client.close()


def test_submission_refuses_bad_addresses_at_mail_and_rcpt(server: Server) -> None:
    client = RawSMTP(server.submission_port)
    try:
        raw_cmd(client, b"EHLO client.example.test")
        assert raw_cmd(client, f"AUTH PLAIN {plain('', ALICE)}".encode()).startswith("235")
        reply = raw_cmd(client, b"MAIL FROM:<al\xffice@example.test> SMTPUTF8")
        assert reply.startswith("553 5.1.7"), reply
        assert raw_cmd(client, f"MAIL FROM:<{ALICE}>".encode()).startswith("250")
        for line, code in [(b"RCPT TO:<some\xfeone@remote.test>", "501 5.1.3"),
                           ("RCPT TO:<jörg@remote.test>".encode(), "553 5.6.7")]:
            reply = raw_cmd(client, line)
            assert reply.startswith(code) and leaks_nothing(reply), reply
    finally:
        client.close()


def test_vrfy_echoing_invalid_utf8_keeps_the_session(server: Server) -> None:
    client = RawSMTP(server.smtp_port)
    try:
        raw_cmd(client, b"EHLO client.remote.test")
        reply = raw_cmd(client, b"VRFY \xff\xfe")
        assert reply[:1] in ("2", "5") and leaks_nothing(reply), reply
        assert raw_cmd(client, b"NOOP").startswith("250")
    finally:
        client.close()


# ------------------------------------------------------------------- one identity rule


def submission_session(server: Server, user: str = ALICE) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60)
    smtp.ehlo("client.example.test")
    smtp.login(user, PASSWORD)
    return smtp


@pytest.mark.parametrize(("extra", "code", "enhanced"), [
    (f"From: <{BOB}>\r\n".encode(), 554, b"5.6.0"),          # two From fields
    (f"From: <{ALICE}>\r\n".encode(), 554, b"5.6.0"),        # two, both hers: still malformed
    (f"Sender: <{BOB}>\r\n".encode(), 550, b"5.7.1"),        # Sender naming another user
    (f"Sender: <{ALICE}>\r\nSender: <{ALICE}>\r\n".encode(), 554, b"5.6.0"),
])
def test_submission_refuses_other_authors(server: Server, extra: bytes, code: int,
                                          enhanced: bytes) -> None:
    with submission_session(server) as smtp:
        smtp.mail(ALICE)
        assert smtp.rcpt(BOB)[0] == 250
        got, reply = smtp.data(message(extra=extra))
        assert (got, reply[:5]) == (code, enhanced), reply


def test_submission_takes_her_own_sender_field(server: Server) -> None:
    with submission_session(server) as smtp:
        smtp.mail(ALICE)
        smtp.rcpt(BOB)
        got, reply = smtp.data(message(extra=f"Sender: Alice <{ALICE}>\r\n".encode(),
                                       subject="own sender"))
        assert got == 250, reply
    assert any(e["subject"] == "own sender" for e in server.wait_emails(BOB, 1))


@pytest.mark.parametrize(("authzid", "code"), [
    (BOB, 535), ("someone@remote.test", 535), (ALICE, 235), (ALICE.upper(), 235), ("", 235)])
def test_auth_plain_authorization_identity(server: Server, authzid: str, code: int) -> None:
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60) as smtp:
        smtp.ehlo("client.example.test")
        got, reply = smtp.docmd("AUTH", f"PLAIN {plain(authzid, ALICE)}")
        assert got == code, reply
        if code == 535:
            assert reply.startswith(b"5.7.8"), reply
            assert smtp.mail(ALICE)[0] == 530, "not authenticated after a refused authzid"


# ------------------------------------------------------------------- STARTTLS injection


class TLSProbe:
    """A raw client that sends STARTTLS and more in one plaintext segment, then shakes hands."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""
        assert self.reply().startswith(b"220")

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def reply(self) -> bytes:
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return b"\n".join(lines)

    def cmd(self, line: bytes) -> bytes:
        self.sock.sendall(line + CRLF)
        return self.reply()

    def starttls_with(self, injected: bytes) -> bytes:
        """STARTTLS and `injected` in one write; the handshake once 220 is read."""
        self.sock.sendall(b"STARTTLS\r\n" + injected)
        ready = self.line()
        assert ready.startswith(b"220"), ready
        assert self.buffer == b"", "nothing may come in plaintext after 220"
        self.sock = unverified().wrap_socket(self.sock)
        return ready


@pytest.mark.parametrize("listener", ["smtp", "submission"])
def test_commands_sent_with_starttls_are_discarded(server: Server, listener: str) -> None:
    probe = TLSProbe(getattr(server, f"{listener}_port"))
    try:
        assert probe.cmd(b"EHLO client.remote.test").startswith(b"250-")
        injected = (b"EHLO injected.test\r\n"
                    + f"AUTH PLAIN {plain('', ALICE)}\r\n".encode()
                    + f"MAIL FROM:<{ALICE}>\r\n".encode()
                    + f"RCPT TO:<{ALICE}>\r\n".encode())
        probe.starttls_with(injected)
        first = probe.cmd(b"NOOP")
        assert first.startswith(b"250") and b"\n" not in first, \
            f"a reply to an injected command came first: {first!r}"
        # The session in TLS starts afresh: no EHLO, no AUTH, no transaction carried over.
        reply = probe.cmd(f"RCPT TO:<{ALICE}>".encode())
        assert reply.startswith(b"503"), reply
        assert probe.cmd(b"EHLO client.remote.test").startswith(b"250-")
        reply = probe.cmd(f"RCPT TO:<{ALICE}>".encode())
        assert reply.startswith(b"503") or reply.startswith(b"530"), reply
        if listener == "submission":
            assert probe.cmd(f"MAIL FROM:<{ALICE}>".encode()).startswith(b"530"), \
                "the injected AUTH must not have logged the TLS session in"
        assert probe.cmd(b"QUIT").startswith(b"221")
    finally:
        probe.sock.close()


# ------------------------------------------------------------------- no parse on the loop


def folded_message(sender: str, rcpt: str, lines: int = 16_000) -> bytes:
    """One header field folded over `lines` lines of 900 octets: 14.4 MB, under SIZE."""
    fold = b"\r\n " + b"x" * 897
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: folded\r\n"
            "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n").encode()
    return head + b"X-Folded: start" + fold * lines + b"\r\n\r\nbody\r\n"


def ehlo_time(probe: RawSMTP) -> float:
    started = time.perf_counter()
    reply = probe.cmd("EHLO probe.remote.test")
    assert reply.startswith("250"), reply
    return time.perf_counter() - started


@pytest.mark.parametrize("listener", ["smtp", "submission"])
def test_a_folded_14_mb_header_does_not_stall_other_connections(tmp_path: Path,
                                                                 listener: str) -> None:
    """A probe's EHLO on another connection, sent again and again while the 14 MB are taken
    and looked at, answers about as fast as before (a block of the event loop delays one probe
    by its whole length); the header block is refused for its size (552 5.3.4)."""
    server = Server(tmp_path)  # of its own: no other mail being delivered meanwhile
    server.add_user(ALICE, PASSWORD)
    server.start()
    try:
        probes(server, listener)
    finally:
        server.stop()


def probes(server: Server, listener: str) -> None:
    port = getattr(server, f"{listener}_port")
    mail_from = ALICE if listener == "submission" else "carol@remote.test"
    data = folded_message(mail_from, ALICE)
    assert len(data) > 14_000_000
    probe = RawSMTP(server.smtp_port)
    sender = RawSMTP(port)
    try:
        raw_cmd(sender, b"EHLO client.remote.test")
        if listener == "submission":
            assert raw_cmd(sender, f"AUTH PLAIN {plain('', ALICE)}".encode()).startswith("235")
        assert raw_cmd(sender, f"MAIL FROM:<{mail_from}>".encode()).startswith("250")
        assert raw_cmd(sender, f"RCPT TO:<{ALICE}>".encode()).startswith("250")
        assert raw_cmd(sender, b"DATA").startswith("354")
        baseline = [ehlo_time(probe) for _ in range(40)]

        replied: list[str] = []

        def send() -> None:
            sender.send(data + b".\r\n")
            replied.append(sender.reply())

        thread = threading.Thread(target=send)
        thread.start()
        during: list[float] = []
        while thread.is_alive():
            during.append(ehlo_time(probe))
        thread.join()
        during.append(ehlo_time(probe))
    finally:
        sender.close()
        probe.close()
    assert replied and replied[0].startswith("552 5.3.4"), replied
    worst = max(during)
    # 250 ms at least, as the fuzz stage's probes (a busy CI machine's scheduling alone
    # reaches 100 ms); the stall this guards against was 390-490 ms.
    allowed = max(0.25, 0.1 + 10 * statistics.median(baseline) + max(baseline))
    assert worst <= allowed, (f"EHLO took {worst:.3f} s during a folded 14 MB header "
                              f"(baseline max {max(baseline):.4f} s, allowed {allowed:.3f} s;"
                              f" probes: {sorted(during)[-3:]} of {len(during)})")
