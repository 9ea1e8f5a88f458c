"""Routing over real SMTP: aliases, domain aliases, catch-all and plus-addressing decided at
RCPT time (550 5.1.1 for what no rule accepts: nothing queued, so no bounce can follow), each
account getting one copy, read back through IMAP; and the CLI that edits the rules."""

from __future__ import annotations

import imaplib
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from tests.e2e.server import Server

PASSWORD = "secret-password"
USERS = ("alice", "bob", "carol")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("routing"))
    for user in USERS:
        srv.add_user(f"{user}@example.test", PASSWORD)
    srv.cli("alias", "add", "team@example.test", "bob@example.test", "carol@example.test")
    srv.cli("alias", "add", "me@example.test", "alice@example.test")
    srv.cli("domain", "alias", "add", "example.net", "example.test")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def message(subject: str, to: str) -> bytes:
    m = EmailMessage()
    m["From"] = "Dora <dora@remote.test>"
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = f"<{subject.replace(' ', '.')}@remote.test>"
    m.set_content(f"About {subject}.\n")
    return m.as_bytes()


def send(server: Server, subject: str, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail("dora@remote.test", rcpts, message(subject, ", ".join(rcpts)))


def imap_subjects(server: Server, user: str, subject: str, want: int,
                  timeout: float = 30.0) -> list[bytes]:
    """The raw messages in `user`'s INBOX whose Subject is `subject`, over IMAP, once
    `want` are there (or the deadline passed)."""
    deadline = time.monotonic() + timeout
    while True:
        with imaplib.IMAP4("127.0.0.1", server.imap_port) as imap:
            imap.login(f"{user}@example.test", PASSWORD)
            imap.select("INBOX", readonly=True)
            _, data = imap.uid("SEARCH", "HEADER", "Subject", f'"{subject}"')
            uids = data[0].split()
            found = []
            for uid in uids:
                _, parts = imap.uid("FETCH", uid, "(BODY.PEEK[])")
                found.append(parts[0][1])
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_alias_to_two_users_delivers_one_copy_each(server: Server) -> None:
    send(server, "team news", ["team@example.test"])
    for user in ("bob", "carol"):
        [raw] = imap_subjects(server, user, "team news", 1)
        assert raw.startswith(b"Delivered-To: team@example.test\r\n"), raw[:200]
    server.wait_queue_empty()
    assert imap_subjects(server, "bob", "team news", 2, timeout=0.5) != [] and \
        len(imap_subjects(server, "bob", "team news", 2, timeout=0.5)) == 1
    assert imap_subjects(server, "alice", "team news", 1, timeout=0.5) == []


def test_an_account_and_its_alias_in_one_envelope_get_one_copy(server: Server) -> None:
    send(server, "once only", ["alice@example.test", "me@example.test",
                               "alice+x@example.test", "team@example.test",
                               "bob@example.test"])
    server.wait_queue_empty()
    for user in ("alice", "bob", "carol"):
        assert len(imap_subjects(server, user, "once only", 1)) == 1, user
    # one copy, with a Delivered-To for each of the envelope's addresses that reached her
    [raw] = imap_subjects(server, "alice", "once only", 1)
    assert raw.startswith(b"Delivered-To: alice@example.test\r\nDelivered-To: me@example.test"
                          b"\r\nDelivered-To: alice+x@example.test\r\nReturn-Path:"), raw[:300]
    # and a message to her own address alone is stored as it came
    send(server, "direct only", ["alice@example.test"])
    [raw] = imap_subjects(server, "alice", "direct only", 1)
    assert raw.startswith(b"Return-Path: <dora@remote.test>\r\n"), raw[:200]


def test_plus_address_is_delivered_to_the_account_and_searchable(server: Server) -> None:
    send(server, "plus news", ["Alice+News@example.test"])
    [raw] = imap_subjects(server, "alice", "plus news", 1)
    assert raw.startswith(b"Delivered-To: alice+news@example.test\r\n"), raw[:200]
    found = server.cli("search", "alice@example.test", "deliveredto:alice+news@example.test")
    assert b"plus news" in found.stdout, found
    none = server.cli("search", "alice@example.test", "deliveredto:alice+other@example.test")
    assert b"plus news" not in none.stdout


def test_domain_alias_delivers_to_the_same_user_at_the_target(server: Server) -> None:
    send(server, "via net", ["carol@example.net"])
    [raw] = imap_subjects(server, "carol", "via net", 1)
    assert raw.startswith(b"Delivered-To: carol@example.net\r\n")


def test_unknown_addresses_are_refused_at_rcpt(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.ehlo("client.remote.test")
        smtp.mail("dora@remote.test")
        for rcpt in ("nobody@example.test", "nobody@example.net", "team+x@example.org"):
            code, text = smtp.rcpt(rcpt)
            assert code in (550,), (rcpt, code, text)
            if rcpt != "team+x@example.org":
                assert text.startswith(b"5.1.1"), text
        assert smtp.rcpt("team+x@example.test")[0] == 250  # the alias's subaddress
        smtp.rset()
    stats = server.queue_stats()
    assert stats["dead"] == 0


def test_catch_all_takes_what_nothing_else_does(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.ehlo("client.remote.test")
        smtp.mail("dora@remote.test")
        assert smtp.rcpt("whatever@example.test")[0] == 550
    server.cli("domain", "catchall", "example.test", "bob@example.test")
    try:
        send(server, "caught", ["whatever@example.test", "alice@example.test"])
        [raw] = imap_subjects(server, "bob", "caught", 1)
        assert raw.startswith(b"Delivered-To: whatever@example.test\r\n")
        assert len(imap_subjects(server, "alice", "caught", 1)) == 1
        # the catch-all reaches alias domains too, and never overrides a real address
        send(server, "caught net", ["someone@example.net"])
        assert len(imap_subjects(server, "bob", "caught net", 1)) == 1
    finally:
        server.cli("domain", "catchall", "example.test", "--off")
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.ehlo("client.remote.test")
        smtp.mail("dora@remote.test")
        assert smtp.rcpt("whatever@example.test")[0] == 550


def test_cli_lists_and_refuses_mistakes_with_one_line(server: Server) -> None:
    listed = server.cli("alias", "list").stdout.decode()
    assert "team@example.test\tbob@example.test, carol@example.test" in listed
    assert server.cli("domain", "alias", "list").stdout.decode() == \
        "example.net\texample.test\n"
    for args, words in (
            (("alias", "add", "x@nowhere.test", "bob@example.test"), "not a local domain"),
            (("alias", "add", "x@example.test"), "at least one target"),
            (("alias", "add", "x@example.test", "not-an-address"), "is not an address"),
            (("alias", "remove", "nobody@example.test"), "no alias"),
            (("domain", "alias", "add", "example.test", "example.net"), "is a local domain"),
            (("domain", "alias", "add", "example.org", "elsewhere.test"),
             "not a local domain"),
            (("domain", "catchall", "elsewhere.test", "bob@example.test"),
             "not a local domain"),
            (("domain", "catchall", "example.test", "--off"), "has no catch-all")):
        result = server.cli(*args, check=False)
        err = result.stderr.decode()
        assert result.returncode == 2, (args, result)
        assert err.count("\n") == 1 and words in err, (args, err)
    help_text = server.cli("alias", "add", "--help").stdout.decode()
    assert "--keep-copy" in help_text


def test_a_message_with_too_many_hops_is_stopped_with_a_report(server: Server) -> None:
    hops = b"".join(b"Received: from hop%d.example (hop%d.example [192.0.2.1])\r\n"
                    b"\tby relay.example; Sat, 5 Dec 2026 10:00:00 +0000\r\n" % (n, n)
                    for n in range(101))
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail("alice@example.test", ["team@example.test"],
                      hops + message("looping hops", "team@example.test"))
    deadline = time.monotonic() + 30
    while True:
        reports = [e for e in server.emails("alice@example.test")
                   if "looping hops" not in (e["subject"] or "")
                   and "Undelivered" in (e["subject"] or "")]
        if reports or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(reports) == 1, server.emails("alice@example.test")
    raw = server.raw("alice@example.test", reports[0]["id"])
    assert b"5.4.6" in raw and b"Subject: looping hops" in raw
    server.wait_queue_empty()
    for user in ("bob", "carol"):
        assert imap_subjects(server, user, "looping hops", 1, timeout=0.5) == []


def test_submission_to_an_alias_reaches_each_member_once(server: Server) -> None:
    m = EmailMessage()
    m["From"] = "alice@example.test"
    m["To"] = "team@example.test"
    m["Subject"] = "from inside"
    m.set_content("Sent by a user to a local alias.\n")
    with smtplib.SMTP("127.0.0.1", server.submission_port) as smtp:
        smtp.login("alice@example.test", PASSWORD)
        smtp.send_message(m, to_addrs=["team@example.test", "bob@example.test",
                                       "carol+x@example.test"])
        # a local address no rule accepts is refused at RCPT here too
        smtp.ehlo()
        smtp.mail("alice@example.test")
        code, text = smtp.rcpt("nobody@example.test")
        assert code == 550 and text.startswith(b"5.1.1"), (code, text)
        smtp.rset()
    for user in ("bob", "carol"):
        assert len(imap_subjects(server, user, "from inside", 1)) == 1, user
    server.wait_queue_empty()
    for user in ("bob", "carol"):
        assert len(imap_subjects(server, user, "from inside", 2, timeout=0.5)) == 1, user


def test_routing_with_pipeline_worker_processes(tmp_path_factory: pytest.TempPathFactory
                                                ) -> None:
    """With --workers 2 the pipeline runs in other processes, which read the same rules
    (routing.db) and deliver plus addresses and aliases to the right accounts."""
    srv = Server(tmp_path_factory.mktemp("routing-workers"), workers=2)
    for user in ("alice", "bob"):
        srv.add_user(f"{user}@example.test", PASSWORD)
    srv.cli("alias", "add", "both@example.test", "alice@example.test", "bob@example.test")
    srv.start()
    try:
        send(srv, "in workers", ["both@example.test", "alice+w@example.test"])
        [raw] = imap_subjects(srv, "alice", "in workers", 1)
        assert raw.startswith(b"Delivered-To: both@example.test\r\n"
                              b"Delivered-To: alice+w@example.test\r\n"), raw[:200]
        assert len(imap_subjects(srv, "bob", "in workers", 1)) == 1
        srv.wait_queue_empty()
        assert srv.queue_stats()["dead"] == 0
    finally:
        srv.stop()
