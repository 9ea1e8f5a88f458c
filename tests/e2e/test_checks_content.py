"""Inbound checks, layers 3 and 4, end to end: real mail over SMTP to a real `mailyard serve`,
read and corrected over IMAP (imaplib), viruses scanned by a real clamd on loopback.

Layer 3: GTUBE lands in Junk (or is refused when a reject threshold is set); EICAR in a zip
attachment is quarantined (dead-letter queue, "virus: NAME") and never reaches a mailbox.
Layer 4 (IMAP MOVE, IMAP STORE $NotJunk, JMAP Email/set mailboxIds): a user moving mail into
Junk teaches that user's model (the next similar mail goes to Junk), moving it out allow-lists
the sender (their next mail reaches the Inbox even if it is GTUBE), and several users reporting
one sender raise its score for everyone.
"""

from __future__ import annotations

import base64
import email
import imaplib
import io
import json
import re
import shutil
import smtplib
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.jmapclient import Jmap
from tests.e2e.server import ROOT, Server, free_port, wait_port

PASSWORD = "secret-password"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def make_server(tmp_path: Path, users: tuple[str, ...] = ("alice@example.test",),
                **spam: Any) -> Server:
    """A server whose authentication layer is off (no DNS here) and whose [spam] table is
    `spam`, appended to the config the harness writes."""
    srv = Server(tmp_path, checks={"authenticate": False})
    toml = "".join(f"{k} = {v!r}\n".replace("'", '"') if isinstance(v, str)
                   else f"{k} = {str(v).lower() if isinstance(v, bool) else v}\n"
                   for k, v in spam.items())
    srv.config_path.write_text(srv.config_path.read_text() + "[spam]\n" + toml)
    for user in users:
        srv.add_user(user, PASSWORD)
    srv.start()
    return srv


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = make_server(tmp_path)
    yield srv
    srv.stop()


def message(sender: str, subject: str, body: str, to: str = "alice@example.test") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: Sun, 29 Nov 2026 07:00:00 +0000\r\n"
            f"Message-ID: <{time.monotonic_ns()}@{sender.rpartition('@')[2]}>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{body}\r\n").encode()


def send(server: Server, sender: str, raw: bytes, to: str = "alice@example.test") -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, local_hostname="mail.sender.test",
                      timeout=30) as s:
        s.sendmail(sender, [to], raw)


class Mail:
    """One user's IMAP session (imaplib, UID commands)."""

    def __init__(self, server: Server, user: str = "alice@example.test") -> None:
        self.imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
        self.imap.login(user, PASSWORD)

    def __enter__(self) -> Mail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.imap.logout()

    def uids(self, mailbox: str) -> list[bytes]:
        typ, _ = self.imap.select(mailbox)
        assert typ == "OK"
        _, data = self.imap.uid("SEARCH", "ALL")
        return data[0].split()

    def wait(self, mailbox: str, count: int, timeout: float = 60.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            uids = self.uids(mailbox)
            if len(uids) >= count or time.monotonic() > deadline:
                return uids
            time.sleep(0.1)

    def subjects(self, mailbox: str) -> dict[str, bytes]:
        """Subject -> UID of every message in `mailbox`."""
        uids = self.uids(mailbox)
        if not uids:
            return {}
        _, data = self.imap.uid("FETCH", b",".join(uids),
                                "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        found: dict[str, bytes] = {}
        for part in data:
            if isinstance(part, tuple):
                uid = re.search(rb"UID (\d+)", part[0])
                assert uid, part
                found[str(email.message_from_bytes(part[1])["Subject"])] = uid.group(1)
        return found

    def find(self, subject: str, timeout: float = 60.0) -> tuple[str, bytes]:
        """Where the message with this Subject was delivered (INBOX or Junk) and its UID, once
        it is there. By subject: the pipeline delivers concurrently, so neither the order of
        arrival nor the UIDs follow the order of sending."""
        deadline = time.monotonic() + timeout
        while True:
            for mailbox in ("INBOX", "Junk"):
                uid = self.subjects(mailbox).get(subject)
                if uid is not None:
                    return mailbox, uid
            assert time.monotonic() < deadline, f"{subject!r} not delivered in {timeout} s"
            time.sleep(0.1)

    def fetch(self, mailbox: str, uid: bytes) -> Message:
        self.uids(mailbox)
        _, parts = self.imap.uid("FETCH", uid, "(BODY.PEEK[])")
        return email.message_from_bytes(parts[0][1])

    def flags(self, mailbox: str, uid: bytes) -> str:
        self.uids(mailbox)
        _, data = self.imap.uid("FETCH", uid, "(FLAGS)")
        return str(data[0]).lower()

    def wait_flag(self, mailbox: str, flag: str, timeout: float = 60.0) -> None:
        """Until every message of `mailbox` has `flag`: the trainer sets $Junk / $NotJunk
        once it has learnt the lesson."""
        deadline = time.monotonic() + timeout
        while True:
            uids = self.uids(mailbox)
            if uids and all(flag.lower() in self.flags(mailbox, u) for u in uids):
                return
            assert time.monotonic() < deadline, f"no {flag} in {mailbox} after {timeout} s"
            time.sleep(0.1)

    def move(self, source: str, uid: bytes, target: str) -> None:
        self.uids(source)
        typ, data = self.imap.uid("MOVE", uid, target)
        assert typ == "OK", data


SPAMMY = ("Cheap replica watches and designer handbags, 90% off, limited offer. Click to"
          " claim your discount voucher now, free shipping worldwide, order today.")
HAMMY = ("Hi, the project review meeting moves to Thursday afternoon. Please bring the"
         " draft agenda and your notes on the quarterly schedule. Thanks, team lead")


# ------------------------------------------------------------------ layer 3


def test_gtube_goes_to_junk_and_clean_mail_to_inbox(server: Server) -> None:
    send(server, "friend@sender.test", message("friend@sender.test", "Lunch", HAMMY))
    send(server, "bulk@sender.test", message("bulk@sender.test", "Test", f"test {GTUBE}"))
    with Mail(server) as mail:
        box, junk = mail.find("Test")
        assert box == "Junk"
        box, inbox = mail.find("Lunch")
        assert box == "INBOX"
        spam = mail.fetch("Junk", junk)
        assert "GTUBE" in spam["X-Spam-Status"] and spam["X-Spam-Status"].startswith("Yes")
        assert float(spam["X-Spam-Score"]) >= 1000
        clean = mail.fetch("INBOX", inbox)
        assert clean["Subject"] == "Lunch"
        assert clean["X-Spam-Status"].startswith("No")


def test_gtube_refused_at_data_with_a_reject_threshold(tmp_path: Path) -> None:
    srv = make_server(tmp_path, reject_threshold=100.0)
    try:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(srv, "bulk@sender.test", message("bulk@sender.test", "Test", f"x {GTUBE}"))
        assert refused.value.smtp_code == 550
        assert b"5.7.1" in refused.value.smtp_error
        send(srv, "friend@sender.test", message("friend@sender.test", "Lunch", HAMMY))
        with Mail(srv) as mail:
            assert len(mail.wait("INBOX", 1)) == 1
            assert mail.uids("Junk") == []
    finally:
        srv.stop()


class _Rspamd(BaseHTTPRequestHandler):
    """Stands in for an rspamd server: answers /checkv2 with a score read from the message
    (9.5 for "replica", else -1), 500 for "crash"; keeps what it was sent."""

    seen: list[tuple[str, dict[str, list[str]], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers: dict[str, list[str]] = {}
        for key, value in self.headers.items():
            headers.setdefault(key.lower(), []).append(value)
        self.seen.append((self.path, headers, body))
        if b"crash" in body:
            self.send_response(500)
            self.end_headers()
            return
        score = 9.5 if b"replica" in body.lower() else -1.0
        answer = json.dumps({"score": score, "required_score": 15, "action": "add header",
                             "symbols": {"FAKE": {"name": "FAKE", "score": score}}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def rspamd() -> Iterator[tuple[str, list[tuple[str, dict[str, list[str]], bytes]]]]:
    seen: list[tuple[str, dict[str, list[str]], bytes]] = []
    handler = type("Handler", (_Rspamd,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def test_rspamd_score_counts_when_configured(
        tmp_path: Path, rspamd: tuple[str, list[tuple[str, dict[str, list[str]], bytes]]]
) -> None:
    url, seen = rspamd
    srv = make_server(tmp_path, rspamd_url=url)
    try:
        send(srv, "deals@shop.test", message("deals@shop.test", "Watches", SPAMMY))
        send(srv, "lead@work.test", message("lead@work.test", "Review", HAMMY))
        send(srv, "lead@work.test", message("lead@work.test", "Oops", "crash " + HAMMY))
        with Mail(srv) as mail:
            box, junk = mail.find("Watches")
            assert box == "Junk"
            status = mail.fetch("Junk", junk)["X-Spam-Status"]
            assert "RSPAMD" in status and status.startswith("Yes")
            # rspamd's -1 and rspamd failing: both delivered
            box, review = mail.find("Review")
            assert box == "INBOX"
            status = mail.fetch("INBOX", review)["X-Spam-Status"]
            assert "RSPAMD" in status and "RSPAMD_FAIL" not in status, status
            box, oops = mail.find("Oops")
            assert box == "INBOX"
            assert "RSPAMD_FAIL" in mail.fetch("INBOX", oops)["X-Spam-Status"]
            assert len(mail.uids("INBOX")) == 2 and len(mail.uids("Junk")) == 1
        # The pipeline asks rspamd concurrently too: its request found by subject.
        [(path, headers, body)] = [s for s in seen if b"Subject: Watches" in s[2]]
        assert path == "/checkv2"
        assert headers["from"] == ["deals@shop.test"]
        assert headers["rcpt"] == ["alice@example.test"]
        assert headers["ip"] == ["127.0.0.1"]
        assert headers["helo"] == ["mail.sender.test"]
        assert b"Subject: Watches" in body
    finally:
        srv.stop()


# ------------------------------------------------------------------ layer 4


def test_moving_to_junk_trains_and_the_next_similar_mail_goes_to_junk(tmp_path: Path) -> None:
    srv = make_server(tmp_path, min_spam=1, min_ham=1)
    try:
        send(srv, "lead@work.test", message("lead@work.test", "Review meeting", HAMMY))
        send(srv, "deals@shop.test", message("deals@shop.test", "Replica watches", SPAMMY))
        with Mail(srv) as mail:
            box, ham_uid = mail.find("Review meeting")
            assert box == "INBOX"
            box, spam_uid = mail.find("Replica watches")
            assert box == "INBOX"  # nothing learnt yet: both in the Inbox
            mail.uids("INBOX")
            mail.imap.uid("STORE", ham_uid, "+FLAGS", "($NotJunk)")
            mail.move("INBOX", spam_uid, "Junk")
            mail.wait_flag("Junk", "$Junk")
            mail.wait_flag("INBOX", "$NotJunk")

            # Another shop, the same kind of offer; another colleague, the same kind of note.
            send(srv, "offers@outlet.test", message(
                "offers@outlet.test", "Designer handbags", SPAMMY.replace("90%", "85%")))
            box, junk = mail.find("Designer handbags")
            assert box == "Junk"
            assert mail.fetch("Junk", junk)["From"] == "offers@outlet.test"
            send(srv, "pm@work.test", message("pm@work.test", "Agenda", HAMMY.replace(
                "Thursday", "Friday")))
            box, agenda = mail.find("Agenda")
            assert box == "INBOX"
            assert mail.fetch("INBOX", agenda)["From"] == "pm@work.test"
            assert len(mail.uids("Junk")) == 2 and len(mail.uids("INBOX")) == 2
    finally:
        srv.stop()


def test_moving_out_of_junk_lets_the_senders_next_mail_in(server: Server) -> None:
    send(server, "friend@sender.test", message("friend@sender.test", "Test 1", f"x {GTUBE}"))
    with Mail(server) as mail:
        box, uid = mail.find("Test 1")
        assert box == "Junk"
        mail.move("Junk", uid, "INBOX")
        mail.wait_flag("INBOX", "$NotJunk")

        send(server, "friend@sender.test", message("friend@sender.test", "Test 2",
                                                    f"again {GTUBE}"))
        assert mail.find("Test 2")[0] == "INBOX"
        # Someone else sending the same is still Junk: the allow list is the sender's.
        send(server, "other@sender.test", message("other@sender.test", "Test 3", f"x {GTUBE}"))
        assert mail.find("Test 3")[0] == "Junk"
        assert len(mail.uids("INBOX")) == 2 and len(mail.uids("Junk")) == 1


def test_many_users_reporting_a_sender_raise_its_score(tmp_path: Path) -> None:
    users = tuple(f"u{n}@example.test" for n in range(4))
    srv = make_server(tmp_path, users, collab_reporters=3, collab_score=6.0)
    try:
        for user in users[:3]:
            send(srv, "blast@bulk.test", message("blast@bulk.test", "News", HAMMY, to=user),
                 to=user)
            with Mail(srv, user) as mail:
                [uid] = mail.wait("INBOX", 1)
                mail.move("INBOX", uid, "Junk")
                mail.wait_flag("Junk", "$Junk")
        send(srv, "blast@bulk.test", message("blast@bulk.test", "News", "Other words.",
                                             to=users[3]), to=users[3])
        with Mail(srv, users[3]) as mail:
            box, uid = mail.find("News")
            assert box == "Junk"
            assert "COLLAB_SENDER" in mail.fetch("Junk", uid)["X-Spam-Status"]
            assert mail.uids("INBOX") == []
    finally:
        srv.stop()


# ------------------------------------------------------------------ viruses


@pytest.fixture
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A clamd on loopback with an EICAR-only signature database; its TCP address."""
    if shutil.which("clamd") is None:
        subprocess.run([str(ROOT / "scripts" / "test-deps.sh")], check=False)
    if shutil.which("clamd") is None:
        pytest.skip("the clamav-daemon package could not be installed")
    directory = tmp_path_factory.mktemp("clamd")
    port = free_port()
    log = (directory / "out.log").open("wb")
    proc = subprocess.Popen([str(ROOT / "scripts" / "clamd-up.sh"), str(directory), str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, timeout=60)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def eicar_mail() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("readme.com", EICAR)
    data = base64.encodebytes(buf.getvalue()).decode().replace("\n", "\r\n")
    return ("From: mallory@sender.test\r\nTo: alice@example.test\r\nSubject: invoice\r\n"
            "Date: Sun, 29 Nov 2026 07:00:00 +0000\r\nMessage-ID: <eicar@sender.test>\r\n"
            'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain\r\n\r\nPlease see the invoice.\r\n"
            '--b\r\nContent-Type: application/zip; name="invoice.zip"\r\n'
            "Content-Transfer-Encoding: base64\r\n"
            'Content-Disposition: attachment; filename="invoice.zip"\r\n\r\n'
            f"{data}--b--\r\n").encode()


def test_eicar_in_a_zip_is_quarantined(tmp_path: Path, clamd: str) -> None:
    srv = make_server(tmp_path, clamd=clamd)
    try:
        send(srv, "mallory@sender.test", eicar_mail())  # accepted: 250, then quarantined
        send(srv, "friend@sender.test", message("friend@sender.test", "Lunch", HAMMY))
        deadline = time.monotonic() + 60
        while "virus:" not in (out := srv.cli("dlq", "list").stdout.decode()):
            assert time.monotonic() < deadline, out
            time.sleep(0.2)
        assert "virus: Local.EICAR" in out
        assert "alice@example.test" in out
        with Mail(srv) as mail:
            assert mail.find("Lunch")[0] == "INBOX"  # scanned clean, delivered
            assert len(mail.uids("INBOX")) == 1 and mail.uids("Junk") == []
    finally:
        srv.stop()


def test_a_virus_for_a_remote_forward_is_quarantined_not_dropped(tmp_path: Path,
                                                                   clamd: str) -> None:
    """An alias that only forwards to another domain: the infected message is neither
    forwarded nor lost after its 250, it waits in quarantine under the alias's address (the
    security review found it dropped with one log line)."""
    srv = make_server(tmp_path, clamd=clamd)
    try:
        srv.cli("alias", "add", "fwd@example.test", "someone@remote.test")
        send(srv, "mallory@sender.test", eicar_mail(), to="fwd@example.test")
        deadline = time.monotonic() + 60
        while "virus:" not in (out := srv.cli("dlq", "list").stdout.decode()):
            assert time.monotonic() < deadline, out
            time.sleep(0.2)
        assert "virus: Local.EICAR" in out and "fwd@example.test" in out, out
        assert "the queue is empty" in srv.cli("queue", "list").stdout.decode(), \
            "nothing waits to be forwarded"
    finally:
        srv.stop()


def test_unreachable_clamd_is_a_temporary_failure(tmp_path: Path) -> None:
    srv = make_server(tmp_path, clamd=f"127.0.0.1:{free_port()}", clamd_timeout=2.0)
    try:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(srv, "friend@sender.test", message("friend@sender.test", "Lunch", HAMMY))
        assert refused.value.smtp_code == 451
    finally:
        srv.stop()


def test_jmap_move_out_of_junk_lets_the_senders_next_mail_in(server: Server) -> None:
    send(server, "friend@sender.test", message("friend@sender.test", "Test 1", f"x {GTUBE}"))
    with Mail(server) as mail:
        assert mail.find("Test 1")[0] == "Junk"
    jmap = Jmap(server, "alice@example.test")
    boxes = jmap.boxes()
    [email_id] = jmap.call("Email/query", filter={"inMailbox": boxes["junk"]["id"]})["ids"]
    updated = jmap.call("Email/set", update={email_id: {
        "mailboxIds": {boxes["inbox"]["id"]: True}}})["updated"]
    assert email_id in updated
    deadline = time.monotonic() + 60
    while "$notjunk" not in (keywords := jmap.call("Email/get", ids=[email_id],
                                                   properties=["keywords"])["list"][0]
                              ["keywords"]):
        assert time.monotonic() < deadline, keywords
        time.sleep(0.1)
    assert "$junk" not in keywords

    send(server, "friend@sender.test", message("friend@sender.test", "Test 2", f"x {GTUBE}"))
    with Mail(server) as mail:
        assert mail.find("Test 2")[0] == "INBOX"
        assert len(mail.uids("INBOX")) == 2 and mail.uids("Junk") == []
