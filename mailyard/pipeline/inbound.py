"""The inbound pipeline: from a queued raw message to an email in each recipient's mailbox.

Every step is safe to repeat, because the queue delivers at least once: blobs are content
addressed or keyed by the queue item, the store ignores a delivery key it has seen (and the same
Message-ID with the same content), and the index ignores an email it has indexed. The spool copy
is deleted only after every recipient has the email, so a crash at any point loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

from mailyard.core import blobkeys, skeleton, spam
from mailyard.core.addresses import Address
from mailyard.core.ids import new_id
from mailyard.core.indexlimits import Limits
from mailyard.core.indextext import DEFAULT_LIMITS, IndexText, index_text
from mailyard.core.mime import ParsedMessage, normalize_subject, parse_message
from mailyard.core.workitems import Action, InboundItem, Message, MessageLoader, Verdict
from mailyard.pipeline import fields
from mailyard.store.ports import Account, BlobStore, IndexDocument, MailStore, NewEmail, NotFound

log = logging.getLogger("mailyard.pipeline")


INLINE_ANALYSIS = 64 * 1024
"""A message up to this size that is parsed already is analysed (index text, attachment
split, hashes) on the event loop's thread: ~0.1 ms for ordinary mail, less than a hop to a
thread and back (two context switches and a loop wake-up; context switches were a sixth of
the server's CPU per mail, issue 24), and ~5 ms for the costliest 64 KiB shapes found (1,600
parts; one To field of 5,000 addresses), one GIL switch interval, which a thread doing the same
pure-Python work would not have spared the loop either. Parsing stays in a thread above
INLINE_PARSE: its costliest 64 KiB took 35 ms."""

INLINE_PARSE = 8 * 1024
"""A spooled message up to this size is parsed on the event loop's thread: ~0.1 ms for a
5 KB mail against a hop to a thread and back of 35-50 µs plus the loop's wake-up (issue 24:
the most common size of mail); the costliest shapes of 8 KiB (hundreds of parts, a To field
of thousands of addresses) stay within about one GIL switch interval (5 ms), which a parsing
thread would have held from the loop as well."""


class PermanentFailure(Exception):
    """Retrying cannot help; the item goes to the dead-letter queue at once."""


class Placement(Protocol):
    """Per-recipient say over Junk (services/checks/content.py SpamPlacement: the user's allow
    list and own model). `message` reads and parses the spooled message, once per item, and
    only when asked: most recipients need no more than the verdict. Its parse is the one the
    message is stored with."""

    async def complete(self, verdict: Verdict, message: MessageLoader
                       ) -> tuple[Verdict, bytes]:
        """Finish what the SMTP-time checks left to the pipeline (the spam score when it could
        not change the reply): the verdict, and header fields to prepend to the stored copy."""
        ...

    async def junk(self, account_id: str, verdict: Verdict, message: MessageLoader) -> bool: ...


class Filters(Protocol):
    """The recipient's own rules (services/sieve.py SieveService: the active Sieve script),
    run after the spam placement: the Target it returns says where the message goes.
    `item` is the queue item, for what the filters decide from how it came (a rejection
    report goes only to a sender the checks authenticated)."""

    async def file(self, target: Target, recipient: str, mail_from: str,
                   message: MessageLoader, delivery_key: str, *,
                   item: InboundItem | None = None) -> Target: ...


class SpoolMissing(PermanentFailure):
    """The spooled octets of an acknowledged message cannot be found. Permanent only once
    it has been seen on several attempts (`[queue] spool_tries`): an object store that is
    restarting, or a gateway in front of it, may say "no such key" for a moment, and a
    single such answer must not bury mail that a 250 promised."""


class Quarantined(PermanentFailure):
    """The inbound checks' verdict says never deliver (a virus): dead-letter queue at once,
    with the verdict's reason as it is ("virus: NAME"), where `mailyard dlq` shows it."""


@dataclass(slots=True)
class Delivered:
    account_id: str
    email_id: str
    modseq: int
    created: bool
    uids: dict[str, int] = field(default_factory=dict)
    """Mailbox id -> UID given in the delivery's transaction (DeliveryResult.uids)."""


@dataclass(slots=True)
class Outcome:
    delivered: list[Delivered] = field(default_factory=list)
    documents: list[IndexDocument] = field(default_factory=list)


def _addresses(addresses: list[Address]) -> list[dict[str, str]]:
    return [{"name": a.name, "email": a.email} for a in addresses]


def document(account_id: str, email_id: str, received_at: int,
             text: IndexText) -> IndexDocument:
    return IndexDocument(
        account_id=account_id, email_id=email_id, received_at=received_at,
        subject=text.subject, from_=text.from_, to=text.to, cc=text.cc, bcc=text.bcc,
        body=text.body, filenames=text.filenames, attachment_text=text.attachment_text,
        list_id=text.list_id, part_headers=text.part_headers)


@dataclass(slots=True)
class Target:
    """One account the message goes to, and where in it."""

    account_id: str
    mailbox_roles: list[str] = field(default_factory=lambda: ["inbox"])
    mailbox_ids: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    head: bytes | None = None
    """A header block of its own (Sieve editheader) for this account's copy."""
    discard: bool = False
    """The recipient's filters stored it nowhere (discard, redirect, reject)."""
    after: Callable[[str], Awaitable[None]] | None = None
    """Called with the email id once stored (the filters' duplicate memory, vacation)."""


@dataclass(frozen=True, slots=True)
class Analysis:
    """What the pipeline learns of a message's octets before it stores them."""

    parsed: ParsedMessage
    split: skeleton.Split
    text: IndexText
    skeleton_sha256: str
    content_sha256: str


@dataclass(frozen=True, slots=True)
class Prepared:
    """A message analysed, with its blobs durable: what remains is the store write, which
    a caller may group with others' (an import batch: one transaction, not one each)."""

    raw: bytes
    analysis: Analysis
    received_at: int

    @property
    def skeleton_id(self) -> str:
        """The stored body's id: by the day it was received (so a retry names the same
        object) and its hash."""
        return blobkeys.body_id(self.analysis.skeleton_sha256, self.received_at)

    def document(self, account_id: str, email_id: str) -> IndexDocument:
        """What the search index is given for this message stored as `email_id`."""
        return document(account_id, email_id, self.received_at, self.analysis.text)


class InboundPipeline:
    """Parse, split, thread, store and describe for the index: the one store path for every
    message, whether it arrived by SMTP (through the queue) or by IMAP APPEND / JMAP import."""

    def __init__(self, store: MailStore, blobs: BlobStore, *, dedup_min_size: int = 2048,
                 index_limits: Limits = DEFAULT_LIMITS, placement: Placement | None = None,
                 recipient_account: Callable[[str], Awaitable[Account]] | None = None,
                 filters: Filters | None = None) -> None:
        self.placement = placement
        self.filters = filters
        self.store = store
        self.recipient_account = recipient_account
        """Who receives mail to an address (AccountService.recipient_account: role
        addresses such as postmaster@ included); the store's own lookup by default."""
        self.blobs = blobs
        self.dedup_min_size = dedup_min_size
        self.index_limits = index_limits

    async def process(self, item_id: str, item: InboundItem) -> Outcome:
        """Place and store one queued message (`item_id` is its queue id, the delivery key).
        The spooled message is read and parsed once: the spam placement scores that parse,
        and the stored copy is that parse, moved past the header fields the score added."""
        verdict = item.verdict
        if verdict is not None and verdict.action is Action.QUARANTINE:
            raise Quarantined(verdict.reason or "quarantined by the inbound checks")
        targets = []
        loaded: list[Message] = []

        async def message() -> Message:
            if not loaded:
                raw = await self.blobs.get(item.spool)
                loaded.append((raw, self.parse(raw) if len(raw) <= INLINE_PARSE
                               else await asyncio.to_thread(self.parse, raw)))
            return loaded[0]

        added = b""
        if self.placement is not None and verdict is not None:
            verdict, added = await self.placement.complete(verdict, message)
        stored: list[Message] = []

        async def final() -> Message:
            """The message as stored: with the fields the spam score added (Sieve sees
            them, as a script testing X-Spam-* expects)."""
            if not stored:
                octets, parse = await message()
                if added:
                    octets, again = fields.insert(octets, parse, item.trace_length, added)
                    parse = again if again is not None else self.parse(octets)
                stored.append((octets, parse))
            return stored[0]

        for rcpt in item.recipients:
            try:
                lookup = self.recipient_account or self.store.get_account
                account_id = (await lookup(rcpt)).id
            except NotFound:
                raise NotFound(f"recipient {rcpt} has no account (removed after acceptance?)")\
                    from None
            target = await self.target(account_id, rcpt, verdict, message)
            if self.filters is not None:
                # A spool that is gone is handled below like any other missing spool.
                with contextlib.suppress(NotFound):
                    target = await self.filters.file(target, rcpt, item.mail_from, final,
                                                     item_id, item=item)
            targets.append(target)
        parsed: ParsedMessage | None = None
        trace_length = item.trace_length + len(added)
        try:
            if stored:
                raw, parsed = stored[0]
            else:
                raw, parsed = loaded[0] if loaded else (await self.blobs.get(item.spool), None)
                if added:  # after our trace fields and Authentication-Results, as SMTP would
                    raw, parsed = fields.insert(raw, parsed, item.trace_length, added)
        except NotFound:
            if all([await self.store.has_delivery(t.account_id, item_id) for t in targets]):
                return Outcome()  # a previous attempt finished everything but the ack
            raise SpoolMissing(f"spooled message {item.spool} is missing") from None
        return await self.deliver(raw, parsed, targets, delivery_key=item_id,
                                  received_at=item.received_at, trace_length=trace_length)

    async def deliver(self, raw: bytes, parsed: ParsedMessage | None, targets: list[Target],
                      *, delivery_key: str, received_at: int, trace_length: int) -> Outcome:
        """Store the message for the targets the filters did not discard: those with a
        header block of their own (editheader) each as its own message, the rest as one;
        then tell each target's filters the email id."""
        kept = [t for t in targets if not t.discard]
        same = [t for t in kept if t.head is None]
        outcome = Outcome()
        if same:
            outcome = await self.ingest(raw, same, delivery_key=delivery_key,
                                        received_at=received_at, trace_length=trace_length,
                                        parsed=parsed)
        body = raw[parsed.root.body_start:] if parsed is not None else \
            raw.partition(b"\r\n\r\n")[2]
        for target in kept:
            if target.head is not None:
                edited = await self.ingest(target.head + b"\r\n" + body, [target],
                                           delivery_key=delivery_key, received_at=received_at)
                outcome.delivered += edited.delivered
                outcome.documents += edited.documents
                same.append(target)
        for target, done in zip(same, outcome.delivered, strict=True):
            if target.after is not None:
                await target.after(done.email_id)
        return outcome

    async def target(self, account_id: str, recipient: str, verdict: Verdict | None,
                     message: MessageLoader | None = None) -> Target:
        """Where one recipient gets the message, from the checks' verdict: Junk for JUNK, the
        Inbox otherwise. The one place for per-recipient placement (a user's own allow list
        or model overriding the verdict goes here)."""
        junk = verdict is not None and verdict.action is Action.JUNK
        if self.placement is not None and message is not None and verdict is not None:
            junk = await self.placement.junk(account_id, verdict, message)
        if junk:
            return Target(account_id, mailbox_roles=["junk"], keywords=["$junk"])
        return Target(account_id)

    async def ingest(self, raw: bytes, targets: list[Target], *, delivery_key: str,
                     received_at: int, trace_length: int = 0,
                     new_message: bool = False, parsed: ParsedMessage | None = None
                     ) -> Outcome:
        """Store `raw` for every target; safe to repeat with the same delivery key.
        `new_message`: a client asked for a new message (IMAP APPEND, COPY), so the same
        content already stored is not this message again (NewEmail.same_content_is_same_email).
        `parsed`: `raw` parsed already (by `parse`), which is then not parsed again."""
        ready = await self.prepare(raw, received_at=received_at, trace_length=trace_length,
                                   parsed=parsed)
        outcome = Outcome()
        for target in targets:
            new = self.new_email(ready, target, delivery_key, new_message=new_message)
            result = await self.store.deliver(new)
            outcome.delivered.append(Delivered(target.account_id, result.email_id,
                                               result.modseq, result.created, result.uids))
            outcome.documents.append(ready.document(target.account_id, result.email_id))
        return outcome

    async def prepare(self, raw: bytes, *, received_at: int, trace_length: int = 0,
                      parsed: ParsedMessage | None = None) -> Prepared:
        """The half of `ingest` before the store: analyse `raw` and make its blobs durable.
        A store write may then name them (`new_email`)."""
        if parsed is not None and len(raw) <= INLINE_ANALYSIS:
            found = self._analyse(raw, parsed, trace_length)
        else:
            found = await asyncio.to_thread(self._analyse, raw, parsed, trace_length)
        ready = Prepared(raw, found, received_at)
        await self.blobs.put_many(found.split.blobs)
        await self.blobs.put(ready.skeleton_id, found.split.skeleton)
        return ready

    async def prepare_many(self, messages: Sequence[tuple[bytes, int]]
                           ) -> list[Prepared | Exception]:
        """`prepare` for many messages ((octets, received at) each, none parsed yet), as an
        import batch needs it: every analysis in one hop to a thread, every blob written at
        once (attachments before the bodies that name them). A message that cannot be
        analysed gets its error in its place; the others go on."""
        def analyse_all() -> list[Analysis | Exception]:
            out: list[Analysis | Exception] = []
            for raw, _ in messages:
                try:
                    out.append(self._analyse(raw))
                except (ValueError, UnicodeError, LookupError) as error:
                    out.append(error)
            return out

        found = await asyncio.to_thread(analyse_all) if messages else []
        ready: list[Prepared | Exception] = [
            a if isinstance(a, Exception) else Prepared(raw, a, received_at)
            for (raw, received_at), a in zip(messages, found, strict=True)]
        done = [p for p in ready if isinstance(p, Prepared)]
        await self.blobs.put_many({k: v for p in done for k, v in p.analysis.split.blobs.items()})
        await self.blobs.put_many({p.skeleton_id: p.analysis.split.skeleton for p in done})
        return ready

    def new_email(self, ready: Prepared, target: Target, delivery_key: str, *,
                  new_message: bool = False) -> NewEmail:
        """The store's record of a prepared message for one target (see `ingest`)."""
        found = ready.analysis
        new = self._new_email(target, delivery_key, ready.received_at, found.parsed, ready.raw,
                              ready.skeleton_id, found.content_sha256, list(found.split.blobs))
        new.same_content_is_same_email = not new_message
        return new

    async def finish(self, item: InboundItem) -> None:
        """After the index has the documents: the spool copy is no longer needed."""
        await self.blobs.delete(item.spool)

    def parse(self, raw: bytes) -> ParsedMessage:
        """The one parse of a message, for storing, indexing and scoring it: its text as long
        as the index keeps and the spam features read (core.spam MAX_TEXT)."""
        return parse_message(raw, text_limit=max(self.index_limits.body, spam.MAX_TEXT))

    def analyse_text(self, raw: bytes, parsed: ParsedMessage | None = None
                     ) -> tuple[ParsedMessage, IndexText]:
        """Parse (unless given the parse) and take the searchable text (reindexing needs no
        more than this)."""
        if parsed is None:
            parsed = self.parse(raw)
        return parsed, index_text(raw, parsed, self.index_limits)

    def _analyse(self, raw: bytes, parsed: ParsedMessage | None = None, trace_length: int = 0
                 ) -> Analysis:
        """CPU work, off the event loop, in one hop to a thread: parse once, split attachments
        out (verified), and both SHA-256 (the stored body's name; the client's octets after
        our trace fields, for duplicate detection), read through a view, not a copy."""
        parsed, text = self.analyse_text(raw, parsed)
        try:
            split = skeleton.split(raw, parsed, min_size=self.dedup_min_size)
        except Exception:
            log.exception("attachment split failed; keeping the message whole")
            split = skeleton.split(raw, parsed, min_size=len(raw) + 1)
        return Analysis(parsed, split, text, hashlib.sha256(split.skeleton).hexdigest(),
                        hashlib.sha256(memoryview(raw)[trace_length:]).hexdigest())

    def _new_email(self, target: Target, delivery_key: str, received_at: int,
                   parsed: ParsedMessage, raw: bytes, skeleton_id: str, content_hash: str,
                   refs: list[str]) -> NewEmail:
        return NewEmail(
            account_id=target.account_id,
            email_id=new_id("e"),
            delivery_key=delivery_key,
            content_sha256=content_hash,
            blob_id=skeleton_id,
            size=len(raw),
            received_at=received_at,
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
            mailbox_roles=target.mailbox_roles,
            mailbox_ids=target.mailbox_ids,
            keywords=target.keywords,
            blob_refs=refs,
            head=raw[:parsed.root.body_start],
        )
