"""postmaster@ every local domain is accepted (RFC 5321 §4.5.1) and delivered to its own
account or the configured one; abuse@ when configured (RFC 2142); start-up says what is
missing (issue 19)."""

from __future__ import annotations

import smtplib
from pathlib import Path

from tests.e2e.server import Server

ADMIN = "admin@example.test"


def _rcpt(srv: Server, rcpt: str) -> int:
    with smtplib.SMTP("127.0.0.1", srv.smtp_port) as smtp:
        smtp.ehlo("sender.test")
        smtp.mail("someone@remote.test")
        code, _ = smtp.rcpt(rcpt)
        return code


def _send(srv: Server, rcpt: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", srv.smtp_port) as smtp:
        smtp.sendmail("someone@remote.test", [rcpt],
                      f"Subject: {subject}\r\nMessage-ID: <{subject}@remote.test>\r\n\r\nhi\r\n"
                      .encode())


def test_role_addresses_go_to_the_configured_account(tmp_path: Path) -> None:
    srv = Server(tmp_path, domains=("example.test", "other.test"),
                 addresses={"postmaster": ADMIN, "abuse": ADMIN})
    srv.add_user(ADMIN)
    srv.start()
    try:
        _send(srv, "postmaster@example.test", "pm-one")
        _send(srv, "Postmaster@other.test", "pm-two")
        _send(srv, "abuse@other.test", "abuse-one")
        found = srv.wait_emails(ADMIN, 3)
        assert sorted(e["subject"] for e in found) == ["abuse-one", "pm-one", "pm-two"]
        assert _rcpt(srv, "webmaster@example.test") == 550  # no such role configured
        assert _rcpt(srv, "postmaster@remote.test") == 550  # not a local domain: no relay
    finally:
        srv.stop()


def test_an_unconfigured_postmaster_is_a_temporary_refusal_and_a_warning(
        tmp_path: Path) -> None:
    srv = Server(tmp_path, hostname="localhost")
    srv.add_user("postmaster@example.test")
    srv.cli("domain", "add", "second.test")
    srv.start()
    try:
        log = srv.log_path.read_text()
        assert "hostname is still 'localhost'" in log
        assert "postmaster@second.test has no account" in log
        assert "postmaster@example.test has no account" not in log
        assert _rcpt(srv, "postmaster@second.test") == 451
        assert _rcpt(srv, "abuse@second.test") == 550
        _send(srv, "postmaster@example.test", "own-account")  # its own account
        [email] = srv.wait_emails("postmaster@example.test", 1)
        assert email["subject"] == "own-account"
    finally:
        srv.stop()
