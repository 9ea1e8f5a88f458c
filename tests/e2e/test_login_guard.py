"""Failed-login limits shared by every protocol, every process and (with Redis) every node
(issue 17): a guess on IMAP counts against POP3, SMTP AUTH and JMAP too; an account guessed
from many networks is blocked wherever the next guess comes from; a blocked client is refused
even with the right password; each failure and each block is logged.

Clients take source addresses of their own in 127.0.0.0/8, so "another network" is real.
"""

from __future__ import annotations

import base64
import imaplib
import poplib
import smtplib
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import Server

ALICE, BOB, PASSWORD = "alice@example.test", "bob@example.test", "secret-password"


class IMAP(imaplib.IMAP4):
    def __init__(self, port: int, source: str) -> None:
        self.source = source
        super().__init__("127.0.0.1", port, timeout=60)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))


class POP3(poplib.POP3):
    def __init__(self, port: int, source: str) -> None:
        self.source = source
        super().__init__("127.0.0.1", port, timeout=60)

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))


def imap_login(srv: Server, source: str, user: str, password: str) -> str:
    """"ok", "wrong" (NO [AUTHENTICATIONFAILED]) or "refused" (NO [UNAVAILABLE] / BYE)."""
    client = IMAP(srv.imap_port, source)
    try:
        client.login(user, password)
    except imaplib.IMAP4.abort:
        return "refused"
    except imaplib.IMAP4.error as e:
        return "refused" if "UNAVAILABLE" in str(e) else "wrong"
    client.logout()
    return "ok"


def pop3_login(srv: Server, source: str, user: str, password: str) -> str:
    client = POP3(srv.pop3_port, source)
    try:
        client.user(user)
        client.pass_(password)
    except poplib.error_proto as e:
        return "refused" if b"SYS/TEMP" in e.args[0] else "wrong"
    client.quit()
    return "ok"


def smtp_login(srv: Server, source: str, user: str, password: str) -> str:
    with smtplib.SMTP("127.0.0.1", srv.submission_port, timeout=60,
                      source_address=(source, 0)) as smtp:
        smtp.ehlo("guard.test")
        smtp.user, smtp.password = user, password
        try:  # PLAIN alone: smtplib's login() would try LOGIN after a failed PLAIN (2 guesses)
            smtp.auth("PLAIN", smtp.auth_plain)
        except smtplib.SMTPAuthenticationError as e:
            return {535: "wrong", 454: "refused"}.get(e.smtp_code, f"code {e.smtp_code}")
        except smtplib.SMTPServerDisconnected:
            return "refused"
        except smtplib.SMTPResponseException as e:
            return "refused" if e.smtp_code == 454 else f"code {e.smtp_code}"
    return "ok"


def jmap_login(srv: Server, source: str, user: str, password: str) -> str:
    transport = httpx.HTTPTransport(local_address=source, verify=False)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    with httpx.Client(transport=transport, timeout=60) as client:
        r = client.get(f"https://127.0.0.1:{srv.http_port}/jmap/session",
                       headers={"Authorization": f"Basic {token}"})
    return {200: "ok", 401: "wrong", 429: "refused"}.get(r.status_code, str(r.status_code))


LOGINS = {"imap": imap_login, "pop3": pop3_login, "smtp": smtp_login, "jmap": jmap_login}


def _server(tmp_path: Path, **auth: Any) -> Server:
    srv = Server(tmp_path, auth=auth)
    srv.add_user(ALICE, PASSWORD)
    srv.add_user(BOB, PASSWORD)
    srv.start()
    return srv


def test_failures_on_every_protocol_count_together(tmp_path: Path) -> None:
    srv = _server(tmp_path, failures_per_network_per_hour=4,
                  failures_per_account_per_hour=0)
    try:
        for protocol, login in LOGINS.items():
            assert login(srv, "127.0.0.2", ALICE, "wrong") == "wrong", protocol
        # Blocked on each, the right password included; another network is not.
        for protocol, login in LOGINS.items():
            assert login(srv, "127.0.0.2", ALICE, PASSWORD) == "refused", protocol
            assert login(srv, "127.0.0.3", ALICE, PASSWORD) == "ok", protocol
        log = srv.log_path.read_text()
        for protocol in LOGINS:
            assert f"authentication failed: protocol={protocol} user='{ALICE}'" \
                   " ip=127.0.0.2" in log, protocol
        assert "login blocked: 4 failed logins in an hour from 127.0.0.2" in log
    finally:
        srv.stop()


def test_an_account_guessed_from_many_networks_is_blocked(tmp_path: Path) -> None:
    srv = _server(tmp_path, failures_per_network_per_hour=0,
                  failures_per_account_per_hour=3)
    try:
        for n, login in enumerate((imap_login, pop3_login, jmap_login), start=10):
            assert login(srv, f"127.0.0.{n}", ALICE, "wrong") == "wrong"
        assert imap_login(srv, "127.0.0.20", ALICE, PASSWORD) == "refused"
        assert smtp_login(srv, "127.0.0.21", ALICE, PASSWORD) == "refused"
        assert imap_login(srv, "127.0.0.20", BOB, PASSWORD) == "ok"  # other accounts: fine
        assert "login blocked: 3 failed logins in an hour to account" in srv.log_path.read_text()
    finally:
        srv.stop()


@pytest.mark.parametrize("processes", [2])
def test_imap_processes_share_the_count(tmp_path: Path, processes: int) -> None:
    """With several IMAP processes (SO_REUSEPORT spreads connections over them) the count is
    the node's, not each process's: every login after the limit is refused, whichever
    process takes the connection."""
    srv = Server(tmp_path, imap={"processes": processes},
                 auth={"failures_per_network_per_hour": 3, "failures_per_account_per_hour": 0})
    srv.add_user(ALICE, PASSWORD)
    srv.start()
    try:
        for _ in range(3):
            assert imap_login(srv, "127.0.0.30", ALICE, "wrong") == "wrong"
        outcomes = [imap_login(srv, "127.0.0.30", ALICE, PASSWORD) for _ in range(12)]
        assert outcomes == ["refused"] * 12
    finally:
        srv.stop()
