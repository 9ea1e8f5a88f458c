"""Sliding-window counters and concurrency limits; pure logic, the caller supplies the clock.

`Ledger` is where the protocols keep them when a cluster shares them: `LocalLedger` (this
process, the embedded default) or Redis (store/redis/ledger.py) for every node at once.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class WindowLimiter:
    """At most `limit` events per key in any `window` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str, now: float) -> bool:
        """Record an event for `key` if it is within the limit; say whether it was."""
        if self.limit <= 0:
            return True
        events = self._events[key]
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True

    def exhausted(self, key: str, now: float) -> bool:
        """Whether `key` is at its limit, without recording an event."""
        events = self._events.get(key)
        if self.limit <= 0 or not events:
            return False
        return sum(1 for t in events if t > now - self.window) >= self.limit

    def forget_idle(self, now: float) -> None:
        """Drop keys with no event inside the window, so the table cannot grow without bound."""
        for key in [k for k, ev in self._events.items() if not ev or ev[-1] <= now - self.window]:
            del self._events[key]


class ConcurrencyLimiter:
    """At most `limit` simultaneous holders per key (open connections per IP)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = defaultdict(int)

    def acquire(self, key: str) -> bool:
        if self.limit > 0 and self._open[key] >= self.limit:
            return False
        self._open[key] += 1
        return True

    def release(self, key: str) -> None:
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]


@dataclass(frozen=True)
class Hold:
    """One place taken under a concurrency limit (a connection, a maildrop lock)."""

    key: str
    holder: str
    shared: bool
    """Taken in the cluster's ledger (Redis), not in this process's: released there."""


class Ledger(Protocol):
    """Short-lived state that limits and locks keep: in this process by default
    (`LocalLedger`), in Redis for every node of a cluster (store/redis/ledger.py, which falls
    back to a `LocalLedger` while Redis is away). Every method answers: a ledger that cannot
    reach its engine decides per process rather than stop mail."""

    async def admit(self, key: str, limit: int, window: float) -> bool:
        """Record one event for `key` if fewer than `limit` were admitted in the last
        `window` seconds; say whether it was (limit <= 0: always)."""
        ...

    async def exhausted(self, key: str, limit: int, window: float) -> bool:
        """Whether `limit` events of `key` were admitted in the last `window` seconds
        (recording none; limit <= 0: never)."""
        ...

    async def hold(self, key: str, limit: int) -> Hold | None:
        """Take one of `limit` simultaneous places of `key`, or None when all are taken
        (limit <= 0: no limit)."""
        ...

    async def release(self, hold: Hold) -> None: ...

    async def claim(self, key: str, seconds: float) -> bool:
        """True for the first claim of `key` in `seconds`, False for any other meanwhile
        (an auto-reply sent once, whichever node delivers)."""
        ...

    async def greylist(self, key: str, delay: float, window: float,
                       expire: float) -> float | None:
        """RFC 6647: seconds the triplet `key` must still wait (0: let through), or None
        when this ledger keeps no greylist (the node's own policy store decides)."""
        ...


class LocalLedger:
    """The `Ledger` of one process: the in-memory limiters above, on the monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._windows: dict[tuple[int, float], WindowLimiter] = {}
        self._open: dict[str, int] = {}
        self._claims: dict[str, float] = {}
        self._admitted = 0

    async def admit(self, key: str, limit: int, window: float) -> bool:
        if limit <= 0:
            return True
        limiter = self._windows.get((limit, window))
        if limiter is None:
            limiter = self._windows[(limit, window)] = WindowLimiter(limit, window)
        now = self.clock()
        self._admitted += 1
        if self._admitted % 1024 == 0:  # keys of clients gone quiet cost nothing for long
            for each in self._windows.values():
                each.forget_idle(now)
        return limiter.allow(key, now)

    async def exhausted(self, key: str, limit: int, window: float) -> bool:
        limiter = self._windows.get((limit, window))
        return limit > 0 and limiter is not None and limiter.exhausted(key, self.clock())

    async def hold(self, key: str, limit: int) -> Hold | None:
        taken = self._open.get(key, 0)
        if 0 < limit <= taken:
            return None
        self._open[key] = taken + 1
        return Hold(key, "", shared=False)

    async def release(self, hold: Hold) -> None:
        left = self._open.get(hold.key, 0) - 1
        if left > 0:
            self._open[hold.key] = left
        else:
            self._open.pop(hold.key, None)

    async def claim(self, key: str, seconds: float) -> bool:
        now = self.clock()
        if len(self._claims) > 10_000:
            self._claims = {k: t for k, t in self._claims.items() if t > now}
        if self._claims.get(key, 0.0) > now:
            return False
        self._claims[key] = now + seconds
        return True

    async def greylist(self, key: str, delay: float, window: float,
                       expire: float) -> float | None:
        return None
