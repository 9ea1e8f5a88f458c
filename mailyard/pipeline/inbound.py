"""The inbound pipeline: from a queued raw message to an email in each recipient's mailbox.

Every step is safe to repeat, because the queue delivers at least once: blobs are content
addressed or keyed by the queue item, the store ignores a delivery key it has seen (and the same
Message-ID with the same content), and the index ignores an email it has indexed. The spool copy
is deleted only after every recipient has the email, so a crash at any point loses nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from mailyard.core import skeleton
from mailyard.core.addresses import Address
from mailyard.core.ids import new_id
from mailyard.core.mime import ParsedMessage, normalize_subject, parse_message
from mailyard.store.ports import (
    BlobStore,
    IndexDocument,
    MailStore,
    NewEmail,
    NotFound,
    QueueItem,
)

log = logging.getLogger("mailyard.pipeline")


class PermanentFailure(Exception):
    """Retrying cannot help; the item goes to the dead-letter queue at once."""


@dataclass(slots=True)
class Delivered:
    account_id: str
    email_id: str
    modseq: int
    created: bool


@dataclass(slots=True)
class Outcome:
    delivered: list[Delivered] = field(default_factory=list)
    documents: list[IndexDocument] = field(default_factory=list)


def _addresses(addresses: list[Address]) -> list[dict[str, str]]:
    return [{"name": a.name, "email": a.email} for a in addresses]


def _address_text(parsed: ParsedMessage) -> str:
    words: list[str] = []
    for a in (*parsed.from_, *parsed.to, *parsed.cc, *parsed.bcc):
        words += [a.name, a.email, a.local_part, a.domain]
    return " ".join(w for w in words if w)


class InboundPipeline:
    def __init__(self, store: MailStore, blobs: BlobStore, *, dedup_min_size: int = 2048,
                 text_limit: int = 1_000_000) -> None:
        self.store = store
        self.blobs = blobs
        self.dedup_min_size = dedup_min_size
        self.text_limit = text_limit

    async def process(self, item: QueueItem) -> Outcome:
        payload = item.payload
        recipients: list[str] = payload["recipients"]
        accounts = []
        for rcpt in recipients:
            try:
                accounts.append(await self.store.get_account(rcpt))
            except NotFound:
                raise NotFound(f"recipient {rcpt} has no account (removed after acceptance?)")\
                    from None
        try:
            raw = await self.blobs.get(payload["spool"])
        except NotFound:
            if all([await self.store.has_delivery(a.id, item.id) for a in accounts]):
                return Outcome()  # a previous attempt finished everything but the ack
            raise PermanentFailure(f"spooled message {payload['spool']} is missing") from None
        parsed, split = await asyncio.to_thread(self._analyse, raw)
        await self.blobs.put_many(split.blobs)
        skeleton_id = hashlib.sha256(split.skeleton).hexdigest()
        await self.blobs.put(skeleton_id, split.skeleton)
        content_hash = hashlib.sha256(raw[payload["trace_length"]:]).hexdigest()
        outcome = Outcome()
        for account in accounts:
            new = self._new_email(item, account.id, parsed, raw, skeleton_id, content_hash,
                                  list(split.blobs))
            result = await self.store.deliver(new)
            outcome.delivered.append(Delivered(account.id, result.email_id, result.modseq,
                                               result.created))
            outcome.documents.append(IndexDocument(
                account_id=account.id, email_id=result.email_id, subject=parsed.subject,
                addresses=_address_text(parsed), body=parsed.text,
                attachment_names=" ".join(a.filename or "" for a in parsed.attachments),
            ))
        return outcome

    async def finish(self, item: QueueItem) -> None:
        """After the index has the documents: the spool copy is no longer needed."""
        await self.blobs.delete(item.payload["spool"])

    def _analyse(self, raw: bytes) -> tuple[ParsedMessage, skeleton.Split]:
        """CPU work, off the event loop: parse once, split attachments out, verified."""
        parsed = parse_message(raw, text_limit=self.text_limit)
        try:
            split = skeleton.split(raw, parsed, min_size=self.dedup_min_size)
        except Exception:
            log.exception("attachment split failed; keeping the message whole")
            split = skeleton.split(raw, parsed, min_size=len(raw) + 1)
        return parsed, split

    def _new_email(self, item: QueueItem, account_id: str, parsed: ParsedMessage, raw: bytes,
                   skeleton_id: str, content_hash: str, refs: list[str]) -> NewEmail:
        payload: dict[str, Any] = item.payload
        return NewEmail(
            account_id=account_id,
            email_id=new_id("e"),
            delivery_key=item.id,
            content_sha256=content_hash,
            blob_id=skeleton_id,
            size=len(raw),
            received_at=payload["received_at"],
            sent_at=int(parsed.date.timestamp() * 1000) if parsed.date else None,
            message_id=parsed.message_id,
            in_reply_to=parsed.in_reply_to,
            references=parsed.references,
            subject=parsed.subject,
            thread_subject=normalize_subject(parsed.subject),
            from_=_addresses(parsed.from_), to=_addresses(parsed.to), cc=_addresses(parsed.cc),
            bcc=_addresses(parsed.bcc), reply_to=_addresses(parsed.reply_to),
            sender=_addresses(parsed.sender),
            preview=parsed.preview,
            has_attachment=parsed.has_attachment,
            attachments=[asdict(a) for a in parsed.attachments],
            envelope=parsed.envelope, bodystructure=parsed.bodystructure, body=parsed.body,
            parts=parsed.root.to_json(),
            mailbox_roles=["inbox"],
            blob_refs=refs,
        )
