"""Accepting a message into the system: the one durable hand-off every entry point uses.

SMTP inbound (and later submission, JMAP and the webmail) call `accept`; when it returns, the raw
octets are fsync'd in the blob store and the work item is committed in the queue, so the caller
may acknowledge (SMTP 250). Everything after that is the pipeline's job and may be repeated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailyard import metrics
from mailyard.core.workitems import INBOUND, InboundItem, Verdict
from mailyard.store.ports import BlobStore, Queue, QueueStats

if TYPE_CHECKING:
    from mailyard.services.routing import RoutingService

log = logging.getLogger("mailyard.delivery")

__all__ = ["INBOUND", "Accepted", "DeliveryService", "QueueState", "spool_id"]


def spool_id(queue_id: str) -> str:
    """The blob holding a queued message's octets until the pipeline is done with it."""
    return "s" + queue_id[1:].replace(".", "_")


@dataclass(frozen=True, slots=True)
class Accepted:
    queue_id: str


@dataclass(frozen=True, slots=True)
class QueueState:
    """What /metrics and /readyz tell of the queue."""

    stats: QueueStats
    oldest_age: float
    """Seconds the oldest item waiting has waited (0 when none does)."""


class DeliveryService:
    def __init__(self, blobs: BlobStore, queue: Queue, routing: RoutingService | None = None,
                 *, hostname: str = "localhost", max_received: int = 100) -> None:
        self.blobs = blobs
        self.queue = queue
        self.routing = routing
        """The routing rules: with them, `accept` queues a copy per account and forwards
        to remote targets (services/routing_delivery.py); without, one item as given."""
        self.hostname = hostname
        self.max_received = max_received

    async def queue_state(self) -> QueueState:
        stats = await self.queue.stats()
        oldest = await self.queue.pending(limit=1)
        return QueueState(stats, max(0.0, time.time() - oldest[0].created_at) if oldest else 0.0)

    async def accept(self, *, queue_id: str, mail_from: str, recipients: Sequence[str], raw: bytes,
                     trace_length: int, received_at: int, peer: str = "",
                     helo: str = "", verdict: Verdict | None = None) -> Accepted:
        """Make the message durable and queue it for the inbound pipeline under `queue_id`.

        `trace_length` is how many leading octets of `raw` are our own trace headers (Received,
        Return-Path); what follows is the message exactly as the client sent it, which is what
        duplicate detection compares. `verdict` is the inbound checks' (`Verdict.record`):
        the pipeline reads it to place the message (Junk, quarantine).
        """
        if self.routing is not None:
            from mailyard.services.routing_delivery import accept_routed

            return await accept_routed(
                self, self.routing, queue_id=queue_id, mail_from=mail_from,
                recipients=recipients, raw=raw, trace_length=trace_length,
                received_at=received_at, peer=peer, helo=helo, verdict=verdict)
        spool = spool_id(queue_id)
        await self.blobs.put(spool, raw)
        item = InboundItem(spool=spool, mail_from=mail_from, recipients=tuple(recipients),
                           trace_length=trace_length, received_at=received_at, peer=peer,
                           helo=helo, verdict=verdict)
        await self.queue.enqueue(INBOUND, item.to_json(), item_id=queue_id)
        metrics.mail("accepted")
        log.info("accepted %s from <%s> for %d recipient(s), %d octets", queue_id, mail_from,
                 len(recipients), len(raw),
                 extra={"queue_id": queue_id, "peer": peer, "size": len(raw)})
        return Accepted(queue_id=queue_id)
