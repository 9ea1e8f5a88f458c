"""Lines longer than RFC 5321's 998 octets (issue 19): taken by SMTP, inbound and on submission,
stored byte-exact, and served as they came over IMAP, POP3 and export; only a line over
`[limits] smtp_line_octets` is refused, with 500 5.5.2 naming the limit."""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
from pathlib import Path

import pytest

from mailyard.config import Limits
from mailyard.core.mailformats import iter_mbox
from tests.e2e.server import Server
from tests.e2e.smtp_client import RawSMTP
from tests.e2e.test_smtp_inbound import strip_trace
from tests.e2e.test_store_path import smtplib_wire_form

PASSWORD = "secret-password"
CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpora" / "mime"


def long_line_message(subject: str, octets: int = 5000) -> bytes:
    """A message whose body has one line of `octets` octets (no CRLF counted), of varied text
    so that a cut or a re-wrap anywhere shows."""
    words = b" ".join(b"w%05d" % n for n in range(octets // 7 + 1))
    line = words[:octets]
    assert len(line) == octets
    return (b"From: Carol <carol@remote.test>\r\nTo: alice@example.test\r\n"
            b"Subject: " + subject.encode() + b"\r\nMessage-ID: <" + subject.encode()
            + b"@remote.test>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\n"
            b"before\r\n" + line + b"\r\nafter\r\n")


def imap_fetch(server: Server, address: str, subject: str) -> tuple[bytes, int]:
    """BODY[] and RFC822.SIZE of the message with `subject`, found by subject."""
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as imap:
        imap.login(address, PASSWORD)
        imap.select("INBOX", readonly=True)
        _, found = imap.uid("SEARCH", "HEADER", "Subject", subject)
        [uid] = found[0].split()
        _, data = imap.uid("FETCH", uid, "(RFC822.SIZE BODY.PEEK[])")
    head, body = data[0]
    assert isinstance(head, bytes) and isinstance(body, bytes)
    size = re.search(rb"RFC822\.SIZE (\d+)", head)
    assert size, head
    return body, int(size.group(1))


def pop3_messages(server: Server, address: str, monkeypatch: pytest.MonkeyPatch
                  ) -> list[tuple[int, bytes]]:
    """(LIST size, RETR octets) of every message. Python's poplib refuses lines over 2048
    octets of its own accord (its _MAXLINE): raised here, as other POP3 clients have no
    such bound."""
    monkeypatch.setattr(poplib, "_MAXLINE", 1 << 20)
    pop = poplib.POP3("127.0.0.1", server.pop3_port, timeout=60)
    try:
        pop.user(address)
        pop.pass_(PASSWORD)
        _, listing, _ = pop.list()
        out = []
        for entry in listing:
            number, size = entry.split()
            _, lines, octets = pop.retr(int(number))
            raw = b"".join(line + b"\r\n" for line in lines)  # poplib undoes the stuffing
            assert octets == len(raw)
            out.append((int(size), raw))
        return out
    finally:
        pop.quit()


def test_a_5000_octet_line_comes_back_byte_exact_everywhere(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inbound = long_line_message("inbound-long")
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail("carol@remote.test", ["alice@example.test"], inbound)
    submitted = long_line_message("submitted-long", 7000).replace(
        b"From: Carol <carol@remote.test>", b"From: Bob <bob@example.test>")
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60) as smtp:
        smtp.login("bob@example.test", PASSWORD)
        smtp.sendmail("bob@example.test", ["alice@example.test"], submitted)
    server.wait_emails("alice@example.test", 2)
    server.wait_queue_empty()
    stored = sorted(server.raws("alice@example.test").values(), key=len)
    assert strip_trace(stored[0])[1] == inbound
    # Submission puts only its Received field in front (no Return-Path until delivery).
    assert stored[1].startswith(b"Received: ") and stored[1].endswith(b"\r\n" + submitted)

    for raw, subject in zip(stored, ["inbound-long", "submitted-long"], strict=True):
        body, size = imap_fetch(server, "alice@example.test", subject)
        assert body == raw and size == len(raw)
    assert sorted(pop3_messages(server, "alice@example.test", monkeypatch)) == sorted(
        (len(raw), raw) for raw in stored)

    server.cli("export", "alice@example.test", str(tmp_path / "out"), "--format", "maildir")
    exported = sorted((p.read_bytes() for p in (tmp_path / "out").rglob("cur/*")), key=len)
    assert exported == stored
    server.cli("export", "alice@example.test", str(tmp_path / "out.mbox"))
    from_mbox = sorted((m.raw for m in iter_mbox((tmp_path / "out.mbox").read_bytes())),
                       key=len)
    assert from_mbox == stored


def test_the_outlook_corpus_message_is_taken_byte_exact(server: Server) -> None:
    """The corpus's "Outlook message" (an Outlook .msg file, mailed as it is: binary octets
    with lines of up to 11,677 octets between its line-break bytes)."""
    wire = smtplib_wire_form((CORPUS / "spamscope" / "mail_outlook_1").read_bytes())
    assert max(len(line) for line in wire.split(b"\r\n")) > 10_000
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail("carol@remote.test", ["alice@example.test"], wire)
    [email] = server.wait_emails("alice@example.test", 1)
    assert strip_trace(server.raw("alice@example.test", email["id"]))[1] == wire


def test_the_default_limit_is_exact_and_counts_no_transparency_dot(server: Server) -> None:
    limit = Limits.smtp_line_octets
    smtp = RawSMTP(server.smtp_port)
    assert smtp.cmd("EHLO client.remote.test").startswith("250")
    for subject, line, reply in [
        ("over", b"x" * (limit + 1), "500 5.5.2"),
        ("dotted-over", b"." + b"x" * limit, "500 5.5.2"),  # limit + 2 on the wire
        ("at", b"y" * limit, "250 2.0.0"),
        ("dotted-at", b"." + b"y" * (limit - 1), "250 2.0.0"),  # limit + 1 on the wire
    ]:
        assert smtp.cmd("MAIL FROM:<carol@remote.test>").startswith("250")
        assert smtp.cmd("RCPT TO:<alice@example.test>").startswith("250")
        assert smtp.cmd("DATA").startswith("354")
        stuffed = b"." + line if line.startswith(b".") else line
        smtp.send(b"Subject: " + subject.encode() + b"\r\n\r\n" + stuffed + b"\r\n.\r\n")
        answer = smtp.reply()
        assert answer.startswith(reply), (subject, answer)
        if reply.startswith("500"):
            assert f"at most {limit} octets per line" in answer
    assert smtp.cmd("QUIT").startswith("221")
    smtp.close()
    emails = server.wait_emails("alice@example.test", 2)
    bodies = {e["subject"]: strip_trace(server.raw("alice@example.test", e["id"]))[1]
              for e in emails}
    assert bodies == {"at": b"Subject: at\r\n\r\n" + b"y" * limit + b"\r\n",
                      "dotted-at": b"Subject: dotted-at\r\n\r\n." + b"y" * (limit - 1)
                      + b"\r\n"}


def test_a_configured_limit_is_applied_on_both_listeners(tmp_path: Path) -> None:
    srv = Server(tmp_path, limits={"smtp_line_octets": 4096})
    srv.add_user("alice@example.test")
    srv.start()
    try:
        for port, login in ((srv.smtp_port, False), (srv.submission_port, True)):
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
                if login:
                    smtp.login("alice@example.test", PASSWORD)
                sender = "alice@example.test" if login else "carol@remote.test"

                def mail(subject: str, octets: int, sender: str = sender) -> bytes:
                    return long_line_message(subject, octets).replace(
                        b"carol@remote.test", sender.encode())

                smtp.sendmail(sender, ["alice@example.test"], mail(f"fits-{port}", 4096))
                with pytest.raises(smtplib.SMTPDataError) as refused:
                    smtp.sendmail(sender, ["alice@example.test"], mail(f"over-{port}", 4097))
                assert refused.value.smtp_code == 500
                assert b"5.5.2" in refused.value.smtp_error
                assert b"at most 4096 octets per line" in refused.value.smtp_error
        srv.wait_queue_empty()
        subjects = {e["subject"] for e in srv.emails("alice@example.test")}
        assert {f"fits-{srv.smtp_port}", f"fits-{srv.submission_port}"} <= subjects
        assert not any(s.startswith("over-") for s in subjects)
    finally:
        srv.stop()
