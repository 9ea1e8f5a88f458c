"""The SPF result cache of the authentication check (services/checks/auth.py, SPFCache): the
next message from the same client IP, HELO and MAIL FROM reuses the result instead of
evaluating check_host() again; another sender is evaluated; 0 seconds turns it off; a temperror
is never kept. On real DNS: a server on loopback whose SPF record the test changes between
messages (its TTL is 0, so the resolver's own cache does not hide the change)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from mailyard.core.mime import parse_head
from mailyard.dns import Resolver
from mailyard.services.checks import SMTPEnvelope, Verdict
from mailyard.services.checks.auth import AuthCheck
from tests.dnsserver import TestDNS

RAW = (b"From: Writer <writer@sender.test>\r\nTo: alice@example.test\r\nSubject: hello\r\n"
       b"Message-ID: <m1@sender.test>\r\n\r\nHello.\r\n")
PASS = "v=spf1 ip4:127.0.0.1 -all"
FAIL = "v=spf1 -all"


@pytest.fixture
def dns() -> Iterator[TestDNS]:
    with TestDNS({("sender.test", "TXT"): [PASS]}) as server:
        yield server


def spf_of(check: AuthCheck, mail_from: str = "writer@sender.test") -> str:
    """The SPF result (MAIL FROM identity) the check gives one message, through its hooks."""
    async def run() -> str:
        envelope = SMTPEnvelope("127.0.0.1", "[127.0.0.1]", mail_from, ["alice@example.test"])
        verdict = Verdict()
        await check.mail_from(envelope, verdict)
        await check.check(envelope, RAW, parse_head(RAW), verdict)
        return str(verdict.data["auth"]["spf"]["mailfrom"])
    return asyncio.run(run())


def spf_lookups(dns: TestDNS) -> int:
    return sum(1 for query in dns.queries if query.name.rstrip(".") == "sender.test"
               and query.rtype == "TXT")


def test_the_same_sender_again_reuses_the_result(dns: TestDNS) -> None:
    check = AuthCheck(Resolver([dns.address], 2.0), authserv_id="mx.test")
    assert spf_of(check) == "pass"
    looked = spf_lookups(dns)
    assert looked >= 1
    dns.set("sender.test", "TXT", [FAIL])
    assert spf_of(check) == "pass"  # the kept result: no new evaluation
    assert spf_lookups(dns) == looked
    assert spf_of(check, "Writer@Sender.test") == "pass"  # the same sender, other case
    assert spf_of(check, "other@sender.test") == "fail"  # another sender: evaluated now
    assert spf_lookups(dns) > looked


def test_zero_seconds_evaluates_every_message(dns: TestDNS) -> None:
    check = AuthCheck(Resolver([dns.address], 2.0), authserv_id="mx.test", spf_cache_seconds=0)
    assert spf_of(check) == "pass"
    dns.set("sender.test", "TXT", [FAIL])
    assert spf_of(check) == "fail"


def test_a_temperror_is_not_kept() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # takes queries, never answers: every lookup times out
        port = silent.getsockname()[1]
        check = AuthCheck(Resolver([f"127.0.0.1:{port}"], 0.3), authserv_id="mx.test",
                          timeout=0.3)
        assert spf_of(check) == "temperror"
        assert check.spf_cache.get(("127.0.0.1", "[127.0.0.1]", "writer@sender.test")) is None
