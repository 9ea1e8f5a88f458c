"""The whole inbound path: corpus fidelity, attachment dedup, threading, the DLQ."""

from __future__ import annotations

import os
import re
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.e2e.server import Server
from tests.e2e.smtp_client import RawSMTP
from tests.e2e.test_smtp_inbound import message, send, strip_trace

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpora" / "mime"


def smtplib_wire_form(data: bytes) -> bytes:
    """What smtplib puts on the wire for `data`, un-dot-stuffed: what the server receives."""
    fixed = re.sub(rb"(?:\r\n|\n|\r(?!\n))", b"\r\n", data)
    return fixed if fixed.endswith(b"\r\n") else fixed + b"\r\n"


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file())


def test_corpus_is_present() -> None:
    assert len(corpus_files()) >= 40


def test_every_corpus_message_comes_back_byte_exact(server: Server) -> None:
    """Every corpus message is taken, the Outlook one with lines of up to 11,677 octets too
    (issue 19: lines over RFC 5321's 998 are stored byte-exact, as Postfix takes them)."""
    sent: dict[str, bytes] = {}
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        for n, path in enumerate(corpus_files()):
            wire = smtplib_wire_form(path.read_bytes())
            tag = f"corpus-{n}"
            smtp.sendmail(f"{tag}@remote.test", ["alice@example.test"], wire)
            sent[tag] = wire
    assert any(len(line) > 998 for wire in sent.values() for line in wire.split(b"\r\n"))
    emails = server.wait_emails("alice@example.test", len(sent), timeout=120)
    assert len(emails) == len(sent)
    server.wait_queue_empty()
    assert server.queue_stats()["dead"] == 0
    for email in emails:
        raw = server.raw("alice@example.test", email["id"])
        trace, rest = strip_trace(raw)
        tag = re.search(rb"Return-Path: <(corpus-\d+)@", trace[0])
        assert tag, trace
        assert rest == sent[tag.group(1).decode()], tag.group(1)


def attachment_mail(n: int, payload: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"sender{n}@remote.test"
    msg["To"] = "alice@example.test"
    msg["Subject"] = f"report {n}"
    msg["Message-ID"] = f"<report-{n}@remote.test>"
    msg.set_content(f"Here is the report, copy {n}.\n")
    msg.add_attachment(payload, maintype="application", subtype="octet-stream",
                       filename="report.bin")
    return msg.as_bytes().replace(b"\n", b"\r\n")


@pytest.mark.slow
def test_same_attachment_in_100_mails_is_stored_once(server: Server) -> None:
    payload = os.urandom(5 * 1024 * 1024)
    first = attachment_mail(0, payload)
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        for n in range(100):
            smtp.sendmail(f"sender{n}@remote.test", ["alice@example.test"],
                          first if n == 0 else attachment_mail(n, payload))
    emails = server.wait_emails("alice@example.test", 100, timeout=300)
    assert len(emails) == 100
    server.wait_queue_empty(timeout=300)
    stored = server.blob_bytes()
    # one copy of the 5 MB (decoded) plus 100 small skeletons; no raw spool left behind
    assert len(payload) <= stored < len(payload) + 100 * 20_000, stored
    for email in emails:
        assert email["hasAttachment"]
        [att] = email["attachments"]
        assert att["filename"] == "report.bin" and att["size"] == len(payload)
    [zero] = [e for e in emails if e["subject"] == "report 0"]
    _, rest = strip_trace(server.raw("alice@example.test", zero["id"]))
    assert rest == first


def test_reply_joins_the_parent_thread(server: Server) -> None:
    send(server, message("Lunch", msgid="<lunch@remote.test>"))
    send(server, message("Re: Lunch", msgid="<re-lunch@remote.test>",
                         in_reply_to="<lunch@remote.test>", references="<lunch@remote.test>"))
    send(server, message("Unrelated", msgid="<other@remote.test>"))
    emails = {e["subject"]: e for e in server.wait_emails("alice@example.test", 3)}
    assert emails["Lunch"]["threadId"] == emails["Re: Lunch"]["threadId"]
    assert emails["Unrelated"]["threadId"] != emails["Lunch"]["threadId"]


def test_reply_before_parent_is_merged_when_the_parent_comes(server: Server) -> None:
    # C answers B, which answers A; C arrives first, then A (no link to C yet), then B.
    send(server, message("Re: Re: Plan", msgid="<c@remote.test>", in_reply_to="<b@remote.test>",
                         references="<a@remote.test> <b@remote.test>"))
    server.wait_emails("alice@example.test", 1)
    send(server, message("Plan", msgid="<a@remote.test>"))
    server.wait_emails("alice@example.test", 2)
    send(server, message("Re: Plan", msgid="<b@remote.test>", in_reply_to="<a@remote.test>",
                         references="<a@remote.test>"))
    emails = server.wait_emails("alice@example.test", 3)
    assert len({e["threadId"] for e in emails}) == 1


def test_late_parent_merges_two_threads(server: Server) -> None:
    # X starts a thread; Z replies to the missing Y; then Y (a reply to X) links them.
    send(server, message("Budget", msgid="<x@remote.test>"))
    send(server, message("Numbers", msgid="<z@remote.test>", in_reply_to="<y@remote.test>",
                         references="<y@remote.test>"))
    first = {e["subject"]: e["threadId"] for e in server.wait_emails("alice@example.test", 2)}
    assert first["Budget"] != first["Numbers"]
    send(server, message("Re: Budget", msgid="<y@remote.test>", in_reply_to="<x@remote.test>",
                         references="<x@remote.test>"))
    emails = server.wait_emails("alice@example.test", 3)
    assert len({e["threadId"] for e in emails}) == 1
    assert emails[0]["threadId"] == min(first.values())


def test_poison_mail_goes_to_the_dlq_and_comes_back(tmp_path: Path) -> None:
    """A sender that lies about SIZE gets past RCPT; delivery then meets the quota and fails."""
    srv = Server(tmp_path, queue={"max_attempts": 3, "backoff_base": 0.2, "backoff_max": 0.5})
    srv.add_user("alice@example.test")
    srv.add_user("bob@example.test")
    srv.cli("user", "quota", "bob@example.test", "2K")
    srv.start()
    try:
        smtp = RawSMTP(srv.smtp_port)
        smtp.cmd("EHLO client.remote.test")
        assert smtp.cmd("MAIL FROM:<carol@remote.test> SIZE=100").startswith("250")
        assert smtp.cmd("RCPT TO:<alice@example.test>").startswith("250")
        assert smtp.cmd("RCPT TO:<bob@example.test>").startswith("250")
        smtp.cmd("DATA")
        smtp.send(b"Subject: heavy\r\nMessage-ID: <heavy@remote.test>\r\n\r\n"
                  + (b"w" * 70 + b"\r\n") * 100 + b".\r\n")
        reply = smtp.reply()
        assert reply.startswith("250 2.0.0 OK queued as ")
        queue_id = reply.rsplit(" ", 1)[1]
        smtp.close()
        deadline = time.monotonic() + 60
        while srv.queue_stats()["dead"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        listing = srv.cli("dlq", "list").stdout.decode()
        assert queue_id in listing and "QuotaExceeded" in listing, listing
        shown = srv.cli("dlq", "show", queue_id).stdout.decode()
        assert "attempts: 3" in shown and "bob@example.test" in shown
        # alice got hers on the first attempt; retries never duplicated it
        assert [e["subject"] for e in srv.emails("alice@example.test")] == ["heavy"]
        assert srv.emails("bob@example.test") == []
        srv.cli("user", "quota", "bob@example.test", "1M")
        assert "1 item(s)" in srv.cli("dlq", "retry", queue_id).stdout.decode()
        [bobs] = srv.wait_emails("bob@example.test", 1)
        assert bobs["subject"] == "heavy"
        srv.wait_queue_empty()
        assert srv.queue_stats()["dead"] == 0
        assert len(srv.emails("alice@example.test")) == 1
        assert "empty" in srv.cli("dlq", "list").stdout.decode()
        assert srv.cli("dlq", "drop", queue_id, check=False).returncode == 2  # no such item
    finally:
        srv.stop()
