"""Counters, limits and locks that outlive a Redis outage: per node while Redis is away,
shared again after.

What Redis holds guards logins and rates; it must never stop mail or logins. When Redis does
not answer, the node decides on its own (counters in counters.db, limits and locks in the
process: `LocalLedger`) and says so once in the log; it tries Redis again every `retry_after`
seconds and says so once when Redis is back. What was counted on the node meanwhile stays
there: limits are per node for the outage, as the issue allows, and shared again after it.
One `Outage` per process is shared by the counters and the ledger, so an outage is one
warning, not one per use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.exceptions import RedisError

from mailyard.core.ratelimit import Hold, LocalLedger
from mailyard.store.ports import Counters
from mailyard.store.redis.ledger import RedisLedger

log = logging.getLogger("mailyard.redis")

_UNAVAILABLE = (RedisError, OSError)
"""Any failure of Redis's, not only a refused connection: a Redis that answers OOM, READONLY
or MISCONF counts nothing, and a failed login it did not count must still be counted here,
or a brute-force guesser goes unlimited while Redis is full."""


class Outage:
    """Whether Redis is taken as away, with the one warning at each change."""

    def __init__(self, retry_after: float = 30.0) -> None:
        self.retry_after = retry_after
        self._down_since: float | None = None
        self._next_try = 0.0

    @property
    def degraded(self) -> bool:
        """True while deciding per node (for /readyz and `mailyard cluster status`)."""
        return self._down_since is not None

    def use_shared(self) -> bool:
        return self._down_since is None or time.monotonic() >= self._next_try

    def failed(self, e: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("Redis unavailable (%s): counters, limits and locks are per node"
                        " until Redis answers again", e)
        self._next_try = time.monotonic() + self.retry_after

    def answered(self) -> None:
        if self._down_since is not None:
            log.warning("Redis answers again after %.0f s: counters, limits and locks are"
                        " shared again", time.monotonic() - self._down_since)
            self._down_since = None


class DegradingCounters:
    def __init__(self, shared: Counters, local: Counters, *, retry_after: float = 30.0,
                 outage: Outage | None = None) -> None:
        self.shared = shared
        self.local = local
        self.outage = outage or Outage(retry_after)

    @property
    def degraded(self) -> bool:
        return self.outage.degraded

    async def hit(self, key: str, window: float, now: float) -> int:
        if self.outage.use_shared():
            try:
                n = await self.shared.hit(key, window, now)
            except _UNAVAILABLE as e:
                self.outage.failed(e)
            else:
                self.outage.answered()
                return n
        return await self.local.hit(key, window, now)

    async def count(self, key: str, window: float, now: float) -> int:
        if self.outage.use_shared():
            try:
                n = await self.shared.count(key, window, now)
            except _UNAVAILABLE as e:
                self.outage.failed(e)
            else:
                self.outage.answered()
                return n
        return await self.local.count(key, window, now)

    async def close(self) -> None:
        await self.shared.close()
        await self.local.close()


class DegradingLedger:
    """A `Ledger` over Redis that decides in the process (`local`) while Redis is away.

    A hold is released where it was taken. The leases of the holds taken in Redis are
    refreshed every lease / 3 seconds by a task this ledger starts with its first one; a
    hold whose lease ran out during an outage is not taken back (a session that outlives an
    outage may find its place given away: the price of never waiting on Redis)."""

    def __init__(self, shared: RedisLedger, local: LocalLedger | None = None, *,
                 outage: Outage | None = None) -> None:
        self.shared = shared
        self.local = local or LocalLedger()
        self.outage = outage or Outage()
        self._held: dict[tuple[str, str], Hold] = {}
        self._refresher: asyncio.Task[None] | None = None

    @property
    def degraded(self) -> bool:
        return self.outage.degraded

    async def admit(self, key: str, limit: int, window: float) -> bool:
        if self.outage.use_shared():
            try:
                ok = await self.shared.admit(key, limit, window)
            except _UNAVAILABLE as e:
                self.outage.failed(e)
            else:
                self.outage.answered()
                return ok
        return await self.local.admit(key, limit, window)

    async def exhausted(self, key: str, limit: int, window: float) -> bool:
        if self.outage.use_shared():
            try:
                full = await self.shared.exhausted(key, limit, window)
            except _UNAVAILABLE as e:
                self.outage.failed(e)
            else:
                self.outage.answered()
                return full
        return await self.local.exhausted(key, limit, window)

    async def hold(self, key: str, limit: int) -> Hold | None:
        if self.outage.use_shared():
            try:
                hold = await self.shared.hold(key, limit)
            except _UNAVAILABLE as e:
                self.outage.failed(e)
            else:
                self.outage.answered()
                if hold is not None:
                    self._held[(hold.key, hold.holder)] = hold
                    self._start_refresher()
                return hold
        return await self.local.hold(key, limit)

    async def release(self, hold: Hold) -> None:
        if not hold.shared:
            await self.local.release(hold)
            return
        self._held.pop((hold.key, hold.holder), None)
        try:
            await self.shared.release(hold)
        except _UNAVAILABLE as e:
            self.outage.failed(e)  # its lease runs out by itself

    async def claim(self, key: str, seconds: float) -> bool:
        if self.outage.use_shared():
            try:
                first = await self.shared.claim(key, seconds)
            except _UNAVAILABLE as e:
                self.outage.failed(e)
            else:
                self.outage.answered()
                return first
        return await self.local.claim(key, seconds)

    async def greylist(self, key: str, delay: float, window: float,
                       expire: float) -> float | None:
        if self.outage.use_shared():
            try:
                wait = await self.shared.greylist(key, delay, window, expire)
            except _UNAVAILABLE as e:
                self.outage.failed(e)
            else:
                self.outage.answered()
                return wait
        return None  # the node's own greylist decides

    def _start_refresher(self) -> None:
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_leases())

    async def _refresh_leases(self) -> None:
        while self._held:
            await asyncio.sleep(self.shared.lease / 3)
            try:
                await self.shared.refresh(self._held.values())
            except _UNAVAILABLE as e:
                self.outage.failed(e)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.shared.close()


def open_degrading(url: str, local_counters: Counters, *, prefix: str = "mailyard:"
                   ) -> tuple[DegradingCounters, DegradingLedger]:
    """The counters and the ledger of `[store] counters = url`, with one `Outage` between
    them: a Redis outage is one warning per process, whichever notices it first."""
    from mailyard.store.redis.counters import RedisCounters

    outage = Outage()
    return (DegradingCounters(RedisCounters(url, prefix=prefix), local_counters, outage=outage),
            DegradingLedger(RedisLedger(url, prefix=prefix), outage=outage))
