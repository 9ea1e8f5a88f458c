"""Push subscriptions (JMAP RFC 8620 §7.2): where the server may POST, for how long, how many.

The rules here are the server's, whatever protocol a subscription came in by: the server POSTs
wherever a url points, so only https:// to a public host is taken (http:// to loopback only
when the operator allows it, for tests), a subscription lives at most a week unless renewed,
and an account has at most 50. The JMAP methods parse and answer the wire format; the web-push
deliverer reads and drops subscriptions through this service too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from mailyard.store.ports import NotFound, PushSubscriptionRecord, PushSubscriptionStore

MAX_LIFE = 7 * 86_400.0
"""Seconds a subscription lives at most; a client renews by updating `expires`."""
MAX_PER_ACCOUNT = 50
MAX_URL = 2048


class BadSubscription(ValueError):
    """A property of a subscription the server does not take."""

    def __init__(self, prop: str, description: str) -> None:
        super().__init__(description)
        self.prop = prop


class TooManySubscriptions(Exception):
    def __init__(self) -> None:
        super().__init__(f"at most {MAX_PER_ACCOUNT} push subscriptions")


class PushSubscriptionService:
    def __init__(self, store: PushSubscriptionStore, *, loopback_http: bool = False) -> None:
        self._store = store
        self.loopback_http = loopback_http
        """Plain http:// to 127.0.0.1, ::1 or localhost is taken (a receiver tests start)."""

    def check_url(self, url: object) -> str:
        """https:// to a public host; http:// only to loopback when the policy allows.
        Internal addresses are refused: the server would POST to them (RFC 8620 §9.4)."""
        bad = BadSubscription("url", "url must be an absolute https URL of a push service")
        if not isinstance(url, str) or len(url) > MAX_URL:
            raise bad
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            _ = parts.port
        except ValueError:
            raise bad from None
        if not host or parts.username is not None or parts.password is not None:
            raise bad
        local = host == "localhost" or host.endswith(".localhost")
        try:
            address = ipaddress.ip_address(host)
            local = local or not address.is_global
            loopback = address.is_loopback
        except ValueError:
            loopback = local
        if parts.scheme == "https" and not local:
            return url
        if parts.scheme in ("http", "https") and self.loopback_http and loopback:
            return url
        raise bad

    @staticmethod
    def expires(requested: float | None, now: float) -> float:
        """The expiry a subscription gets: what was asked for, at most MAX_LIFE from now."""
        if requested is None:
            return now + MAX_LIFE
        if requested <= now:
            raise BadSubscription("expires", "expires is in the past")
        return min(requested, now + MAX_LIFE)

    async def get(self, account_id: str, ids: Sequence[str] | None = None
                  ) -> list[PushSubscriptionRecord]:
        """The account's subscriptions (those of `ids` that exist, or all), in id order."""
        return await self._store.get(account_id, ids)

    async def create(self, record: PushSubscriptionRecord) -> None:
        """TooManySubscriptions when the account has MAX_PER_ACCOUNT already."""
        if len(await self._store.get(record.account_id)) >= MAX_PER_ACCOUNT:
            raise TooManySubscriptions
        await self._store.put(record)

    async def update(self, record: PushSubscriptionRecord) -> None:
        await self._store.put(record)

    async def delete(self, account_id: str, subscription_id: str) -> PushSubscriptionRecord:
        """The subscription dropped; NotFound when the account has no such one."""
        found = await self._store.get(account_id, [subscription_id])
        if not found:
            raise NotFound(subscription_id)
        await self._store.delete(account_id, subscription_id)
        return found[0]

    async def verified(self, now: float) -> list[PushSubscriptionRecord]:
        """Every verified, unexpired subscription of every account (delivery's start)."""
        return await self._store.verified(now)

    async def delete_expired(self, now: float) -> int:
        return await self._store.delete_expired(now)
