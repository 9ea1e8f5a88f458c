"""Sliding-window counters for per-IP limits; pure logic, the caller supplies the clock."""

from __future__ import annotations

from collections import defaultdict, deque


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
