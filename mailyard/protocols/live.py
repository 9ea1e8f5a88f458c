"""The sessions open on this process's listeners: counted for /metrics, and told goodbye when
the server stops (IMAP BYE, POP3 -ERR, SMTP 421) instead of having their sockets cut.

One registry per process: a listener registers each session with the coroutine that ends it
politely; `serve` calls `goodbye` after the listening sockets are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Iterator
from typing import Protocol

from mailyard import metrics

log = logging.getLogger("mailyard.live")

Goodbye = Callable[[], Awaitable[None]]


class Member(Protocol):
    """A session that says its own goodbye (registered with `join`)."""

    def goodbye(self) -> Awaitable[None]: ...


class LiveSessions:
    def __init__(self) -> None:
        self._sessions: dict[object, tuple[str, Goodbye]] = {}
        self._tracked: list[Collection[Member]] = []
        """Collections of sessions that say their own goodbye (see `track`): ten thousand
        IDLE IMAP sessions cost no tuple, bound method or entry of their own here."""
        self.closing = False

    def track(self, members: Collection[Member]) -> None:
        """Also count, and say goodbye to, the sessions in `members`: a collection their
        listener keeps anyway (IMAP's set for its idle sweep), so a session costs no entry of
        its own here. The listener reports them opening and closing with `counted`."""
        self._tracked.append(members)

    @staticmethod
    def counted(protocol: str, opened: bool) -> None:
        """A session of a tracked collection opened (True) or closed (False): the metrics."""
        if opened:
            metrics.CONNECTIONS.labels(protocol).inc()
            metrics.OPEN_CONNECTIONS.labels(protocol).inc()
        else:
            metrics.OPEN_CONNECTIONS.labels(protocol).dec()

    def opened(self, key: object, protocol: str, goodbye: Goodbye) -> None:
        self._sessions[key] = (protocol, goodbye)
        metrics.CONNECTIONS.labels(protocol).inc()
        metrics.OPEN_CONNECTIONS.labels(protocol).inc()

    def closed(self, key: object) -> None:
        entry = self._sessions.pop(key, None)
        if entry is not None:
            metrics.OPEN_CONNECTIONS.labels(entry[0]).dec()

    @contextlib.contextmanager
    def session(self, protocol: str, goodbye: Goodbye) -> Iterator[None]:
        key = object()
        self.opened(key, protocol, goodbye)
        try:
            yield
        finally:
            self.closed(key)

    def count(self) -> int:
        return len(self._sessions) + sum(len(members) for members in self._tracked)

    async def goodbye(self, timeout: float) -> None:
        """Say goodbye to every session; wait up to `timeout` seconds for them to end (an
        SMTP session in the middle of DATA finishes its message first)."""
        self.closing = True
        byes = [bye for _, bye in self._sessions.values()]
        byes += [member.goodbye for members in self._tracked for member in members]
        if not byes:
            return
        log.info("saying goodbye to %d open session(s)", len(byes))
        results = await asyncio.gather(*(asyncio.wait_for(bye(), timeout) for bye in byes),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(
                    result, ConnectionError | TimeoutError):
                log.warning("goodbye failed: %r", result)
        deadline = asyncio.get_running_loop().time() + timeout
        while self.count() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if self.count():
            log.warning("%d session(s) still open after %.0f s", self.count(), timeout)


LIVE = LiveSessions()
