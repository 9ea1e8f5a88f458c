"""Inbound checks, layers 1 and 2, end to end: real mail over SMTP to a real `mailyard serve`,
whose every lookup goes to a DNS server on loopback serving the senders' SPF, DKIM and DMARC
records and a blocklist zone. Messages are DKIM-signed here by dkimpy (rsa-sha256 and
ed25519-sha256) with keys made by the test, and read back over IMAP.

Clients connect from several loopback addresses (127.0.0.1, .2, .3: Linux routes all of
127/8 to lo), so that one server can see a listed and an unlisted client.
"""

from __future__ import annotations

import base64
import email
import imaplib
import smtplib
import time
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import dkim
import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.dnsserver import TestDNS
from tests.e2e.server import Server

OURS = "mx.example.test"
PASSWORD = "secret-password"


def rsa_key() -> tuple[bytes, str]:
    """(PEM private key for dkimpy, p= of the DNS record)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, base64.b64encode(public).decode()


def ed25519_key() -> tuple[bytes, str]:
    """(base64 seed, dkimpy's ed25519 private key format; p= of the DNS record)."""
    signing = nacl.signing.SigningKey.generate()
    return (base64.b64encode(bytes(signing)),
            base64.b64encode(bytes(signing.verify_key)).decode())


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[bytes, str]]:
    return {"rsa": rsa_key(), "ed": ed25519_key()}


@pytest.fixture
def dns(keys: dict[str, tuple[bytes, str]]) -> Iterator[TestDNS]:
    with TestDNS({
        # sender.test: SPF, two DKIM keys and a reject policy; everything passes.
        ("sender.test", "TXT"): ["v=spf1 ip4:127.0.0.0/8 -all"],
        ("mail.sender.test", "A"): ["127.0.0.1"],
        ("mail.sender.test", "TXT"): ["v=spf1 a -all"],
        ("rsa1._domainkey.sender.test", "TXT"): [f"v=DKIM1; k=rsa; p={keys['rsa'][1]}"],
        ("ed1._domainkey.sender.test", "TXT"): [f"v=DKIM1; k=ed25519; p={keys['ed'][1]}"],
        ("_dmarc.sender.test", "TXT"): ["v=DMARC1; p=reject"],
        # strict.test and lax.test send from elsewhere: SPF fails, nothing signs for them.
        ("strict.test", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all"],
        ("_dmarc.strict.test", "TXT"): ["v=DMARC1; p=reject; adkim=s"],
        ("lax.test", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all"],
        ("_dmarc.lax.test", "TXT"): ["v=DMARC1; p=quarantine"],
    }) as server:
        yield server


def make_server(tmp_path: Path, dns: TestDNS, **checks: Any) -> Server:
    srv = Server(tmp_path, dns={"nameservers": [dns.address], "timeout": 2.0}, checks=checks)
    srv.add_user("alice@example.test", PASSWORD)
    srv.start()
    return srv


@pytest.fixture
def server(tmp_path: Path, dns: TestDNS) -> Iterator[Server]:
    srv = make_server(tmp_path, dns)
    yield srv
    srv.stop()


def message(from_: str, subject: str, extra: str = "") -> bytes:
    return (f"{extra}From: {from_}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
            f"Date: Sun, 29 Nov 2026 07:00:00 +0000\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n\r\n"
            f"Hello from {from_}.\r\n").encode()


def send(port: int, mail_from: str, raw: bytes, *, source: str = "127.0.0.1",
         helo: str = "mail.sender.test") -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=30,
                      source_address=(source, 0)) as s:
        s.sendmail(mail_from, ["alice@example.test"], raw)


def fetch(server: Server, mailbox: str = "INBOX", count: int = 1,
          timeout: float = 60.0) -> list[Message]:
    """The messages of one mailbox over IMAP, waiting until `count` have arrived."""
    deadline = time.monotonic() + timeout
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as imap:
        imap.login("alice@example.test", PASSWORD)
        while True:
            imap.select(mailbox)
            _, data = imap.search(None, "ALL")
            ids = data[0].split()
            if len(ids) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        out = []
        for n in ids:
            _, parts = imap.fetch(n, "(BODY.PEEK[])")
            out.append(email.message_from_bytes(parts[0][1]))
        return out


def our_results(msg: Message) -> str:
    mine = [v for v in msg.get_all("Authentication-Results", [])
            if str(v).split(";")[0].strip() == OURS]
    assert len(mine) == 1, msg.get_all("Authentication-Results")
    return " ".join(str(mine[0]).split())


def test_signed_mail_gets_authentication_results_and_forgeries_go(
        server: Server, dns: TestDNS, keys: dict[str, tuple[bytes, str]]) -> None:
    forged = ("Authentication-Results: MX.example.test; dkim=pass header.d=bank.test\r\n"
              "Authentication-Results: relay.other.test; spf=pass smtp.mailfrom=x@y.test\r\n")
    raw = message("Sender <news@sender.test>", "signed twice", forged)
    for selector, (private, _), algorithm in (("rsa1", keys["rsa"], b"rsa-sha256"),
                                              ("ed1", keys["ed"], b"ed25519-sha256")):
        raw = dkim.sign(raw, selector.encode(), b"sender.test", private,
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
                        signature_algorithm=algorithm) + raw
    send(server.smtp_port, "bounces@sender.test", raw)

    [got] = fetch(server)
    results = our_results(got)
    assert "spf=pass smtp.mailfrom=bounces@sender.test" in results
    assert "spf=pass smtp.helo=mail.sender.test" in results
    assert "dkim=pass header.d=sender.test header.s=rsa1 header.a=rsa-sha256" in results
    assert "dkim=pass header.d=sender.test header.s=ed1 header.a=ed25519-sha256" in results
    assert "dmarc=pass header.from=sender.test" in results
    assert "arc=none" in results
    # The forged claim of our authserv-id is gone (case-insensitively); others' stay.
    assert all("bank.test" not in str(v) for v in got.get_all("Authentication-Results"))
    assert any("relay.other.test" in str(v) for v in got.get_all("Authentication-Results"))
    # Ours sits under our Received trace field, above the client's header fields.
    names = [k.lower() for k in got]
    assert names.index("received") < names.index("authentication-results") \
        < names.index("dkim-signature")
    # Removing the forgery broke neither signature (it was not signed).
    delivered = got.as_bytes().replace(b"\n", b"\r\n")

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        return dns_txt(dns, name)
    assert dkim.verify(delivered, dnsfunc=lookup)


def dns_txt(dns: TestDNS, name: bytes) -> bytes:
    """The test's own DNS read, through dnspython against the loopback server."""
    import dns.resolver as dr

    resolver = dr.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = dns.port
    try:
        answer = resolver.resolve(name.decode().rstrip("."), "TXT")
    except dr.NXDOMAIN:
        return b""
    return b"".join(answer[0].strings)


def test_dmarc_reject_is_refused_at_data_and_quarantine_goes_to_junk(server: Server) -> None:
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(server.smtp_port, "someone@strict.test",
             message("CEO <ceo@strict.test>", "wire the money"), helo="mail.sender.test")
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error.startswith(b"5.7.1")
    assert b"DMARC" in refused.value.smtp_error

    send(server.smtp_port, "someone@lax.test", message("Lax <news@lax.test>", "maybe spam"))
    [junk] = fetch(server, "Junk")
    assert junk["Subject"] == "maybe spam"
    results = our_results(junk)
    assert "dmarc=fail reason=p=quarantine header.from=lax.test" in results
    assert "spf=fail smtp.mailfrom=someone@lax.test" in results
    assert fetch(server, "INBOX", count=0) == [], "neither mail reached the inbox"


def test_dmarc_reject_goes_to_junk_when_not_enforced(tmp_path: Path, dns: TestDNS) -> None:
    srv = make_server(tmp_path, dns, enforce_dmarc=False)
    try:
        send(srv.smtp_port, "someone@strict.test",
             message("CEO <ceo@strict.test>", "not enforced"))
        [junk] = fetch(srv, "Junk")
        assert "dmarc=fail reason=p=reject" in our_results(junk)
    finally:
        srv.stop()


def test_blocklist_deny_and_allow_lists(tmp_path: Path, dns: TestDNS) -> None:
    dns.set("1.0.0.127.bl.test", "A", ["127.0.0.2"])
    dns.set("1.0.0.127.bl.test", "TXT", ["listed for testing"])
    srv = make_server(tmp_path, dns, dnsbl_zones=["bl.test"])
    try:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            send(srv.smtp_port, "news@sender.test", message("news@sender.test", "listed"))
        assert refused.value.smtp_code == 554
        assert b"5.7.1" in refused.value.smtp_error and b"bl.test" in refused.value.smtp_error
        send(srv.smtp_port, "news@sender.test", message("news@sender.test", "from .2"),
             source="127.0.0.2")

        srv.cli("policy", "deny", "127.0.0.2", "--reason", "abuse reports")
        srv.cli("policy", "deny", "spam.test")
        with pytest.raises(smtplib.SMTPSenderRefused) as denied:
            send(srv.smtp_port, "news@sender.test", message("news@sender.test", "denied"),
                 source="127.0.0.2")
        assert denied.value.smtp_code == 554 and b"abuse reports" in denied.value.smtp_error
        with pytest.raises(smtplib.SMTPSenderRefused) as domain:
            send(srv.smtp_port, "x@mail.spam.test", message("x@mail.spam.test", "sub"),
                 source="127.0.0.3")
        assert domain.value.smtp_code == 554 and b"5.7.1" in domain.value.smtp_error

        # An allow-listed client skips the blocklist; a removed entry no longer applies.
        srv.cli("policy", "allow", "127.0.0.1")
        srv.cli("policy", "remove", "127.0.0.2")
        listing = srv.cli("policy", "list").stdout.decode()
        assert "allow\t127.0.0.1/32" in listing and "deny\tspam.test" in listing
        assert "127.0.0.2" not in listing
        send(srv.smtp_port, "news@sender.test", message("news@sender.test", "allowed"))
        send(srv.smtp_port, "news@sender.test", message("news@sender.test", "again from .2"),
             source="127.0.0.2")
        subjects = sorted(m["Subject"] for m in fetch(srv, count=3))
        assert subjects == ["again from .2", "allowed", "from .2"]
        bad = srv.cli("policy", "deny", "not an entry", check=False)
        assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1, bad.stderr
    finally:
        srv.stop()


GREYLIST_DELAY = 10.0
"""Far longer than the two SMTP transactions that must come in before it ends."""


def test_greylisting_defers_then_accepts_the_retry(tmp_path: Path, dns: TestDNS) -> None:
    srv = make_server(tmp_path, dns, greylisting=True, greylist_delay=GREYLIST_DELAY)
    try:
        raw = message("news@sender.test", "greylisted")
        first = time.time()  # the server records the triplet after this
        for _ in range(2):  # the first attempt, and a retry that comes too early
            with pytest.raises(smtplib.SMTPRecipientsRefused) as deferred:
                send(srv.smtp_port, "news@sender.test", raw)
            code, text = deferred.value.recipients["alice@example.test"]
            assert code == 451 and text.startswith(b"4.7.1 Greylisted"), (
                f"{code} {text!r} {time.time() - first:.1f} s after the first attempt")
        # The sender retries until let through, which is never before the delay is over.
        deadline = time.monotonic() + GREYLIST_DELAY + 60
        while True:
            try:
                send(srv.smtp_port, "news@sender.test", raw)
                break
            except smtplib.SMTPRecipientsRefused as e:
                assert e.recipients["alice@example.test"][0] == 451
                assert time.monotonic() < deadline, "still greylisted"
                time.sleep(0.5)
        assert time.time() >= first + GREYLIST_DELAY, "let through before the delay was over"
        # The triplet is the client's /24: a neighbour is let in at once, as is new mail.
        send(srv.smtp_port, "news@sender.test", message("news@sender.test", "from .9"),
             source="127.0.0.9")
        send(srv.smtp_port, "news@sender.test", message("news@sender.test", "no wait"))
        assert sorted(m["Subject"] for m in fetch(srv, count=3)) == [
            "from .9", "greylisted", "no wait"]
    finally:
        srv.stop()


def test_arc_sealed_forward_and_a_broken_signature(
        server: Server, dns: TestDNS, keys: dict[str, tuple[bytes, str]]) -> None:
    """A list server (relay.test) re-sent a message whose DKIM signature it broke (a footer),
    sealing what it saw first with ARC (RFC 8617): we report the broken signature as
    dkim=fail and the intact chain as arc=pass."""
    dns.set("arc1._domainkey.relay.test", "TXT", [f"v=DKIM1; k=rsa; p={keys['rsa'][1]}"])
    dns.set("rsa1._domainkey.plain.test", "TXT", [f"v=DKIM1; k=rsa; p={keys['rsa'][1]}"])
    original = message("Writer <writer@plain.test>", "via the list")
    signed = dkim.sign(original, b"rsa1", b"plain.test", keys["rsa"][0],
                       include_headers=[b"from", b"to", b"subject"]) + original
    seen = (b"Authentication-Results: relay.test; dkim=pass header.d=plain.test;"
            b" spf=pass smtp.mailfrom=writer@plain.test\r\n" + signed
            + b"-- \r\nThe list footer.\r\n")
    sealed = b"".join(dkim.arc_sign(seen, b"arc1", b"relay.test", keys["rsa"][0],
                                    b"relay.test")) + seen
    send(server.smtp_port, "list-bounces@relay.test", sealed)
    [got] = fetch(server)
    results = our_results(got)
    assert "dkim=fail header.d=plain.test header.s=rsa1" in results
    assert "arc=pass" in results
    assert "dmarc=none header.from=plain.test" in results  # plain.test publishes no policy

    # The same chain with the sealed content changed after sealing: arc=fail.
    tampered = sealed.replace(b"The list footer.", b"A forged footer.")
    send(server.smtp_port, "list-bounces@relay.test", tampered)
    both = fetch(server, count=2)
    assert len(both) == 2
    # By content: the pipeline delivers concurrently, so arrival need not follow sending.
    [forged] = [m for m in both if b"A forged footer." in m.as_bytes()]
    assert "arc=fail" in our_results(forged)


def test_unanswered_dns_is_a_quick_temperror(tmp_path: Path, dns: TestDNS) -> None:
    for name in ("slow.test", "mail.slow.test", "_dmarc.slow.test"):
        dns.fail(name, "TIMEOUT")
    srv = make_server(tmp_path, dns, dns_timeout=0.5)
    try:
        # The baseline: the same transaction with every lookup answered, on this machine now.
        started = time.monotonic()
        send(srv.smtp_port, "news@sender.test", message("news@sender.test", "quick dns"))
        baseline = time.monotonic() - started
        started = time.monotonic()
        send(srv.smtp_port, "news@slow.test", message("news@slow.test", "slow dns"),
             helo="mail.slow.test")
        elapsed = time.monotonic() - started
        [got] = [m for m in fetch(srv, count=2) if m["Subject"] == "slow dns"]
        results = our_results(got)
        assert "spf=temperror smtp.mailfrom=news@slow.test" in results
        assert "dmarc=temperror header.from=slow.test" in results
        # HELO and MAIL FROM SPF one after the other, DMARC alongside: about 2 x 0.5 s more
        # than the baseline; the default 2 s timeout would cost 4 s more.
        assert elapsed - baseline < 2.5, (elapsed, baseline)
    finally:
        srv.stop()
