"""The Queue port: durable work items with leases, retries and dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    pass


@dataclass(slots=True)
class QueueItem:
    id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    lease_token: str = ""
    last_error: str | None = None
    created_at: float = 0.0


@dataclass(slots=True)
class NewItem:
    """One item of an atomic `enqueue_many`."""

    kind: str
    payload: dict[str, Any]
    item_id: str | None = None
    delay: float = 0.0


@dataclass(slots=True)
class PendingItem:
    """An item waiting in the queue (for `mailyard queue list` and the owner of a held send)."""

    id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    available_at: float
    leased: bool
    last_error: str | None
    created_at: float


@dataclass(slots=True)
class DeadLetter:
    id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    error: str
    created_at: float
    died_at: float


@dataclass(slots=True)
class QueueStats:
    ready: int = 0
    leased: int = 0
    delayed: int = 0
    dead: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Queue(Protocol):
    """Durable work items with leases, attempts and a dead-letter queue (at-least-once).

    A leased item is invisible to other workers until its lease runs out; a worker that dies
    simply lets it run out and another takes the item. `ack` and `fail` carry the lease token so a
    worker that lost its lease cannot disturb the worker that took it over.
    """

    async def enqueue(
        self, kind: str, payload: dict[str, Any], *, item_id: str | None = None,
        delay: float = 0.0,
    ) -> str: ...

    async def enqueue_many(self, items: Sequence[NewItem]) -> list[str]:
        """All or none: a submission's local and per-domain items appear together, so a
        crash can never deliver to some recipients of a message the client saw refused."""
        ...

    async def lease(
        self, kinds: Sequence[str], limit: int, lease_seconds: float
    ) -> list[QueueItem]: ...

    async def ack(self, item: QueueItem) -> bool: ...

    async def retry(self, item: QueueItem, error: str, delay: float, *,
                    payload: dict[str, Any] | None = None) -> bool:
        """Release the item until `delay` has passed; `payload` replaces its payload (the
        recipients still to do, say)."""
        ...

    async def bury(self, item: QueueItem, error: str, *,
                   payload: dict[str, Any] | None = None) -> bool:
        """Move the item to the dead-letter queue (with `payload` instead of its own)."""
        ...

    async def pending(self, kinds: Sequence[str] = (), *, prefix: str = "",
                      limit: int = 1000) -> list[PendingItem]:
        """Items not yet done, oldest first; only `kinds` (all when empty), only ids that
        start with `prefix`."""
        ...

    async def cancel(self, item_id: str) -> bool:
        """Delete a waiting item; False if a worker holds it now (it is being sent)."""
        ...

    async def stats(self) -> QueueStats: ...

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    async def dead_letter(self, item_id: str) -> DeadLetter: ...

    async def revive(self, item_id: str | None = None) -> int:
        """Put one dead letter (or all when None) back in the queue with a fresh retry budget."""
        ...

    async def drop(self, item_id: str) -> None: ...

    async def release(self, item_id: str, items: Sequence[NewItem]) -> None:
        """Replace a dead letter by `items` (held spam an admin releases, turned into the
        sends it would have been): NotFound when there is no such dead letter, so a second release
        does nothing. The items' ids are the caller's (derived from the letter's), so a
        release repeated after a crash queues each once."""
        ...

    async def expire_dead(self, before: float) -> int:
        """Delete the dead letters that died before `before` (epoch seconds): the retention
        `mailyard gc` applies (`[queue] dead_letter_days`). How many went."""
        ...

    async def release_leases(self) -> int:
        """Make every leased item available now: at start-up, when no worker of a previous run
        can still hold one (the previous process is gone), so they need not wait out a lease."""
        ...

    async def wait(self, timeout: float) -> None:
        """Return when new work may be available, or after `timeout` seconds."""
        ...

    def close(self) -> None: ...
