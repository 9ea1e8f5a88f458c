"""DSNs: built reports parse with the stdlib and our MIME parser, and say the right things."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage, Message, MIMEPart

import pytest

from mailyard.core import dsn
from mailyard.core.dsn import RecipientStatus
from mailyard.core.mime import decoded_content, parse_message

ARRIVAL = datetime(2026, 11, 2, 9, 59, 30, tzinfo=UTC)
NOW = datetime(2026, 11, 2, 10, 5, tzinfo=UTC)

ORIGINAL = (
    b"Return-Path: <alice@example.com>\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@example.net>, carol@example.org\r\n"
    b"Subject: =?utf-8?q?Caf=C3=A9_au_lait_=E2=98=95?= tomorrow\r\n"
    b"Date: Mon, 02 Nov 2026 09:59:00 +0000\r\n"
    b"Message-ID: <orig.123@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"The secret recipe is: SECRET-BODY-TEXT\r\n"
)

FAILED = RecipientStatus(
    recipient="bob@example.net", action="failed", status="5.1.1",
    remote_mta="mx.example.net", diagnostic="smtp; 550 5.1.1 <bob@example.net>: No such user",
    last_attempt=NOW, will_retry_until=None)
DELAYED = RecipientStatus(
    recipient="carol@example.org", action="delayed", status="4.4.1",
    remote_mta="mx.example.org", diagnostic="smtp; 421 4.4.1 Connection timed out",
    last_attempt=NOW, will_retry_until=ARRIVAL + timedelta(days=5))


def build(original: bytes = ORIGINAL, recipients: list[RecipientStatus] | None = None,
          **kwargs: object) -> bytes:
    args: dict[str, object] = {
        "reporting_mta": "mail.example.com", "sender": "alice@example.com",
        "postmaster": "postmaster@example.com", "arrival": ARRIVAL, "now": NOW,
        "message_id_domain": "mail.example.com",
    }
    args.update(kwargs)
    return dsn.build_dsn(original, recipients=recipients or [FAILED], **args)  # type: ignore[arg-type]


def stdlib(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(raw: bytes) -> list[MIMEPart]:
    return list(stdlib(raw).iter_parts())


def status_part(raw: bytes) -> bytes:
    """The raw message/delivery-status body, as sent."""
    m = re.search(rb"Content-Type: message/delivery-status\r\n.*?\r\n\r\n(.*?)\r\n--=_dsn_",
                  raw, re.S)
    assert m is not None
    return m.group(1)


def blocks(raw: bytes) -> list[list[str]]:
    """Field names per block of the delivery-status part."""
    body = status_part(raw).decode("ascii")
    assert body.endswith("\r\n") and not body.endswith("\r\n\r\n")
    body = body.removesuffix("\r\n")
    return [[line.split(":", 1)[0] for line in block.split("\r\n") if not line.startswith(" ")]
            for block in body.split("\r\n\r\n")]


# ---------------------------------------------------------------------------------------------
# Structure


def test_parses_with_stdlib_email() -> None:
    raw = build(recipients=[FAILED, DELAYED])
    msg = stdlib(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in msg.iter_parts()] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert all(not part.defects for part in msg.walk())
    assert msg["From"].addresses[0].display_name == "Mail Delivery System"
    assert msg["From"].addresses[0].addr_spec == "postmaster@example.com"
    assert msg["To"].addresses[0].addr_spec == "alice@example.com"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Date"].datetime == NOW
    assert re.fullmatch(r"<dsn\.[0-9a-z]{26}@mail\.example\.com>", msg["Message-ID"])
    assert msg["In-Reply-To"] == "<orig.123@example.com>"

    status = parts(raw)[1]
    groups = status.get_payload()
    assert isinstance(groups, list) and len(groups) == 3
    per_message, bob, carol = (g for g in groups if isinstance(g, Message))
    assert per_message["Reporting-MTA"] == "dns; mail.example.com"
    assert per_message["Arrival-Date"] == "Mon, 02 Nov 2026 09:59:30 +0000"
    assert bob["Final-Recipient"] == "rfc822; bob@example.net"
    assert bob["Action"] == "failed" and bob["Status"] == "5.1.1"
    assert bob["Remote-MTA"] == "dns; mx.example.net"
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@example.net>: No such user"
    assert bob["Last-Attempt-Date"] == "Mon, 02 Nov 2026 10:05:00 +0000"
    assert carol["Action"] == "delayed"
    assert carol["Will-Retry-Until"] == "Sat, 07 Nov 2026 09:59:30 +0000"


def test_parses_with_our_parser() -> None:
    raw = build()
    parsed = parse_message(raw)
    assert parsed.subject == "Undelivered Mail Returned to Sender"
    assert [(a.name, a.email) for a in parsed.from_] == [
        ("Mail Delivery System", "postmaster@example.com")]
    assert [a.email for a in parsed.to] == ["alice@example.com"]
    assert parsed.date == NOW
    assert parsed.message_id is not None and parsed.message_id.endswith("@mail.example.com")
    assert parsed.in_reply_to == ["orig.123@example.com"]
    root = parsed.root
    assert root.content_type == "multipart/report"
    assert root.params["report-type"] == "delivery-status"
    assert [c.content_type for c in root.children] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert "could not be delivered" in parsed.text
    assert "SECRET-BODY-TEXT" not in parsed.text


def test_delivery_status_blocks_and_field_names() -> None:
    raw = build(recipients=[FAILED, DELAYED])
    assert blocks(raw) == [
        ["Reporting-MTA", "Arrival-Date"],
        ["Final-Recipient", "Action", "Status", "Remote-MTA", "Diagnostic-Code",
         "Last-Attempt-Date"],
        ["Final-Recipient", "Action", "Status", "Remote-MTA", "Diagnostic-Code",
         "Last-Attempt-Date", "Will-Retry-Until"],
    ]
    assert status_part(raw).startswith(b"Reporting-MTA: dns; mail.example.com\r\n")
    assert status_part(raw).isascii()


def test_optional_fields() -> None:
    minimal = RecipientStatus("bob@example.net", "failed", "5.0.0")
    with_orcpt = RecipientStatus("bob@example.net", "failed", "5.1.1",
                                 original_recipient="rfc822;Bob@Example.NET")
    raw = build(recipients=[minimal, with_orcpt], envelope_id="QQ314159")
    assert blocks(raw) == [
        ["Original-Envelope-Id", "Reporting-MTA", "Arrival-Date"],
        ["Final-Recipient", "Action", "Status"],
        ["Original-Recipient", "Final-Recipient", "Action", "Status"],
    ]
    assert b"Original-Envelope-Id: QQ314159\r\n" in raw
    assert b"Original-Recipient: rfc822; Bob@Example.NET\r\n" in raw


def test_failed_recipient_gets_no_retry_field() -> None:
    told_to_retry = RecipientStatus("bob@example.net", "failed", "4.4.7",
                                    will_retry_until=NOW + timedelta(days=1))
    assert b"Will-Retry-Until" not in build(recipients=[told_to_retry])


def test_subjects_by_action() -> None:
    assert stdlib(build(recipients=[DELAYED]))["Subject"] == \
        "Delivery Status Notification (Delay)"
    assert stdlib(build(recipients=[DELAYED, FAILED]))["Subject"] == \
        "Undelivered Mail Returned to Sender"
    delivered = RecipientStatus("bob@example.net", "delivered", "2.0.0")
    assert stdlib(build(recipients=[delivered]))["Subject"] == dsn.SUBJECT_SUCCESS


# ---------------------------------------------------------------------------------------------
# The original message and the human-readable text


def test_original_headers_included_body_not() -> None:
    raw = build()
    headers_part = parts(raw)[2]
    content = headers_part.get_payload(decode=True)
    assert isinstance(content, bytes)
    assert content.startswith(b"Return-Path: <alice@example.com>\r\nFrom: Alice")
    assert b"Message-ID: <orig.123@example.com>\r\n" in content
    assert b"SECRET-BODY-TEXT" not in raw
    assert headers_part["Content-Transfer-Encoding"] == "7bit"
    assert "Content-Transfer-Encoding" not in stdlib(raw)


def test_non_ascii_subject_survives() -> None:
    raw = build()
    text_part = parts(raw)[0]
    assert isinstance(text_part, EmailMessage)
    assert "Café au lait ☕ tomorrow" in text_part.get_content()
    assert b"Subject: =?utf-8?q?Caf=C3=A9_au_lait_=E2=98=95?= tomorrow\r\n" in raw
    ours = parse_message(raw)
    assert "Café au lait ☕ tomorrow" in ours.text


def test_8bit_original_headers_kept_as_is() -> None:
    original = ORIGINAL.replace(b"=?utf-8?q?Caf=C3=A9_au_lait_=E2=98=95?=",
                                "Café au lait ☕".encode())
    raw = build(original)
    assert "Subject: Café au lait ☕ tomorrow\r\n".encode() in raw
    msg = stdlib(raw)
    assert msg["Content-Transfer-Encoding"] == "8bit"
    assert parts(raw)[2]["Content-Transfer-Encoding"] == "8bit"
    assert "Café au lait ☕ tomorrow" in parse_message(raw).text
    # the headers part is 8bit, not the report's own header block
    head = raw.partition(b"\r\n\r\n")[0]
    assert head.isascii()


def test_human_text_explains_and_advises() -> None:
    raw = build(recipients=[FAILED, DELAYED])
    content = parts(raw)[0].get_content()
    assert max(len(line) for line in content.splitlines()) <= 76
    text = " ".join(content.split())
    assert "mail.example.com" in text
    assert "<bob@example.net>" in text and "<carol@example.org>" in text
    assert "does not exist" in text
    assert "What you can do: Check the address for typing mistakes" in text
    assert "The server mx.example.net said: 550 5.1.1 <bob@example.net>: No such user" in text
    assert "We will keep trying until Sat, 07 Nov 2026 09:59:30 +0000" in text
    assert "stopped trying" in text and "still trying" in text
    assert text.index("stopped trying") < text.index("still trying")


def test_original_with_bare_lf_and_mbox_line() -> None:
    original = b"From alice@example.com Mon Nov  2 09:59:00 2026\n" + \
        ORIGINAL.replace(b"\r\n", b"\n")
    raw = build(original)
    content = parts(raw)[2].get_payload(decode=True)
    assert isinstance(content, bytes)
    assert content.startswith(b"Return-Path: <alice@example.com>\r\n")
    assert b"SECRET-BODY-TEXT" not in raw


def test_headers_only_and_empty_originals() -> None:
    for original in (b"Subject: only headers\r\n", b""):
        raw = build(original)
        assert len(parts(raw)) == 3
        assert dsn.is_bounce(raw)


# ---------------------------------------------------------------------------------------------
# Line discipline and encoding


def assert_wire_safe(raw: bytes) -> None:
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"\r\n")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_crlf_and_line_lengths() -> None:
    long_header = b"X-Long: " + b"word " * 600 + b"\r\nX-Solid: " + b"x" * 3000 + b"\r\n"
    original = ORIGINAL.replace(b"MIME-Version", long_header + b"MIME-Version")
    chatty = RecipientStatus(
        "bob@example.net", "failed", "5.7.1", "mx.example.net",
        "smtp; 550-5.7.1 first line\r\n550 5.7.1 " + "policy " * 300 + "z" * 1500)
    for raw in (build(), build(original, [chatty, DELAYED])):
        assert_wire_safe(raw)
        assert not any(part.defects for part in stdlib(raw).walk())
    raw = build(original, [chatty])
    unfolded = re.sub(rb"\r\n[ \t]+", b" ", raw)
    assert b"X-Long: " + b"word " * 599 + b"word" in unfolded  # folded at spaces
    groups = parts(raw)[1].get_payload()
    assert isinstance(groups, list) and isinstance(groups[1], Message)
    diagnostic = groups[1]["Diagnostic-Code"]
    assert diagnostic.startswith("smtp; 550-5.7.1 first line 550 5.7.1 policy policy")


def test_no_header_injection() -> None:
    evil = RecipientStatus("bob@example.net\r\nBcc: victim@example.org", "failed", "5.1.1",
                           "mx.example.net\r\nX-Evil: 1", "smtp; 550 nope\r\nX-Evil: 2")
    raw = build(recipients=[evil], envelope_id="id\r\nX-Evil: 3",
                sender="alice@example.com\r\nBcc: victim@example.org")
    assert b"\r\nBcc:" not in raw and b"\r\nX-Evil" not in raw
    assert_wire_safe(raw)


def test_non_ascii_addresses() -> None:
    intl = RecipientStatus("josé@exämple.net", "failed", "5.1.1", "mx.exämple.net",
                           "smtp; 550 5.1.1 usuário desconhecido")
    raw = build(recipients=[intl], sender="zoë@example.com")
    orcpt = RecipientStatus("josé@exämple.net", "failed", "5.1.1",
                            original_recipient="rfc822;José+x=y@exämple.net")
    assert b"Original-Recipient: utf-8; Jos\\x{E9}\\x{2B}x\\x{3D}y@ex\\x{E4}mple.net\r\n" in \
        build(recipients=[orcpt])
    assert status_part(raw).isascii()
    assert b"Final-Recipient: utf-8; jos\\x{E9}@ex\\x{E4}mple.net\r\n" in raw
    assert b"Remote-MTA: dns; mx.xn--exmple-cua.net\r\n" in raw
    assert b"Diagnostic-Code: smtp; 550 5.1.1 usu\\x{E1}rio desconhecido\r\n" in raw
    assert "To: <zoë@example.com>\r\n".encode() in raw  # RFC 6532: UTF-8 as is
    assert [a.email for a in parse_message(raw).to] == ["zoë@example.com"]
    text = parts(raw)[0]
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert "<josé@exämple.net>" in text.get_content()
    assert_wire_safe(raw)


def test_ascii_text_part_is_7bit() -> None:
    original = ORIGINAL.replace(b"=?utf-8?q?Caf=C3=A9_au_lait_=E2=98=95?=", b"Coffee")
    raw = build(original)
    assert parts(raw)[0]["Content-Transfer-Encoding"] == "7bit"
    part = parse_message(raw).root.children[0]
    assert part.encoding == "7bit"
    assert b'"Coffee tomorrow"' in decoded_content(raw, part)


# ---------------------------------------------------------------------------------------------
# Loop prevention and validation


def test_is_bounce() -> None:
    assert dsn.is_bounce(build())
    assert dsn.is_bounce(build(recipients=[DELAYED]))
    assert not dsn.is_bounce(ORIGINAL)
    assert not dsn.is_bounce(b"")
    mdn = build().replace(b"report-type=delivery-status", b"report-type=disposition-notification")
    assert not dsn.is_bounce(mdn)
    global_dsn = build().replace(b"report-type=delivery-status",
                                 b'report-type="Global-Delivery-Status"')
    assert dsn.is_bounce(global_dsn)
    assert dsn.is_bounce(build().replace(b"\r\n", b"\n"))


def test_validation() -> None:
    with pytest.raises(ValueError):
        dsn.build_dsn(ORIGINAL, reporting_mta="m", sender="s@x", postmaster="p@x",
                      recipients=[], arrival=ARRIVAL, message_id_domain="x")
    with pytest.raises(ValueError):
        RecipientStatus("bob@example.net", "failed", "550")
    with pytest.raises(ValueError):
        RecipientStatus("bob@example.net", "bounced", "5.1.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RecipientStatus(" ", "failed", "5.1.1")


def test_defaults_now_and_unique_ids() -> None:
    a = dsn.build_dsn(ORIGINAL, reporting_mta="m.example.com", sender="a@example.com",
                      postmaster="postmaster@example.com", recipients=[FAILED],
                      arrival=ARRIVAL.replace(tzinfo=None), message_id_domain="example.com")
    b = build()
    date = stdlib(a)["Date"].datetime
    assert abs((date - datetime.now(UTC)).total_seconds()) < 60
    assert stdlib(a)["Message-ID"] != stdlib(b)["Message-ID"]
    assert b"Arrival-Date: Mon, 02 Nov 2026 09:59:30 +0000\r\n" in a  # naive taken as UTC
