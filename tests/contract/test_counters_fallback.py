"""A Redis outage degrades the counters to per node, with one warning, and never fails a hit."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from mailyard.store.redis.counters import RedisCounters
from mailyard.store.redis.fallback import DegradingCounters
from mailyard.store.sqlite.counters import SqliteCounters

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)


async def test_redis_outage_counts_per_node_then_shares_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    server = start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    node = DegradingCounters(RedisCounters(url, timeout=1.0),
                             SqliteCounters(tmp_path / "node-a.db"), retry_after=0.2)
    other = RedisCounters(url)  # another node, reading the shared count
    try:
        now = time.time()
        assert await node.hit("k", 60, now) == 1
        assert await other.count("k", 60, now) == 1  # shared
        assert not node.degraded

        server.kill()
        server.wait()
        with caplog.at_level(logging.WARNING, logger="mailyard.redis"):
            for n in range(2, 6):  # no exception: logins go on, counted on the node
                assert await node.hit("k", 60, time.time()) == n - 1
            assert node.degraded
            warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
            assert len(warnings) == 1, [r.getMessage() for r in caplog.records]

            server = start_redis(port, tmp_path)  # empty: the outage's hits stayed local
            deadline = time.monotonic() + 30
            while node.degraded:
                assert time.monotonic() < deadline, "never went back to Redis"
                await node.hit("again", 60, time.time())
                await asyncio.sleep(0.05)
            assert await node.hit("k", 60, time.time()) == 1
            assert await other.count("k", 60, time.time()) == 1
            assert any("answers again" in r.getMessage() for r in caplog.records)
    finally:
        await node.close()
        await other.close()
        server.kill()
        server.wait()


async def test_redis_answering_errors_counts_per_node(tmp_path: Path) -> None:
    """A Redis that answers but refuses writes (OOM here; READONLY and MISCONF alike) is an
    outage too: every hit is still counted, on the node (a ResponseError used to escape, so
    a login guesser's failures were never counted)."""
    port = free_port()
    server = start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    node = DegradingCounters(RedisCounters(url, timeout=1.0),
                             SqliteCounters(tmp_path / "node-a.db"), retry_after=60)
    admin = aioredis.Redis.from_url(url)
    try:  # as an operator would make it full
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", "1")
        for n in range(1, 6):
            assert await node.hit("guess", 60, time.time()) == n
        assert node.degraded
    finally:
        await node.close()
        await admin.aclose()
        server.kill()
        server.wait()
