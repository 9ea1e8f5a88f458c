"""mailyard.dns against a real DNS server on loopback (tests/dnsserver.py), over UDP and TCP.

Unit-sized (no server of ours runs), but every answer crosses a socket and dnspython's wire
handling, so truncation, rcodes and timeouts are the real ones.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailyard.config import DNS
from mailyard.dns import (
    DNSError,
    MXHost,
    NullMX,
    NXDomain,
    PermanentDNSError,
    Resolver,
    TemporaryDNSError,
    parse_nameserver,
)
from tests.dnsserver import TestDNS

RECORDS: dict[tuple[str, str], list[str]] = {
    ("example.test", "MX"): ["20 MX2.Example.NET.", "10 mx1.example.net.", "30 mx3.example.net."],
    ("a-only.test", "A"): ["192.0.2.10"],
    ("aaaa-only.test", "AAAA"): ["2001:db8::10"],
    ("txt-only.test", "TXT"): ["v=spf1 -all"],
    ("null.test", "MX"): ["0 ."],
    ("host.test", "A"): ["192.0.2.1", "192.0.2.2"],
    ("host.test", "AAAA"): ["2001:db8::1"],
    ("alias.test", "CNAME"): ["host.test."],
}


@pytest.fixture
def server() -> Iterator[TestDNS]:
    with TestDNS(RECORDS) as dns:
        yield dns


@pytest.fixture
def resolver(server: TestDNS) -> Resolver:
    return Resolver([server.address], timeout=2.0)


def silent_udp_port() -> tuple[socket.socket, int]:
    """A bound UDP socket that never reads: queries to it vanish, as to a dead resolver."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock, int(sock.getsockname()[1])


def dkim_record(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


# ---------------------------------------------------------------------- MX


async def test_mx_sorted_by_preference_lower_case_without_dot(resolver: Resolver) -> None:
    assert await resolver.mx("example.test") == [
        MXHost(10, "mx1.example.net"), MXHost(20, "mx2.example.net"),
        MXHost(30, "mx3.example.net")]


async def test_equal_preferences_come_in_random_order(server: TestDNS,
                                                      resolver: Resolver) -> None:
    server.set("spread.test", "MX", ["10 d.", "10 c.", "5 first.", "10 b.", "10 a.", "50 z."])
    orders = set()
    for _ in range(40):
        hosts = await resolver.mx("spread.test")
        assert [h.preference for h in hosts] == [5, 10, 10, 10, 10, 50]
        assert hosts[0].host == "first" and hosts[-1].host == "z"
        orders.add(tuple(h.host for h in hosts[1:5]))
    assert len(orders) > 3  # 24 orders possible; all 40 draws alike has odds of 24**-39


async def test_duplicate_mx_host_keeps_its_best_preference(server: TestDNS,
                                                           resolver: Resolver) -> None:
    server.set("dup.test", "MX", ["10 mx.dup.test.", "20 MX.dup.test.", "15 other.test."])
    assert await resolver.mx("dup.test") == [MXHost(10, "mx.dup.test"),
                                             MXHost(15, "other.test")]


async def test_implicit_mx_from_a_or_aaaa(resolver: Resolver) -> None:
    assert await resolver.mx("a-only.test") == [MXHost(0, "a-only.test")]
    assert await resolver.mx("aaaa-only.test") == [MXHost(0, "aaaa-only.test")]
    assert await resolver.mx("alias.test") == [MXHost(0, "alias.test")]  # through the CNAME


async def test_no_mx_and_no_address_is_permanent(resolver: Resolver) -> None:
    with pytest.raises(PermanentDNSError) as info:
        await resolver.mx("txt-only.test")
    assert not isinstance(info.value, NXDomain | NullMX)
    assert info.value.temporary is False
    assert "no MX, A or AAAA" in str(info.value)


async def test_nxdomain_is_permanent(resolver: Resolver) -> None:
    with pytest.raises(NXDomain) as info:
        await resolver.mx("nowhere.test")
    assert isinstance(info.value, PermanentDNSError) and not info.value.temporary
    assert "NXDOMAIN" in str(info.value)


async def test_null_mx(server: TestDNS, resolver: Resolver) -> None:
    with pytest.raises(NullMX) as info:
        await resolver.mx("null.test")
    assert isinstance(info.value, PermanentDNSError) and not info.value.temporary
    # RFC 7505 forbids mixing; the real host wins over the null MX if a domain does it anyway
    server.set("mixed.test", "MX", ["0 .", "10 mx.mixed.test."])
    assert await resolver.mx("mixed.test") == [MXHost(10, "mx.mixed.test")]


async def test_ip_literals_need_no_lookup(server: TestDNS, resolver: Resolver) -> None:
    assert await resolver.mx("[192.0.2.1]") == [MXHost(0, "192.0.2.1")]
    assert await resolver.mx("[IPv6:2001:DB8::1]") == [MXHost(0, "2001:db8::1")]
    assert await resolver.addresses("192.0.2.1") == ["192.0.2.1"]
    assert await resolver.addresses("[192.0.2.1]") == ["192.0.2.1"]
    assert await resolver.addresses("::1") == ["::1"]
    assert server.queries == []
    for bad in ("[not.an.ip]", "[2001:db8::1]", "[IPv6:192.0.2.1]", "[300.1.1.1]"):
        with pytest.raises(PermanentDNSError):
            await resolver.mx(bad)


async def test_names_are_case_insensitive_with_or_without_dot(server: TestDNS,
                                                              resolver: Resolver) -> None:
    server.set("Mixed.Case.TEST.", "MX", ["10 MX.Mixed.Case.Test."])
    for name in ("mixed.case.test", "MIXED.case.Test.", "Mixed.Case.TEST"):
        assert await resolver.mx(name) == [MXHost(10, "mx.mixed.case.test")]
    assert await resolver.addresses("HOST.Test.") == ["192.0.2.1", "192.0.2.2", "2001:db8::1"]


async def test_invalid_names_are_permanent(resolver: Resolver) -> None:
    for bad in ("", ".", "a..b.test", "x" * 64 + ".test"):
        with pytest.raises(PermanentDNSError):
            await resolver.mx(bad)
        with pytest.raises(PermanentDNSError):
            await resolver.addresses(bad)
        assert await resolver.txt(bad) == []


# ---------------------------------------------------------------------- failures


async def test_servfail_and_refused_are_temporary(server: TestDNS, resolver: Resolver) -> None:
    server.fail("example.test")
    server.fail("host.test", "REFUSED")
    server.fail("1.2.0.192.in-addr.arpa")
    with pytest.raises(TemporaryDNSError) as info:
        await resolver.mx("example.test")
    assert info.value.temporary is True and isinstance(info.value, DNSError)
    assert "SERVFAIL" in str(info.value)
    with pytest.raises(TemporaryDNSError):
        await resolver.addresses("host.test")
    with pytest.raises(TemporaryDNSError):
        await resolver.txt("example.test")
    with pytest.raises(TemporaryDNSError):
        await resolver.ptr("192.0.2.1")
    server.remove("example.test")  # lifts the failure (and the records)
    with pytest.raises(NXDomain):
        await resolver.mx("example.test")


async def test_mx_whose_implicit_lookup_fails_is_temporary(server: TestDNS,
                                                           resolver: Resolver) -> None:
    server.set("flaky.test", "TXT", ["x"])
    assert isinstance(await resolver.txt("flaky.test"), list)
    server.fail("flaky.test", "SERVFAIL")
    with pytest.raises(TemporaryDNSError):
        await resolver.mx("flaky.test")


async def test_timeout_is_temporary_and_bounded_by_the_configured_timeout() -> None:
    sock, port = silent_udp_port()
    try:
        resolver = Resolver([f"127.0.0.1:{port}"], timeout=0.5)
        started = time.monotonic()
        results = await asyncio.gather(resolver.mx("example.test"), resolver.txt("example.test"),
                                       resolver.addresses("host.test"),
                                       return_exceptions=True)
        assert 0.4 < time.monotonic() - started < 1.5
        for result in results:
            assert isinstance(result, TemporaryDNSError) and "timed out" in str(result)
    finally:
        sock.close()


async def test_a_dropped_query_times_out(server: TestDNS) -> None:
    server.fail("example.test", "TIMEOUT")
    with pytest.raises(TemporaryDNSError):
        await Resolver([server.address], timeout=0.3).mx("example.test")


async def test_the_next_nameserver_is_asked_when_one_fails(server: TestDNS) -> None:
    sock, dead = silent_udp_port()
    try:
        with TestDNS({("example.test", "MX"): ["10 other."]}) as broken:
            broken.fail("example.test")
            # each nameserver gets a third of the 0.9 s: the silent one does not eat it all
            resolver = Resolver([f"127.0.0.1:{dead}", broken.address, server.address], 0.9)
            assert (await resolver.mx("example.test"))[0] == MXHost(10, "mx1.example.net")
    finally:
        sock.close()


# ---------------------------------------------------------------------- A/AAAA, TXT, PTR


async def test_addresses_ipv4_first_and_through_cname(resolver: Resolver) -> None:
    assert await resolver.addresses("host.test") == ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
    assert await resolver.addresses("alias.test") == ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
    assert await resolver.addresses("aaaa-only.test") == ["2001:db8::10"]


async def test_addresses_none_is_permanent(resolver: Resolver) -> None:
    with pytest.raises(NXDomain):
        await resolver.addresses("nowhere.test")
    with pytest.raises(PermanentDNSError) as info:
        await resolver.addresses("txt-only.test")
    assert not isinstance(info.value, NXDomain)


async def test_dkim_key_over_255_bytes_in_one_udp_answer(server: TestDNS,
                                                         resolver: Resolver) -> None:
    record = dkim_record(2048)
    assert 255 < len(record) < 450
    server.set("s1._domainkey.example.test", "TXT", [record])
    assert await resolver.txt("s1._domainkey.example.test") == [record]
    assert [q.protocol for q in server.queries] == ["udp"]


async def test_txt_too_big_for_udp_comes_over_tcp(server: TestDNS, resolver: Resolver) -> None:
    # the size of a 4096-bit key's record (generating one would take a second)
    big = "v=DKIM1; k=rsa; p=" + base64.b64encode(bytes(range(256)) * 2 + b"\x01" * 38).decode()
    assert len(big) > 700
    second = "v=DKIM1; k=ed25519; p=" + "A" * 44
    server.set("big._domainkey.example.test", "TXT", [big, second])
    assert sorted(await resolver.txt("big._domainkey.example.test")) == sorted([big, second])
    assert [q.protocol for q in server.queries] == ["udp", "tcp"]


async def test_txt_absent_is_empty_and_bad_utf8_is_replaced(server: TestDNS,
                                                           resolver: Resolver) -> None:
    assert await resolver.txt("nowhere.test") == []
    assert await resolver.txt("host.test") == []  # NODATA
    assert await resolver.txt("_domainkey.example.test") == []  # nothing below it either
    server.set("s._domainkey.example.test", "TXT", ["v=DKIM1"])
    assert await resolver.txt("_domainkey.example.test") == []  # empty non-terminal: NODATA
    server.set("latin1.test", "TXT", [b"caf\xe9", "v=spf1 -all"])
    assert sorted(await resolver.txt("Latin1.Test")) == ["caf\ufffd", "v=spf1 -all"]


async def test_ptr(server: TestDNS, resolver: Resolver) -> None:
    server.set("192.0.2.1", "PTR", ["Mail.Example.TEST."])
    server.set("2001:db8::1", "PTR", ["v6.example.test."])
    assert await resolver.ptr("192.0.2.1") == ["mail.example.test"]
    assert await resolver.ptr("::ffff:192.0.2.1") == ["mail.example.test"]  # a dual-stack peer
    assert await resolver.ptr("2001:db8::1") == ["v6.example.test"]
    assert await resolver.ptr("192.0.2.99") == []
    with pytest.raises(PermanentDNSError):
        await resolver.ptr("not-an-ip")


# ---------------------------------------------------------------------- configuration, cache


async def test_from_config(server: TestDNS) -> None:
    resolver = Resolver.from_config(DNS(nameservers=[server.address], timeout=1.5))
    assert resolver.timeout == 1.5 and resolver.resolver.lifetime == 1.5
    assert (await resolver.mx("example.test"))[0].host == "mx1.example.net"
    system = Resolver.from_config(DNS())  # /etc/resolv.conf; not queried (no Internet here)
    assert system.timeout == 5.0
    with pytest.raises(ValueError, match="not an IP address"):
        Resolver.from_config(DNS(nameservers=["dns.example.net"]))
    with pytest.raises(ValueError, match="positive"):
        Resolver([server.address], timeout=0)


def test_nameserver_syntax() -> None:
    assert parse_nameserver("192.0.2.53") == ("192.0.2.53", 53)
    assert parse_nameserver(" 127.0.0.1:5353 ") == ("127.0.0.1", 5353)
    assert parse_nameserver("::1") == ("::1", 53)
    assert parse_nameserver("[2001:DB8::53]") == ("2001:db8::53", 53)
    assert parse_nameserver("[::1]:5353") == ("::1", 5353)
    for bad in ("ns.example", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x", "[::1]5353",
                "[::1", "", "127.0.0.1:"):
        with pytest.raises(ValueError):
            parse_nameserver(bad)


async def test_answers_are_cached_within_their_ttl() -> None:
    with TestDNS({("cached.test", "MX"): ["10 mx.cached.test."]}, ttl=60) as server:
        resolver = Resolver([server.address], timeout=2.0)
        for _ in range(3):
            assert await resolver.mx("cached.test") == [MXHost(10, "mx.cached.test")]
            with pytest.raises(NXDomain):
                await resolver.mx("gone.cached.test")
        assert [(q.name, q.rtype) for q in server.queries] == [
            ("cached.test", "MX"), ("gone.cached.test", "MX")]


async def test_ttl_zero_sees_changes_at_once(server: TestDNS, resolver: Resolver) -> None:
    assert await resolver.addresses("a-only.test") == ["192.0.2.10"]
    server.set("a-only.test", "A", ["192.0.2.11"])
    assert await resolver.addresses("a-only.test") == ["192.0.2.11"]
    server.remove("a-only.test", "A")
    with pytest.raises(NXDomain):
        await resolver.addresses("a-only.test")
