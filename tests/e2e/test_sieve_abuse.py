"""Sieve scripts abused against others (security review, issue 25), end to end: scripts stored
with `mailyard sieve put --activate`, mail sent over SMTP, the results read over IMAP, in the
queue (`mailyard queue stats`: nothing left, nothing dead) and in the server's log lines.

- redirect amplification: copies that redirect again are stopped after MAX_HOPS hops, and one
  message is redirected at most 5 times in all, across hops;
- a redirect to an alias, a domain alias or an unknown local address goes through the
  routing rules (expanded, or refused at the script with the message kept), never to the
  dead-letter queue;
- a long chain of redirects ends in a kept message, never in an invalid blob id;
- `reject` after the 250 reports only to an authenticated sender (no backscatter to forged
  ones)."""

from __future__ import annotations

import imaplib
import re
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.e2e.server import Server

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
PASSWORD = "secret-password"
TRACE = b"(Mailyard Sieve redirect)"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("sieve-abuse")),
                 queue={"max_attempts": 3, "backoff_base": 0.2, "backoff_max": 0.5})
    for user in (ALICE, BOB, CAROL):
        srv.add_user(user, PASSWORD)
    srv.start()
    yield srv
    srv.stop()


DEAD: dict[str, int] = {}
"""Dead-lettered items when the running test began (a test leaves none of its own)."""


@pytest.fixture(autouse=True)
def no_scripts(server: Server) -> Iterator[None]:
    DEAD["before"] = server.queue_stats().get("dead", 0)
    yield
    for user in (ALICE, BOB, CAROL):
        server.cli("sieve", "deactivate", user)


def put_script(server: Server, text: str, user: str) -> None:
    server.cli("sieve", "put", user, "test", "-", "--activate", input=text.encode())


def send(server: Server, subject: str, rcpt: str, sender: str = "someone@remote.test") -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, rcpt, subject
    m["Message-ID"] = f"<{re.sub(r'[^A-Za-z0-9]', '.', subject)}.{time.monotonic_ns()}@r.test>"
    m.set_content("hello\r\n")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
        smtp.send_message(m, from_addr=sender, to_addrs=[rcpt])


def inbox(user: str, server: Server, subject: str, timeout: float = 30.0) -> list[bytes]:
    """The header blocks of `user`'s INBOX messages with `subject`, waited for."""
    conn = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=30)
    conn.login(user, PASSWORD)
    try:
        deadline = time.monotonic() + timeout
        while True:
            conn.select("INBOX", readonly=True)
            _, data = conn.uid("SEARCH", "HEADER", "Subject", f'"{subject}"')  # type: ignore[arg-type]
            uids = data[0].split() if data and data[0] else []
            if uids or time.monotonic() > deadline:
                heads = []
                for uid in uids:
                    _, parts = conn.uid("FETCH", uid, "(BODY.PEEK[HEADER])")
                    heads.append(parts[0][1])  # type: ignore[index]
                return heads
            time.sleep(0.2)
    finally:
        conn.logout()


def settled(server: Server) -> None:
    """Nothing left in the queue, and nothing dead-lettered by this test."""
    server.wait_queue_empty(timeout=90)
    assert server.queue_stats().get("dead", 0) == DEAD["before"], \
        server.cli("dlq", "list").stdout


def log_since(server: Server, offset: int) -> str:
    return server.log_path.read_bytes()[offset:].decode(errors="replace")


def test_redirect_fan_out_is_capped_per_message(server: Server) -> None:
    """The review's amplifier: at each hop, 5 redirects to fresh plus addresses of the
    script's own account (so no per-recipient loop mark matches): 5 + 25 + 125 copies
    queued from one message before. Now 5 in all: the copies have no budget left."""
    levels = []
    for d in (1, 2, 3):
        targets = "\n".join(f'  redirect "carol+{d}{k}@example.test";' for k in "abcde")
        levels.append(f'if header :count "eq" :comparator "i;ascii-numeric" "received" "{d}"'
                      f' {{\n{targets}\n  stop;\n}}')
    put_script(server, 'require ["relational", "comparator-i;ascii-numeric"];\n'
               + "\n".join(levels) + "\nkeep;\n", CAROL)
    offset = server.log_path.stat().st_size
    send(server, "amplified", CAROL)
    assert inbox(CAROL, server, "amplified")
    settled(server)
    log = log_since(server, offset)
    assert log.count("sieve queued") == 5, log[-4000:]
    assert "across hops (0 left)" in log, log[-4000:]
    # Each copy redirected once, kept where it was refused (the identical content of the
    # five copies is one email in carol's account).
    heads = inbox(CAROL, server, "amplified")
    assert heads and all(h.count(TRACE) <= 1 for h in heads)
    assert any(h.count(TRACE) == 1 for h in heads)


def test_a_chain_of_redirects_stops_after_two_hops(server: Server) -> None:
    """bob redirects a copy to a new plus address of his at every hop: the item ids grew
    by a hash at each hop until the blob id was invalid (7th hop, dead-lettered with
    bob's own copy). Now the third redirect is refused and every copy is stored."""
    rules = "\n".join(
        f'if header :count "eq" :comparator "i;ascii-numeric" "received" "{d}"'
        f' {{ redirect :copy "bob+h{d}@example.test"; stop; }}' for d in range(1, 12))
    put_script(server, 'require ["relational", "comparator-i;ascii-numeric", "copy"];\n'
               + rules + "\n", BOB)
    offset = server.log_path.stat().st_size
    send(server, "chained along", BOB)
    assert inbox(BOB, server, "chained along")
    settled(server)
    log = log_since(server, offset)
    assert log.count("sieve queued") == 2, log[-4000:]
    assert "it was redirected 2 times already" in log, log[-4000:]
    assert "invalid blob id" not in log
    heads = inbox(BOB, server, "chained along")
    assert max(h.count(TRACE) for h in heads) == 2


def test_redirect_goes_through_the_routing_rules(server: Server) -> None:
    """An alias expands (bob and carol each get a copy), an alias domain's address is its
    domain's, and an unknown local address is refused at the script: alice keeps the
    message, nothing is dead-lettered (before: items for addresses without an account,
    retried and dead-lettered)."""
    server.cli("alias", "add", "team@example.test", BOB, CAROL)
    server.cli("domain", "alias", "add", "alias.test", "example.test")
    put_script(server, 'redirect "team@example.test";\n', ALICE)
    send(server, "for the team", ALICE)
    assert inbox(BOB, server, "for the team")
    assert inbox(CAROL, server, "for the team")
    settled(server)
    assert inbox(ALICE, server, "for the team", timeout=1) == []

    put_script(server, 'redirect "carol@alias.test";\n', ALICE)
    send(server, "via the alias domain", ALICE)
    assert inbox(CAROL, server, "via the alias domain")
    settled(server)
    assert inbox(ALICE, server, "via the alias domain", timeout=1) == []

    offset = server.log_path.stat().st_size
    put_script(server, 'redirect "nobody@example.test";\n', ALICE)
    send(server, "to nobody at all", ALICE)
    kept = inbox(ALICE, server, "to nobody at all")
    assert len(kept) == 1
    settled(server)
    log = log_since(server, offset)
    assert re.search(r"redirect to <nobody@example.test> refused, message kept: no such"
                     r" recipient", log), log[-3000:]
    assert "sieve queued" not in log


def test_reject_reports_to_an_authenticated_sender_only(server: Server) -> None:
    """After the 250 the MAIL FROM may be forged: a message from bob's address that came in
    over the MX unauthenticated (no SPF pass) is discarded without a report; bob's own
    submission (AUTH) gets the report."""
    put_script(server, 'require "reject";\nreject "Not from you.";\n', ALICE)
    offset = server.log_path.stat().st_size
    send(server, "forged from bob", ALICE, sender=BOB)
    settled(server)
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = BOB, ALICE, "really from bob"
    m.set_content("hi\r\n")
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as smtp:
        smtp.login(BOB, PASSWORD)
        smtp.send_message(m, from_addr=BOB, to_addrs=[ALICE])
    deadline = time.monotonic() + 60
    while not (texts := reports(server, BOB)) and time.monotonic() < deadline:
        time.sleep(0.3)
    settled(server)
    texts = reports(server, BOB)
    assert len(texts) == 1 and b"Not from you." in texts[0] and b"5.7.1" in texts[0]
    assert b"really from bob" in texts[0]
    log = log_since(server, offset)
    assert "sender <bob@example.test> not authenticated" in log, log[-3000:]
    assert inbox(ALICE, server, "forged from bob", timeout=1) == []


def reports(server: Server, user: str) -> list[bytes]:
    """The delivery reports in `user`'s INBOX, whole."""
    conn = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=30)
    conn.login(user, PASSWORD)
    try:
        conn.select("INBOX", readonly=True)
        _, data = conn.search(None, "FROM", '"Mail Delivery System"')
        out = []
        for num in data[0].split():
            _, parts = conn.fetch(num, "(BODY.PEEK[])")
            out.append(parts[0][1])  # type: ignore[index]
        return out
    finally:
        conn.logout()


def test_reject_reports_to_a_remote_sender_only_on_spf_pass(tmp_path: Path) -> None:
    """Over the MX, with DNS: sender.test's SPF passes for 127.0.0.1, so its sender gets
    the report (by MX, from the null sender); nobody.test publishes no SPF, so its sender
    (perhaps forged) gets nothing, though its MX would take it."""
    from tests.dnsserver import TestDNS
    from tests.fakemx import FakeMX

    with FakeMX(tmp_path / "mx") as mx, TestDNS({
            ("sender.test", "TXT"): ["v=spf1 ip4:127.0.0.0/8 -all"],
            ("sender.test", "MX"): ["10 mx.remote.test."],
            ("nobody.test", "MX"): ["10 mx.remote.test."],
            ("mx.remote.test", "A"): ["127.0.0.1"]}) as dns:
        srv = Server(tmp_path / "srv", outbound={"port": mx.port, "retry_schedule": [1.0]},
                     dns={"nameservers": [dns.address], "timeout": 2.0})
        srv.add_user(ALICE, PASSWORD)
        srv.start()
        try:
            put_script(srv, 'require "reject";\nreject "Not wanted here.";\n', ALICE)
            send(srv, "spf passes", ALICE, sender="someone@sender.test")
            send(srv, "no spf at all", ALICE, sender="someone@nobody.test")
            [got] = mx.wait(1, timeout=60)
            assert got.recipients == ["someone@sender.test"] and got.mail_from in ("", "<>")
            assert b"Not wanted here." in got.data and b"spf passes" in got.data
            srv.wait_queue_empty(timeout=90)
            assert len(mx.received) == 1
            log = srv.log_path.read_text(errors="replace")
            assert "sender <someone@nobody.test> not authenticated" in log
        finally:
            srv.stop()


def test_more_than_five_redirects_in_one_run_keeps_the_message(server: Server) -> None:
    """MAXREDIRECTS, as ManageSieve advertises it (5): a sixth redirect is a run-time error,
    so the script fails, nothing is redirected and the message stays in the Inbox."""
    put_script(server, "\n".join(f'redirect "bob+{n}@example.test";' for n in range(6)),
               ALICE)
    offset = server.log_path.stat().st_size
    send(server, "six redirects", ALICE)
    assert len(inbox(ALICE, server, "six redirects")) == 1
    settled(server)
    log = log_since(server, offset)
    assert "more than 5 redirects" in log, log[-3000:]
    assert "sieve queued" not in log
    assert inbox(BOB, server, "six redirects", timeout=1) == []
