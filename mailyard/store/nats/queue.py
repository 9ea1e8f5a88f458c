"""The durable work queue on NATS JetStream, shared by every node of a cluster.

Each item is one subject, `<prefix>.q.<kind>.<id>`, in a stream that keeps one message per
subject (`max_msgs_per_subject = 1`): the last message is the item's state, and every change
(lease, retry, release) publishes the next state with `Nats-Expected-Last-Subject-Sequence`
set to the state it read, a compare-and-set the stream leader decides. A lease token is the
stream sequence of the leased state, so `ack` is one `delete_msg(token)` that fails when
another worker has since leased the item, just as the SQLite queue's `lease_token` check.

Delivery is a durable pull consumer per kind (explicit ack). A worker asking for work gets
the items' latest states: a due one it leases (compare-and-set) and acks; one not yet due
(scheduled, backing off, or leased by someone else) it NAKs with a delay until it is due, so
JetStream itself holds it back and hands it out again then. An expired lease is therefore just
a state that comes due, as in the SQLite queue; a worker killed mid-`lease` leaves an un-acked
message that JetStream redelivers after `ack_wait`.

Enqueue publishes with `Nats-Expected-Last-Subject-Sequence: 0` (only if no item has that id),
and the caller's 250 waits for JetStream's acknowledgement, which with replicas = 3 means a
quorum of the cluster has the item; `enqueue_many` is all or none through a commit marker.
Dead letters are a second stream, one subject per id.

`stats`, `pending` and the dead-letter listing read the stream through a short-lived ordered
consumer: O(items). Fine for `mailyard queue` and a metrics scrape at the depths a healthy
queue has; a backlog of millions would want counters of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from mailyard.core.ids import new_id
from mailyard.store.nats.connection import NatsConnection, stream_name, subject_token
from mailyard.store.ports import (
    DeadLetter,
    NewItem,
    NotFound,
    PendingItem,
    QueueItem,
    QueueStats,
)

log = logging.getLogger("mailyard.nats")

EXPECTED_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
MSG_ID = "Nats-Msg-Id"
WRONG_LAST_SEQUENCE = 10071
"""JetStream's error code when the expected last sequence of a subject does not hold."""
NO_MESSAGE = 10057
DELIVERY_ACK_WAIT = 30.0
"""How long JetStream waits for a worker to answer a delivered state (ack or NAK, within
milliseconds of receiving it) before giving it to another: only a worker killed inside
`lease` lets it run out."""
BATCH_GRACE = 30.0
"""How long an item of an unfinished `enqueue_many` is left to its enqueuer (which needs
milliseconds) before a worker settles it."""
BURY_GRACE = 30.0
"""A buried state left by a worker that died between it and the dead letter is finished by
another worker after this long (sooner, it is the burying worker's own, still at work)."""
PUBLISH_TRIES = 4
"""Tries of one state change whose answer did not come (a stream leader busy or being
elected): each try carries the same Nats-Msg-Id, so a change that landed on an earlier try is
answered by JetStream's duplicate detection (the streams' 120 s window) with its sequence,
never applied twice and never refused by its own compare-and-set."""
PUBLISH_PAUSE = 0.25
"""Seconds before the next try of a state change that got no answer."""
UNANSWERED = (NatsTimeoutError, NoRespondersError, NoStreamResponseError)
"""What a JetStream request raises when no answer came: the change may or may not be done."""


@dataclass(slots=True)
class ItemState:
    """What the item's last message says."""

    id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    available_at: float
    """Not before (a delayed item) or the lease's end (a leased one), as in the SQLite queue."""
    created_at: float
    holder: str | None = None
    """The node leasing the item, None when nobody does."""
    last_error: str | None = None
    buried: str | None = None
    """The error of a bury in progress: the dead letter is being written."""
    died_at: float = 0.0
    batch: str | None = None
    """Set while the item is part of an `enqueue_many` not yet released: nobody takes it."""

    def encode(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def decode(cls, data: bytes) -> ItemState:
        return cls(**orjson.loads(data))


@dataclass(slots=True)
class _Stored:
    subject: str
    seq: int
    state: ItemState


class NatsQueue:
    def __init__(self, connection: NatsConnection, *, prefix: str = "mailyard",
                 replicas: int = 1, holder: str = "node", poll_interval: float = 0.5,
                 max_ack_pending: int = 1_000_000,
                 delivery_ack_wait: float = DELIVERY_ACK_WAIT,
                 batch_grace: float = BATCH_GRACE) -> None:
        """`holder`: this node's name, recorded in its leases; `release_leases` at start-up
        takes back only this node's (other nodes' workers are alive). `replicas`: 3 in a
        cluster, 1 on a single server."""
        self.connection = connection
        self.prefix = prefix
        self.replicas = replicas
        self.holder = holder
        self.poll_interval = poll_interval
        self.max_ack_pending = max_ack_pending
        self.delivery_ack_wait = delivery_ack_wait
        self.batch_grace = batch_grace
        self.items_stream = stream_name(prefix, "queue")
        self.dead_stream = stream_name(prefix, "dead")
        self._ready = False
        self._consumers: set[str] = set()
        self._wakeup: asyncio.Event | None = None
        self._bell: NatsSubscription | None = None

    # ------------------------------------------------------------------ streams and subjects

    def _subject(self, kind: str, item_id: str) -> str:
        return f"{self.prefix}.q.{subject_token(kind)}.{subject_token(item_id)}"

    def _dead_subject(self, item_id: str) -> str:
        return f"{self.prefix}.dead.{subject_token(item_id)}"

    @property
    def _bell_subject(self) -> str:
        return f"{self.prefix}.q-bell"

    async def _js(self) -> tuple[Any, Any]:
        js, jsm = await self.connection.jetstream()
        if not self._ready:
            for name, subjects in (
                    (self.items_stream, [f"{self.prefix}.q.>", f"{self.prefix}.commit.>"]),
                    (self.dead_stream, [f"{self.prefix}.dead.>"])):
                config = api.StreamConfig(
                    name=name, subjects=subjects, retention=api.RetentionPolicy.LIMITS,
                    max_msgs_per_subject=1, discard=api.DiscardPolicy.OLD,
                    storage=api.StorageType.FILE, num_replicas=self.replicas,
                    duplicate_window=120.0, allow_direct=True)
                try:
                    await jsm.stream_info(name)
                except NotFoundError:
                    with contextlib.suppress(APIError):  # another node made it meanwhile
                        await jsm.add_stream(config)
            self._ready = True
        return js, jsm

    async def _consumer(self, kind: str) -> str:
        name = "work-" + subject_token(kind).replace("~", "x")
        if name not in self._consumers:
            _, jsm = await self._js()
            config = api.ConsumerConfig(
                durable_name=name, filter_subject=f"{self.prefix}.q.{subject_token(kind)}.>",
                ack_policy=api.AckPolicy.EXPLICIT, ack_wait=self.delivery_ack_wait,
                max_deliver=-1, max_ack_pending=self.max_ack_pending,
                deliver_policy=api.DeliverPolicy.ALL, num_replicas=self.replicas)
            with contextlib.suppress(APIError):  # exists already, made by another node
                await jsm.add_consumer(self.items_stream, config)
            self._consumers.add(name)
        return name

    async def _pull(self, stream: str, consumer: str, batch: int, *,
                    partial: bool = False) -> list[Msg]:
        """What the consumer has for us now, up to `batch` (a no-wait pull: an empty answer
        comes back at once as a 404 status). `partial`: a server too slow to finish its
        answer within 10 s gives what came so far (a worker's lease: what did not come is
        handed out again after the delivery ack wait) instead of an error."""
        nc = await self.connection.client()
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        out: list[Msg] = []
        try:
            await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                             json.dumps({"batch": batch, "no_wait": True}).encode(),
                             reply=inbox)
            while len(out) < batch:
                try:
                    msg = await sub.next_msg(timeout=10.0)
                except NatsTimeoutError:
                    if not partial:
                        raise
                    log.warning("NATS queue: a pull on %s got %d items and no end within 10 s",
                                consumer, len(out))
                    break
                if msg.headers and msg.headers.get("Status"):
                    if msg.headers["Status"] in ("404", "408", "409"):
                        break  # no (more) messages, or the pull ended
                    continue  # 100: a heartbeat
                out.append(msg)
        finally:
            await sub.unsubscribe()
        return out

    async def _scan(self, stream: str, subject: str) -> list[tuple[str, int, bytes]]:
        """Every message on `subject` (wildcards allowed) now: (subject, seq, data)."""
        _, jsm = await self._js()
        info = await jsm.add_consumer(stream, api.ConsumerConfig(
            filter_subject=subject, ack_policy=api.AckPolicy.NONE,
            deliver_policy=api.DeliverPolicy.ALL, inactive_threshold=60.0,
            mem_storage=True, num_replicas=1))
        try:
            count = info.num_pending or 0
            out: list[tuple[str, int, bytes]] = []
            while len(out) < count:
                msgs = await self._pull(stream, info.name, count - len(out))
                if not msgs:
                    break
                out += [(m.subject, m.metadata.sequence.stream, m.data) for m in msgs]
            return out
        finally:
            with contextlib.suppress(Exception):
                await jsm.delete_consumer(stream, info.name)

    async def _states(self, subject: str | None = None) -> list[_Stored]:
        rows = await self._scan(self.items_stream, subject or f"{self.prefix}.q.>")
        return [_Stored(s, seq, ItemState.decode(data)) for s, seq, data in rows]

    async def _last(self, stream: str, subject: str) -> tuple[int, bytes] | None:
        _, jsm = await self._js()
        try:
            msg = await jsm.get_last_msg(stream, subject)
        except NotFoundError:
            return None
        return msg.seq or 0, msg.data or b""

    async def _put(self, subject: str, state: ItemState, expected: int | None) -> int | None:
        """Publish `state`; with `expected`, only if the subject's last message is still that
        sequence (0: no message). The new sequence, or None when the expectation failed.

        A publish whose acknowledgement does not come is tried again with the same message
        id: had it been stored, JetStream answers the retry as a duplicate with the stored
        sequence. Without that, a lease whose answer was lost left the item leased by a
        worker that did not know it (found again only when the lease ran out), and the rest
        of that worker's pull waited for JetStream's redelivery."""
        js, _ = await self._js()
        headers = {MSG_ID: new_id("p")}
        if expected is not None:
            headers[EXPECTED_SUBJECT_SEQ] = str(expected)
        data = state.encode()
        for attempt in range(1, PUBLISH_TRIES + 1):
            try:
                ack = await js.publish(subject, data, headers=headers)
            except APIError as e:
                if e.err_code == WRONG_LAST_SEQUENCE:
                    return None
                raise
            except UNANSWERED as e:
                if attempt == PUBLISH_TRIES:
                    raise
                log.warning("NATS queue: no answer to a change of %s (%s), try %d of %d",
                            subject, type(e).__name__, attempt + 1, PUBLISH_TRIES)
                await asyncio.sleep(PUBLISH_PAUSE)
                continue
            return int(ack.seq)
        raise AssertionError("unreachable")

    async def _delete(self, stream: str, seq: int) -> bool:
        """Delete message `seq`; False if it is not there. A delete whose answer did not come
        is asked again; "not there" then means the first one did it (only the holder of a
        sequence, a lease token, deletes or replaces it)."""
        _, jsm = await self._js()
        for attempt in range(1, PUBLISH_TRIES + 1):
            try:
                return bool(await jsm.delete_msg(stream, seq))
            except APIError as e:
                if e.err_code == NO_MESSAGE or e.code == 404 or isinstance(e, NotFoundError):
                    return attempt > 1
                raise
            except UNANSWERED as e:
                if attempt == PUBLISH_TRIES:
                    raise
                log.warning("NATS queue: no answer to deleting %s/%d (%s), try %d of %d",
                            stream, seq, type(e).__name__, attempt + 1, PUBLISH_TRIES)
                await asyncio.sleep(PUBLISH_PAUSE)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ the Queue port

    async def enqueue(
        self, kind: str, payload: dict[str, Any], *, item_id: str | None = None,
        delay: float = 0.0,
    ) -> str:
        [ident] = await self.enqueue_many([NewItem(kind, payload, item_id, delay)])
        return ident

    async def enqueue_many(self, items: Sequence[NewItem]) -> list[str]:
        """All or none, like the SQLite queue's one transaction, in three steps: every item is
        published held (`batch` set: no worker takes it), then a commit marker (the point of
        no return, acknowledged by JetStream before the caller may say 250), then each item
        is released. A crash before the marker leaves held items that a worker deletes after
        `batch_grace`; a crash after it, held items a worker releases then."""
        if len(items) == 1:
            return [await self._enqueue_one(items[0])]
        now = time.time()
        batch = new_id("b")
        held: list[tuple[str, int, ItemState]] = []
        ids: list[str] = []
        try:
            for item in items:
                ident = item.item_id or new_id("q")
                subject = self._subject(item.kind, ident)
                state = ItemState(id=ident, kind=item.kind, payload=item.payload, attempts=0,
                                  available_at=now + item.delay, created_at=now, batch=batch)
                seq = await self._put(subject, state, expected=0)
                if seq is not None:  # None: an item with this id is queued already
                    held.append((subject, seq, state))
                ids.append(ident)
            if not held:
                return ids
            js, _ = await self._js()
            marker = (await js.publish(self._commit_subject(batch), b"")).seq
        except BaseException:
            for _, seq, _ in held:
                with contextlib.suppress(Exception):
                    await self._delete(self.items_stream, seq)
            raise
        try:  # committed: from here on a failure only delays the items (batch_grace)
            for subject, seq, state in held:
                await self._put(subject, replace(state, batch=None), expected=seq)
            await self._delete(self.items_stream, marker)
        except Exception as e:
            log.warning("NATS queue: batch %s committed but not released (%s); workers"
                        " release it in %.0f s", batch, e, self.batch_grace)
        await self._ring()
        return ids

    async def _enqueue_one(self, item: NewItem) -> str:
        ident = item.item_id or new_id("q")
        now = time.time()
        await self._put(self._subject(item.kind, ident), ItemState(
            id=ident, kind=item.kind, payload=item.payload, attempts=0,
            available_at=now + item.delay, created_at=now), expected=0)
        await self._ring()
        return ident

    def _commit_subject(self, batch: str) -> str:
        return f"{self.prefix}.commit.{subject_token(batch)}"

    async def lease(
        self, kinds: Sequence[str], limit: int, lease_seconds: float
    ) -> list[QueueItem]:
        out: list[QueueItem] = []
        for kind in kinds:
            if len(out) >= limit:
                break
            consumer = await self._consumer(kind)
            msgs = await self._pull(self.items_stream, consumer, limit - len(out),
                                    partial=True)
            # Concurrently: each take is a replicated publish, and a pull's later messages
            # (a probe among a burst) must not wait for every earlier one's round trip.
            taken = await asyncio.gather(*(self._take_or_hand_back(m, lease_seconds)
                                           for m in msgs))
            out += [item for item in taken if item is not None]
        return out

    async def _take_or_hand_back(self, msg: Msg, lease_seconds: float) -> QueueItem | None:
        try:
            return await self._take(msg, lease_seconds)
        except Exception as e:
            # Hand it back at once; the others of the pull are still taken. An error here
            # used to leave every later message of the pull to JetStream's redelivery,
            # DELIVERY_ACK_WAIT later.
            log.warning("NATS queue: %s not taken, handed back: %s: %s",
                        msg.subject, type(e).__name__, e)
            with contextlib.suppress(Exception):
                await msg.nak()
            return None

    async def _take(self, msg: Msg, lease_seconds: float) -> QueueItem | None:
        """Lease the state `msg` delivered if it is due; otherwise hold it back until it is."""
        state = ItemState.decode(msg.data)
        seq = msg.metadata.sequence.stream
        now = time.time()
        if state.buried is not None:
            if now < state.died_at + BURY_GRACE:
                await msg.nak(delay=state.died_at + BURY_GRACE - now)
            else:
                await self._finish_bury(msg.subject, seq, state)
                await msg.ack()
            return None
        if state.batch is not None:
            await self._settle_batch(msg, seq, state, now)
            return None
        if state.available_at > now:
            await msg.nak(delay=max(0.001, state.available_at - now))
            return None
        leased = replace(state, attempts=state.attempts + 1, holder=self.holder,
                         available_at=now + lease_seconds)
        token = await self._put(msg.subject, leased, expected=seq)
        await msg.ack()  # either way this state is done with: replaced by us or by another
        if token is None:
            return None
        return QueueItem(id=state.id, kind=state.kind, payload=state.payload,
                         attempts=leased.attempts, lease_token=str(token),
                         last_error=state.last_error, created_at=state.created_at)

    async def _settle_batch(self, msg: Msg, seq: int, state: ItemState, now: float) -> None:
        """A held item: wait for its enqueuer (`batch_grace`), then finish its work for it:
        release the item if the batch committed, delete it if it never did."""
        if now < state.created_at + self.batch_grace:
            await msg.nak(delay=state.created_at + self.batch_grace - now)
            return
        assert state.batch is not None
        if await self._last(self.items_stream, self._commit_subject(state.batch)) is not None:
            await self._put(msg.subject, replace(state, batch=None), expected=seq)
        else:
            await self._delete(self.items_stream, seq)
        await msg.ack()

    async def ack(self, item: QueueItem) -> bool:
        return await self._delete(self.items_stream, int(item.lease_token))

    async def retry(self, item: QueueItem, error: str, delay: float, *,
                    payload: dict[str, Any] | None = None) -> bool:
        state = ItemState(
            id=item.id, kind=item.kind, payload=item.payload if payload is None else payload,
            attempts=item.attempts, available_at=time.time() + delay,
            created_at=item.created_at, last_error=error)
        done = await self._put(self._subject(item.kind, item.id), state,
                               expected=int(item.lease_token)) is not None
        if done and delay <= 0:
            await self._ring()
        return done

    async def bury(self, item: QueueItem, error: str, *,
                   payload: dict[str, Any] | None = None) -> bool:
        """Mark the item buried (compare-and-set on the lease), write the dead letter, then
        delete the item: a crash in between leaves a buried state another worker finishes."""
        subject = self._subject(item.kind, item.id)
        state = ItemState(
            id=item.id, kind=item.kind, payload=item.payload if payload is None else payload,
            attempts=item.attempts, available_at=time.time() + BURY_GRACE,
            created_at=item.created_at, last_error=item.last_error, buried=error,
            died_at=time.time())
        seq = await self._put(subject, state, expected=int(item.lease_token))
        if seq is None:
            return False
        await self._finish_bury(subject, seq, state)
        return True

    async def _finish_bury(self, subject: str, seq: int, state: ItemState) -> None:
        letter = DeadLetter(id=state.id, kind=state.kind, payload=state.payload,
                            attempts=state.attempts, error=state.buried or "",
                            created_at=state.created_at, died_at=state.died_at)
        js, _ = await self._js()
        await js.publish(self._dead_subject(state.id), orjson.dumps(letter))
        await self._delete(self.items_stream, seq)

    async def pending(self, kinds: Sequence[str] = (), *, prefix: str = "",
                      limit: int = 1000) -> list[PendingItem]:
        if kinds:
            stored = [s for kind in kinds
                      for s in await self._states(f"{self.prefix}.q.{subject_token(kind)}.>")]
        else:
            stored = await self._states()
        items = [PendingItem(
            id=s.state.id, kind=s.state.kind, payload=s.state.payload,
            attempts=s.state.attempts, available_at=s.state.available_at,
            leased=s.state.holder is not None, last_error=s.state.last_error,
            created_at=s.state.created_at)
            for s in stored if s.state.buried is None and s.state.id.startswith(prefix)]
        items.sort(key=lambda p: (p.created_at, p.id))
        return items[:limit]

    async def _find(self, item_id: str) -> _Stored | None:
        _, jsm = await self._js()
        info = await jsm.stream_info(
            self.items_stream, subjects_filter=f"{self.prefix}.q.*.{subject_token(item_id)}")
        for subject in (info.state.subjects or {}):
            last = await self._last(self.items_stream, subject)
            if last is not None:
                return _Stored(subject, last[0], ItemState.decode(last[1]))
        return None

    async def cancel(self, item_id: str) -> bool:
        while True:
            found = await self._find(item_id)
            if found is None or found.state.buried is not None:
                raise NotFound(f"no queued item {item_id}")
            if found.state.holder is not None and found.state.available_at > time.time():
                return False  # a worker is delivering it right now
            if await self._delete(self.items_stream, found.seq):
                return True
            # it changed meanwhile (leased, retried): look again

    async def stats(self) -> QueueStats:
        now = time.time()
        stats = QueueStats()
        for s in await self._states():
            state = s.state
            if state.buried is not None:
                continue
            stats.by_kind[state.kind] = stats.by_kind.get(state.kind, 0) + 1
            if state.available_at <= now:
                stats.ready += 1
            elif state.holder is not None:
                stats.leased += 1
            else:
                stats.delayed += 1
        _, jsm = await self._js()
        stats.dead = (await jsm.stream_info(self.dead_stream)).state.messages
        return stats

    async def _letters(self, subject: str | None = None) -> list[tuple[int, DeadLetter]]:
        rows = await self._scan(self.dead_stream, subject or f"{self.prefix}.dead.>")
        letters = [(seq, DeadLetter(**orjson.loads(data))) for _, seq, data in rows]
        letters.sort(key=lambda x: x[1].died_at)
        return letters

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return [letter for _, letter in (await self._letters())[:limit]]

    async def _dead(self, item_id: str) -> tuple[int, DeadLetter]:
        last = await self._last(self.dead_stream, self._dead_subject(item_id))
        if last is None:
            raise NotFound(f"no dead letter {item_id}")
        return last[0], DeadLetter(**orjson.loads(last[1]))

    async def dead_letter(self, item_id: str) -> DeadLetter:
        return (await self._dead(item_id))[1]

    async def revive(self, item_id: str | None = None) -> int:
        letters = [await self._dead(item_id)] if item_id else await self._letters()
        now = time.time()
        for seq, letter in letters:
            await self._put(self._subject(letter.kind, letter.id), ItemState(
                id=letter.id, kind=letter.kind, payload=letter.payload, attempts=0,
                available_at=now, created_at=letter.created_at, last_error=letter.error),
                expected=None)
            await self._delete(self.dead_stream, seq)
        if letters:
            await self._ring()
        return len(letters)

    async def drop(self, item_id: str) -> None:
        seq, _ = await self._dead(item_id)
        if not await self._delete(self.dead_stream, seq):
            raise NotFound(f"no dead letter {item_id}")

    async def release(self, item_id: str, items: Sequence[NewItem]) -> None:
        """The items first (each only if no item has its id, so two releases at once queue
        each once), then the dead letter goes. A crash in between leaves the letter: at
        least once, as the queue is, never lost (released again, an item already sent goes
        again)."""
        seq, _ = await self._dead(item_id)
        if items:
            await self.enqueue_many(items)
        if not await self._delete(self.dead_stream, seq):
            raise NotFound(f"no dead letter {item_id}")  # another release took it meanwhile

    async def expire_dead(self, before: float) -> int:
        expired = 0
        for seq, letter in await self._letters():
            if letter.died_at < before and await self._delete(self.dead_stream, seq):
                expired += 1
        return expired

    async def release_leases(self) -> int:
        """This node's leases (`holder`), available now: at start-up, its workers of the
        previous run are gone. Other nodes' leases are theirs, alive or running out."""
        released = 0
        now = time.time()
        for s in await self._states():
            if s.state.holder != self.holder or s.state.buried is not None:
                continue
            free = replace(s.state, holder=None, available_at=now)
            if await self._put(s.subject, free, expected=s.seq) is not None:
                released += 1
        if released:
            await self._ring()
        return released

    # ------------------------------------------------------------------ waking workers

    def _event(self) -> asyncio.Event:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        return self._wakeup

    async def _ring(self) -> None:
        """Wake this process's waiting workers, and (a core NATS message, at most once)
        every other node's."""
        self._event().set()
        with contextlib.suppress(Exception):
            nc = await self.connection.client()
            await nc.publish(self._bell_subject, b"")

    async def wait(self, timeout: float) -> None:
        """Until new work may be there: enqueued here or on another node (the bell), or
        poll_interval passed (a delayed item or an expired lease comes due)."""
        event = self._event()
        if self._bell is None:
            with contextlib.suppress(Exception):
                nc = await self.connection.client()

                async def rung(msg: Msg) -> None:
                    event.set()

                self._bell = await nc.subscribe(self._bell_subject, cb=rung)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(timeout, self.poll_interval)):
                await event.wait()
        event.clear()

    def close(self) -> None:
        self._bell = None

    async def aclose(self) -> None:
        self._bell = None
        await self.connection.close()
