"""The cluster's ledger in a real Redis: two ledgers stand for two nodes; and what happens
when Redis goes away (per-node decisions, one warning, never an exception)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from subprocess import Popen

import pytest

from mailyard.core.ratelimit import LocalLedger
from mailyard.store.redis.fallback import DegradingLedger, Outage
from mailyard.store.redis.ledger import RedisLedger
from tests.contract.test_counters_fallback import free_port, start_redis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed")


class Redis:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Popen[bytes] | None = start_redis(self.port, directory)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def start(self) -> None:
        self.process = start_redis(self.port, self.directory)


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[Redis]:
    server = Redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def node(redis: Redis, *, lease: float = 60.0) -> DegradingLedger:
    return DegradingLedger(RedisLedger(redis.url, timeout=1.0, lease=lease),
                           outage=Outage(retry_after=0.2))


async def test_two_nodes_share_windows_holds_claims_and_greylist(redis: Redis) -> None:
    a, b = node(redis), node(redis)
    try:
        assert await a.admit("ip", 2, 60) and await b.admit("ip", 2, 60)
        assert not await a.admit("ip", 2, 60) and not await b.admit("ip", 2, 60)
        assert await a.admit("other", 2, 60)
        assert await a.exhausted("ip", 2, 60) and await b.exhausted("ip", 2, 60)
        assert not await b.exhausted("other", 2, 60) and not await b.exhausted("none", 2, 60)

        lock = await a.hold("maildrop", 1)
        assert lock is not None and lock.shared
        assert await b.hold("maildrop", 1) is None  # RFC 1939 [IN-USE], on another node
        await a.release(lock)
        again = await b.hold("maildrop", 1)
        assert again is not None
        await b.release(again)

        assert await a.claim("vacation:x", 60)
        assert not await b.claim("vacation:x", 60)

        assert await a.greylist("t", 1.0, 3600, 7200) == 1.0  # first sight: wait
        assert 0 < (await b.greylist("t", 1.0, 3600, 7200) or 0) <= 1.0  # too early
        deadline = time.monotonic() + 30
        while (wait := await b.greylist("t", 1.0, 3600, 7200)) != 0:
            assert wait is not None and time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert await a.greylist("t", 1.0, 3600, 7200) == 0  # passed: let through at once
        assert not a.degraded and not b.degraded
    finally:
        await a.close()
        await b.close()


async def test_a_dead_nodes_places_come_back_after_its_lease(redis: Redis) -> None:
    """A node that dies holding a place never releases it; its lease runs out. A live one
    keeps its place past the lease by refreshing it."""
    dead = RedisLedger(redis.url, lease=1.0)  # no DegradingLedger: nothing refreshes it
    live, other = node(redis, lease=1.0), node(redis, lease=1.0)
    try:
        assert await dead.hold("conn", 1) is not None
        kept = await live.hold("kept", 1)
        assert kept is not None
        assert await other.hold("conn", 1) is None
        started = time.monotonic()
        while (taken := await other.hold("conn", 1)) is None:
            assert time.monotonic() - started < 30, "the dead node's place never came back"
            await asyncio.sleep(0.1)
        assert await other.hold("kept", 1) is None, "refreshed by its live holder"
        await other.release(taken)
    finally:
        await dead.close()
        await live.close()
        await other.close()


async def test_redis_outage_decides_per_node_with_one_warning(
        redis: Redis, caplog: pytest.LogCaptureFixture) -> None:
    a, b = node(redis), node(redis)
    try:
        lock = await a.hold("maildrop", 1)
        assert lock is not None
        redis.stop()
        with caplog.at_level(logging.WARNING, logger="mailyard.redis"):
            # Nothing raises: every answer comes from the node's own process.
            assert await b.hold("maildrop", 1) is not None  # b cannot see a's lock
            local = await b.hold("maildrop", 1)
            assert local is None  # ... but its own, yes
            assert await b.admit("ip", 1, 60) and not await b.admit("ip", 1, 60)
            assert await b.exhausted("ip", 1, 60) and not await b.exhausted("ip2", 1, 60)
            assert await b.claim("v", 60) and not await b.claim("v", 60)
            assert await b.greylist("t", 1, 60, 60) is None  # the node's store decides
            await a.release(lock)  # the lease will run out in Redis
            assert a.degraded and b.degraded
            warnings = [r for r in caplog.records if r.getMessage().startswith(
                "Redis unavailable") and r.name == "mailyard.redis"]
            assert len(warnings) == 2, [r.getMessage() for r in caplog.records]  # one each

            redis.start()
            deadline = time.monotonic() + 30
            while b.degraded:
                assert time.monotonic() < deadline, "never went back to Redis"
                await b.admit("probe", 0, 60)
                await b.claim(f"probe-{time.monotonic()}", 1)
                await asyncio.sleep(0.05)
            assert any("answers again" in r.getMessage() for r in caplog.records)
        shared = await b.hold("maildrop", 1)
        assert shared is not None and shared.shared
    finally:
        await a.close()
        await b.close()


async def test_local_ledger_is_the_embedded_default() -> None:
    clock = [0.0]
    ledger = LocalLedger(clock=lambda: clock[0])
    assert not await ledger.exhausted("k", 1, 10)
    assert await ledger.admit("k", 1, 10) and not await ledger.admit("k", 1, 10)
    assert await ledger.exhausted("k", 1, 10)
    clock[0] = 10.5
    assert await ledger.admit("k", 1, 10)
    assert await ledger.admit("k", 0, 10)  # no limit
    first = await ledger.hold("h", 2)
    assert first is not None and await ledger.hold("h", 2) is not None
    assert await ledger.hold("h", 2) is None
    await ledger.release(first)
    assert await ledger.hold("h", 2) is not None
    assert await ledger.claim("c", 5) and not await ledger.claim("c", 5)
    clock[0] = 16.0
    assert await ledger.claim("c", 5)
