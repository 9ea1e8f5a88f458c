"""Sieve filters end to end: a script stored with `mailyard sieve put --activate`, mail sent
over SMTP from another domain, the result read over IMAP (mailboxes, flags, header fields)
and, for what leaves the account (redirect, reject, vacation), in the other local mailbox it
was sent to. One script per test, for alice; bob and carol are the other local users."""

from __future__ import annotations

import email
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
REMOTE = "sender@remote.test"
PASSWORD = "secret-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("sieve")))
    for user in (ALICE, BOB, CAROL):
        srv.add_user(user, PASSWORD)
    srv.start()
    yield srv
    srv.stop()


def put_script(server: Server, text: str, user: str = ALICE) -> None:
    server.cli("sieve", "put", user, "test", "-", "--activate", input=text.encode())


def send(server: Server, subject: str, *, body: str = "hello\r\n", to: str = ALICE,
         rcpt: str = ALICE, sender: str = REMOTE, **headers: str) -> str:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, to, subject
    msgid = f"<{re.sub(r'[^A-Za-z0-9]', '.', subject)}.{time.monotonic_ns()}@remote.test>"
    m["Message-ID"] = headers.pop("Message_ID", msgid)
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    m.set_content(body)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
        smtp.send_message(m, from_addr=sender, to_addrs=[rcpt])
    return str(m["Message-ID"])


class Imap:
    def __init__(self, server: Server, user: str = ALICE) -> None:
        self.conn = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=30)
        self.conn.login(user, PASSWORD)

    def close(self) -> None:
        self.conn.logout()

    def create(self, mailbox: str) -> None:
        self.conn.create(mailbox)

    def find(self, mailbox: str, subject: str) -> list[tuple[bytes, bytes]]:
        """(flags, header block) of each message in `mailbox` with this subject."""
        typ, _ = self.conn.select(mailbox, readonly=True)
        if typ != "OK":
            return []
        typ, data = self.conn.uid("SEARCH", "HEADER", "Subject", f'"{subject}"')  # type: ignore[arg-type]
        uids = data[0].split() if data and data[0] else []
        found = []
        for uid in uids:
            typ, parts = self.conn.uid("FETCH", uid, "(FLAGS)")
            flags = parts[0]
            typ, parts = self.conn.uid("FETCH", uid, "(BODY.PEEK[HEADER])")
            head = parts[0][1]  # type: ignore[index]
            found.append((flags, head))  # type: ignore[arg-type]
        return found

    def wait(self, mailbox: str, subject: str, timeout: float = 30.0
             ) -> list[tuple[bytes, bytes]]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(mailbox, subject)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


@pytest.fixture
def imap(server: Server) -> Iterator[Imap]:
    client = Imap(server)
    yield client
    client.close()


def delivered(server: Server, user: str, subject: str, timeout: float = 30.0) -> bool:
    """Whether `user` has a message with `subject` (in any mailbox), waiting for the queue."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(subject in (e.get("subject") or "") for e in server.emails(user)):
            return True
        time.sleep(0.3)
    return False


def settle(server: Server) -> None:
    server.wait_queue_empty()


def test_fileinto_copy_and_imap4flags(server: Server, imap: Imap) -> None:
    imap.create("Lists")
    imap.create("Work")
    put_script(server, """require ["fileinto", "copy", "imap4flags"];
if header :contains "subject" "[list]" {
    fileinto :copy :flags ["\\\\Flagged", "$Listed"] "Lists";
} elsif address :domain :is "from" "remote.test" {
    addflag "\\\\Seen";
    fileinto "Work";
}
""")
    send(server, "[list] weekly news")
    send(server, "report from remote")
    listed = imap.wait("Lists", "[list] weekly news")
    # Keywords are stored in lower case (store.ports.stored_keywords)
    assert len(listed) == 1 and b"\\Flagged" in listed[0][0] and b"$listed" in listed[0][0]
    # :copy keeps the implicit keep: the same email in the Inbox too (a label added)
    assert len(imap.find("INBOX", "[list] weekly news")) == 1
    work = imap.wait("Work", "report from remote")
    assert len(work) == 1 and b"\\Seen" in work[0][0]
    assert imap.find("INBOX", "report from remote") == []


def test_discard_and_keep(server: Server, imap: Imap) -> None:
    put_script(server, """if header :is "X-Spam-Test" "bin" { discard; stop; }
keep;""")
    send(server, "throw me away", X_Spam_Test="bin")
    send(server, "keep me")
    assert imap.wait("INBOX", "keep me")
    settle(server)
    assert not delivered(server, ALICE, "throw me away", timeout=1)


def test_redirect_and_copy(server: Server, imap: Imap) -> None:
    put_script(server, f"""require "copy";
if header :contains "subject" "for carol" {{ redirect "{CAROL}"; }}
if header :contains "subject" "for bob too" {{ redirect :copy "{BOB}"; }}
""")
    send(server, "this is for carol")
    send(server, "this is for bob too")
    assert delivered(server, CAROL, "this is for carol")
    assert delivered(server, BOB, "this is for bob too")
    assert imap.wait("INBOX", "this is for bob too")
    settle(server)
    assert imap.find("INBOX", "this is for carol") == []


def test_a_redirect_loop_is_stopped(server: Server, imap: Imap) -> None:
    """alice redirects to carol, carol back to alice: the second redirect of the same
    message by alice is a loop (our redirect trace for her is in it), so she keeps it."""
    put_script(server, f'redirect "{CAROL}";')
    put_script(server, f'redirect "{ALICE}";', user=CAROL)
    try:
        send(server, "round and round")
        kept = imap.wait("INBOX", "round and round")
        assert len(kept) == 1
        assert kept[0][1].count(b"(Mailyard Sieve redirect) for <") == 2
        settle(server)
        assert len(imap.find("INBOX", "round and round")) == 1
        assert not delivered(server, CAROL, "round and round", timeout=1)
    finally:
        server.cli("sieve", "deactivate", CAROL)


def test_reject_sends_a_report_to_the_sender(server: Server, imap: Imap) -> None:
    put_script(server, """require ["reject", "ereject"];
if header :contains "subject" "sell" { reject "I do not buy anything."; }
if header :contains "subject" "offer" { ereject "No offers, thanks."; }
""")
    # Sent by bob's account (submission with AUTH): a sender authenticated, so reported to
    # (unauthenticated senders get no report: test_sieve_abuse.py).
    for subject in ("sell you a bridge", "special offer"):
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = BOB, ALICE, subject
        m.set_content("hello\r\n")
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as smtp:
            smtp.login(BOB, PASSWORD)
            smtp.send_message(m, from_addr=BOB, to_addrs=[ALICE])
    bob = Imap(server, BOB)
    try:
        deadline = time.monotonic() + 30
        texts: list[bytes] = []
        while time.monotonic() < deadline and len(texts) < 2:
            bob.conn.select("INBOX", readonly=True)
            typ, data = bob.conn.search(None, "FROM", '"Mail Delivery System"')
            texts = []
            for num in data[0].split():
                _, parts = bob.conn.fetch(num, "(BODY.PEEK[])")
                texts.append(parts[0][1])  # type: ignore[index]
            time.sleep(0.3)
        assert any(b"I do not buy anything." in t and b"5.7.1" in t for t in texts)
        assert any(b"No offers, thanks." in t for t in texts)
    finally:
        bob.close()
    settle(server)
    assert imap.find("INBOX", "sell you a bridge") == []


def test_vacation_replies_once(server: Server) -> None:
    put_script(server, """require "vacation";
vacation :days 3 :subject "Away until Monday" :addresses ["alice@example.test"]
  "I am away; I will answer on Monday.";
""")
    send(server, "are you there", sender=BOB, to=ALICE)
    send(server, "are you there again", sender=BOB, to=ALICE)
    bob = Imap(server, BOB)
    try:
        replies = bob.wait("INBOX", "Away until Monday")
        assert len(replies) == 1
        head = email.message_from_bytes(replies[0][1])
        assert head["Auto-Submitted"] == "auto-replied"
        assert head["In-Reply-To"] and "are.you.there" in head["In-Reply-To"]
        settle(server)
        time.sleep(1)
        assert len(bob.find("INBOX", "Away until Monday")) == 1  # once per sender
    finally:
        bob.close()


def test_vacation_with_discard_still_replies(server: Server, imap: Imap) -> None:
    """RFC 5230 §4.7: vacation goes with discard; nothing is stored, the sender is answered."""
    put_script(server, """require "vacation";
if header :contains "subject" "to the void" {
    vacation :subject "Nobody reads this address" "Write to someone else.";
    discard;
}""")
    send(server, "into the void we go", sender=CAROL, to=ALICE)
    carol = Imap(server, CAROL)
    try:
        assert len(carol.wait("INBOX", "Nobody reads this address")) == 1
    finally:
        carol.close()
    settle(server)
    assert not delivered(server, ALICE, "into the void we go", timeout=1)


def test_envelope_body_variables_and_editheader(server: Server, imap: Imap) -> None:
    imap.create("Invoices")
    imap.create("From-remote.test")
    put_script(server, """require ["envelope", "body", "variables", "fileinto", "editheader",
                   "regex", "relational", "comparator-i;ascii-numeric", "mailbox"];
if body :text :contains "invoice number" {
    addheader "X-Filed-By" "sieve";
    deleteheader "X-Remove-Me";
    fileinto "Invoices";
    stop;
}
if envelope :matches "from" "*@*" {
    set :lower "domain" "${2}";
    fileinto :create "From-${domain}";
}
if header :value "gt" :comparator "i;ascii-numeric" "X-Priority-Level" "5" {
    fileinto :create "Urgent";
}
if header :regex "subject" "^ticket #([0-9]+)$" {
    fileinto :create "Ticket-${1}";
}
""")
    send(server, "your bill", body="Please pay invoice number 42.\r\n", X_Remove_Me="yes")
    send(server, "hello from remote")
    send(server, "ticket #123")
    send(server, "urgent thing", X_Priority_Level="7")
    bill = imap.wait("Invoices", "your bill")
    assert len(bill) == 1
    assert b"X-Filed-By: sieve" in bill[0][1] and b"X-Remove-Me" not in bill[0][1]
    assert imap.wait("From-remote.test", "hello from remote")
    assert imap.wait("Ticket-123", "ticket #123")
    assert imap.wait("Urgent", "urgent thing")


def test_date_and_currentdate(server: Server, imap: Imap) -> None:
    """RFC 5260: the Date field's parts in its own zone, and today's date compared with
    :value; the mailbox name is built from the match."""
    year = time.strftime("%Y", time.gmtime())
    put_script(server, """require ["date", "relational", "fileinto", "mailbox", "variables"];
if date :originalzone :is "date" "year" "1997" {
    if date :originalzone :matches "date" "date" "*" { fileinto :create "Old-${1}"; }
}
if currentdate :zone "+0000" :value "ge" "year" "YEAR" { fileinto :create "This-Year"; }
""".replace("YEAR", year))
    send(server, "from the past", Date="Tue, 1 Apr 1997 09:06:31 -0800")
    assert imap.wait("Old-1997-04-01", "from the past")
    assert imap.wait("This-Year", "from the past")


def test_subaddress_and_duplicate(server: Server, imap: Imap) -> None:
    put_script(server, """require ["subaddress", "envelope", "fileinto", "duplicate", "imap4flags",
                   "mailbox"];
if duplicate { addflag "$Duplicate"; }
if envelope :user "to" "alice" {
    if envelope :detail "to" "news" { fileinto :create "News"; }
}
""")
    send(server, "dup first", Message_ID="<same-id-1@remote.test>")
    assert imap.wait("INBOX", "dup first")
    settle(server)
    send(server, "dup second", Message_ID="<same-id-1@remote.test>")
    second = imap.wait("INBOX", "dup second")
    assert second and b"$duplicate" in second[0][0].lower()
    assert b"$duplicate" not in imap.find("INBOX", "dup first")[0][0].lower()
    send(server, "plus addressed", rcpt="alice+news@example.test")
    assert imap.wait("News", "plus addressed")


def test_a_script_that_runs_too_long_is_stopped_and_the_mail_kept(server: Server,
                                                                   imap: Imap) -> None:
    # The wildcard match backtracks 40 characters per position of a 210 KB body: some 8
    # million steps, over the budget of 1 million.
    put_script(server, """require ["body", "fileinto"];
if body :text :matches "*%sb*" { fileinto "Never"; }
""" % ("a" * 40))
    send(server, "slow body", body=("a" * 70 + "\r\n") * 3000)
    assert imap.wait("INBOX", "slow body")
    # Stopped, not finished: the log says which budget stopped it (no bound on the wall
    # time, which a loaded machine stretches at will).
    log = server.log_path.read_text(errors="replace")
    # 1 million steps take about a second; on a loaded machine the 2 s clock may stop it
    # first, and either budget is the one this test is about.
    assert re.search(r"sieve script 'test' of account \S+ failed.*script stopped after"
                     r" (1000000 steps|2 seconds)", log), log[-3000:]


def test_a_regex_that_runs_too_long_is_stopped(server: Server, imap: Imap) -> None:
    put_script(server, """require ["body", "fileinto", "regex"];
if body :text :regex "(x+x+)+y" { fileinto "Never"; }
""")
    send(server, "slow regex", body=("x" * 900 + "\r\n") * 3)
    assert imap.wait("INBOX", "slow regex")
    log = server.log_path.read_text(errors="replace")
    assert re.search(r"sieve script 'test' of account \S+ failed.*script stopped after 2"
                     r" seconds \(regex", log), log[-3000:]


def test_a_script_with_a_runtime_error_keeps_the_mail(server: Server, imap: Imap) -> None:
    put_script(server, """require ["fileinto", "reject"];
fileinto "Nowhere-At-All";
reject "no";
""")
    send(server, "conflicting actions")
    assert imap.wait("INBOX", "conflicting actions")


def test_cli_errors_are_one_line(server: Server, tmp_path: Path) -> None:
    bad = tmp_path / "bad.sieve"
    bad.write_text('require "fileinto";\nif true {\n  fileinto "x"\n}\n')
    result = server.cli("sieve", "put", ALICE, "broken", str(bad), check=False)
    assert result.returncode == 2
    err = result.stderr.decode().strip()
    assert err.count("\n") == 0 and "line 4" in err, err
    result = server.cli("sieve", "check", ALICE, str(bad), check=False)
    assert result.returncode == 2 and "line 4" in result.stderr.decode()
    result = server.cli("sieve", "activate", ALICE, "no-such-script", check=False)
    assert result.returncode == 2 and "no-such-script" in result.stderr.decode()
    result = server.cli("sieve", "list", "nobody@example.test", check=False)
    assert result.returncode == 2
    good = tmp_path / "good.sieve"
    good.write_text("keep;\n")
    server.cli("sieve", "put", ALICE, "good", str(good), "--activate")
    listing = server.cli("sieve", "list", ALICE).stdout.decode().splitlines()
    assert "* good" in listing
    result = server.cli("sieve", "delete", ALICE, "good", check=False)
    assert result.returncode == 2 and "active" in result.stderr.decode()
    server.cli("sieve", "deactivate", ALICE)
    server.cli("sieve", "delete", ALICE, "good")
    assert server.cli("sieve", "get", ALICE, "test").stdout


def test_a_redirect_to_another_domain_leaves_with_an_srs_sender(tmp_path: Path) -> None:
    """The redirected copy goes by MX to the other domain's server (a loopback aiosmtpd)
    from an SRS address of ours, so that the receiver's SPF check asks our domain."""
    from tests.dnsserver import TestDNS
    from tests.fakemx import FakeMX

    with FakeMX(tmp_path / "mx") as mx, TestDNS({
            ("elsewhere.test", "MX"): ["10 mx.elsewhere.test."],
            ("mx.elsewhere.test", "A"): ["127.0.0.1"]}) as dns:
        srv = Server(tmp_path / "srv", outbound={"port": mx.port, "retry_schedule": [1.0]},
                     dns={"nameservers": [dns.address], "timeout": 2.0})
        srv.add_user(ALICE, PASSWORD)
        srv.start()
        try:
            put_script(srv, 'redirect "friend@elsewhere.test";')
            send(srv, "off to a friend", sender="someone@remote.test")
            [got] = mx.wait(1, timeout=60)
            assert got.recipients == ["friend@elsewhere.test"]
            assert got.mail_from.startswith("SRS0="), got.mail_from
            assert got.mail_from.endswith("@mx.example.test")
            assert b"(Mailyard Sieve redirect) for <alice@example.test>" in got.data
            assert b"Subject: off to a friend" in got.data
            assert not delivered(srv, ALICE, "off to a friend", timeout=1)
        finally:
            srv.stop()


def test_filters_run_in_worker_processes(tmp_path: Path) -> None:
    """With `serve --workers 2` the pipeline runs in other processes than the listeners:
    they read the script ManageSieve's process stored, and answer vacation there."""
    srv = Server(tmp_path / "srv", workers=2)
    for user in (ALICE, BOB):
        srv.add_user(user, PASSWORD)
    srv.start()
    try:
        put_script(srv, """require ["fileinto", "mailbox", "vacation"];
vacation :subject "Auto from a worker" "Away.";
fileinto :create "Filed";""")
        send(srv, "to a worker", sender=BOB, to=ALICE)
        assert delivered(srv, BOB, "Auto from a worker")
        assert any(e.get("subject") == "to a worker" for e in srv.emails(ALICE, label="Filed"))
    finally:
        srv.stop()


def test_imap4flags_relational_count_index_mailbox_and_encoded_character(
        server: Server, imap: Imap) -> None:
    """The extensions the other tests leave out, over SMTP: imap4flags' setflag, removeflag
    and hasflag (RFC 5232), relational :count (RFC 5231) over To and Cc, index's :index
    (RFC 5260 §6: the second X-Hop field), mailbox's mailboxexists (RFC 5490), and
    encoded-character's ${hex:} (RFC 5228 §2.4.2.4) in a key."""
    imap.create("Existing")
    put_script(server, """require ["imap4flags", "relational", "comparator-i;ascii-numeric",
                   "fileinto", "mailbox", "index", "encoded-character"];
setflag ["$one", "$two"];
removeflag "$two";
if hasflag :is "$one" { addflag "$hasone"; }
if hasflag :is "$two" { addflag "$wrong"; }
if header :contains "subject" "${hex:63 72 6f 77 64}" { addflag "$encoded"; }
if address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "3" {
    fileinto :create "Crowd";
}
if header :index 2 :contains "X-Hop" "second" { fileinto :create "Indexed"; }
if header :index 1 :contains "X-Hop" "second" { fileinto :create "Wrong-Index"; }
if mailboxexists "Existing" { fileinto "Existing"; }
if mailboxexists "Missing-Box" { fileinto :create "Wrong-Box"; }
""")
    raw = (f"From: {REMOTE}\r\nTo: {ALICE}, {BOB}\r\nCc: {CAROL}\r\n"
           "Subject: a crowd scene\r\nX-Hop: first\r\nX-Hop: second\r\n"
           f"Message-ID: <crowd.{time.monotonic_ns()}@remote.test>\r\n\r\nhello\r\n")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
        smtp.sendmail(REMOTE, [ALICE], raw)
    for box in ("Crowd", "Indexed", "Existing"):
        [(flags, _)] = imap.wait(box, "a crowd scene")
        low = flags.lower()
        assert b"$one" in low and b"$hasone" in low and b"$encoded" in low, (box, flags)
        assert b"$two" not in low and b"$wrong" not in low, (box, flags)
    settle(server)
    _, boxes = imap.conn.list()
    names = b" ".join(b for b in boxes if isinstance(b, bytes))
    assert b"Wrong-Box" not in names and b"Wrong-Index" not in names, names
    assert imap.find("INBOX", "a crowd scene") == [], "fileinto cancels the implicit keep"


def test_vacation_seconds_answers_again_after_its_period(server: Server) -> None:
    """vacation-seconds (RFC 6131): with :seconds 1 the same sender is answered again once
    the second has passed (the wait is longer than the period, so no race)."""
    put_script(server, """require ["vacation", "vacation-seconds"];
vacation :seconds 1 :subject "Back in a second" "Soon.";
""")
    dora = "dora@example.test"
    server.add_user(dora, PASSWORD)
    send(server, "first knock", sender=dora, to=ALICE)
    reader = Imap(server, dora)
    try:
        assert len(reader.wait("INBOX", "Back in a second")) == 1
        time.sleep(1.5)
        send(server, "second knock", sender=dora, to=ALICE)
        deadline = time.monotonic() + 30
        while len(reader.find("INBOX", "Back in a second")) < 2:
            assert time.monotonic() < deadline, "no second reply after the period"
            time.sleep(0.3)
    finally:
        reader.close()


GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def test_the_script_runs_after_the_spam_placement(server: Server, imap: Imap) -> None:
    """Sieve sees the X-Spam-* fields the pipeline's score added, and `keep` means where
    the spam placement put the message (Junk for spam), not the Inbox."""
    put_script(server, """require ["fileinto", "mailbox"];
if allof (header :contains "X-Spam-Status" "Yes,", header :contains "subject" "sorted") {
    fileinto :create "Spam-Seen";
    stop;
}
keep;
""")
    send(server, "spam sorted", body=f"Buy {GTUBE}\r\n")
    send(server, "spam kept", body=f"Buy {GTUBE}\r\n")
    send(server, "ham kept")
    assert imap.wait("Spam-Seen", "spam sorted")
    assert imap.wait("Junk", "spam kept")
    assert imap.wait("INBOX", "ham kept")
    assert imap.find("INBOX", "spam kept") == [] and imap.find("Junk", "spam sorted") == []


def test_vacation_with_discard_gives_spam_no_reply(server: Server) -> None:
    """A script that answers and discards (RFC 5230 §4.7) answers ham, never spam: the
    spam's sender is most likely forged, and a reply would be backscatter."""
    put_script(server, """require "vacation";
vacation :subject "Discarded but answered" "This address is closed.";
discard;
""")
    erin = "erin@example.test"
    server.add_user(erin, PASSWORD)
    send(server, "closed spam", sender=erin, to=ALICE, body=f"Buy {GTUBE}\r\n")
    send(server, "closed ham", sender=erin, to=ALICE)
    reader = Imap(server, erin)
    try:
        [reply] = reader.wait("INBOX", "Discarded but answered")
        assert b"In-Reply-To: <closed.ham." in reply[1], reply[1][:600]
        settle(server)
        assert len(reader.find("INBOX", "Discarded but answered")) == 1
    finally:
        reader.close()
    assert b"no reply to spam from <erin@example.test>" in server.log_path.read_bytes()


def test_cli_rename_keeps_the_script_active(server: Server, imap: Imap) -> None:
    """`mailyard sieve rename` (RENAMESCRIPT's twin): the active script stays active under
    its new name and goes on filing; a name taken is one line and exit status 2."""
    imap.create("Renamed")
    put_script(server, 'require "fileinto";\nfileinto "Renamed";\n')
    server.cli("sieve", "put", ALICE, "other", "-", input=b"keep;\n")
    out = server.cli("sieve", "rename", ALICE, "test", "renamed").stdout.decode()
    assert "renamed to renamed" in out
    assert "* renamed" in server.cli("sieve", "list", ALICE).stdout.decode().splitlines()
    send(server, "after the rename")
    assert imap.wait("Renamed", "after the rename")
    taken = server.cli("sieve", "rename", ALICE, "renamed", "other", check=False)
    assert taken.returncode == 2 and taken.stderr.decode().count("\n") == 1, taken
    assert "already" in taken.stderr.decode()
    server.cli("sieve", "rename", ALICE, "renamed", "test")
    server.cli("sieve", "delete", ALICE, "other")
