"""The worker loop: lease a batch, run the pipeline, index the batch, publish, ack.

Failures are retried with exponential backoff; after `max_attempts` (or at once for a
PermanentFailure) the item goes to the dead-letter queue with the error, where `mailyard dlq`
finds it. An item whose lease ran out more often than the budget allows (a worker killed by it
each time) is buried as well, so one poison message cannot take the workers down forever.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailyard import metrics
from mailyard.pipeline.inbound import InboundPipeline, Outcome, PermanentFailure, Quarantined
from mailyard.services.delivery import INBOUND
from mailyard.store.ports import EventBus, Queue, QueueItem, SearchIndex

log = logging.getLogger("mailyard.worker")

AfterDelivery = Callable[[str, list[tuple[str, str]]], Awaitable[None]]
"""Called with the envelope sender and the (account id, email id) pairs a message from the
internet has just added (the vacation responder); it must not raise."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_base: float = 30.0
    backoff_max: float = 3600.0

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
        while not stop.is_set():
            try:
                items = await self.queue.lease([INBOUND], self.batch_size, self.lease_seconds)
            except Exception:
                log.exception("cannot lease from the queue")
                await asyncio.sleep(1.0)
                continue
            if not items:
                await self.queue.wait(1.0)
                continue
            await self.handle(items)

    async def handle(self, items: list[QueueItem]) -> None:
        live: list[QueueItem] = []
        for item in items:
            if item.attempts > self.retry.max_attempts:
                await self.queue.bury(item, f"gave up after {item.attempts - 1} attempts; last"
                                            f" error: {item.last_error or 'lease expired'}")
            else:
                live.append(item)
        results = await asyncio.gather(*(self.pipeline.process(i) for i in live),
                                       return_exceptions=True)
        done: list[tuple[QueueItem, Outcome]] = []
        for item, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                await self._failed(item, result)
            else:
                done.append((item, result))
        if not done:
            return
        try:
            await self.index.index([doc for _, o in done for doc in o.documents])
        except Exception as e:
            log.exception("indexing failed")
            for item, _ in done:
                await self._failed(item, e)
            return
        for _, outcome in done:
            for d in outcome.delivered:
                await self.bus.publish(d.account_id, d.modseq)
        if self.after_delivery is not None:
            for item, outcome in done:
                fresh = [(d.account_id, d.email_id) for d in outcome.delivered if d.created]
                if fresh:
                    await self.after_delivery(item.payload.get("mail_from", ""), fresh)
        # Concurrent, so the store's writer commits all the acks of a batch together.
        await asyncio.gather(*(self.pipeline.finish(item) for item, _ in done))
        await asyncio.gather(*(self.queue.ack(item) for item, _ in done))
        self.processed += len(done)
        for item, outcome in done:
            metrics.mail("delivered", sum(1 for d in outcome.delivered if d.created))
            for d in outcome.delivered:
                log.info("delivered %s to account %s as %s%s", item.id, d.account_id,
                         d.email_id, "" if d.created else " (already there)",
                         extra={"queue_id": item.id, "account_id": d.account_id,
                                "email_id": d.email_id})

    async def _failed(self, item: QueueItem, error: BaseException) -> None:
        reason = f"{type(error).__name__}: {error}"
        if isinstance(error, Quarantined):
            reason = str(error)  # the verdict's own words ("virus: NAME")
        if isinstance(error, PermanentFailure) or item.attempts >= self.retry.max_attempts:
            log.warning("item %s to the dead-letter queue: %s", item.id, reason,
                        extra={"queue_id": item.id})
            await self.queue.bury(item, reason)
            metrics.mail("dead_lettered")
        else:
            delay = self.retry.delay(item.attempts)
            log.info("item %s failed (attempt %d), retry in %.0fs: %s", item.id, item.attempts,
                     delay, reason, extra={"queue_id": item.id})
            await self.queue.retry(item, reason, delay)
            metrics.mail("deferred")


def parent_alive(parent_pid: int) -> bool:
    """A worker process whose listener died (SIGKILL) must not outlive it."""
    return os.getppid() == parent_pid
