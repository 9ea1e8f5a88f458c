"""Sliding-window counters in Redis, shared by every node of a cluster.

A key is a sorted set of events scored by time: a hit trims what left the window, adds the
event and counts, in one MULTI/EXEC so two nodes hitting the same key both see their own
event counted; the set expires a window after its last hit, so idle keys cost nothing.
"""

from __future__ import annotations

import math
import secrets

import redis.asyncio as aioredis


class RedisCounters:
    def __init__(self, url: str, *, prefix: str = "mailyard:", timeout: float = 2.0) -> None:
        """`timeout`: seconds for a connect or an answer; a login waits no longer on a Redis
        that is away (store/redis/fallback.py then counts on the node)."""
        self._redis = aioredis.Redis.from_url(url, socket_timeout=timeout,
                                              socket_connect_timeout=timeout)
        self._prefix = prefix

    async def hit(self, key: str, window: float, now: float) -> int:
        name = self._prefix + key
        member = f"{now:.6f}:{secrets.token_hex(4)}"  # two events at the same instant: two
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(name, "-inf", now - window)
            pipe.zadd(name, {member: now})
            pipe.zcount(name, f"({now - window}", "+inf")
            pipe.expire(name, max(1, math.ceil(window)))
            _, _, n, _ = await pipe.execute()
        return int(n)

    async def count(self, key: str, window: float, now: float) -> int:
        return int(await self._redis.zcount(self._prefix + key, f"({now - window}", "+inf"))

    async def close(self) -> None:
        await self._redis.aclose()
