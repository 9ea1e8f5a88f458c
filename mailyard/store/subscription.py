"""What every EventBus adapter hands its subscribers: the states published for one account,
in a bounded queue (`BACKLOG`), read until closed. One class, so the in-process bus and the
NATS bus cannot drift in what a subscriber sees."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

BACKLOG = 64
"""States kept per subscriber. A subscriber that does not read (an IMAP session sitting
authenticated, ten thousand idle ones) must not grow memory: a full queue folds its oldest
state into the new one (see `offer`)."""


def offer(q: asyncio.Queue[int], state: int) -> None:
    """Queue `state`; when the queue is full, its oldest state and this one become one entry,
    the higher of the two. Every state says "look again", and the highest one heard also
    says how far: an IMAP view that already holds a change it made itself (views.py) skips
    the re-read for states up to its own, so the highest state must never be the one lost."""
    if q.full():
        state = max(state, q.get_nowait())
    q.put_nowait(state)


class Subscription:
    """The states published for one account, in order (a full queue folds, see `offer`),
    until `aclose`."""

    def __init__(self, queue: asyncio.Queue[int], cancel: Callable[[], None]) -> None:
        self._queue = queue
        self._cancel = cancel

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> int:
        return await self._queue.get()

    def drain(self) -> bool:
        """Take every state waiting; say whether there was any (a cheap "anything changed?")."""
        return self.take() is not None

    def take(self) -> int | None:
        """Take every state waiting; the highest, or None when there was none ("anything
        changed, and up to where?")."""
        highest: int | None = None
        while not self._queue.empty():
            state = self._queue.get_nowait()
            if highest is None or state > highest:
                highest = state
        return highest

    def cancel(self) -> None:
        self._cancel()

    async def aclose(self) -> None:
        self._cancel()


class AccountChanges:
    """Every account's latest published state, for a reader that acts once per change of any
    account (Web Push delivery) rather than watching one account.

    It never drops a change and cannot grow past one entry per account: states that arrive
    while the reader is busy collapse into the newest per account, which is all a reader
    needs ("look again"). Accounts come out in the order they first changed."""

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._pending: dict[str, int] = {}
        self._ready = asyncio.Event()
        self._cancel = cancel

    def offer(self, account_id: str, state: int) -> None:
        if state > self._pending.get(account_id, -1):
            self._pending[account_id] = state
        self._ready.set()

    def __aiter__(self) -> AccountChanges:
        return self

    async def __anext__(self) -> tuple[str, int]:
        while not self._pending:
            self._ready.clear()
            await self._ready.wait()
        account_id = next(iter(self._pending))
        return account_id, self._pending.pop(account_id)

    def cancel(self) -> None:
        self._cancel()
