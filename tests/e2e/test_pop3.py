"""POP3 against the real listeners with Python's poplib and a raw socket (RFC 1939, 2449,
2595, 5034): every command, the UPDATE state, locking, TLS, limits."""

from __future__ import annotations

import base64
import contextlib
import imaplib
import poplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from tests.e2e.server import Server
from tests.e2e.test_smtp_inbound import message, send

PASSWORD = "secret-password"
ALICE = "alice@example.test"


def deliver(server: Server, *bodies: tuple[str, str]) -> list[str]:
    """Deliver (subject, body) one at a time; the email ids in arrival order."""
    before = len(server.emails(ALICE))
    for n, (subject, body) in enumerate(bodies, 1):
        send(server, message(subject, body=body))
        found = server.wait_emails(ALICE, before + n, timeout=60)
        assert len(found) == before + n, f"{subject!r} not delivered"
    server.wait_queue_empty()
    return [e["id"] for e in sorted(server.emails(ALICE), key=lambda e: e["id"])]


def no_verify() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@contextlib.contextmanager
def pop(server: Server, user: str = ALICE) -> Iterator[poplib.POP3]:
    client = poplib.POP3("127.0.0.1", server.pop3_port, timeout=30)
    client.user(user)
    client.pass_(PASSWORD)
    try:
        yield client
    finally:
        with contextlib.suppress(poplib.error_proto, OSError):
            client.close()


def short(client: poplib.POP3, line: str) -> bytes:
    """A single-line command through poplib's own sender (its typing hides it)."""
    answer: bytes = cast(Any, client)._shortcmd(line)
    return answer


class Raw:
    """A POP3 client on a bare socket, for what poplib will not send."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> bytes:
        return self.file.readline()

    def cmd(self, data: bytes) -> bytes:
        self.sock.sendall(data + b"\r\n")
        return self.line()

    def multi(self) -> list[bytes]:
        lines = []
        while (line := self.line()) != b".\r\n":
            assert line, "connection closed inside a multi-line response"
            lines.append(line)
        return lines

    def close(self) -> None:
        self.sock.close()


def imap_mailbox(server: Server, name: str) -> list[bytes]:
    """The Subject lines of the messages IMAP shows in `name`."""
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login(ALICE, PASSWORD)
    typ, data = client.select(f'"{name}"', readonly=True)
    assert typ == "OK", data
    subjects: list[bytes] = []
    if int(data[0] or 0):
        _, fetched = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        subjects = [part[1].strip() for part in fetched if isinstance(part, tuple)]
    client.logout()
    return subjects


def flags_in_inbox(server: Server) -> list[bytes]:
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login(ALICE, PASSWORD)
    client.select("INBOX", readonly=True)
    _, data = client.fetch("1:*", "(FLAGS)")
    client.logout()
    return [d for d in data if isinstance(d, bytes)]


def test_capa_login_and_bad_password(server: Server) -> None:
    client = poplib.POP3("127.0.0.1", server.pop3_port)
    assert client.getwelcome().startswith(b"+OK")
    caps = client.capa()
    for cap in ("TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS"):
        assert cap in caps, cap
    assert caps["SASL"] == ["PLAIN"]
    client.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        client.pass_("wrong")
    with pytest.raises(poplib.error_proto, match="USER first"):
        client.pass_(PASSWORD)
    client.user(ALICE)
    assert client.pass_(PASSWORD).startswith(b"+OK Maildrop has 0 messages")
    caps = client.capa()
    assert "STLS" not in caps and "USER" not in caps and "TOP" in caps
    assert client.quit().startswith(b"+OK")


def test_every_transaction_command(server: Server) -> None:
    ids = deliver(server, ("first", "one\n"), ("second", ".dot line\n..two dots\nend\n"),
                  ("third", "a\nb\nc\nd\n"))
    raws = [server.raw(ALICE, i) for i in ids]
    with pop(server) as client:
        count, octets = client.stat()
        assert count == 3 and octets == sum(len(r) for r in raws)
        resp, listing, _ = client.list()
        assert resp.startswith(b"+OK 3 messages")
        assert listing == [f"{n} {len(r)}".encode() for n, r in enumerate(raws, 1)]
        assert short(client, "LIST 2") == f"+OK 2 {len(raws[1])}".encode()
        resp, uids, _ = client.uidl()
        assert uids == [f"{n} {i}".encode() for n, i in enumerate(ids, 1)]
        assert client.uidl(3) == f"+OK 3 {ids[2]}".encode()
        for n, raw in enumerate(raws, 1):
            resp, lines, size = client.retr(n)
            assert resp == f"+OK {len(raw)} octets".encode()
            assert b"\r\n".join(lines) + b"\r\n" == raw  # poplib undoes the byte-stuffing
        head, _, body = raws[2].partition(b"\r\n\r\n")
        _, lines, _ = client.top(3, 0)
        assert b"\r\n".join(lines) == head + b"\r\n"
        _, lines, _ = client.top(3, 2)
        assert b"\r\n".join(lines) == head + b"\r\n\r\n" + b"\r\n".join(body.split(b"\r\n")[:2])
        assert client.noop().startswith(b"+OK")
        assert client.dele(2).startswith(b"+OK")
        for call in (lambda: client.dele(2), lambda: client.retr(2), lambda: client.list(2),
                     lambda: client.uidl(2), lambda: client.top(2, 1), lambda: client.retr(4),
                     lambda: client.retr(0), lambda: client.top(1, -1)):
            with pytest.raises(poplib.error_proto, match="-ERR"):
                call()
        assert client.stat() == (2, len(raws[0]) + len(raws[2]))
        assert [x.split()[0] for x in client.uidl()[1]] == [b"1", b"3"]
        assert client.rset().startswith(b"+OK Maildrop has 3 messages")
        assert client.stat()[0] == 3
        for bad in ("STAT 1", "LIST a", "LIST 1 2", "RETR", "RETR 99999999999999", "XYZZY",
                    "USER bob", "STLS", "AUTH PLAIN"):
            with pytest.raises(poplib.error_proto, match="-ERR"):
                short(client, bad)
        assert client.quit().startswith(b"+OK")


def test_retr_byte_stuffs_on_the_wire(server: Server) -> None:
    [email_id] = deliver(server, ("dots", ".hidden\n..double\n.\n"))
    raw = server.raw(ALICE, email_id)
    conn = Raw(server.pop3_port)
    assert conn.cmd(b"USER " + ALICE.encode()).startswith(b"+OK")
    assert conn.cmd(b"PASS " + PASSWORD.encode()).startswith(b"+OK")
    assert conn.cmd(b"RETR 1") == f"+OK {len(raw)} octets\r\n".encode()
    wire = b"".join(conn.multi())
    assert wire == raw.replace(b"\r\n.", b"\r\n..")
    assert b"\r\n..hidden\r\n...double\r\n..\r\n" in wire
    conn.cmd(b"QUIT")
    conn.close()


def test_auth_plain_initial_response_and_continuation(server: Server) -> None:
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
    conn = Raw(server.pop3_port)
    assert conn.cmd(b"AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0no")) \
        .startswith(b"-ERR [AUTH]")
    assert conn.cmd(b"AUTH CRAM-MD5").startswith(b"-ERR")
    assert conn.cmd(b"AUTH PLAIN !!notbase64").startswith(b"-ERR")
    assert conn.cmd(b"AUTH PLAIN") == b"+ \r\n"
    assert conn.cmd(b"*").startswith(b"-ERR")
    assert conn.cmd(b"AUTH PLAIN") == b"+ \r\n"
    assert conn.cmd(token).startswith(b"+OK Maildrop has")
    assert conn.cmd(b"QUIT").startswith(b"+OK")
    conn.close()
    conn = Raw(server.pop3_port)
    assert conn.cmd(b"AUTH PLAIN " + token).startswith(b"+OK")
    assert conn.cmd(b"STAT") == b"+OK 0 0\r\n"
    conn.close()


def test_wrong_state_garbage_and_long_lines_get_err(server: Server) -> None:
    conn = Raw(server.pop3_port)
    for line in (b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"RSET", b"NOOP", b"UIDL", b"TOP 1 1",
                 b"", b"   ", b"\xff\xfe\x00", b"APOP alice x", b"USER"):
        assert conn.cmd(line).startswith(b"-ERR"), line
    assert conn.cmd(b"NOOP " + b"x" * 10_000) == b"-ERR Line too long\r\n"
    assert conn.cmd(b"AUTH PLAIN") == b"+ \r\n"
    assert conn.cmd(b"A" * 10_000) == b"-ERR SASL response too long\r\n"
    assert conn.cmd(b"CAPA").startswith(b"+OK")
    assert b"USER\r\n" in conn.multi()
    conn.sock.sendall(f"USER {ALICE}\r\nPASS {PASSWORD}\r\nSTAT\r\n".encode())
    assert [conn.line()[:3] for _ in range(3)] == [b"+OK"] * 3  # PIPELINING
    assert conn.cmd(b"QUIT").startswith(b"+OK")
    conn.close()


def test_update_state_dele_moves_to_trash_and_marks_retrieved_seen(server: Server) -> None:
    deliver(server, ("keep me", "k\n"), ("trash me", "t\n"), ("read me", "r\n"))
    with pop(server) as client:
        client.dele(2)
        client.retr(3)
        assert imap_mailbox(server, "Trash") == []  # nothing before QUIT
        assert client.quit().startswith(b"+OK Bye (2 messages left)")
    assert imap_mailbox(server, "Trash") == [b"Subject: trash me"]
    assert imap_mailbox(server, "INBOX") == [b"Subject: keep me", b"Subject: read me"]
    flags = flags_in_inbox(server)
    assert b"\\Seen" not in flags[0] and b"\\Seen" in flags[1]
    with pop(server) as client:
        assert client.stat()[0] == 2


def test_dropped_connection_deletes_nothing(server: Server) -> None:
    deliver(server, ("one", "1\n"), ("two", "2\n"))
    conn = Raw(server.pop3_port)
    conn.cmd(b"USER " + ALICE.encode())
    assert conn.cmd(b"PASS " + PASSWORD.encode()).startswith(b"+OK")
    assert conn.cmd(b"DELE 1").startswith(b"+OK")
    assert conn.cmd(b"DELE 2").startswith(b"+OK")
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    deadline = time.monotonic() + 60
    while True:  # the lock goes when the server has seen the connection end
        try:
            with pop(server) as client:
                assert client.stat()[0] == 2
                break
        except poplib.error_proto as e:
            assert b"IN-USE" in e.args[0] and time.monotonic() < deadline
            time.sleep(0.1)
    assert imap_mailbox(server, "Trash") == []


def test_second_session_gets_in_use(server: Server) -> None:
    with pop(server) as first:
        second = poplib.POP3("127.0.0.1", server.pop3_port)
        second.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"-ERR \[IN-USE\]"):
            second.pass_(PASSWORD)
        with pop(server, "bob@example.test") as other:  # another account is not locked
            assert other.stat() == (0, 0)
        first.quit()
        second.user(ALICE)
        assert second.pass_(PASSWORD).startswith(b"+OK")
        second.quit()


def test_uidl_is_the_email_id_and_survives_a_restart(server: Server) -> None:
    ids = deliver(server, ("a", "a\n"), ("b", "b\n"))
    with pop(server) as client:
        before = client.uidl()[1]
        client.quit()
    assert before == [f"{n} {i}".encode() for n, i in enumerate(ids, 1)]
    server.stop()
    server.start()
    with pop(server) as client:
        assert client.uidl()[1] == before


def test_stls_required_and_implicit_tls(tmp_path: Path) -> None:
    srv = Server(tmp_path, plaintext_on_loopback=False)
    srv.add_user(ALICE)
    srv.start()
    try:
        client = poplib.POP3("127.0.0.1", srv.pop3_port)
        caps = client.capa()
        assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
        with pytest.raises(poplib.error_proto, match="STLS"):
            client.user(ALICE)
        client.stls(no_verify())
        caps = client.capa()
        assert "STLS" not in caps and "USER" in caps and caps["SASL"] == ["PLAIN"]
        with pytest.raises(poplib.error_proto, match="-ERR"):
            short(client, "STLS")
        client.user(ALICE)
        assert client.pass_(PASSWORD).startswith(b"+OK")
        client.quit()
        secure = poplib.POP3_SSL("127.0.0.1", srv.pop3s_port, context=no_verify())
        assert "STLS" not in secure.capa()
        secure.user(ALICE)
        assert secure.pass_(PASSWORD).startswith(b"+OK")
        assert secure.stat() == (0, 0)
        secure.quit()
    finally:
        srv.stop()


def test_expunge_mode_removes_for_good(tmp_path: Path) -> None:
    srv = Server(tmp_path, pop3={"dele": "expunge"})
    srv.add_user(ALICE)
    srv.start()
    try:
        ids = deliver(srv, ("gone", "g\n"), ("stays", "s\n"))
        with pop(srv) as client:
            client.dele(1)
            client.quit()
        assert [e["id"] for e in srv.emails(ALICE)] == [ids[1]]
        assert imap_mailbox(srv, "Trash") == []
        assert imap_mailbox(srv, "INBOX") == [b"Subject: stays"]
    finally:
        srv.stop()


def test_auth_failures_are_limited_and_idle_clients_closed(tmp_path: Path) -> None:
    srv = Server(tmp_path, pop3={"idle_timeout": 1}, auth={"failures_per_network_per_hour": 2})
    srv.add_user(ALICE)
    srv.start()
    try:
        conn = Raw(srv.pop3_port)
        for _ in range(2):
            conn.cmd(b"USER " + ALICE.encode())
            assert conn.cmd(b"PASS wrong").startswith(b"-ERR [AUTH]")
        conn.cmd(b"USER " + ALICE.encode())
        assert conn.cmd(b"PASS " + PASSWORD.encode()).startswith(b"-ERR [SYS/TEMP]")
        assert conn.line() == b""  # closed
        conn.close()
        started = time.monotonic()  # before the connection whose silence the server times
        idle = Raw(srv.pop3_port)
        assert idle.greeting.startswith(b"+OK"), idle.greeting
        assert idle.line() == b""  # RFC 1939 §3: closed without a response
        # not at once: after about the second (the event loop's timers may fire a fraction
        # of a millisecond early: 0.99985 s was seen in CI)
        assert time.monotonic() - started >= 0.9, "closed before idle_timeout"
        idle.close()
    finally:
        srv.stop()
