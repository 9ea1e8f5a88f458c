"""Two `mailyard serve` nodes share their short-lived state in Redis (issue 21): the POP3
maildrop lock, per-IP SMTP connection and message limits, IMAP connections per IP and per
account, greylisting and the vacation once-per-sender memory; and with Redis stopped, each
node decides on its own and mail flows.

The nodes share one PostgreSQL database (accounts, mail, search) on a private server, one
blob directory and a private redis-server; each keeps its own SQLite queue (the NATS queue
has its own suite, test_cluster.py). Clients come from distinct loopback addresses
(127.0.0.N) so that each test's per-IP counts are its own.
"""

from __future__ import annotations

import contextlib
import itertools
import poplib
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.contract.test_counters_fallback import start_redis
from tests.dnsserver import TestDNS
from tests.e2e.server import Server, free_port
from tests.e2e.test_jmap_mail import CORE, MAIL, Jmap
from tests.fakemx import FakeMX
from tests.faults import PrivatePostgres

pytestmark = pytest.mark.slow

PASSWORD = "secret-password"
DEADLINE = 120.0
"""Every wait below is on a condition; this only bounds a failure."""
CONNECTIONS_PER_IP = 3
MESSAGES_PER_IP = 4
SUBMISSIONS_PER_HOUR = 2
GREYLIST_DELAY = 1.0
IMAP_PER_IP = 3
IMAP_PER_USER = 2


class Pair:
    def __init__(self, root: Path, mx: FakeMX, dns: TestDNS) -> None:
        self.root = root
        self.postgres = PrivatePostgres()
        dsn = self.postgres.database("mailyard_cluster_state")
        self.redis_port = free_port()
        self.redis = start_redis(self.redis_port, root)
        blobs = root / "shared-blobs"
        blobs.mkdir()
        self.nodes: dict[str, Server] = {}
        for name in ("a", "b"):
            node = Server(root / name, metadata="", blobs="", cluster="",
                          store={"metadata": dsn, "search": "postgresql",
                                 "counters": f"redis://127.0.0.1:{self.redis_port}/0"},
                          imap={"connections_per_ip": IMAP_PER_IP,
                                "connections_per_user": IMAP_PER_USER},
                          limits={"connections_per_ip": CONNECTIONS_PER_IP,
                                  "messages_per_ip_per_minute": MESSAGES_PER_IP},
                          checks={"greylisting": True, "greylist_delay": GREYLIST_DELAY},
                          submission={"messages_per_hour": SUBMISSIONS_PER_HOUR},
                          outbound={"port": mx.port, "retry_schedule": [1.0]},
                          dns={"nameservers": [dns.address], "timeout": 2.0})
            node.data_dir.mkdir(parents=True)
            (node.data_dir / "blobs").symlink_to(blobs, target_is_directory=True)
            self.nodes[name] = node
        for user in ("alice", "carol", "dave", "erin"):
            self.nodes["a"].add_user(f"{user}@example.test", PASSWORD)
        try:
            for node in self.nodes.values():
                # The vacation test's senders skip greylisting (set through every node: harmless
                # now that the lists are one in the directory database).
                node.cli("policy", "allow", "vacation.test")
                node.start()
        except BaseException:
            self.stop()
            raise

    def stop_redis(self) -> None:
        self.redis.kill()
        self.redis.wait()

    def start_redis(self) -> None:
        self.redis = start_redis(self.redis_port, self.root)

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.stop_redis()
        self.postgres.remove()


@pytest.fixture(scope="module")
def mx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMX]:
    with FakeMX(Path(tmp_path_factory.mktemp("mx"))) as server:
        yield server


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, mx: FakeMX) -> Iterator[Pair]:
    with TestDNS({("vacation.test", "MX"): ["10 mx.vacation.test."],
                  ("mx.vacation.test", "A"): ["127.0.0.1"]}) as dns:
        p = Pair(tmp_path_factory.mktemp("cluster-state"), mx, dns)
        try:
            yield p
        finally:
            p.stop()


def pop3_login(node: Server, user: str) -> poplib.POP3:
    """USER/PASS on `node`; raises poplib.error_proto with the server's -ERR line."""
    client = poplib.POP3("127.0.0.1", node.pop3_port, timeout=30)
    try:
        client.user(user)
        client.pass_(PASSWORD)
    except BaseException:
        client.close()
        raise
    return client


def pop3_quit(client: poplib.POP3) -> None:
    """QUIT, then read until the server closes: it releases the maildrop lock before it
    closes the connection, so the lock is free when this returns."""
    client._putcmd("QUIT")  # type: ignore[attr-defined]
    assert client._getresp().startswith(b"+OK")  # type: ignore[attr-defined]
    client.sock.settimeout(DEADLINE)
    while client.sock.recv(4096):
        pass
    client.close()


def test_a_second_pop3_session_on_another_node_is_in_use(pair: Pair) -> None:
    """RFC 1939 §4/§8, RFC 2449 [IN-USE]: the maildrop lock holds across nodes."""
    a, b = pair.nodes["a"], pair.nodes["b"]
    first = pop3_login(a, "carol@example.test")
    try:
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            pop3_login(b, "carol@example.test")
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            pop3_login(a, "carol@example.test")
        other = pop3_login(b, "dave@example.test")  # another maildrop is free
        pop3_quit(other)
    finally:
        pop3_quit(first)
    second = pop3_login(b, "carol@example.test")  # released at the end of the session
    pop3_quit(second)


def smtp_from(node: Server, source: str) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30, source_address=(source, 0))


def test_smtp_connections_per_ip_are_counted_over_both_nodes(pair: Pair) -> None:
    a, b = pair.nodes["a"], pair.nodes["b"]
    ip = "127.0.0.2"
    open_ = [smtp_from(a, ip), smtp_from(a, ip), smtp_from(b, ip)]  # greeted: counted
    try:
        assert len(open_) == CONNECTIONS_PER_IP
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtp_from(b, ip)
        assert refused.value.smtp_code == 421, refused.value
        smtp_from(b, "127.0.0.22").quit()  # another address is not limited
        open_.pop(0).quit()
        deadline = time.monotonic() + DEADLINE
        while True:  # node a releases the place when the session ends, just after QUIT
            try:
                open_.append(smtp_from(b, ip))
                break
            except smtplib.SMTPConnectError:
                assert time.monotonic() < deadline, "the place on node a was never released"
                time.sleep(0.05)
    finally:
        for client in open_:
            with contextlib.suppress(Exception):
                client.quit()


class RawImap:
    """An IMAP connection from a chosen loopback address (imaplib cannot bind one), read
    line by line: a refused greeting is a BYE line to look at, not an exception."""

    def __init__(self, node: Server, source: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", node.imap_port), timeout=30,
                                             source_address=(source, 0))
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline()

    def command(self, line: str) -> bytes:
        """Send `line` tagged "t"; the tagged reply."""
        self.sock.sendall(f"t {line}\r\n".encode())
        while True:
            reply = self.file.readline()
            assert reply, f"connection closed before {line!r} was answered"
            if reply.startswith(b"t "):
                return reply

    def logout(self) -> None:
        """LOGOUT, then read until the server closes: it gives its places back before it
        closes the connection, so they are free when this returns."""
        assert self.command("LOGOUT").startswith(b"t OK")
        self.sock.settimeout(DEADLINE)
        self.file.read()
        self.close()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_imap_connections_per_ip_are_counted_over_both_nodes(pair: Pair) -> None:
    a, b = pair.nodes["a"], pair.nodes["b"]
    ip = "127.0.0.7"
    open_ = [RawImap(a, ip), RawImap(a, ip), RawImap(b, ip)]
    try:
        assert all(c.greeting.startswith(b"* OK") for c in open_), [c.greeting for c in open_]
        assert len(open_) == IMAP_PER_IP
        for node in (b, a):  # the limit was reached over both: each refuses the next one
            refused = RawImap(node, ip)
            assert refused.greeting.startswith(b"* BYE [UNAVAILABLE]"), refused.greeting
            refused.close()
        other = RawImap(b, "127.0.0.77")  # another address is not limited
        assert other.greeting.startswith(b"* OK"), other.greeting
        other.logout()
        open_.pop(0).logout()  # a place on node a is free once a's session has ended
        again = RawImap(b, ip)
        open_.append(again)
        assert again.greeting.startswith(b"* OK"), again.greeting
    finally:
        for client in open_:
            with contextlib.suppress(Exception):
                client.close()


def test_imap_connections_per_user_are_counted_over_both_nodes(pair: Pair) -> None:
    """`[imap] connections_per_user`: one session on each node fills the account's places;
    a third LOGIN is refused with [LIMIT] on either node until one session logs out."""
    a, b = pair.nodes["a"], pair.nodes["b"]
    sources = (f"127.0.0.{n}" for n in itertools.count(80))  # each its own per-IP count
    login = "LOGIN erin@example.test " + PASSWORD
    sessions = [RawImap(a, next(sources)), RawImap(b, next(sources))]
    try:
        assert [s.command(login)[:4] for s in sessions] == [b"t OK"] * IMAP_PER_USER
        for node in (a, b):
            third = RawImap(node, next(sources))
            try:
                reply = third.command(login)
                assert reply.startswith(b"t NO [LIMIT]"), (node.root.name, reply)
                assert third.command("LOGIN dave@example.test " + PASSWORD) \
                    .startswith(b"t OK"), "another account is not limited"
            finally:
                third.logout()
        sessions.pop(0).logout()  # node a's session gives the account's place back
        again = RawImap(b, next(sources))
        sessions.append(again)
        assert again.command(login).startswith(b"t OK")
    finally:
        for session in sessions:
            with contextlib.suppress(Exception):
                session.close()


def mail_from(node: Server, ip: str, sender: str) -> int:
    """MAIL FROM from `ip` on `node`; the reply's code."""
    with smtp_from(node, ip) as client:
        client.ehlo()
        code, _ = client.mail(sender)
        return code


def test_smtp_messages_per_ip_are_counted_over_both_nodes(pair: Pair) -> None:
    a, b = pair.nodes["a"], pair.nodes["b"]
    ip = "127.0.0.3"
    codes = [mail_from((a, b)[i % 2], ip, f"rate{i}@remote.test")
             for i in range(MESSAGES_PER_IP)]
    assert codes == [250] * MESSAGES_PER_IP
    for node in (a, b):  # the limit was reached over both: each refuses the next one
        try:
            code = mail_from(node, ip, "one-more@remote.test")
        except smtplib.SMTPServerDisconnected:
            code = 421  # the 421 closed the connection before smtplib read it
        assert code == 421, node.root.name


_rcpt_sources = itertools.cycle(range(100, 250))


def test_submission_per_user_limit_is_counted_over_both_nodes(pair: Pair) -> None:
    """`[submission] messages_per_hour`: one message through each node, then the account's
    hour is full on both (450 4.7.1 at MAIL)."""
    import ssl

    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE  # the nodes' own certificates

    def session(node: Server) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", node.submission_port, timeout=30)
        client.starttls(context=tls)
        client.ehlo()
        client.login("dave@example.test", PASSWORD)
        return client

    a, b = pair.nodes["a"], pair.nodes["b"]
    for n, node in enumerate((a, b)[:SUBMISSIONS_PER_HOUR]):
        with session(node) as client:
            client.sendmail("dave@example.test", ["carol@example.test"],
                            f"From: dave@example.test\r\nTo: carol@example.test\r\n"
                            f"Subject: limit {n}\r\n\r\nbody\r\n".encode())
    for node in (a, b):
        with session(node) as client:
            code, reply = client.mail("dave@example.test")
            assert code == 450 and b"4.7.1" in reply, (node.root.name, code, reply)


def rcpt(node: Server, sender: str, recipient: str) -> int:
    """MAIL and RCPT; RCPT's reply code. Each from another address of 127.0.0.0/24 (the
    greylist's client network), so that no per-IP message limit is met."""
    with smtp_from(node, f"127.0.0.{next(_rcpt_sources)}") as client:
        client.ehlo()
        client.mail(sender)
        code, _ = client.rcpt(recipient)
        return code


def test_greylisting_is_shared_a_triplet_passed_on_a_passes_on_b(pair: Pair) -> None:
    a, b = pair.nodes["a"], pair.nodes["b"]
    sender, recipient = f"grey{time.time_ns()}@remote.test", "alice@example.test"
    assert rcpt(a, sender, recipient) == 451  # first sight
    assert rcpt(b, sender, recipient) == 451  # too early, on the other node too
    deadline = time.monotonic() + DEADLINE
    while rcpt(a, sender, recipient) != 250:  # the client retries until let through
        assert time.monotonic() < deadline, "never let through"
        time.sleep(0.1)
    assert rcpt(b, sender, recipient) == 250, "node b knows the triplet passed on node a"


def test_vacation_answers_a_sender_once_whichever_node_delivers(pair: Pair,
                                                                mx: FakeMX) -> None:
    """Eight messages from one sender, four through each node at once: one auto-reply."""
    a, b = pair.nodes["a"], pair.nodes["b"]
    alice = Jmap(a, "alice@example.test", (CORE, MAIL, "urn:ietf:params:jmap:vacationresponse"))
    answer = alice.call("VacationResponse/set", update={"singleton": {
        "isEnabled": True, "subject": "Away", "textBody": "Back soon.\n"}})
    assert answer["updated"] == {"singleton": None}, answer
    sender = f"friend{time.time_ns()}@vacation.test"
    before = len(mx.received)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def deliver(i: int) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = sender, "alice@example.test", f"hello {i}"
        msg["Message-ID"] = f"<hello{i}.{sender}>"
        msg.set_content("Are you there?\n")
        try:
            with smtp_from((a, b)[i % 2], f"127.0.0.{10 + i}") as client:
                start.wait(DEADLINE)
                client.send_message(msg)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert not errors, errors
    deadline = time.monotonic() + DEADLINE
    while sum(1 for e in a.emails("alice@example.test")
              if e["subject"].startswith("hello ")) < 8:
        assert time.monotonic() < deadline, "not every message was delivered"
        time.sleep(0.2)
    for node in (a, b):  # every delivery done, and every reply it queued sent
        node.wait_queue_empty(DEADLINE)
    replies = [m for m in mx.received[before:] if m.recipients == [sender]]
    assert len(replies) == 1, f"{len(replies)} auto-replies to one sender"


def test_with_redis_down_each_node_decides_alone_and_mail_flows(pair: Pair) -> None:
    """Redis stopped: one warning per node; the POP3 lock and the limits hold per node (a
    second session on the same node is refused, on the other node it is let in), greylisting
    falls back to the node's own store, and mail is accepted and delivered."""
    a, b = pair.nodes["a"], pair.nodes["b"]
    pair.stop_redis()
    try:
        first = pop3_login(a, "carol@example.test")
        try:
            with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
                pop3_login(a, "carol@example.test")
            pop3_quit(pop3_login(b, "carol@example.test"))  # b cannot see a's lock
        finally:
            pop3_quit(first)

        ip = "127.0.0.5"
        assert [mail_from(a, ip, f"d{i}@remote.test") for i in range(MESSAGES_PER_IP)] \
            == [250] * MESSAGES_PER_IP
        assert mail_from(b, ip, "more@remote.test") == 250, "per node: b counted none"

        sender = f"down{time.time_ns()}@remote.test"
        assert rcpt(a, sender, "alice@example.test") == 451  # node a's own greylist
        deadline = time.monotonic() + DEADLINE
        with smtp_from(b, "127.0.0.6") as client:
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = sender, "alice@example.test", "no redis"
            msg.set_content("still delivered\n")
            client.send_message(msg, from_addr="x@vacation.test")  # allow-listed sender
        while not any(e["subject"] == "no redis" for e in b.emails("alice@example.test")):
            assert time.monotonic() < deadline, "no delivery while Redis is down"
            time.sleep(0.2)
        for node in (a, b):
            log = node.log_path.read_text()
            assert log.count("Redis unavailable") == 1, log[-3000:]
    finally:
        pair.start_redis()

