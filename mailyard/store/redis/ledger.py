"""The limits and locks of every node of a cluster, in Redis (core/ratelimit.Ledger).

Each operation is one Lua script, so two nodes deciding at the same instant see each other,
and every script reads Redis's own clock (TIME): the nodes' clocks may disagree, Redis's is
one. The structures:

- admit: a sorted set of admitted events scored by time, trimmed to the window;
- hold: a sorted set of holders scored by when their lease ends. A node refreshes the leases
  it holds (`refresh`, every `lease / 3` seconds from store/redis/fallback.py), so a node
  that dies without releasing frees its places within one lease instead of never;
- claim: SET NX with an expiry;
- greylist: a hash (first, passed) per RFC 6647 triplet, expiring `expire` after its last use.

Failures are raised (RedisError, OSError); store/redis/fallback.py turns them into per-node
decisions.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable

import redis.asyncio as aioredis

from mailyard.core.ratelimit import Hold

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1e6\n"

_ADMIT = _NOW + """
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return 1
"""

_EXHAUSTED = _NOW + """
return redis.call('ZCOUNT', KEYS[1], '(' .. (now - tonumber(ARGV[2])), '+inf')
    >= tonumber(ARGV[1]) and 1 or 0
"""

_HOLD = _NOW + """
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(ARGV[1])
if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000))
return 1
"""

_REFRESH = _NOW + """
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if redis.call('ZADD', key, 'XX', 'CH', now + lease, ARGV[i + 1]) == 1 then
    redis.call('PEXPIRE', key, math.ceil(lease * 1000))
  end
end
return 1
"""

_GREYLIST = _NOW + """
local delay, window, expire = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local first = tonumber(redis.call('HGET', KEYS[1], 'first'))
local passed = tonumber(redis.call('HGET', KEYS[1], 'passed'))
local wait = 0
if passed and now - passed < expire then
  redis.call('HSET', KEYS[1], 'passed', tostring(now))
elseif not first or now - first > window then
  redis.call('HSET', KEYS[1], 'first', tostring(now))
  redis.call('HDEL', KEYS[1], 'passed')
  wait = math.max(delay, 1)
elseif now - first < delay then
  wait = math.max(delay - (now - first), 1)
else
  redis.call('HSET', KEYS[1], 'passed', tostring(now))
end
redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(expire, window) * 1000))
return tostring(wait)
"""


class RedisLedger:
    """`lease`: seconds a hold outlives its last refresh (a dead node's places come back
    after at most that long)."""

    def __init__(self, url: str, *, prefix: str = "mailyard:", timeout: float = 2.0,
                 lease: float = 60.0) -> None:
        self._redis = aioredis.Redis.from_url(url, socket_timeout=timeout,
                                              socket_connect_timeout=timeout)
        self._prefix = prefix
        self.lease = lease
        self._node = f"{os.uname().nodename}:{os.getpid()}"
        self._admit = self._redis.register_script(_ADMIT)
        self._exhausted = self._redis.register_script(_EXHAUSTED)
        self._hold = self._redis.register_script(_HOLD)
        self._refresh = self._redis.register_script(_REFRESH)
        self._greylist = self._redis.register_script(_GREYLIST)

    def _token(self) -> str:
        return f"{self._node}:{secrets.token_hex(6)}"

    async def admit(self, key: str, limit: int, window: float) -> bool:
        if limit <= 0:
            return True
        return bool(await self._admit(keys=[self._prefix + "rate:" + key],
                                      args=[limit, window, self._token()]))

    async def exhausted(self, key: str, limit: int, window: float) -> bool:
        if limit <= 0:
            return False
        return bool(await self._exhausted(keys=[self._prefix + "rate:" + key],
                                          args=[limit, window]))

    async def hold(self, key: str, limit: int) -> Hold | None:
        holder = self._token()
        if await self._hold(keys=[self._prefix + "hold:" + key],
                            args=[limit, self.lease, holder]):
            return Hold(key, holder, shared=True)
        return None

    async def release(self, hold: Hold) -> None:
        await self._redis.zrem(self._prefix + "hold:" + hold.key, hold.holder)

    async def refresh(self, holds: Iterable[Hold]) -> None:
        """Extend the leases of `holds` (those already gone stay gone)."""
        held = list(holds)
        if held:
            await self._refresh(keys=[self._prefix + "hold:" + h.key for h in held],
                                args=[self.lease, *(h.holder for h in held)])

    async def claim(self, key: str, seconds: float) -> bool:
        return bool(await self._redis.set(self._prefix + "claim:" + key, b"1", nx=True,
                                          px=max(1, int(seconds * 1000))))

    async def greylist(self, key: str, delay: float, window: float,
                       expire: float) -> float | None:
        wait = await self._greylist(keys=[self._prefix + "greylist:" + key],
                                    args=[delay, window, expire])
        return float(wait)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
