"""The Counters port (sliding windows per key), run against every adapter, and the LoginGuard
over each: what every protocol's login limit relies on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mailyard.services.loginguard import LoginGuard, LoginLimits, Refusal, network_of
from tests.contract.conftest import Engine

HOUR = 3600.0


async def test_hits_count_inside_the_window_only(counters_engine: Engine) -> None:
    c = await counters_engine.open()
    assert await c.count("k", HOUR, 1000.0) == 0
    assert await c.hit("k", HOUR, 1000.0) == 1
    assert await c.hit("k", HOUR, 1000.0) == 2  # the same instant: two events
    assert await c.hit("k", HOUR, 2000.0) == 3
    assert await c.count("other", HOUR, 2000.0) == 0
    # 1000 + 3600 = 4600: the first two leave the window exactly then (the window is open
    # at its old end), the third at 5600.
    assert await c.count("k", HOUR, 4599.0) == 3
    assert await c.count("k", HOUR, 4600.0) == 1
    assert await c.hit("k", HOUR, 4600.0) == 2
    assert await c.count("k", HOUR, 5600.0) == 1


async def test_a_second_adapter_on_the_same_store_sees_the_counts(
        counters_engine: Engine) -> None:
    """Another process (an IMAP process, another node) counts into the same windows."""
    a = await counters_engine.open()
    b = await counters_engine.open()
    await asyncio.gather(*(a.hit("shared", HOUR, 10.0) for _ in range(20)),
                         *(b.hit("shared", HOUR, 10.0) for _ in range(20)))
    assert await a.count("shared", HOUR, 11.0) == 40
    assert await b.count("shared", HOUR, 11.0) == 40


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_guard_blocks_a_network_across_protocols_until_failures_age_out(
        counters_engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    guard = LoginGuard(await counters_engine.open(),
                       LoginLimits(failures_per_network=3, failures_per_account=0), clock=clock)
    for protocol in ("imap", "pop3"):
        assert await guard.refusal("192.0.2.7", "bob@example.test") is None
        await guard.failed("192.0.2.7", "bob@example.test", protocol)
    with caplog.at_level(logging.WARNING, logger="mailyard.auth"):
        await guard.failed("192.0.2.7", "alice@example.test", "smtp")
    assert [r.getMessage() for r in caplog.records if "login blocked" in r.getMessage()], \
        "the start of a block is logged"
    # Blocked whatever the account or protocol; another network is not.
    assert await guard.refusal("192.0.2.7", "carol@example.test") is Refusal.NETWORK
    assert await guard.refusal("192.0.2.8", "bob@example.test") is None
    clock.now += HOUR - 1
    assert await guard.refusal("192.0.2.7", "bob@example.test") is Refusal.NETWORK
    clock.now += 2
    assert await guard.refusal("192.0.2.7", "bob@example.test") is None


async def test_guard_counts_ipv6_by_prefix(counters_engine: Engine) -> None:
    guard = LoginGuard(await counters_engine.open(),
                       LoginLimits(failures_per_network=2, failures_per_account=0),
                       clock=Clock())
    await guard.failed("2001:db8:1:2::1", "x@example.test", "imap")
    await guard.failed("2001:db8:1:2:ffff:ffff:ffff:fffe", "y@example.test", "jmap")
    assert await guard.refusal("2001:db8:1:2::99", "z@example.test") is Refusal.NETWORK
    assert await guard.refusal("2001:db8:1:3::1", "z@example.test") is None


async def test_guard_blocks_an_account_guessed_from_many_networks(
        counters_engine: Engine) -> None:
    guard = LoginGuard(await counters_engine.open(),
                       LoginLimits(failures_per_network=0, failures_per_account=5),
                       clock=Clock())
    for n in range(5):
        await guard.failed(f"198.51.100.{n}", "Bob@Example.TEST", "imap")
    # The account as any spelling of it, from any network.
    assert await guard.refusal("203.0.113.9", "bob@example.test") is Refusal.ACCOUNT
    assert await guard.refusal("203.0.113.9", "alice@example.test") is None


@pytest.mark.parametrize(("ip", "key"), [
    ("192.0.2.1", "192.0.2.1"),
    ("::ffff:192.0.2.1", "192.0.2.1"),
    ("2001:db8::1", "2001:db8::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("not-an-ip", "not-an-ip"),
])
def test_network_of(ip: str, key: str) -> None:
    assert network_of(ip) == key
