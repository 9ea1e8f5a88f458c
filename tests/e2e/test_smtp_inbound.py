"""SMTP inbound against the real listener, with smtplib, swaks and a raw socket."""

from __future__ import annotations

import re
import smtplib
import ssl
import subprocess
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.e2e.server import Server
from tests.e2e.smtp_client import RawSMTP

CRLF = b"\r\n"


def message(subject: str, *, msgid: str | None = None, body: str = "Hello there.\n",
            in_reply_to: str | None = None, references: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Carol Sender <carol@remote.test>"
    msg["To"] = "Alice <alice@example.test>"
    msg["Subject"] = subject
    msg["Date"] = "Sat, 28 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = msgid or f"<{subject.replace(' ', '-')}@remote.test>"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    msg.set_content(body)
    return msg.as_bytes().replace(b"\n", CRLF)


def send(server: Server, data: bytes, to: str = "alice@example.test") -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail("carol@remote.test", [to], data)


def strip_trace(raw: bytes) -> tuple[list[bytes], bytes]:
    """Our Return-Path and Received header (and the fields the inbound checks add under them:
    Authentication-Results, X-Spam-*), and the octets after them."""
    m = re.match(rb"Return-Path: <[^>]*>\r\nReceived: [^\r]*\r\n(?:\t[^\r]*\r\n)*"
                 rb"(?:(?:Authentication-Results: mx\.example\.test;|X-Spam-[A-Za-z-]+:)"
                 rb"[^\r]*\r\n(?:[ \t][^\r]*\r\n)*)*", raw)
    assert m, raw[:300]
    return m.group(0).split(CRLF), raw[m.end():]


def test_ehlo_advertises_the_mx_extensions(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        code, _ = smtp.ehlo("client.remote.test")
        assert code == 250
        for ext in ("pipelining", "8bitmime", "smtputf8", "enhancedstatuscodes", "starttls"):
            assert smtp.has_extn(ext), ext
        assert smtp.esmtp_features["size"] == "36700160"
        assert not smtp.has_extn("auth"), "the MX role must not offer AUTH"


def test_delivered_mail_is_stored_with_metadata_and_byte_exact(server: Server) -> None:
    data = message("Quarterly report", body="Numbers are up.\n")
    send(server, data)
    [email] = server.wait_emails("alice@example.test", 1)
    assert email["subject"] == "Quarterly report"
    assert email["from"] == [{"name": "Carol Sender", "email": "carol@remote.test"}]
    assert email["to"] == [{"name": "Alice", "email": "alice@example.test"}]
    assert email["messageId"] == "Quarterly-report@remote.test"
    assert list(email["mailboxes"]) == ["INBOX", "All Mail"]
    assert email["mailboxes"]["INBOX"] == 1
    assert email["preview"].startswith("Numbers are up.")
    assert email["threadId"].startswith("t")
    trace, rest = strip_trace(server.raw("alice@example.test", email["id"]))
    assert rest == data
    assert b"by mx.example.test (Mailyard) with ESMTP" in CRLF.join(trace)
    assert trace[0] == b"Return-Path: <carol@remote.test>"
    assert email["size"] == len(CRLF.join(trace)) + len(data)
    assert server.emails("bob@example.test") == []


def test_starttls_with_smtplib_and_swaks(server: Server) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.starttls(context=context)
        smtp.ehlo("client.remote.test")
        assert not smtp.has_extn("starttls")
        smtp.sendmail("carol@remote.test", ["alice@example.test"], message("over tls"))
    out = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{server.smtp_port}", "--tls", "--from",
         "dave@remote.test", "--to", "bob@example.test", "--header", "Subject: from swaks",
         "--body", "swaks body"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "250 2.0.0 OK queued as q" in out.stdout
    emails = server.wait_emails("alice@example.test", 1)
    raw = server.raw("alice@example.test", emails[0]["id"])
    assert b"with ESMTPS id" in raw
    [swaks] = server.wait_emails("bob@example.test", 1)
    assert swaks["subject"] == "from swaks"


def test_recipient_rules(server: Server) -> None:
    smtp = RawSMTP(server.smtp_port)
    assert smtp.greeting.startswith("220 mx.example.test")
    assert smtp.cmd("EHLO client.remote.test").startswith("250")
    assert smtp.cmd("MAIL FROM:<carol@remote.test>").startswith("250 2.1.0")
    assert smtp.cmd("RCPT TO:<victim@elsewhere.test>").startswith("550 5.7.1")
    assert smtp.cmd("RCPT TO:<nobody@example.test>").startswith("550 5.1.1")
    assert smtp.cmd("RCPT TO:<Alice@Example.TEST>").startswith("250 2.1.5")
    assert smtp.cmd("DATA").startswith("354")
    smtp.send(b"Subject: mixed case rcpt\r\n\r\nhi\r\n.\r\n")
    assert smtp.reply().startswith("250 2.0.0")
    assert smtp.cmd("QUIT").startswith("221")
    smtp.close()
    [email] = server.wait_emails("alice@example.test", 1)
    assert email["subject"] == "mixed case rcpt"


def test_open_relay_refused_with_smtplib(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp, \
            pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        smtp.sendmail("carol@remote.test", ["someone@gmail.com"], message("relay"))
    code, text = refused.value.recipients["someone@gmail.com"]
    assert code == 550 and text.startswith(b"5.7.1")
    server.wait_queue_empty()
    assert server.queue_stats()["dead"] == 0


SMUGGLING = [
    b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\n.\r",
]


@pytest.mark.parametrize("end", SMUGGLING, ids=[repr(e) for e in SMUGGLING])
def test_bare_lf_smuggling_does_not_split_a_message(server: Server, end: bytes) -> None:
    smtp = RawSMTP(server.smtp_port)
    smtp.cmd("EHLO client.remote.test")
    smtp.cmd("MAIL FROM:<carol@remote.test>")
    smtp.cmd("RCPT TO:<alice@example.test>")
    assert smtp.cmd("DATA").startswith("354")
    smuggled = (b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
                b"Subject: smuggled\r\n\r\nevil\r\n")
    smtp.send(b"Subject: outer\r\n\r\nfirst part" + end + smuggled + b".\r\n")
    assert smtp.reply().startswith("250 2.0.0")
    assert smtp.cmd("QUIT").startswith("221")
    smtp.close()
    [email] = server.wait_emails("alice@example.test", 1)
    assert email["subject"] == "outer"
    _, rest = strip_trace(server.raw("alice@example.test", email["id"]))
    assert b"Subject: smuggled" in rest
    server.wait_queue_empty()
    assert server.emails("bob@example.test") == []
    assert len(server.emails("alice@example.test")) == 1


def test_long_line_and_size_limits(server: Server) -> None:
    smtp = RawSMTP(server.smtp_port)
    smtp.cmd("EHLO client.remote.test")
    assert smtp.cmd("MAIL FROM:<carol@remote.test> SIZE=99999999999").startswith("552 5.3.4")
    assert smtp.cmd("MAIL FROM:<carol@remote.test> SIZE=1000").startswith("250")
    smtp.cmd("RCPT TO:<alice@example.test>")
    smtp.cmd("DATA")
    # Over the line limit ([limits] smtp_line_octets, 1 MiB): refused, naming the limit.
    smtp.send(b"Subject: long\r\n\r\n" + b"x" * (1 << 20) + b"x\r\n.\r\n")
    assert smtp.reply().startswith("500 5.5.2 Line too long: at most 1048576 octets")
    # the session goes on, and a line over RFC 5321's 998 gets through (as Postfix takes it)
    assert smtp.cmd("MAIL FROM:<carol@remote.test>").startswith("250")
    smtp.cmd("RCPT TO:<alice@example.test>")
    smtp.cmd("DATA")
    smtp.send(b"Subject: ok\r\n\r\n" + b"y" * 999 + b"\r\n.\r\n")
    assert smtp.reply().startswith("250 2.0.0")
    smtp.close()
    [email] = server.wait_emails("alice@example.test", 1)
    assert email["subject"] == "ok"
    assert strip_trace(server.raw("alice@example.test", email["id"]))[1].endswith(
        b"\r\n\r\n" + b"y" * 999 + b"\r\n")


def test_message_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    srv = Server(tmp_path, limits={"message_size": 20000, "recipients_per_message": 3})
    srv.add_user("alice@example.test")
    for n in range(4):
        srv.add_user(f"u{n}@example.test")
    srv.start()
    try:
        with smtplib.SMTP("127.0.0.1", srv.smtp_port) as smtp, \
                pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("carol@remote.test", ["alice@example.test"],
                          message("big", body="z" * 30000))
        assert refused.value.smtp_code == 552
        smtp = RawSMTP(srv.smtp_port)
        smtp.cmd("EHLO client.remote.test")
        smtp.cmd("MAIL FROM:<carol@remote.test>")  # no SIZE: the limit bites at the end of DATA
        smtp.cmd("RCPT TO:<alice@example.test>")
        smtp.cmd("DATA")
        smtp.send(b"Subject: big\r\n\r\n" + (b"z" * 900 + b"\r\n") * 30 + b".\r\n")
        assert smtp.reply().startswith("552 5.3.4")
        smtp.cmd("MAIL FROM:<carol@remote.test>")
        replies = [smtp.cmd(f"RCPT TO:<u{n}@example.test>") for n in range(4)]
        assert [r[:9] for r in replies] == ["250 2.1.5"] * 3 + ["452 4.5.3"]
        smtp.close()
        srv.wait_queue_empty()
        assert srv.emails("alice@example.test") == []
    finally:
        srv.stop()


def test_over_quota_recipient_is_deferred(server: Server) -> None:
    server.cli("user", "quota", "bob@example.test", "0")
    smtp = RawSMTP(server.smtp_port)
    smtp.cmd("EHLO client.remote.test")
    smtp.cmd("MAIL FROM:<carol@remote.test>")
    assert smtp.cmd("RCPT TO:<bob@example.test>").startswith("452 4.2.2")
    smtp.close()


def test_connection_limit_per_ip(tmp_path: Path) -> None:
    srv = Server(tmp_path, limits={"connections_per_ip": 2})
    srv.start()
    try:
        first, second = RawSMTP(srv.smtp_port), RawSMTP(srv.smtp_port)
        third = RawSMTP(srv.smtp_port)
        assert first.greeting.startswith("220") and second.greeting.startswith("220")
        assert third.greeting.startswith("421 4.7.0")
        first.cmd("QUIT")
        first.close()
        third.close()
        # The slot is free once the server has seen the first connection end: wait for that.
        import time
        deadline = time.monotonic() + 60
        while not (fourth := RawSMTP(srv.smtp_port)).greeting.startswith("220"):
            assert fourth.greeting.startswith("421 4.7.0"), fourth.greeting
            assert time.monotonic() < deadline, "the first connection's slot stays taken"
            fourth.close()
            time.sleep(0.1)
        fourth.close()
        second.close()
    finally:
        srv.stop()


def test_message_rate_limit_per_ip(tmp_path: Path) -> None:
    srv = Server(tmp_path, limits={"messages_per_ip_per_minute": 3})
    srv.add_user("alice@example.test")
    srv.start()
    try:
        smtp = RawSMTP(srv.smtp_port)
        smtp.cmd("EHLO client.remote.test")
        for n in range(3):
            assert smtp.cmd("MAIL FROM:<carol@remote.test>").startswith("250"), n
            smtp.cmd("RSET")
        assert smtp.cmd("MAIL FROM:<carol@remote.test>").startswith("421 4.7.0")
        smtp.close()
    finally:
        srv.stop()


def test_garbage_commands_keep_the_server_up(server: Server) -> None:
    smtp = RawSMTP(server.smtp_port)
    assert smtp.cmd("HELO").startswith("501")
    assert smtp.cmd("EHLO x").startswith("250")
    assert smtp.cmd("FOO bar").startswith("500 5.5")
    assert smtp.cmd("MAIL FROM:garbage<<>").startswith("5")
    assert smtp.cmd("RCPT TO:<alice@example.test>").startswith("503 5.5.1")
    assert smtp.cmd("DATA").startswith("503 5.5.1")
    smtp.send(b"\xff\xfe\x00\r\n")
    assert smtp.reply().startswith("500")
    smtp.send(b"A" * 5000 + b"\r\n")
    assert smtp.reply().startswith("500 5.5.2")
    # a client that disconnects in the middle of DATA loses nothing that was acknowledged
    smtp.cmd("MAIL FROM:<carol@remote.test>")
    smtp.cmd("RCPT TO:<alice@example.test>")
    smtp.cmd("DATA")
    smtp.send(b"Subject: truncated\r\n\r\nno end")
    smtp.close()
    send(server, message("after garbage"))
    [email] = server.wait_emails("alice@example.test", 1)
    assert email["subject"] == "after garbage"
