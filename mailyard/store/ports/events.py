"""The event ports: the bus that wakes sessions and the change feed; the login-failure Counters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol


class EventBus(Protocol):
    """Fan-out of "account X changed to state S" to IDLE, push and the web."""

    async def publish(self, account_id: str, state: int) -> None: ...

    def subscribe(self, account_id: str) -> Subscription:
        """Registered when this returns: nothing published afterwards is missed."""
        ...

    def subscribe_all(self, group: str) -> ChangeFeed:
        """Every account's changes, each handed to one subscriber of `group` in the whole
        cluster (one per node would make every node do the work once more): work that must
        happen once per change, as a Web Push request does."""
        ...


class ChangeFeed(Protocol):
    """(account id, state) pairs; a busy reader gets the newest state of each account."""

    def __aiter__(self) -> AsyncIterator[tuple[str, int]]: ...

    async def __anext__(self) -> tuple[str, int]: ...

    def cancel(self) -> None: ...


class NodeEventBus(EventBus, Protocol):
    """An EventBus as the server's processes on one node hold it: the listener process is the
    hub (`listen` on the node's socket, which also proves no other server runs on this
    data_dir), the others `relay_to` it, and the hub forwards to each `add_peer`. A bus that
    already reaches every process (NATS) takes these as no-ops beyond its own checks."""

    async def listen(self, address: str) -> None: ...

    def relay_to(self, address: str) -> None: ...

    def add_peer(self, address: str) -> None: ...

    def close(self) -> None: ...


class Subscription(Protocol):
    """The states published for one account, in order (store/subscription.py, the one
    implementation every EventBus hands out)."""

    def __aiter__(self) -> AsyncIterator[int]: ...

    async def __anext__(self) -> int: ...

    def drain(self) -> bool:
        """Take every state waiting; whether there was any."""
        ...

    def take(self) -> int | None:
        """Take every state waiting; the highest, None when none was (an IMAP view that holds
        its own write already skips the re-read for states up to it)."""
        ...

    def cancel(self) -> None: ...

    async def aclose(self) -> None: ...


class Counters(Protocol):
    """Events counted in a sliding window per key, shared by every process that opens the same
    store (DESIGN: rate limits; one SQLite file per node, Redis in a cluster)."""

    async def hit(self, key: str, window: float, now: float) -> int:
        """Record one event for `key` at `now`; the events in (now - window, now] after it."""
        ...

    async def count(self, key: str, window: float, now: float) -> int:
        """The events of `key` in (now - window, now], recording none."""
        ...

    async def close(self) -> None: ...
