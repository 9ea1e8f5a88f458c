"""Storing imported messages (services/transfer's Importer feeds it): the delivery path, a batch
at a time, with ONE store transaction and ONE change published per batch.

Kept apart from services/mailbox.py so that the import's write pattern (how a batch reaches the
store) can change without touching the rules every protocol uses.

Why one transaction per batch (issue 18): a transaction per message made SQLite write the pages
each delivery touches (the email row's table and index pages, the mailbox counters, the change
log) to the WAL once per message: 10,000 messages wrote 1,670 MiB to mail.db and its WAL for a
45.5 MiB file. In one transaction a page touched by a hundred deliveries is written once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from mailyard.pipeline.inbound import Prepared, Target
from mailyard.services.mailbox import MailboxService
from mailyard.store.ports import (
    Account,
    ImportWrite,
    IndexDocument,
    Mailbox,
    MailStore,
    StoreError,
)

log = logging.getLogger("mailyard.transfer")


_PER_MESSAGE = (StoreError, ValueError, UnicodeError, LookupError)
"""What one message's import may fail with and the rest go on (over quota, unreadable)."""


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
                       items: Sequence[ImportItem], *,
                       unindexed: list[IndexDocument] | None = None) -> list[Imported]:
    """Store a batch of imported messages through the delivery path (threaded, deduplicated,
    indexed, counted in the quota), in source order (UIDs follow it), then index the batch
    and publish ONE change: an import of ten thousand messages wakes IDLE/push clients once
    per batch, not per message. Like APPEND it never runs the vacation responder (only the
    queue worker does). A failure of one message (over quota, unreadable) is reported in its
    result; the rest go on.

    Every message is analysed and its blobs made durable first (`InboundPipeline.prepare_many`),
    then the batch's deliveries go to the store in one transaction (`_store_all`).

    `unindexed`: the batch's documents are added to it instead of indexed, for a caller that
    indexes several batches' at once (`index_documents`; the search index writes a segment per
    write, and merges them: fewer, larger writes are fewer bytes written) and whose progress
    record sends every batch not yet indexed through here again after a kill."""
    store = mailbox.store
    results: list[Imported | None] = [None] * len(items)
    todo: list[int] = []
    for at, item in enumerate(items):
        if item.existing is None and not item.recheck and \
                await store.has_delivery(account.id, item.delivery_key):
            results[at] = Imported(None, created=False)
        else:
            todo.append(at)
    fresh = [at for at in todo if items[at].existing is None]
    prepared = dict(zip(fresh, await mailbox.pipeline.prepare_many(
        [(items[at].raw, items[at].received_at) for at in fresh]), strict=True))
    writes: list[tuple[int, ImportWrite]] = []
    for at in todo:
        item, ready = items[at], prepared.get(at)
        if isinstance(ready, Exception):
            results[at] = _failed(ready)
            continue
        boxes = [b.id for b in item.mailboxes]
        email = None if ready is None else mailbox.pipeline.new_email(
            ready, Target(account.id, mailbox_roles=[], mailbox_ids=boxes,
                          keywords=list(item.keywords)), item.delivery_key)
        writes.append((at, ImportWrite(email, item.existing, boxes, list(item.keywords))))
    documents: list[IndexDocument] = []
    stored = await _store_all(store, account.id, [w for _, w in writes])
    for (at, _), outcome in zip(writes, stored, strict=True):
        if isinstance(outcome, Exception):
            results[at] = _failed(outcome)
            continue
        email_id, created = outcome
        results[at] = Imported(email_id, created=created)
        ready = prepared.get(at)
        if isinstance(ready, Prepared):  # indexed again on a recheck: the index ignores it
            documents.append(ready.document(account.id, email_id))
    if unindexed is not None:
        unindexed += documents
    elif documents:
        await mailbox.index.index(documents)
    done = [r for r in results if r is not None]
    if any(r.email_id for r in done):
        await mailbox.publish_change(account)
    return done


async def index_documents(mailbox: MailboxService, documents: list[IndexDocument]) -> None:
    """Index what `import_batch` left in `unindexed`, and empty the list."""
    if documents:
        await mailbox.index.index(documents)
    documents.clear()


def text_size(document: IndexDocument) -> int:
    """About the bytes a document holds (its long fields): what a caller holding documents
    back measures its memory by."""
    return len(document.body) + len(document.attachment_text) + len(document.part_headers)


def _failed(error: Exception) -> Imported:
    return Imported(None, created=False, error=f"{type(error).__name__}: {error}")


async def _store_all(store: MailStore, account_id: str, writes: Sequence[ImportWrite]
                     ) -> list[tuple[str, bool] | Exception]:
    """Each write's (email id, created) or its error, in order: the batch in one transaction
    (MailStore.store_imports: a delivery over quota fails alone inside it). Any other error
    rolls the batch back, and the writes are done again one transaction each, so that it
    fails its own message alone."""
    if not writes:
        return []
    try:
        return list(await store.store_imports(account_id, writes))
    except _PER_MESSAGE as error:
        log.info("an import batch of %d failed as one transaction (%s); storing its"
                 " messages one by one", len(writes), error)
    out: list[tuple[str, bool] | Exception] = []
    for write in writes:
        try:
            out.extend(await store.store_imports(account_id, [write]))
        except _PER_MESSAGE as error:
            out.append(error)
    return out
