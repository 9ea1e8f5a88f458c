"""Forwarding to remote addresses between two real servers on loopback (issue 25).

The forwarder (example.test) has `alice@example.test -> ann@remote.test` with a local copy.
The receiver (remote.test, and sender.test's mail) is a second Mailyard whose inbound checks
verify SPF, DKIM and DMARC over the loopback DNS double. The original sender's domain,
sender.test, authorises only 192.0.2.0/24 and signs with DKIM and publishes p=reject: without
SRS the forwarded copy would fail SPF at the receiver; with it, SPF asks example.test (which
authorises loopback) and passes, and the untouched DKIM signature still verifies, so DMARC
passes too. A bounce to the SRS address comes back to the original sender; a forged one is
refused at RCPT. Two aliases pointing at each other across the servers make a loop, which is
stopped with a DSN that travels back through both SRS reversals to the original sender.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage

import dkim
import pytest

from tests.dnsserver import TestDNS
from tests.e2e.server import Server, free_port
from tests.e2e.test_checks_auth import dns_txt, rsa_key

PASSWORD = "secret-password"


@pytest.fixture(scope="module")
def key() -> tuple[bytes, str]:
    return rsa_key()


@pytest.fixture(scope="module")
def dns(key: tuple[bytes, str]) -> Iterator[TestDNS]:
    with TestDNS({
        ("remote.test", "MX"): ["10 mx.remote.test."],
        ("sender.test", "MX"): ["10 mx.remote.test."],
        ("mx.remote.test", "A"): ["127.0.0.1"],
        ("example.test", "MX"): ["10 mx.example.test."],
        ("mx.example.test", "A"): ["127.0.0.1"],
        ("example.test", "TXT"): ["v=spf1 ip4:127.0.0.0/8 -all"],
        ("remote.test", "TXT"): ["v=spf1 ip4:127.0.0.0/8 -all"],
        ("sender.test", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all"],
        ("s1._domainkey.sender.test", "TXT"): [f"v=DKIM1; k=rsa; p={key[1]}"],
        ("_dmarc.sender.test", "TXT"): ["v=DMARC1; p=reject"],
    }) as server:
        yield server


def _routing(server: Server, srs_domain: str) -> None:
    with server.config_path.open("a") as f:
        f.write(f'[routing]\nsrs_domain = "{srs_domain}"\n')


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory,
            dns: TestDNS) -> Iterator[tuple[Server, Server]]:
    root = tmp_path_factory.mktemp("forwarding")
    receiver_port = free_port()
    resolver = {"nameservers": [dns.address], "timeout": 2.0}
    forwarder = Server(root / "forwarder", domains=("example.test",),
                       hostname="mx.example.test", dns=resolver,
                       outbound={"port": receiver_port, "retry_schedule": [1.0]},
                       checks={"authenticate": False})
    receiver = Server(root / "receiver", domains=("remote.test", "sender.test"),
                      hostname="mx.remote.test", dns=resolver,
                      outbound={"port": forwarder.smtp_port, "retry_schedule": [1.0]})
    # the receiver listens where the forwarder's outbound delivery goes
    text = receiver.config_path.read_text()
    receiver.config_path.write_text(text.replace(f'smtp = "127.0.0.1:{receiver.smtp_port}"',
                                                 f'smtp = "127.0.0.1:{receiver_port}"'))
    receiver.smtp_port = receiver_port
    _routing(forwarder, "example.test")
    _routing(receiver, "remote.test")
    forwarder.add_user("alice@example.test", PASSWORD)
    forwarder.cli("alias", "add", "alice@example.test", "ann@remote.test", "--keep-copy")
    forwarder.cli("alias", "add", "loop@example.test", "back@remote.test")
    receiver.add_user("ann@remote.test", PASSWORD)
    receiver.add_user("dora@sender.test", PASSWORD)
    receiver.cli("alias", "add", "back@remote.test", "loop@example.test")
    forwarder.start()
    try:
        receiver.start()
        try:
            yield forwarder, receiver
        finally:
            receiver.stop()
    finally:
        forwarder.stop()


def signed(subject: str, to: str, key: tuple[bytes, str]) -> bytes:
    m = EmailMessage()
    m["From"] = "Dora <dora@sender.test>"
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = f"<{subject.replace(' ', '.')}@sender.test>"
    m["Date"] = email.utils.formatdate()
    m.set_content(f"{subject}: the body the signature covers.\n")
    raw = m.as_bytes(policy=email.policy.SMTP)
    return dkim.sign(raw, b"s1", b"sender.test", key[0],
                     include_headers=[b"from", b"to", b"subject", b"date",
                                      b"message-id"]) + raw


def find(server: Server, address: str, subject: str, timeout: float = 60.0) -> list[bytes]:
    """The raw copies in `address`'s mail whose Subject contains `subject`, once there is one."""
    deadline = time.monotonic() + timeout
    while True:
        found = [raw for raw in server.raws(address).values()
                 if subject in str(email.message_from_bytes(
                     raw, policy=email.policy.default)["Subject"] or "")]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def find_raw(server: Server, address: str, needle: bytes,
             timeout: float = 60.0) -> list[bytes]:
    """The raw copies in `address`'s mail holding `needle` (a report quotes the headers of
    the message it is about), once there is one."""
    deadline = time.monotonic() + timeout
    while True:
        found = [raw for raw in server.raws(address).values() if needle in raw]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def results(raw: bytes, authserv: str) -> str:
    got = email.message_from_bytes(raw, policy=email.policy.default)
    return " ".join(" ".join(str(v).split()) for v in got.get_all("Authentication-Results", [])
                    if str(v).lower().startswith(authserv))


def test_forwarded_mail_passes_spf_by_srs_and_keeps_its_dkim_signature(
        servers: tuple[Server, Server], dns: TestDNS, key: tuple[bytes, str]) -> None:
    forwarder, receiver = servers
    with smtplib.SMTP("127.0.0.1", forwarder.smtp_port) as smtp:
        smtp.sendmail("dora@sender.test", ["alice@example.test"],
                      signed("forward me", "alice@example.test", key))
    [copy] = find(receiver, "ann@remote.test", "forward me")
    auth = results(copy, "mx.remote.test")
    assert "spf=pass smtp.mailfrom=SRS0=" in auth and "@example.test" in auth, auth
    assert "dkim=pass header.d=sender.test" in auth, auth
    assert "dmarc=pass header.from=sender.test" in auth, auth
    head = copy.split(b"\r\n\r\n", 1)[0]
    return_path = head.split(b"\r\n", 1)[0]
    assert return_path.startswith(b"Return-Path: <SRS0="), head[:300]
    assert return_path.endswith(b"=sender.test=dora@example.test>"), return_path
    assert b"\r\nDelivered-To: alice@example.test\r\n" in head
    assert head.count(b"Return-Path:") == 1, "the forwarder's own Return-Path is not relayed"

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        return dns_txt(dns, name)
    assert dkim.verify(copy, dnsfunc=lookup)
    # --keep-copy: Alice has hers too, exactly one
    assert len(find(forwarder, "alice@example.test", "forward me")) == 1

    # A bounce to the SRS address reaches the original sender; a forged one is refused.
    srs = return_path[len(b"Return-Path: <"):-1].decode()
    bounce = (b"From: MAILER-DAEMON@mx.remote.test\r\nTo: " + srs.encode()
              + b"\r\nSubject: Undelivered: forward me\r\n\r\nIt did not arrive.\r\n")
    with smtplib.SMTP("127.0.0.1", forwarder.smtp_port) as smtp:
        smtp.ehlo("mx.remote.test")
        smtp.mail("")
        forged = srs.replace("=sender.test=", "=sender.test=x", 1)
        code, text = smtp.rcpt(forged)
        assert code == 550 and text.startswith(b"5.1.1"), (code, text)
        assert (reply := smtp.rcpt(srs))[0] == 250, reply
        assert smtp.data(bounce)[0] == 250
    assert len(find(receiver, "dora@sender.test", "Undelivered: forward me")) == 1


def test_a_forwarding_loop_is_stopped_with_a_report(servers: tuple[Server, Server],
                                                    key: tuple[bytes, str]) -> None:
    forwarder, receiver = servers
    with smtplib.SMTP("127.0.0.1", forwarder.smtp_port) as smtp:
        smtp.sendmail("dora@sender.test", ["loop@example.test"],
                      signed("round and round", "loop@example.test", key))
    # loop@example.test -> back@remote.test -> loop@example.test: the forwarder finds its
    # own Delivered-To and stops; the report goes back through both SRS reversals.
    [report] = find_raw(receiver, "dora@sender.test", b"Subject: round and round")
    text = report.decode("utf-8", "replace")
    assert "multipart/report" in text and "5.4.6" in text, text[:2000]
    assert "loop@example.test" in text
    forwarder.wait_queue_empty()
    receiver.wait_queue_empty()
    assert forwarder.queue_stats()["dead"] == 0 and receiver.queue_stats()["dead"] == 0
    assert b"forwarding loop at loop@example.test" in forwarder.log_path.read_bytes()


def test_an_srs_address_takes_bounces_only_and_guessing_ends_the_connection(
        servers: tuple[Server, Server], key: tuple[bytes, str]) -> None:
    """An SRS address relays nothing but bounces: the one a forwarded copy carries, given with
    a sender, is refused (it relayed anyone's mail before), its hash is 8 base32 characters
    (40 bits, not the 21 that four base64 characters compared without case gave), and a
    client guessing addresses is cut off after 20 refused recipients (421, as Postfix's
    smtpd_hard_error_limit)."""
    forwarder, receiver = servers
    with smtplib.SMTP("127.0.0.1", forwarder.smtp_port) as smtp:
        smtp.sendmail("dora@sender.test", ["alice@example.test"],
                      signed("srs abuse", "alice@example.test", key))
    [copy] = find(receiver, "ann@remote.test", "srs abuse")
    srs = copy.split(b"\r\n", 1)[0][len(b"Return-Path: <"):-1].decode()
    digest = srs.split("=")[1]
    assert len(digest) == 8 and digest == digest.upper(), srs
    with smtplib.SMTP("127.0.0.1", forwarder.smtp_port) as smtp:
        smtp.ehlo("spam.example")
        smtp.mail("spammer@spam.example")
        code, text = smtp.rcpt(srs)
        assert (code, text) == (550, b"5.7.1 This address takes bounces only (null sender)")
        smtp.rset()
        smtp.mail("")
        assert smtp.rcpt(srs.lower())[0] == 250, "a relay that lower-cased it still bounces"
    with smtplib.SMTP("127.0.0.1", forwarder.smtp_port) as smtp:
        smtp.ehlo("guess.example")
        smtp.mail("")
        local, domain = srs.rsplit("@", 1)
        for n in range(20):
            guess = f"SRS0={n:08d}=" + local.split("=", 2)[2] + "@" + domain
            assert smtp.rcpt(guess)[0] == 550, guess
        code, text = smtp.rcpt("nobody@example.test")
        assert (code, text) == (421, b"4.7.0 Too many errors, closing the connection")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()
