"""Forwarding to a remote MX (issue 25): spam never, the local copy as configured, and what
is forwarded still authenticates.

One Mailyard for example.test, whose remote MX for elsewhere.test is a loopback aiosmtpd
(tests/fakemx.py) behind the loopback DNS double. The content check scores in the pipeline
(the default), so the forwarding path must score the message itself before it forwards:

- an alias with a remote target and a local copy: ham goes to both; spam (GTUBE) only to the
  local copy, in Junk, and what the remote target would have got is held in the quarantine
  (`mailyard dlq list`); a pure-forwarding alias holds the spam the same way;
- a Sieve `redirect` of spam is refused, the message stays in Junk; of ham it goes;
- a Gmail-style filter made over JMAP (Filters/set forwardTo) forwards over SMTP to the
  remote MX from an SRS address that passes SPF there, the sender's DKIM signature intact;
  with "never spam" the user has said the message is not spam, so it is forwarded too;
- with `[routing] hold_spam_forwards = false` the spam for a remote target is dropped;
- an alias on an account's own address forwards without a local copy unless --keep-copy.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import dkim
import dns.resolver
import pytest

from mailyard.services.checks.auth import spf_check
from tests.dnsserver import TestDNS
from tests.e2e.jmapclient import CORE, MAIL, Jmap
from tests.e2e.server import Server, wait_port
from tests.e2e.test_checks_auth import dns_txt, rsa_key
from tests.fakemx import FakeMX, Received

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
PASSWORD = "secret-password"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
SIEVE = "urn:ietf:params:jmap:sieve"
FILTERS = "urn:mailyard:params:jmap:filters"


@pytest.fixture(scope="module")
def key() -> tuple[bytes, str]:
    return rsa_key()


@pytest.fixture(scope="module")
def dns_double(key: tuple[bytes, str]) -> Iterator[TestDNS]:
    with TestDNS({
        ("elsewhere.test", "MX"): ["10 mx.elsewhere.test."],
        ("mx.elsewhere.test", "A"): ["127.0.0.1"],
        ("example.test", "TXT"): ["v=spf1 ip4:127.0.0.0/8 -all"],
        ("sender.test", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all"],
        ("s1._domainkey.sender.test", "TXT"): [f"v=DKIM1; k=rsa; p={key[1]}"],
    }) as server:
        yield server


@pytest.fixture(scope="module")
def mx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMX]:
    with FakeMX(tmp_path_factory.mktemp("mx")) as server:
        yield server


def make_server(root: Path, mx: FakeMX, dns_double: TestDNS, routing: str = "") -> Server:
    srv = Server(root, outbound={"port": mx.port, "retry_schedule": [1.0]},
                 dns={"nameservers": [dns_double.address], "timeout": 2.0})
    with srv.config_path.open("a") as f:
        f.write(f'[routing]\nsrs_domain = "example.test"\n{routing}')
    for user in (ALICE, BOB, CAROL):
        srv.add_user(user, PASSWORD)
    srv.cli("alias", "add", ALICE, "ann@elsewhere.test", "--keep-copy")
    srv.cli("alias", "add", CAROL, "cee@elsewhere.test")
    srv.cli("alias", "add", "fwd@example.test", "far@elsewhere.test")
    return srv


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mx: FakeMX,
           dns_double: TestDNS) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("spamfwd"), mx, dns_double)
    srv.start()
    wait_port(srv.http_port)
    yield srv
    srv.stop()


def message(subject: str, to: str, body: str, key: tuple[bytes, str] | None = None,
            sender: str = "dora@sender.test") -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = f"Dora <{sender}>", to, subject
    m["Message-ID"] = f"<{subject.replace(' ', '.')}.{time.monotonic_ns()}@sender.test>"
    m["Date"] = email.utils.formatdate()
    m.set_content(body)
    raw = m.as_bytes(policy=email.policy.SMTP)
    if key is None:
        return raw
    return dkim.sign(raw, b"s1", b"sender.test", key[0],
                     include_headers=[b"from", b"to", b"subject", b"date",
                                      b"message-id"]) + raw


def send(server: Server, rcpt: str, raw: bytes, sender: str = "dora@sender.test") -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
        smtp.sendmail(sender, [rcpt], raw)


def arrived(mx: FakeMX, subject: str) -> list[Received]:
    return [r for r in mx.received if f"Subject: {subject}".encode() in r.data]


def wait_mx(mx: FakeMX, subject: str, timeout: float = 60.0) -> list[Received]:
    deadline = time.monotonic() + timeout
    while not (found := arrived(mx, subject)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def mailboxes(server: Server, user: str, subject: str, timeout: float = 30.0) -> list[str]:
    """The mailboxes (by label) of `user`'s message with `subject`, once it is stored."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for label in ("INBOX", "Junk"):
            if any(subject == e.get("subject") for e in server.emails(user, label=label)):
                return [label]
        time.sleep(0.3)
    return []


def dead_items(server: Server) -> str:
    return server.cli("dlq", "list").stdout.decode()


def test_an_alias_forwards_ham_but_not_spam(server: Server, mx: FakeMX) -> None:
    send(server, ALICE, message("alias ham", ALICE, "Lunch on Friday?\n"))
    [ham] = wait_mx(mx, "alias ham")
    assert ham.recipients == ["ann@elsewhere.test"] and ham.mail_from.startswith("SRS0=")
    assert mailboxes(server, ALICE, "alias ham") == ["INBOX"]

    send(server, ALICE, message("alias spam", ALICE, f"Buy now {GTUBE}\n"))
    send(server, "fwd@example.test", message("pure forward spam", "fwd@example.test",
                                             f"Buy now {GTUBE}\n"))
    # The local copy lands in Junk; the remote targets get nothing, held in quarantine.
    assert mailboxes(server, ALICE, "alias spam") == ["Junk"]
    server.wait_queue_empty()
    assert server.queue_stats()["dead"] == 2
    held = dead_items(server)
    assert "not forwarded to ann@elsewhere.test" in held, held
    assert "not forwarded to far@elsewhere.test" in held, held
    assert not arrived(mx, "alias spam") and not arrived(mx, "pure forward spam")
    for line in held.splitlines():  # released by hand, an admin's choice; here dropped
        if line.strip():
            server.cli("dlq", "drop", line.split()[0], check=False)


def test_a_forward_keeps_a_local_copy_only_when_asked(server: Server, mx: FakeMX) -> None:
    """alice@ forwards with --keep-copy, carol@ (an account too) without: both remote
    targets get the message, only alice has a copy (RFC 5321 §3.9.1: aliasing replaces the
    recipient), and a later message to carol is no different."""
    send(server, CAROL, message("carol forward", CAROL, "Forward only.\n"))
    send(server, ALICE, message("alice forward", ALICE, "Forward and keep.\n"))
    [carols] = wait_mx(mx, "carol forward")
    assert carols.recipients == ["cee@elsewhere.test"]
    assert b"Delivered-To: carol@example.test" in carols.data
    [alices] = wait_mx(mx, "alice forward")
    assert alices.recipients == ["ann@elsewhere.test"]
    assert mailboxes(server, ALICE, "alice forward") == ["INBOX"]
    server.wait_queue_empty()
    assert server.emails(CAROL) == [], "no local copy without --keep-copy"


def put_script(server: Server, user: str, text: str) -> None:
    server.cli("sieve", "put", user, "test", "-", "--activate", input=text.encode())


def test_a_sieve_redirect_of_spam_is_refused_and_the_message_stays_in_junk(
        server: Server, mx: FakeMX) -> None:
    put_script(server, BOB, 'redirect "friend@elsewhere.test";')
    try:
        send(server, BOB, message("redirect ham", BOB, "See you.\n"))
        [ham] = wait_mx(mx, "redirect ham")
        assert ham.recipients == ["friend@elsewhere.test"]
        send(server, BOB, message("redirect spam", BOB, f"Cheap pills {GTUBE}\n"))
        assert mailboxes(server, BOB, "redirect spam") == ["Junk"]
        server.wait_queue_empty()
        assert not arrived(mx, "redirect spam")
        assert b"redirect to <friend@elsewhere.test> refused, message kept: spam is not" \
            b" forwarded" in server.log_path.read_bytes()
        assert not mailboxes(server, BOB, "redirect ham", timeout=0.5), \
            "a plain redirect stores no copy"
    finally:
        server.cli("sieve", "deactivate", BOB)


def test_a_gmail_style_forward_reaches_the_remote_mx_with_spf_and_dkim_passing(
        server: Server, mx: FakeMX, dns_double: TestDNS, key: tuple[bytes, str]) -> None:
    """The webmail's filter (over JMAP, as the webmail sends it) compiles to `redirect
    :copy`; the copy leaves by MX from an SRS address at example.test, whose SPF authorises
    loopback (sender.test's own SPF would fail from here), and Dora's DKIM signature
    verifies on what the remote MX received. "Never spam" with forward: the user's word
    that the message is not spam, so even a GTUBE message from that sender is forwarded."""
    api = Jmap(server, BOB, (CORE, MAIL, SIEVE, FILTERS))
    created = api.call("Filters/set", create={
        "f": {"from": "dora@sender.test", "forwardTo": "bobby@elsewhere.test",
              "neverSpam": True},
        "g": {"subject": "deals", "forwardTo": "bobby@elsewhere.test"}})
    assert set(created["created"] or {}) == {"f", "g"}, created
    try:
        send(server, BOB, message("filter forward", BOB, "The report is attached.\n", key))
        [copy] = wait_mx(mx, "filter forward")
        assert copy.recipients == ["bobby@elsewhere.test"]
        local, _, domain = copy.mail_from.rpartition("@")
        assert local.startswith("SRS0=") and local.endswith("=sender.test=dora"), copy
        assert domain == "example.test"
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = dns_double.port
        assert spf_check(resolver, "127.0.0.1", copy.mail_from, "mx.example.test").result \
            == "pass"
        assert spf_check(resolver, "127.0.0.1", "dora@sender.test",
                         "mx.example.test").result == "fail", "without SRS it would fail"

        def lookup(name: bytes, timeout: int = 5) -> bytes:
            return dns_txt(dns_double, name)
        assert dkim.verify(copy.data, dnsfunc=lookup), copy.data[:800]
        assert mailboxes(server, BOB, "filter forward") == ["INBOX"], "redirect :copy"

        send(server, BOB, message("filter never spam", BOB, f"Really {GTUBE}\n"))
        assert wait_mx(mx, "filter never spam"), "never spam: forwarded"
        assert mailboxes(server, BOB, "filter never spam") == ["INBOX"]
        send(server, BOB, message("hot deals", BOB, f"Deals {GTUBE}\n",
                                  sender="spammer@sender.test"),
             sender="spammer@sender.test")
        assert mailboxes(server, BOB, "hot deals") == ["Junk"]
        server.wait_queue_empty()
        assert not arrived(mx, "hot deals"), "spam matching a forward filter stays in Junk"
    finally:
        server.cli("sieve", "deactivate", BOB)


def test_spam_for_a_remote_target_is_dropped_when_configured(
        tmp_path: Path, mx: FakeMX, dns_double: TestDNS) -> None:
    srv = make_server(tmp_path / "drop", mx, dns_double, "hold_spam_forwards = false\n")
    srv.start()
    try:
        send(srv, ALICE, message("dropped spam", ALICE, f"Win {GTUBE}\n"))
        assert mailboxes(srv, ALICE, "dropped spam") == ["Junk"]
        srv.wait_queue_empty()
        assert srv.queue_stats()["dead"] == 0
        assert not arrived(mx, "dropped spam")
        assert b"dropped, spam (score" in srv.log_path.read_bytes()
    finally:
        srv.stop()


def test_spam_is_held_with_pipeline_worker_processes(
        tmp_path: Path, mx: FakeMX, dns_double: TestDNS) -> None:
    """With `serve --workers 2` the MX's process scores the message it forwards (the spam
    model is opened there too) and the workers quarantine what it held."""
    srv = make_server(tmp_path / "workers", mx, dns_double)
    srv.workers = 2
    srv.start()
    try:
        send(srv, "fwd@example.test", message("worker spam", "fwd@example.test",
                                              f"Win {GTUBE}\n"))
        send(srv, "fwd@example.test", message("worker ham", "fwd@example.test", "Hi.\n"))
        assert wait_mx(mx, "worker ham")
        srv.wait_queue_empty()
        assert srv.queue_stats()["dead"] == 1
        assert "not forwarded to far@elsewhere.test" in dead_items(srv)
        assert not arrived(mx, "worker spam")
    finally:
        srv.stop()
