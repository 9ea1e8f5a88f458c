"""What every EventBus adapter hands its subscribers: the states published for one account,
in a bounded queue (`BACKLOG`), read until closed. One class, so the in-process bus and the
NATS bus cannot drift in what a subscriber sees."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

BACKLOG = 64
"""States kept per subscriber. A subscriber that does not read (an IMAP session sitting
authenticated, ten thousand idle ones) must not grow memory; since every state only says
"look again", dropping the newest when full loses nothing a reader needs."""


def offer(q: asyncio.Queue[int], state: int) -> None:
    if not q.full():
        q.put_nowait(state)


class Subscription:
    """The states published for one account, in order, until `aclose`."""

    def __init__(self, queue: asyncio.Queue[int], cancel: Callable[[], None]) -> None:
        self._queue = queue
        self._cancel = cancel

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> int:
        return await self._queue.get()

    def drain(self) -> bool:
        """Take every state waiting; say whether there was any (a cheap "anything changed?")."""
        had = False
        while not self._queue.empty():
            self._queue.get_nowait()
            had = True
        return had

    def cancel(self) -> None:
        self._cancel()

    async def aclose(self) -> None:
        self._cancel()
