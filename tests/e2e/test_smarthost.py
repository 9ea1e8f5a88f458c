"""Outbound through a smarthost (issue 25): real loopback submission servers (aiosmtpd) that
require TLS and AUTH, one on STARTTLS (the global `relayhost`) and one on implicit TLS (a
sender domain's `relayhost_by_domain`), each with a certificate from the test CA
(`[outbound] cafile`). Mail submitted to a remote domain goes to the relay, never to an MX
(the DNS double has no record for it); a relay that refuses our login leaves the mail queued
(temporary: the admin's to fix), never bounced."""

from __future__ import annotations

import smtplib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from tests import tlsca
from tests.dnsserver import TestDNS
from tests.e2e.server import Server, free_port

PASSWORD = "secret-password"


@dataclass
class Got:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str
    tls: bool


@dataclass
class Relay:
    """A submission server that takes mail only from `user` with `password` over TLS."""

    user: str
    password: str
    got: list[Got] = field(default_factory=list)
    refused_logins: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(self, server: Any, session: Session, envelope: Envelope, mechanism: str,
                     data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login.decode() == self.user \
            and data.password.decode() == self.password
        if not ok:
            with self.lock:
                self.refused_logins += 1
        # handled=False: aiosmtpd answers a refusal 535 itself (its default stays silent)
        return AuthResult(success=ok, handled=False,
                          auth_data=data.login.decode() if ok else None)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.got.append(Got(envelope.mail_from or "", list(envelope.rcpt_tos),
                                envelope.original_content or b"", str(session.auth_data),
                                # implicit TLS leaves session.ssl unset: ask the transport
                                server.transport.get_extra_info("ssl_object") is not None))
        return "250 2.0.0 Relayed"


def wait(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def relays(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[tlsca.TestCA, Relay, int, Relay, int]]:
    ca = tlsca.TestCA(tmp_path_factory.mktemp("ca"))
    context = ca.server_context("localhost")
    starttls, implicit = Relay("relayuser", "relay-pass"), Relay("orguser", "org-pass")
    ports = free_port(), free_port()
    controllers = [
        Controller(starttls, hostname="127.0.0.1", port=ports[0], tls_context=context,
                   require_starttls=True, auth_required=True, authenticator=starttls.authenticate,
                   decode_data=False),
        Controller(implicit, hostname="127.0.0.1", port=ports[1], ssl_context=context,
                   auth_required=True, auth_require_tls=False,
                   authenticator=implicit.authenticate, decode_data=False),
    ]
    for c in controllers:
        c.start()
    try:
        yield ca, starttls, ports[0], implicit, ports[1]
    finally:
        for c in controllers:
            c.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           relays: tuple[tlsca.TestCA, Relay, int, Relay, int]) -> Iterator[Server]:
    ca, _, starttls_port, _, implicit_port = relays
    with TestDNS({}) as dns:  # no MX anywhere: only the relays can take the mail
        srv = Server(tmp_path_factory.mktemp("smarthost"),
                     domains=("example.test", "example.org", "example.net"),
                     dns={"nameservers": [dns.address], "timeout": 2.0},
                     outbound={
                         "relayhost": f"smtp://relayuser:relay-pass@localhost:{starttls_port}",
                         "relayhost_by_domain": [
                             f"example.org=smtps://orguser:org-pass@localhost:{implicit_port}",
                             f"example.net=smtp://relayuser:wrong@localhost:{starttls_port}"],
                         "cafile": str(ca.cafile), "retry_schedule": [1.0],
                         "mta_sts": False})
        for user in ("alice@example.test", "olga@example.org", "nora@example.net"):
            srv.add_user(user, PASSWORD)
        srv.start()
        try:
            yield srv
        finally:
            srv.stop()


def submit(server: Server, sender: str, to: str, subject: str) -> None:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = f"<{subject.replace(' ', '.')}@test>"
    m.set_content("through the smarthost\n")
    with smtplib.SMTP("127.0.0.1", server.submission_port) as smtp:
        smtp.login(sender, PASSWORD)
        smtp.send_message(m)


def test_global_relayhost_over_starttls_with_auth(
        server: Server, relays: tuple[tlsca.TestCA, Relay, int, Relay, int]) -> None:
    _, starttls, _, implicit, _ = relays
    submit(server, "alice@example.test", "bob@faraway.test", "via starttls")
    wait(lambda: any(b"via starttls" in g.data for g in starttls.got))
    [got] = [g for g in starttls.got if b"via starttls" in g.data]
    assert (got.mail_from, got.rcpt_tos, got.login, got.tls) == (
        "alice@example.test", ["bob@faraway.test"], "relayuser", True)
    assert not any(b"via starttls" in g.data for g in implicit.got)
    server.wait_queue_empty()


def test_a_sender_domains_relayhost_over_implicit_tls(
        server: Server, relays: tuple[tlsca.TestCA, Relay, int, Relay, int]) -> None:
    _, starttls, _, implicit, _ = relays
    submit(server, "olga@example.org", "ben@faraway.test", "via implicit")
    wait(lambda: any(b"via implicit" in g.data for g in implicit.got))
    [got] = [g for g in implicit.got if b"via implicit" in g.data]
    assert (got.mail_from, got.rcpt_tos, got.login, got.tls) == (
        "olga@example.org", ["ben@faraway.test"], "orguser", True)
    assert not any(b"via implicit" in g.data for g in starttls.got)


def test_a_refused_login_defers_and_never_bounces(
        server: Server, relays: tuple[tlsca.TestCA, Relay, int, Relay, int]) -> None:
    _, starttls, _, _, _ = relays
    before = starttls.refused_logins
    submit(server, "nora@example.net", "cid@faraway.test", "wrong password")
    wait(lambda: starttls.refused_logins >= before + 2)  # tried, and tried again
    assert not any(b"wrong password" in g.data for g in starttls.got)
    stats = server.queue_stats()
    assert stats["dead"] == 0 and stats["ready"] + stats["delayed"] + stats["leased"] >= 1
    assert all("Undelivered" not in (e["subject"] or "")
               for e in server.emails("nora@example.net"))
    assert b"AUTH refused: 535" in server.log_path.read_bytes()


def test_a_bad_relayhost_url_stops_start_up_with_one_line(tmp_path: Path) -> None:
    srv = Server(tmp_path, outbound={"relayhost": "http://host:25"})
    result = srv.cli("config", "check", str(srv.config_path), check=False)
    assert result.returncode == 2, result
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "outbound.relayhost" in err, err
