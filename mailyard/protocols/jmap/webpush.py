"""Delivering PushSubscription messages (RFC 8620 §7.2) as Web Push requests (RFC 8030).

Each message is one POST to the subscription's url with a `TTL` header. When the client gave
keys, the body is encrypted for the user agent (RFC 8291: ECDH with its P-256 key and its auth
secret, aes128gcm content coding of RFC 8188) by `http_ece`, the library pywebpush uses; no
cryptography of our own.

The deliverer reads every account's changes from the event bus as one member of the
cluster-wide "webpush" group (`EventBus.subscribe_all`): each change reaches one node's
deliverer, which pushes it to the account's verified subscriptions, so a change is pushed once
however many nodes there are. The subscriptions of an account are read from the (shared)
store when a change comes; an account that has verified ones keeps them for `REFRESH`
seconds, one that has none is read again at its next change. So a subscription verified
through another node is pushed to from the next change on (within REFRESH seconds when the
account had another already), and one renewed or destroyed through another node is used as
it was for at most REFRESH seconds. Each
subscription has one sender with at most one request in flight: a burst of changes while a push
is under way collapses into one more push carrying the latest state, which is all a client
needs ("look again"). Failures are retried with backoff; a push service answering 404 or 410
several times in a row says the subscription is gone, and it is destroyed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import http_ece
import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric import ec

from mailyard.protocols.jmap.push import state_change, wanted_types
from mailyard.services.pushsubs import PushSubscriptionService
from mailyard.store.ports import ChangeFeed, EventBus, NotFound, PushSubscriptionRecord

log = logging.getLogger("mailyard.jmap.push")

GROUP = "webpush"
"""The event bus group of every node's deliverer: each change goes to one of them."""
REFRESH = 5.0
"""Seconds an account's verified subscriptions, as read from the store, are used before
being read again: how long a renewal or destroy made through another node may go unseen."""


@dataclass(frozen=True)
class WebPushPolicy:
    ttl: int = 86_400
    """Seconds a push service may hold a message for an offline device (RFC 8030 §5.2)."""
    timeout: float = 10.0
    retry_base: float = 1.0
    retry_max: float = 300.0
    attempts: int = 6
    """Tries per message before it is given up (the next change sends a fresh one)."""
    gone_limit: int = 3
    """Consecutive 404/410 answers after which the subscription is destroyed."""


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def check_keys(keys: dict[str, str]) -> None:
    """ValueError unless p256dh is a P-256 public point and auth a 16-octet secret."""
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(keys["p256dh"]))
    if len(b64url_decode(keys["auth"])) != 16:
        raise ValueError("auth must be 16 octets")


def encrypt(body: bytes, keys: dict[str, str]) -> bytes:
    """RFC 8291 §3.4: a fresh server key pair and salt per message, the sender's public key
    as the aes128gcm header's keyid."""
    return bytes(http_ece.encrypt(
        body, salt=os.urandom(16), private_key=ec.generate_private_key(ec.SECP256R1()),
        dh=b64url_decode(keys["p256dh"]), auth_secret=b64url_decode(keys["auth"]),
        version="aes128gcm"))


class WebPushClient:
    """POSTs one push message; returns the HTTP status (0: no answer)."""

    def __init__(self, policy: WebPushPolicy) -> None:
        self.policy = policy
        self._http = httpx.AsyncClient(timeout=policy.timeout, follow_redirects=False)

    async def post(self, record: PushSubscriptionRecord, message: bytes) -> int:
        headers = {"TTL": str(self.policy.ttl), "Urgency": "normal"}
        if record.keys is not None:
            body = encrypt(message, record.keys)
            headers |= {"Content-Encoding": "aes128gcm",
                        "Content-Type": "application/octet-stream"}
        else:
            body = message
            headers["Content-Type"] = "application/json"
        try:
            response = await self._http.post(record.url, content=body, headers=headers)
        except httpx.HTTPError as e:
            log.info("push to subscription %s failed: %s", record.id, e)
            return 0
        return response.status_code

    async def close(self) -> None:
        await self._http.aclose()


def verification(record: PushSubscriptionRecord) -> bytes:
    return orjson.dumps({"@type": "PushVerification", "pushSubscriptionId": record.id,
                         "verificationCode": record.verification_code})


class Sender:
    """One verified subscription: the latest state not yet pushed, and the task pushing it."""

    def __init__(self, record: PushSubscriptionRecord, deliverer: WebPushDeliverer) -> None:
        self.record = record
        self.deliverer = deliverer
        self.latest: int | None = None
        self.wake = asyncio.Event()
        self.task = asyncio.create_task(self.run(), name=f"push {record.id}")

    def offer(self, state: int) -> None:
        self.latest = state
        self.wake.set()

    async def run(self) -> None:
        policy = self.deliverer.policy
        gone = 0
        while True:
            await self.wake.wait()
            self.wake.clear()
            state = self.latest
            record = self.record
            if state is None or record.expires <= time.time():
                continue
            types = wanted_types(record.types)
            if not types:
                continue
            message = state_change(record.account_id, state, types)
            for attempt in range(policy.attempts):
                try:
                    status = await self.deliverer.client.post(record, message)
                except Exception:  # a bug must not end this subscription's deliveries
                    log.exception("push to subscription %s failed", record.id)
                    status = 0
                if 200 <= status < 300:
                    gone = 0
                    break
                if status in (404, 410):
                    gone += 1
                    if gone >= policy.gone_limit:
                        log.info("push subscription %s is gone (%d); destroying it",
                                 record.id, status)
                        await self.deliverer.forget(record, destroy=True)
                        return
                if self.wake.is_set():
                    break  # a newer state is waiting: send that instead
                await asyncio.sleep(min(policy.retry_base * 2 ** attempt, policy.retry_max))


class WebPushDeliverer:
    """Pushes StateChanges to every verified subscription, PushVerifications on creation."""

    def __init__(self, subscriptions: PushSubscriptionService, bus: EventBus,
                 policy: WebPushPolicy | None = None,
                 client_factory: Callable[[WebPushPolicy], WebPushClient] = WebPushClient
                 ) -> None:
        self.subscriptions = subscriptions
        self.bus = bus
        self.policy = policy or WebPushPolicy()
        self.client = client_factory(self.policy)
        self._senders: dict[str, Sender] = {}
        self._by_account: dict[str, dict[str, Sender]] = {}
        self._read_at: dict[str, float] = {}
        """When each account's subscriptions were last read from the store."""
        self._feed: ChangeFeed | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._feed = self.bus.subscribe_all(GROUP)
        self._spawn(self._deliver(self._feed))
        self._spawn(self._purge_expired())
        self._spawn(self._drop_old_reads())

    async def close(self) -> None:
        if self._feed is not None:
            self._feed.cancel()
        for sender in self._senders.values():
            sender.task.cancel()
        for task in list(self._tasks):
            task.cancel()
        tasks = [s.task for s in self._senders.values()]
        await asyncio.gather(*tasks, *self._tasks, return_exceptions=True)
        self._senders.clear()
        await self.client.close()

    # ---------------------------------------------------------------- subscriptions

    def verify(self, record: PushSubscriptionRecord) -> None:
        """Send the PushVerification of a new subscription, off the request path."""
        async def send() -> None:
            for attempt in range(self.policy.attempts):
                status = await self.client.post(record, verification(record))
                if 200 <= status < 300 or status in (404, 410):
                    return
                await asyncio.sleep(min(self.policy.retry_base * 2 ** attempt,
                                        self.policy.retry_max))
        self._spawn(send())

    def watch(self, record: PushSubscriptionRecord) -> None:
        """Start (or update) delivery to a verified subscription changed through this node."""
        sender = self._senders.get(record.id)
        if sender is not None:
            sender.record = record
        else:
            sender = self._senders[record.id] = Sender(record, self)
            self._by_account.setdefault(record.account_id, {})[record.id] = sender

    async def forget(self, record: PushSubscriptionRecord, *, destroy: bool = False) -> None:
        """Stop delivering to a subscription (destroyed, or gone at the push service)."""
        sender = self._senders.pop(record.id, None)
        of_account = self._by_account.get(record.account_id, {})
        of_account.pop(record.id, None)
        if not of_account:
            self._by_account.pop(record.account_id, None)
        if destroy:
            with contextlib.suppress(NotFound):
                await self.subscriptions.delete(record.account_id, record.id)
        if sender is not None and sender.task is not asyncio.current_task():
            sender.task.cancel()

    async def _deliver(self, feed: ChangeFeed) -> None:
        async for account_id, state in feed:
            try:
                senders = await self._senders_of(account_id)
            except Exception as e:  # the store is away: this change is not pushed
                log.warning("push subscriptions of %s unreadable: %s", account_id, e)
                continue
            for sender in senders:
                sender.offer(state)

    async def _senders_of(self, account_id: str) -> list[Sender]:
        """The account's senders, its subscriptions read again when older than REFRESH."""
        now = time.time()
        if now - self._read_at.get(account_id, 0.0) >= REFRESH:
            live = [r for r in await self.subscriptions.get(account_id)
                    if r.verified and r.expires > now]
            for record in live:
                self.watch(record)
            ids = {r.id for r in live}
            for sender in list(self._by_account.get(account_id, {}).values()):
                if sender.record.id not in ids:  # destroyed or expired, maybe elsewhere
                    await self.forget(sender.record)
            if live:
                self._read_at[account_id] = now
            else:  # none kept: one verified through another node counts at the next change
                self._read_at.pop(account_id, None)
        return list(self._by_account.get(account_id, {}).values())

    async def _purge_expired(self) -> None:
        while True:
            now = time.time()
            for sender in list(self._senders.values()):
                if sender.record.expires <= now:
                    await self.forget(sender.record)
            with contextlib.suppress(Exception):
                await self.subscriptions.delete_expired(now)
            await asyncio.sleep(3600)

    async def _drop_old_reads(self) -> None:
        """Forget when idle accounts were read, so the map holds only recent ones."""
        while True:
            await asyncio.sleep(REFRESH * 12)
            now = time.time()
            for account_id, read in list(self._read_at.items()):
                if now - read >= REFRESH:
                    del self._read_at[account_id]

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work
        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
