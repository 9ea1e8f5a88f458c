"""What the JMAP listener is given: the services it calls and the limits it promises.

Kept apart from `http.py` so that the session, auth and method modules can name these types
without importing the web application that composes them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mailyard.services.accounts import AccountService
from mailyard.store.ports import Account

if TYPE_CHECKING:
    from mailyard.protocols.jmap.webpush import WebPushDeliverer
    from mailyard.services.blobs import BlobService
    from mailyard.services.changes import ChangeService
    from mailyard.services.mailbox import MailboxService
    from mailyard.services.objects import ObjectService
    from mailyard.services.pushsubs import PushSubscriptionService
    from mailyard.services.search import SearchService
    from mailyard.services.sieve import SieveService
    from mailyard.services.submission import SubmissionService
    from mailyard.services.vacation import VacationResponder

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


@dataclass(frozen=True)
class DataServices:
    """What the methods of the data types call (Mail, Submission, Vacation, Quota, blobs,
    PushSubscription): the services, never a store."""

    mailbox: MailboxService
    changes: ChangeService
    objects: ObjectService
    search: SearchService
    submission: SubmissionService
    blobs: BlobService
    vacation: VacationResponder
    push: PushSubscriptionService
    push_delivery: WebPushDeliverer
    sieve: SieveService | None = None
    """SieveScript (RFC 9661); None: the capability's methods answer unknownMethod."""


class NoDataServices(LookupError):
    """A listener built for the core alone (RFC 8620 tests) was asked for a data type."""


@dataclass
class JMAPServices:
    accounts: AccountService
    tokens: TokenChecker | None = None
    policy: JMAPPolicy = field(default_factory=JMAPPolicy)
    data: DataServices | None = None
    """None: the core only (session, echo, auth); every data-type method then fails."""

    def need_data(self) -> DataServices:
        if self.data is None:
            raise NoDataServices("this JMAP listener was built without its data services")
        return self.data
