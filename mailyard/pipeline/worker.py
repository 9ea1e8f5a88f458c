"""The worker loop: lease a batch, run the pipeline, index, publish and ack as items come out.

Failures are retried with exponential backoff; after `max_attempts` (or at once for a
PermanentFailure) the item goes to the dead-letter queue with the error, where `mailyard dlq`
finds it. An item whose lease ran out more often than the budget allows (a worker killed by it
each time) is buried as well, so one poison message cannot take the workers down forever.

No error ends the loop: a store that fails (a full disk makes even `queue.retry` raise) is
logged at once and tried again after a growing pause, and what could not be recorded comes
back when its lease runs out. Should a loop end anyway, `Supervised` starts it again, and
/readyz reports it until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from mailyard import metrics
from mailyard.core.workitems import INBOUND, BadItem, InboundItem
from mailyard.pipeline.inbound import (
    InboundPipeline,
    Outcome,
    PermanentFailure,
    Quarantined,
    SpoolMissing,
)
from mailyard.store.ports import EventBus, Queue, QueueItem, SearchIndex

log = logging.getLogger("mailyard.worker")

AfterDelivery = Callable[[str, list[tuple[str, str]]], Awaitable[None]]
"""Called with the envelope sender and the (account id, email id) pairs a message from the
internet has just added (the vacation responder); it must not raise."""

Processed = tuple[QueueItem, InboundItem, Outcome]
"""An item the pipeline stored, waiting to be indexed, announced and acked."""

PAUSE_MIN = 0.5
PAUSE_MAX = 30.0
"""Bounds of the pause after a failed round (doubling per failure in a row): a store that
fails is not hammered, and one that is back is used again within half a minute."""

class NotRecorded(Exception):
    """Some outcomes of a batch could not be written to the queue (each is logged); the
    items come back when their leases run out."""


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed item is tried again (`[queue]`)."""

    max_attempts: int = 5
    backoff_base: float = 30.0
    backoff_max: float = 3600.0
    spool_tries: int = 3
    """Attempts that must each find the spool missing before the item is buried: a store
    that answered "no such key" while restarting is asked again after the usual backoff."""

    def delay(self, attempts: int) -> float:
        return float(min(self.backoff_max, self.backoff_base * 2 ** max(0, attempts - 1)))


class Worker:
    def __init__(self, queue: Queue, pipeline: InboundPipeline, index: SearchIndex,
                 bus: EventBus, retry: RetryPolicy, *, batch_size: int = 32,
                 lease_seconds: float = 60.0, after_delivery: AfterDelivery | None = None
                 ) -> None:
        self.queue = queue
        self.pipeline = pipeline
        self.index = index
        self.bus = bus
        self.retry = retry
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.after_delivery = after_delivery
        self.processed = 0

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                items = await self.queue.lease([INBOUND], self.batch_size, self.lease_seconds)
                if not items:
                    await self.queue.wait(1.0)
                else:
                    await self.handle(items)
                failures = 0
            except Exception as e:
                failures += 1
                delay = min(PAUSE_MAX, PAUSE_MIN * 2 ** (failures - 1))
                log.error("pipeline round failed (%d in a row), next in %.1fs: %s", failures,
                          delay, _why(e), exc_info=not isinstance(e, NotRecorded))
                await pause(stop, delay)

    async def handle(self, items: list[QueueItem]) -> None:
        """Process one leased batch. Each item's outcome is recorded on its own; if any could
        not be, NotRecorded is raised at the end (after the rest of the batch is done), so
        that the loop pauses before leasing again.

        Items are indexed, announced and acked as they come out of the pipeline, not once the
        whole batch is through: a message announced only after the slowest of its batch (a
        large one, a slow DNS answer) made IDLE and push wait for it. One `_deliver` runs at a
        time and takes every item ready by then, so the index and the queue still get a
        batch's writes together under load."""
        unrecorded = 0
        live: list[QueueItem] = []
        for item in items:
            if item.attempts > self.retry.max_attempts:
                unrecorded += not await self._record(item, self.queue.bury(
                    item, f"gave up after {item.attempts - 1} attempts; last error:"
                          f" {item.last_error or 'lease expired'}"))
            else:
                live.append(item)
        ready: asyncio.Queue[Processed | None] = asyncio.Queue()

        async def one(item: QueueItem) -> int:
            try:
                result = await self._process(item)
            except Exception as e:
                ready.put_nowait(None)
                return not await self._failed(item, e)
            ready.put_nowait((item, *result))
            return 0

        async def deliver() -> int:
            failed = taken = 0
            while taken < len(live):
                batch = [await ready.get()]
                while not ready.empty():
                    batch.append(ready.get_nowait())
                taken += len(batch)
                done = [p for p in batch if p is not None]
                if done:
                    failed += await self._deliver(done)
            return failed

        results = await asyncio.gather(deliver(), *(one(i) for i in live))
        unrecorded += sum(results)
        if unrecorded:
            raise NotRecorded(f"{unrecorded} of {len(items)} outcomes not recorded")

    async def _process(self, item: QueueItem) -> tuple[InboundItem, Outcome]:
        try:
            inbound = InboundItem.from_json(item.payload)
        except BadItem as e:
            raise PermanentFailure(str(e)) from None
        return inbound, await self.pipeline.process(item.id, inbound)

    async def _deliver(self, done: list[Processed]) -> int:
        """Index, announce and ack the items the pipeline stored; how many acks failed."""
        try:
            await self.index.index([doc for _, _, o in done for doc in o.documents])
        except Exception as e:
            log.exception("indexing failed")
            return sum([not await self._failed(item, e) for item, _, _ in done])
        for _, _, outcome in done:
            for d in outcome.delivered:
                await self.bus.publish(d.account_id, d.modseq)
        if self.after_delivery is not None:
            for _, inbound, outcome in done:
                fresh = [(d.account_id, d.email_id) for d in outcome.delivered if d.created]
                if fresh:
                    await self.after_delivery(inbound.mail_from, fresh)
        # Concurrent, so the store's writer commits all the acks of a batch together.
        finished = await asyncio.gather(*(self.pipeline.finish(i) for _, i, _ in done),
                                        return_exceptions=True)
        for (item, _, _), result in zip(done, finished, strict=True):
            if isinstance(result, Exception):
                log.error("item %s: cannot finish it: %s", item.id, _why(result),
                          extra={"queue_id": item.id})
        acked = await asyncio.gather(*(self._record(item, self.queue.ack(item))
                                       for item, _, _ in done))
        self.processed += len(done)
        for item, _, outcome in done:
            metrics.mail("delivered", sum(1 for d in outcome.delivered if d.created))
            for d in outcome.delivered:
                log.info("delivered %s to account %s as %s%s", item.id, d.account_id,
                         d.email_id, "" if d.created else " (already there)",
                         extra={"queue_id": item.id, "account_id": d.account_id,
                                "email_id": d.email_id})
        return acked.count(False)

    async def _failed(self, item: QueueItem, error: BaseException) -> bool:
        """Defer or bury `item` after `error`; False if the queue could not record that."""
        reason = f"{type(error).__name__}: {error}"
        if isinstance(error, Quarantined):
            reason = str(error)  # the verdict's own words ("virus: NAME")
        permanent = isinstance(error, PermanentFailure) and not (
            isinstance(error, SpoolMissing) and item.attempts < self.retry.spool_tries)
        if permanent or item.attempts >= self.retry.max_attempts:
            log.warning("item %s to the dead-letter queue: %s", item.id, reason,
                        extra={"queue_id": item.id})
            if not await self._record(item, self.queue.bury(item, reason)):
                return False
            metrics.mail("dead_lettered")
        else:
            delay = self.retry.delay(item.attempts)
            log.warning("item %s failed (attempt %d), retry in %.0fs: %s", item.id,
                        item.attempts, delay, reason, extra={"queue_id": item.id})
            if not await self._record(item, self.queue.retry(item, reason, delay)):
                return False
            metrics.mail("deferred")
        return True

    async def _record(self, item: QueueItem, write: Coroutine[Any, Any, object]) -> bool:
        """Run one queue write about `item`; an error (the queue's disk full) is logged and
        leaves the item leased: it is tried again when the lease runs out."""
        try:
            await write
        except Exception as e:
            log.error("item %s: cannot update the queue (it is retried once its lease of"
                      " %.0fs runs out): %s", item.id, self.lease_seconds, _why(e),
                      extra={"queue_id": item.id})
            return False
        return True


def _why(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


Loop = Callable[[asyncio.Event], Awaitable[None]]


class Supervised:
    """Runs a worker loop until `stop`, and starts a fresh one whenever it ends before that
    (an error, or a bug that returns): a loop that died used to leave mail acknowledged with
    250 and never delivered, silently, until a restart. `running` is False between a death
    and the restart, for /readyz."""

    def __init__(self, name: str, make: Callable[[], Loop]) -> None:
        self.name = name
        self.make = make
        self.running = False
        self.restarts = 0

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not stop.is_set():
            started = loop.time()
            self.running = True
            try:
                await self.make()(stop)
            except Exception:
                log.exception("the %s stopped on an error", self.name)
            else:
                if stop.is_set():
                    break
                log.error("the %s stopped by itself", self.name)
            finally:
                self.running = False
            failures = 1 if loop.time() - started > 10 * PAUSE_MAX else failures + 1
            delay = min(PAUSE_MAX, PAUSE_MIN * 2 ** (failures - 1))
            await pause(stop, delay)
            if not stop.is_set():
                self.restarts += 1
                log.warning("restarting the %s (restart %d)", self.name, self.restarts)

    def problem(self) -> str | None:
        """Why this loop is not doing its work right now, or None."""
        return None if self.running else f"the {self.name} is not running"


def parent_alive(parent_pid: int) -> bool:
    """A worker process whose listener died (SIGKILL) must not outlive it."""
    return os.getppid() == parent_pid
