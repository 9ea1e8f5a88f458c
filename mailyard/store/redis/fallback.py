"""Counters that outlive a Redis outage: per node while Redis is away, shared again after.

Counters guard logins and sending rates; they must never stop mail or logins. When Redis does
not answer, the node counts in its own store (counters.db) and says so once in the log; it
tries Redis again every `retry_after` seconds and says so once when Redis is back. What was
counted on the node meanwhile stays there: limits are per node for the outage, as the issue
allows, and shared again after it.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError

from mailyard.store.ports import Counters

log = logging.getLogger("mailyard.redis")

_UNAVAILABLE = (RedisError, OSError)
"""Any failure of Redis's, not only a refused connection: a Redis that answers OOM, READONLY
or MISCONF counts nothing, and a failed login it did not count must still be counted here,
or a brute-force guesser goes unlimited while Redis is full."""


class DegradingCounters:
    def __init__(self, shared: Counters, local: Counters, *, retry_after: float = 30.0) -> None:
        self.shared = shared
        self.local = local
        self.retry_after = retry_after
        self._down_since: float | None = None
        self._next_try = 0.0

    @property
    def degraded(self) -> bool:
        """True while counting per node (for /readyz and `mailyard cluster status`)."""
        return self._down_since is not None

    def _use_shared(self) -> bool:
        return self._down_since is None or time.monotonic() >= self._next_try

    def _failed(self, e: Exception) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("Redis counters unavailable (%s): counting per node until Redis"
                        " answers again", e)
        self._next_try = time.monotonic() + self.retry_after

    def _answered(self) -> None:
        if self._down_since is not None:
            log.warning("Redis counters answer again after %.0f s: shared counting resumes",
                        time.monotonic() - self._down_since)
            self._down_since = None

    async def hit(self, key: str, window: float, now: float) -> int:
        if self._use_shared():
            try:
                n = await self.shared.hit(key, window, now)
            except _UNAVAILABLE as e:
                self._failed(e)
            else:
                self._answered()
                return n
        return await self.local.hit(key, window, now)

    async def count(self, key: str, window: float, now: float) -> int:
        if self._use_shared():
            try:
                n = await self.shared.count(key, window, now)
            except _UNAVAILABLE as e:
                self._failed(e)
            else:
                self._answered()
                return n
        return await self.local.count(key, window, now)

    async def close(self) -> None:
        await self.shared.close()
        await self.local.close()
