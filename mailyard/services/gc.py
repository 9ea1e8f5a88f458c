"""`mailyard gc`: remove blobs nothing refers to any more.

Blobs are shared and content-addressed, so destroying an email leaves its skeleton and
attachments behind (another email may use them). A blob is kept when an email names it (its
skeleton, the attachments its row records and its skeleton needs), an upload names it (JMAP
blob upload: object "U" + SHA-256), or a queue item or dead letter spools its message in it.
Ids are compared whole, whatever their form (a dated `bodies/YYYY/MM/DD/<sha256>` skeleton, a
bare SHA-256 skeleton of an older store, attachments by SHA-256, spool ids): the inventory
reports each blob under the very id that names it.

The octets a message was imported with, kept beside its body when they had bare LFs
(`original-<sha256>`, core/blobkeys.py), are named by no row: such a side blob is kept while
the body whose SHA-256 it names is, and goes with it.

Dead letters older than the retention (`[queue] dead_letter_days`) are deleted first, so
held spam and failed deliveries do not pile up for ever, and their spooled messages are freed
in the same run (once older than the grace period, as any blob).

Everything younger than the grace period is kept whatever the references say: a delivery in
flight writes its blobs before the email row that names them commits. The file blob store
refreshes the time of a blob written again (a deduplicated attachment), so an old orphan that
a new delivery re-uses becomes young again; the time is read again just before removal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from mailyard.core import blobkeys, skeleton
from mailyard.core.workitems import try_decode
from mailyard.services.blobs import UPLOAD
from mailyard.store.ports import BlobInfo, BlobStore, MaintainedMailStore, NotFound, Queue

log = logging.getLogger(__name__)

DEFAULT_GRACE = 24 * 3600.0
_ALL = 1 << 30


@dataclass(slots=True)
class GcReport:
    examined: int = 0
    referenced: int = 0
    young: int = 0
    freed: list[BlobInfo] = field(default_factory=list)
    expired: int = 0
    """Dead letters older than the retention, deleted (or, dry_run, that would be)."""

    @property
    def freed_bytes(self) -> int:
        return sum(b.size for b in self.freed)


async def referenced(store: MaintainedMailStore, blobs: BlobStore, queue: Queue) -> set[str]:
    """Every blob id something names right now."""
    keep: set[str] = set()
    for account in await store.list_accounts():
        after = ""
        while ids := await store.email_ids(account.id, after=after, limit=500):
            after = ids[-1]
            records = await store.get_emails(account.id, ids, brief=True)
            for refs in (await store.blob_refs(account.id, ids)).values():
                keep.update(refs)
            for record in records:
                keep.add(record.blob_id)
                # A missing skeleton is fsck's to report; its recorded refs still count.
                with contextlib.suppress(NotFound, ValueError):
                    keep.update(skeleton.blob_refs(await blobs.get(record.blob_id)))
        for upload in await store.get_objects(account.id, UPLOAD):
            keep.add(upload.id.removeprefix("U"))
    queued: list[tuple[str, dict[str, Any]]] = [
        *((p.kind, p.payload) for p in await queue.pending(limit=_ALL)),
        *((d.kind, d.payload) for d in await queue.dead_letters(limit=_ALL))]
    for kind, payload in queued:
        if (item := try_decode(kind, payload)) is not None:
            keep.add(item.spool)
        elif isinstance(spool := payload.get("spool"), str):
            keep.add(spool)  # a damaged item keeps what it may still name
    return keep


def _kept_originals(inventory: list[BlobInfo], keep: set[str]) -> set[str]:
    """The side blobs (imported octets) whose body is kept. Looked up from the few side blobs
    the inventory holds, so the whole reference set is read once and not doubled."""
    sides = {digest: info.blob_id for info in inventory
             if (digest := blobkeys.original_of(info.blob_id)) is not None}
    if not sides:
        return set()
    return {sides[digest] for blob_id in keep
            if (digest := blobkeys.content_sha256(blob_id)) in sides}


async def collect(store: MaintainedMailStore, blobs: BlobStore, queue: Queue, *,
                  grace: float = DEFAULT_GRACE, dry_run: bool = False,
                  now: float | None = None, dead_letter_days: float = 0.0) -> GcReport:
    """Delete the dead letters older than `dead_letter_days` (0: none), then remove (or,
    dry_run, only list) the unreferenced blobs older than `grace` seconds. A dry run counts
    the letters it would delete and keeps their spools as they are still named."""
    at = time.time() if now is None else now
    cutoff = at - grace
    report = GcReport()
    if dead_letter_days > 0:
        died_before = at - dead_letter_days * 86400
        if dry_run:
            report.expired = sum(d.died_at < died_before
                                 for d in await queue.dead_letters(limit=_ALL))
        else:
            report.expired = await queue.expire_dead(died_before)
    before = await blobs.inventory()  # before the references: a later blob is never a candidate
    keep = await referenced(store, blobs, queue)
    keep |= _kept_originals(before, keep)
    candidates: set[str] = set()
    for info in before:
        report.examined += 1
        if info.blob_id in keep:
            report.referenced += 1
        elif info.written_at >= cutoff:
            report.young += 1
        else:
            candidates.add(info.blob_id)
    for info in await blobs.inventory():
        if info.blob_id not in candidates:
            continue
        if info.written_at >= cutoff:  # written again since the first look: in use
            report.young += 1
            continue
        if not dry_run:
            await blobs.delete(info.blob_id)
        report.freed.append(info)
    return report


async def periodically(store: MaintainedMailStore, blobs: BlobStore, queue: Queue, *,
                       interval: float, dead_letter_days: float, stop: asyncio.Event) -> None:
    """What `serve` runs when `[queue] gc_interval` is set: `collect` every `interval`
    seconds until `stop`, so the retention of dead letters and the freeing of blobs happen
    without a cron job. A run that fails is logged and tried again next interval; it never
    ends the loop (a failed gc leaves everything in place). Deleting is idempotent, so two
    nodes of a cluster running it at once only repeat each other's work."""
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
            return
        try:
            report = await collect(store, blobs, queue, dead_letter_days=dead_letter_days)
        except Exception:
            log.exception("gc: this run failed; trying again in %g s", interval)
            continue
        log.info("gc: %d dead letter(s) expired, %d of %d blob(s) freed (%d bytes)",
                 report.expired, len(report.freed), report.examined, report.freed_bytes)
