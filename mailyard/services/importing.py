"""Storing imported messages (services/transfer's Importer feeds it): the delivery path, a batch
at a time, with ONE change published per batch.

Kept apart from services/mailbox.py so that the import's write pattern (how a batch reaches the
store) can change without touching the rules every protocol uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailyard.services.mailbox import MailboxService
from mailyard.store.ports import Account, IndexDocument, Mailbox, StoreError


@dataclass(frozen=True, slots=True)
class ImportItem:
    """One message to import: its octets, labels (beside All Mail), keywords and date."""

    raw: bytes
    mailboxes: Sequence[Mailbox]
    keywords: Sequence[str]
    received_at: int
    delivery_key: str
    """Derived from the content and labels: the same message imported again is a no-op."""
    recheck: bool = False
    """Go through the store even if the key is known (the batch an interrupted run was in:
    stored, maybe not yet indexed)."""
    existing: str | None = None
    """An email id this import already made from the same content: add labels, store nothing."""


@dataclass(frozen=True, slots=True)
class Imported:
    email_id: str | None
    """None when skipped (already imported) or failed."""
    created: bool
    error: str | None = None


async def import_batch(mailbox: MailboxService, account: Account,
                       items: Sequence[ImportItem]) -> list[Imported]:
    """Store a batch of imported messages through the delivery path (threaded, deduplicated,
    indexed, counted in the quota), then index the batch and publish ONE change: an import
    of ten thousand messages wakes IDLE/push clients once per batch, not per message. Like
    APPEND it never runs the vacation responder (only the queue worker does). A failure of
    one message (over quota, unreadable) is reported in its result; the rest go on."""
    store = mailbox.store
    results: list[Imported] = []
    documents: list[IndexDocument] = []
    for item in items:
        if item.existing is None and not item.recheck and \
                await store.has_delivery(account.id, item.delivery_key):
            results.append(Imported(None, created=False))
            continue
        try:
            email_id, created = await _import_one(mailbox, account, item, documents)
        except (StoreError, ValueError, UnicodeError, LookupError) as e:
            results.append(Imported(None, created=False, error=f"{type(e).__name__}: {e}"))
            continue
        results.append(Imported(email_id, created=created))
    if documents:
        await mailbox.index.index(documents)
    if any(r.email_id for r in results):
        await mailbox.publish_change(account)
    return results


async def _import_one(mailbox: MailboxService, account: Account, item: ImportItem,
                      documents: list[IndexDocument]) -> tuple[str, bool]:
    from mailyard.pipeline.inbound import Target
    boxes = [b.id for b in item.mailboxes]
    if item.existing is not None:  # the same content met earlier in this import
        email_id, created = item.existing, False
    else:
        outcome = await mailbox.pipeline.ingest(
            item.raw, [Target(account.id, mailbox_roles=[], mailbox_ids=boxes,
                              keywords=list(item.keywords))],
            delivery_key=item.delivery_key, received_at=item.received_at)
        [delivered] = outcome.delivered
        documents += outcome.documents
        email_id, created = delivered.email_id, delivered.created
    if not created:
        for box in boxes:
            await mailbox.store.add_to_mailbox(account.id, [email_id], box)
        if item.keywords:
            await mailbox.store.set_keywords(account.id, [email_id], add=item.keywords)
    return email_id, created
