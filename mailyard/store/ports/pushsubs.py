"""The PushSubscriptionStore port: JMAP Web Push subscriptions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    pass


@dataclass(frozen=True, slots=True)
class PushSubscriptionRecord:
    """A JMAP PushSubscription (RFC 8620 §7.2): where to POST StateChanges for one device.

    It belongs to the credentials that made it (here: the account they log in to), not to an
    account's data, so it has no place in the change log: creating one changes no JMAP state.
    `verification_code` is the server's secret; `verified` turns true once the client has
    echoed it back, and only then does the subscription receive StateChanges."""

    id: str
    account_id: str
    device_client_id: str
    url: str
    keys: dict[str, str] | None
    """{"p256dh": ..., "auth": ...} base64url, for RFC 8291 encryption; None sends plaintext."""
    verification_code: str
    verified: bool
    expires: float
    """Seconds since the epoch; the server clamps every subscription to a maximum life."""
    types: tuple[str, ...] | None
    """The data types the client wants StateChanges for; None: all of them."""


class PushSubscriptionStore(Protocol):
    """The push subscriptions of every account, durable across restarts."""

    async def put(self, record: PushSubscriptionRecord) -> None:
        """Create or replace (by id)."""
        ...

    async def get(self, account_id: str, ids: Sequence[str] | None = None
                  ) -> list[PushSubscriptionRecord]:
        """The account's subscriptions (those of `ids` that exist, or all), in id order;
        another account's ids are simply not found."""
        ...

    async def delete(self, account_id: str, subscription_id: str) -> None:
        """Raises NotFound when the account has no such subscription."""
        ...

    async def verified(self, now: float) -> list[PushSubscriptionRecord]:
        """Every verified, unexpired subscription of every account (the deliverer's start)."""
        ...

    async def delete_expired(self, now: float) -> int:
        """Drop the subscriptions whose `expires` has passed; returns how many."""
        ...

    def close(self) -> None: ...
