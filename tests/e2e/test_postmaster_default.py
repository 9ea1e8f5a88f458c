"""postmaster@ a local domain with neither its own account nor [addresses] postmaster is
accepted over SMTP and delivered to the domain's first account (RFC 5321 §4.5.1; issue 19):
the admin who ran the first `user add` reads it without having to edit the config first.
A configured account that does not exist falls back the same way, and start-up says so."""

from __future__ import annotations

import smtplib
from pathlib import Path

from tests.e2e.server import Server

FIRST = "zoe@example.test"
"""Created first, though it sorts last: "first" is the oldest, not the first by name."""
LATER = "adam@example.test"
OTHER = "carol@other.test"


def _send(srv: Server, rcpt: str, subject: str) -> tuple[int, bytes]:
    """The RCPT reply; the message sent when it was a 250."""
    with smtplib.SMTP("127.0.0.1", srv.smtp_port) as smtp:
        smtp.ehlo("sender.test")
        smtp.mail("postmaster@remote.test")
        code, text = smtp.rcpt(rcpt)
        if code == 250:
            smtp.data(f"From: postmaster@remote.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
                      f"Message-ID: <{subject}@remote.test>\r\n\r\nA DMARC report.\r\n"
                      .encode())
        return code, text


def test_postmaster_goes_to_the_domains_first_account(tmp_path: Path) -> None:
    srv = Server(tmp_path, domains=("example.test", "other.test", "empty.test"))
    srv.add_user(FIRST)
    srv.add_user(LATER)
    srv.add_user(OTHER)
    srv.start()
    try:
        assert _send(srv, "postmaster@example.test", "pm-example")[0] == 250
        assert _send(srv, "PostMaster@OTHER.test", "pm-other")[0] == 250
        [first] = srv.wait_emails(FIRST, 1)
        assert first["subject"] == "pm-example"
        [other] = srv.wait_emails(OTHER, 1)
        assert other["subject"] == "pm-other"
        assert srv.emails(LATER) == []
        code, text = _send(srv, "postmaster@empty.test", "pm-empty")  # no one to take it
        assert code == 451, text
        log = srv.log_path.read_text()
        assert "postmaster@empty.test has no account and nothing can receive it" in log
        assert "postmaster@example.test has no account" not in log
        assert "postmaster@other.test has no account" not in log
        assert _send(srv, "webmaster@example.test", "no-role")[0] == 550
    finally:
        srv.stop()


def test_a_configured_postmaster_that_is_no_account_falls_back_with_a_warning(
        tmp_path: Path) -> None:
    srv = Server(tmp_path, addresses={"postmaster": "gone@example.test"})
    srv.add_user(FIRST)
    srv.start()
    try:
        assert "[addresses] postmaster = 'gone@example.test' is not an account" \
            in srv.log_path.read_text()
        assert _send(srv, "postmaster@example.test", "pm-fallback")[0] == 250
        [email] = srv.wait_emails(FIRST, 1)
        assert email["subject"] == "pm-fallback"
    finally:
        srv.stop()
