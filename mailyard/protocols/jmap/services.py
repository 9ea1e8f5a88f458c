"""What the JMAP listener is given: the services it calls and the limits it promises.

Kept apart from `http.py` so that the session, auth and method modules can name these types
without importing the web application that composes them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mailyard.services.accounts import AccountService
from mailyard.store.ports import Account

TokenChecker = Callable[[str], Awaitable[Account | None]]
"""Maps a Bearer token to its account (None: unknown, expired or revoked)."""

MiB = 1024 * 1024


@dataclass(frozen=True)
class CoreLimits:
    """The `urn:ietf:params:jmap:core` capability (RFC 8620 §2): advertised to clients and
    enforced here, so a client that respects them is never refused."""

    max_size_upload: int = 35 * MiB
    max_concurrent_upload: int = 4
    max_size_request: int = 10 * MiB
    max_concurrent_requests: int = 4
    max_calls_in_request: int = 64
    max_objects_in_get: int = 1000
    max_objects_in_set: int = 1000
    collation_algorithms: tuple[str, ...] = ("i;ascii-numeric", "i;ascii-casemap",
                                             "i;unicode-casemap")

    def to_json(self) -> dict[str, Any]:
        return {
            "maxSizeUpload": self.max_size_upload,
            "maxConcurrentUpload": self.max_concurrent_upload,
            "maxSizeRequest": self.max_size_request,
            "maxConcurrentRequests": self.max_concurrent_requests,
            "maxCallsInRequest": self.max_calls_in_request,
            "maxObjectsInGet": self.max_objects_in_get,
            "maxObjectsInSet": self.max_objects_in_set,
            "collationAlgorithms": list(self.collation_algorithms),
        }


@dataclass(frozen=True)
class JMAPPolicy:
    limits: CoreLimits = field(default_factory=CoreLimits)
    allow_plaintext_loopback: bool = False
    """Credentials may cross plain HTTP only on the machine itself (tests, a local proxy)."""
    forwarded_proto_header: str | None = None
    """A header such as "x-forwarded-proto" that says the client used TLS to a proxy in front
    of us; believed only from `trusted_proxies`, never from anyone when None."""
    trusted_proxies: frozenset[str] = frozenset({"127.0.0.1", "::1"})
    auth_cache_seconds: float = 300.0
    auth_cache_size: int = 1024
    allowed_origins: frozenset[str] = frozenset()
    """Origins (scheme://host[:port]) besides the one a request is addressed to whose pages
    may open the WebSocket or POST with a user's browser credentials: the public URL when a
    proxy in front rewrites Host, the webmail's origin when it is served from another host."""
    push_loopback_http: bool = False
    """PushSubscription urls may be plain http:// to 127.0.0.1/::1/localhost (a receiver the
    tests start); otherwise only https:// to a host that is no loopback or private address."""


@dataclass
class JMAPServices:
    accounts: AccountService
    tokens: TokenChecker | None = None
    policy: JMAPPolicy = field(default_factory=JMAPPolicy)
    extra: dict[str, Any] = field(default_factory=dict)
    """Services of later modules (mailbox, search, submission, bus), by name."""
