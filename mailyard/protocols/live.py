"""The sessions open on this process's listeners: counted for /metrics, and told goodbye when
the server stops (IMAP BYE, POP3 -ERR, SMTP 421) instead of having their sockets cut.

One registry per process: a listener registers each session with the coroutine that ends it
politely; `serve` calls `goodbye` after the listening sockets are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator

from mailyard import metrics

log = logging.getLogger("mailyard.live")

Goodbye = Callable[[], Awaitable[None]]


class LiveSessions:
    def __init__(self) -> None:
        self._sessions: dict[object, tuple[str, Goodbye]] = {}
        self.closing = False

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
        return len(self._sessions)

    async def goodbye(self, timeout: float) -> None:
        """Say goodbye to every session; wait up to `timeout` seconds for them to end (an
        SMTP session in the middle of DATA finishes its message first)."""
        self.closing = True
        sessions = list(self._sessions.values())
        if not sessions:
            return
        log.info("saying goodbye to %d open session(s)", len(sessions))
        results = await asyncio.gather(*(asyncio.wait_for(bye(), timeout)
                                         for _, bye in sessions), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(
                    result, ConnectionError | TimeoutError):
                log.warning("goodbye failed: %r", result)
        deadline = asyncio.get_running_loop().time() + timeout
        while self._sessions and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if self._sessions:
            log.warning("%d session(s) still open after %.0f s", len(self._sessions), timeout)


LIVE = LiveSessions()
