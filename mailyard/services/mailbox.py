"""The mailbox service: the one place where the rules of a mailbox live.

IMAP, POP3, JMAP, the web and the CLI all call these methods; none of them talks to the store
directly, so a rule (what EXPUNGE means for a label, how APPEND is threaded and deduplicated)
exists once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailyard.core import mailboxrules, skeleton
from mailyard.core.ids import new_id
from mailyard.services.subscriptions import Subscriptions
from mailyard.store.ports import (
    Account,
    BlobStore,
    EmailHead,
    EmailRecord,
    EventBus,
    Expunged,
    IndexDocument,
    KeywordUpdate,
    Mailbox,
    MailboxDelta,
    MailboxSnapshot,
    MailStore,
    NotFound,
    SearchIndex,
)

SORT_ORDER = "Mailbox"
"""MailStore object kind of a mailbox's client-given sortOrder (id: the mailbox's id)."""

JunkObserver = Callable[[Account, Sequence[str], bool], None]
"""Told (account, email ids, is_spam) when a user marks mail as junk or not junk: moved into or
out of the junk-role mailbox, or given $Junk / $NotJunk. Called on the request path: it must
only schedule its work."""

if TYPE_CHECKING:  # the pipeline is imported where mail is ingested: `mail list` never does
    from mailyard.pipeline.inbound import InboundPipeline


@dataclass(frozen=True, slots=True)
class Appended:
    email_id: str
    uid: int
    uidvalidity: int


class MailboxService:
    def __init__(self, store: MailStore, blobs: BlobStore, index: SearchIndex, bus: EventBus,
                 pipeline: InboundPipeline, junk_observers: Sequence[JunkObserver] = ()) -> None:
        self.store = store
        self.junk_observers = list(junk_observers)
        self.blobs = blobs
        self.index = index
        self.bus = bus
        self.pipeline = pipeline
        self._deltas: dict[tuple[str, int], asyncio.Future[MailboxDelta]] = {}
        self.subscriptions = Subscriptions(store, bus)

    async def account(self, address: str) -> Account:
        return await self.store.get_account(address)

    # ------------------------------------------------------------------ mailboxes

    async def mailboxes(self, account: Account) -> list[Mailbox]:
        return await self.store.list_mailboxes(account.id)

    async def thread_counts(self, account: Account) -> dict[str, tuple[int, int]]:
        """Mailbox id -> (threads with an email in it, those with an unseen email in it),
        JMAP's totalThreads/unreadThreads; a mailbox with no email is absent."""
        return await self.store.thread_counts(account.id)

    async def mailbox(self, account: Account, name: str) -> Mailbox:
        """By name; "INBOX" in any case is the inbox (RFC 3501 §5.1). One indexed read: IMAP
        asks on every SELECT, STATUS and APPEND, and listing every mailbox to find one was 8 %
        of the IMAP listener's loop under the imaptest mix (issue 16)."""
        box = await self.store.find_mailbox(account.id, name)
        if box is None:
            raise NotFound(f"no mailbox {name}")
        return box

    async def create_mailbox(self, account: Account, name: str,
                             role: str | None = None) -> Mailbox:
        """Raises MailboxRefused for a name or role the rules (core/mailboxrules) refuse, and
        Conflict when another session created the same name first."""
        mailboxrules.check_create(await self.mailboxes(account), name, role)
        box = await self.store.create_mailbox(account.id, name, role)
        await self._changed(account)
        return box

    async def delete_mailbox(self, account: Account, mailbox: Mailbox, *,
                             remove_emails: bool = False) -> list[str]:
        """Deletes the mailbox; with `remove_emails` (JMAP onDestroyRemoveEmails) the emails
        in no other mailbox (All Mail aside) are destroyed with it, in one transaction.
        Returns the ids destroyed."""
        mailboxrules.check_destroy(mailbox)
        gone = await self.store.delete_mailbox(account.id, mailbox.id,
                                               remove_emails=remove_emails)
        if gone:
            await self.index.delete(account.id, gone)
        with contextlib.suppress(NotFound):  # its sortOrder, if a client gave one
            await self.store.delete_object(account.id, SORT_ORDER, mailbox.id, log=False)
        await self._changed(account)
        return gone

    async def sort_orders(self, account: Account) -> dict[str, int]:
        """The sortOrder (RFC 8621 §2) a client gave each mailbox, by mailbox id; mailboxes
        missing here keep the order the protocol gives them by role."""
        return {o.id: int(o.data["sortOrder"])
                for o in await self.store.get_objects(account.id, SORT_ORDER)}

    async def set_sort_order(self, account: Account, mailbox: Mailbox, order: int, *,
                             created: bool = False) -> None:
        """Stored as an object of kind "Mailbox" under the mailbox's id, so that its change
        log entry is a Mailbox update and Mailbox/changes reports it. `created`: the mailbox
        was just made, and its creation in the log already covers the value. The first value
        of an older mailbox is written once outside the log: otherwise the log would call the
        mailbox "created" to a client that has known it for long."""
        data = {"sortOrder": order}
        if created or not await self.store.get_objects(account.id, SORT_ORDER, [mailbox.id]):
            await self.store.put_object(account.id, SORT_ORDER, mailbox.id, data, log=False)
        if not created:
            await self.store.put_object(account.id, SORT_ORDER, mailbox.id, data)
        await self._changed(account)  # each write steps the state: push clients hear of it

    async def rename_mailbox(self, account: Account, mailbox: Mailbox, name: str) -> None:
        """Children follow; raises MailboxRefused as create_mailbox does."""
        mailboxrules.check_rename(await self.mailboxes(account), mailbox, name)
        await self.store.rename_mailbox(account.id, mailbox.id, name)
        await self._changed(account)

    async def snapshot(self, account: Account, mailbox: Mailbox) -> MailboxSnapshot:
        return await self.store.snapshot(account.id, mailbox.id)

    async def delta(self, account: Account, mailbox: Mailbox, since: int) -> MailboxDelta:
        """What changed after `since`. Sessions that ask the same question at once (ten
        thousand IDLE clients woken by one delivery) share one query.

        The first to ask runs the query in its own task and the others wait on a future it
        settles: a task of its own for the query cost a turn of the event loop before it
        started, and under ten busy IMAP clients each turn waits behind the other sessions'
        work (after nearly every STORE, EXPUNGE and APPEND, since each makes the views
        stale). If the asker is cancelled meanwhile (its client went away), those waiting
        with it ask again themselves."""
        key = (mailbox.id, since)
        while (pending := self._deltas.get(key)) is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this caller was cancelled, not the asker
        done: asyncio.Future[MailboxDelta] = asyncio.get_running_loop().create_future()
        self._deltas[key] = done
        try:
            found = await self.store.mailbox_delta(account.id, mailbox.id, since)
        except asyncio.CancelledError:
            done.cancel()
            raise
        except BaseException as error:
            done.set_exception(error)
            done.exception()  # retrieved: the waiters, if any, raise it themselves
            raise
        finally:
            if self._deltas.get(key) is done:
                del self._deltas[key]
        done.set_result(found)
        return found

    # ------------------------------------------------------------------ emails

    async def emails(self, account: Account, label: str | None = None,
                     limit: int = 100) -> list[EmailRecord]:
        return await self.store.list_emails(account.id, label, limit)

    async def email(self, account: Account, email_id: str) -> EmailRecord:
        return await self.store.get_email(account.id, email_id)

    async def get_emails(self, account: Account, email_ids: Sequence[str], *,
                         brief: bool = False) -> list[EmailRecord]:
        return await self.store.get_emails(account.id, email_ids, brief=brief)

    async def get_heads(self, account: Account, email_ids: Sequence[str]) -> list[EmailHead]:
        return await self.store.get_heads(account.id, email_ids)

    async def threads(self, account: Account,
                      thread_ids: Sequence[str]) -> dict[str, list[str]]:
        """Each thread's email ids in arrival order (JMAP Thread/get)."""
        return await self.store.thread_emails(account.id, thread_ids)

    async def raw(self, account: Account, email_id: str) -> bytes:
        """The message octets exactly as stored at delivery, re-assembled from its skeleton."""
        record = await self.store.get_email(account.id, email_id)
        return await self.raw_of(record)

    async def raw_of(self, record: EmailRecord) -> bytes:
        skel = await self.blobs.get(record.blob_id)
        parts = {ref: await self.blobs.get(ref) for ref in skeleton.blob_refs(skel)}
        return skeleton.assemble(skel, parts.__getitem__)

    async def head_of(self, record: EmailRecord, size: int) -> bytes:
        """The first `size` octets (the header block): read from the skeleton alone, so a
        header FETCH of fifty messages opens no attachment."""
        skel = await self.blobs.get(record.blob_id)
        head = skeleton.prefix(skel, size)
        if head is None:
            head = (await self.raw_of(record))[:size]
        return head

    async def substring(self, account: Account, field: str | None,
                        needle: str) -> set[str] | None:
        """Email ids of the account whose text field contains `needle` (see SearchIndex)."""
        return await self.index.substring(account.id, field, needle)

    async def set_keywords(self, account: Account, email_ids: Sequence[str], *,
                           add: Sequence[str] = (), remove: Sequence[str] = (),
                           replace: Sequence[str] | None = None,
                           unchanged_since: int | None = None) -> KeywordUpdate:
        result = await self.store.set_keywords(account.id, email_ids, add=add, remove=remove,
                                               replace=replace, unchanged_since=unchanged_since)
        # A STORE that sets a flag already there (a client marking read what another already
        # did) or meets only conflicts wrote nothing: no event, so no IMAP view is re-read.
        if result.modseq is not None:
            await self._changed(account, result.modseq)
        marked = {k.lower() for k in (replace if replace is not None else add)}
        if "$junk" in marked or "$notjunk" in marked:
            self._junk(account, email_ids, "$junk" in marked)
        return result

    async def copy(self, account: Account, email_ids: Sequence[str], target: Mailbox,
                   source: Mailbox | None = None) -> dict[str, int]:
        """COPY (RFC 3501 §6.4.7): the target gains a new message for each email, under a new
        UID. An email not yet in the target just gains the label (one email, two mailboxes:
        the labels model); one the target already holds becomes a second email there, which
        shares the stored octets (a copy with its own UID and flags from now on). From a
        `source` (IMAP COPY), only the emails still in it are copied."""
        uids = await self.store.add_to_mailbox(account.id, email_ids, target.id,
                                               fresh_only=True,
                                               source_id=source.id if source else None)
        held = [e for e in email_ids if e not in uids]  # (or gone meanwhile)
        present = {r.id: r for r in await self.store.get_emails(account.id, held, brief=True)
                   if target.name in r.mailboxes
                   and (source is None or source.name in r.mailboxes)} if held else {}
        documents: list[IndexDocument] = []
        for email_id, record in present.items():
            uids[email_id] = await self._duplicate(account, record, target, documents)
        if documents:
            await self.index.index(documents)
        await self._changed(account)
        if target.role == "junk":
            self._junk(account, email_ids, True)
        return uids

    async def _duplicate(self, account: Account, record: EmailRecord, target: Mailbox,
                         documents: list[IndexDocument]) -> int:
        """A second email of the same content in `target` (the same blobs: the skeleton's key
        is its hash and day, the attachments are content-addressed)."""
        from mailyard.pipeline.inbound import Target
        outcome = await self.pipeline.ingest(
            await self.raw_of(record),
            [Target(account.id, mailbox_roles=[], mailbox_ids=[target.id],
                    keywords=list(record.keywords))],
            delivery_key=new_id("copy"), received_at=record.received_at, new_message=True)
        [delivered] = outcome.delivered
        documents += outcome.documents
        return delivered.uids[target.id]

    async def move(self, account: Account, email_ids: Sequence[str], source: Mailbox,
                   target: Mailbox) -> dict[str, tuple[int, int]]:
        """MOVE (RFC 6851): the target gains a new message with a new UID and the source loses
        it. An email the target already holds (labels) gets a second email there, as COPY
        makes (see copy); to the same mailbox, the email is renumbered."""
        moved = await self.store.move(account.id, email_ids, source.id, target.id,
                                      fresh_only=True)
        held = [e for e in email_ids if e not in moved]  # (or gone meanwhile)
        present = {r.id: r for r in await self.store.get_emails(account.id, held, brief=True)
                   if target.name in r.mailboxes} if held and source.id != target.id else {}
        if present:
            documents: list[IndexDocument] = []
            for email_id, record in present.items():
                old_uid = record.mailboxes.get(source.name)
                if old_uid is None:
                    continue
                new_uid = await self._duplicate(account, record, target, documents)
                moved[email_id] = (old_uid, new_uid)
            if documents:
                await self.index.index(documents)
            # The originals leave the source in one transaction (one MODSEQ), after their
            # copies exist: a failure in between leaves a copy too many, never a message lost.
            copied = [e for e in present if e in moved]
            left = await self.store.expunge(account.id, source.id, copied) if copied else None
            if left and left.destroyed:
                await self.index.delete(account.id, left.destroyed)
        await self._changed(account)
        if target.role == "junk" or (source.role == "junk" and target.role != "trash"):
            self._junk(account, email_ids, target.role == "junk")
        return moved

    async def expunge(self, account: Account, mailbox: Mailbox, email_ids: Sequence[str],
                      *, if_deleted: bool = False) -> Expunged:
        """Takes the label off; from Trash (last label) or All Mail it destroys the email
        (model/labels.py). `if_deleted`: only those still \\Deleted in the store's own
        transaction (IMAP EXPUNGE, CLOSE: the session's view may be older than another
        session's STORE). Returns the UIDs removed and the MODSEQ the write took (IMAP
        moves its view on by them without reading them back)."""
        done = await self.store.expunge(
            account.id, mailbox.id, email_ids, if_keyword="$deleted" if if_deleted else None)
        await self._forget(account, done)
        return done

    async def append(self, account: Account, mailbox: Mailbox, raw: bytes, *,
                     keywords: Sequence[str] = (), received_at: int | None = None,
                     new_message: bool = True) -> Appended:
        """APPEND, JMAP Email/import: the same store path as delivery (threaded, indexed,
        counted in the quota), a new email with exactly the flags given, under a new UID (RFC
        3501 §6.3.11): the same octets appended twice are two messages. The UID is the one the
        delivery's own transaction gave, never read back (another session may expunge it at
        once). `new_message=False` is for the server's own filing (the Sent copy of a
        submission): the same message already stored gains the label instead."""
        from mailyard.pipeline.inbound import Target
        outcome = await self.pipeline.ingest(
            raw, [Target(account.id, mailbox_roles=[], mailbox_ids=[mailbox.id],
                         keywords=list(keywords))],
            delivery_key=new_id("append"),
            received_at=received_at if received_at is not None else int(time.time() * 1000),
            new_message=new_message)
        [delivered] = outcome.delivered
        uid = delivered.uids.get(mailbox.id)
        state: int | None = delivered.modseq
        if uid is None:  # the same message was there already (new_message=False)
            labelled = await self.store.add_to_mailbox(account.id, [delivered.email_id],
                                                       mailbox.id)
            uid = labelled.get(delivered.email_id, 0)
            state = None  # that write took a MODSEQ of its own: read it
        await self.index.index(outcome.documents)
        await self._changed(account, state)
        return Appended(delivered.email_id, uid, mailbox.uidvalidity)

    async def destroy(self, account: Account, email_ids: Sequence[str]) -> list[str]:
        """JMAP Email/set destroy: out of every mailbox and the quota in one transaction
        (model/labels.py destroy_emails), then out of the search index. Returns the ids that
        were there to destroy."""
        gone = await self.store.destroy_emails(account.id, email_ids)
        if gone:
            await self._forget(account, Expunged(uids=[], destroyed=gone))
        return gone

    async def _forget(self, account: Account, done: Expunged) -> None:
        """Destroyed emails leave the search index too, or text searches would name them;
        then the change is published, with the MODSEQ the expunge took."""
        if done.destroyed:
            await self.index.delete(account.id, list(done.destroyed))
        if done.uids or done.destroyed:  # else nothing left a mailbox: no one to wake
            await self._changed(account, done.modseq)

    def _junk(self, account: Account, email_ids: Sequence[str], is_spam: bool) -> None:
        for observe in self.junk_observers:
            observe(account, list(email_ids), is_spam)

    async def publish_change(self, account: Account) -> None:
        """Tell IDLE/push clients the account changed (services/importing, once per batch)."""
        await self._changed(account)

    async def _changed(self, account: Account, state: int | None = None) -> None:
        """Publish that the account changed. `state`: the MODSEQ the write itself took, when
        the caller has it (STORE, APPEND): then no read of the account. Each published state
        only says "look again" (store/subscription.py: IMAP views ignore the value, push keeps
        the highest), so one a concurrent write has already passed is harmless; the pipeline
        workers publish their deliveries' own MODSEQs the same way. Under the IMAP mix the
        read after every STORE and APPEND was ~4 % of the listener's time."""
        if state is None:
            state = (await self.store.get_account_by_id(account.id)).modseq
        await self.bus.publish(account.id, state)

    async def delete_from(self, account: Account, mailbox: Mailbox,
                          email_ids: Sequence[str]) -> list[str]:
        """Take the emails out of `mailbox` and destroy those no other mailbox holds (All Mail
        aside), in one transaction: POP3 DELE in expunge mode, where deleted must mean gone,
        while a label the user gave an email elsewhere is kept. Returns the destroyed ids."""
        done = await self.store.expunge(account.id, mailbox.id, email_ids, orphans=True)
        await self._forget(account, done)
        return done.destroyed
