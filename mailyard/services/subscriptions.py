"""Subscriptions: the account's list of mailbox names its clients want shown (RFC 3501
§6.3.6-6.3.9, RFC 9051 §6.3.7, RFC 5258): IMAP SUBSCRIBE/LSUB/LIST (SUBSCRIBED) and JMAP's
Mailbox isSubscribed (RFC 8621 §2) read and write it through here, and nowhere else.

The list holds NAMES, not mailboxes: CREATE does not subscribe, DELETE does not unsubscribe
(RFC 3501 §6.3.9: the server MUST NOT remove a name because its mailbox is gone), a name
with no mailbox may be subscribed, and RENAME takes the subscriptions of the mailbox and its
children along (as Dovecot does).

It is stored without a table of its own: one MailStore object per subscribed name (kind
SUBSCRIPTION, id = the name as IMAP spells it, INBOX for the inbox), written outside the
change log (log=False). Accounts from before the list, and new accounts, have no objects
yet: their list is then read from the mailboxes' old `subscribed` column (every default
mailbox starts subscribed, which Thunderbird and other clients that show only subscribed
folders need), and the first change writes it out in full along with a MARKER object. A
change that alters isSubscribed of an existing mailbox also goes through
MailStore.set_subscribed, which logs a Mailbox update: JMAP states and Mailbox/changes see
it, whichever protocol made it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from mailyard.store.ports import NotFound

if TYPE_CHECKING:  # annotations only: an admin command need not load the bus and store ports
    from mailyard.store.ports import Account, EventBus, Mailbox, MailStore

SUBSCRIPTION = "imap.subscription"
"""The MailStore object kind of one subscribed name."""
MARKER = ""
"""Object id (no mailbox name is empty) saying the account's list has been written out."""
DELIMITER = "/"
MAX_NAME_OCTETS = 2048
"""Longest name that can be subscribed (UTF-8 octets): the name is part of a store key, and
PostgreSQL's btree keys end near 2.7 kB. IMAP allows less (cmd_mailbox); JMAP's paths of
255-character levels stay under it up to eight levels deep."""


def imap_name(box: Mailbox, name: str | None = None) -> str:
    """A mailbox's name (or `name`, the one it is being given) as the subscription list keeps
    it: INBOX for the inbox."""
    return "INBOX" if box.role == "inbox" else box.name if name is None else name


class Subscriptions:
    def __init__(self, store: MailStore, bus: EventBus) -> None:
        self.store = store
        self.bus = bus

    # ------------------------------------------------------------------ reading

    async def names(self, account: Account, boxes: Sequence[Mailbox] | None = None
                    ) -> set[str]:
        """The subscribed names. `boxes` (the account's mailboxes, if the caller has them)
        saves a read when the list was never written out."""
        objects = await self.store.get_objects(account.id, SUBSCRIPTION)
        if any(o.id == MARKER for o in objects):
            return {o.id for o in objects if o.id != MARKER}
        if boxes is None:
            boxes = await self.store.list_mailboxes(account.id)
        return {imap_name(b) for b in boxes if b.subscribed}

    async def mark(self, account: Account, boxes: Sequence[Mailbox]) -> list[Mailbox]:
        """Copies of `boxes` whose `subscribed` says whether their name is in the list (what
        JMAP shows as isSubscribed); the store's own column is only the old default."""
        names = await self.names(account, boxes)
        return [dataclasses.replace(b, subscribed=imap_name(b) in names) for b in boxes]

    # ------------------------------------------------------------------ writing

    async def subscribe(self, account: Account, name: str, subscribed: bool) -> None:
        """IMAP SUBSCRIBE / UNSUBSCRIBE and JMAP isSubscribed: add or remove `name`, whether
        or not a mailbox has it (RFC 3501 §6.3.6-6.3.7). Idempotent."""
        if subscribed and len(name.encode()) > MAX_NAME_OCTETS:
            raise ValueError(f"a subscribed name is at most {MAX_NAME_OCTETS} octets")
        boxes = await self.store.list_mailboxes(account.id)
        before = await self._materialise(account, boxes)
        if (name in before) == subscribed:
            return
        if subscribed:
            await self.store.put_object(account.id, SUBSCRIPTION, name, {}, log=False)
        else:
            with contextlib.suppress(NotFound):
                await self.store.delete_object(account.id, SUBSCRIPTION, name, log=False)
        after = before | {name} if subscribed else before - {name}
        await self._tell(account, boxes, before, after)

    async def renamed(self, account: Account, old: str, new: str) -> None:
        """After RENAME old -> new: the subscriptions of old and of the names below it move
        to the new names (the mailboxes below it were renamed along)."""
        boxes = await self.store.list_mailboxes(account.id)
        before = await self._materialise(account, boxes)
        moved = {n for n in before if n == old or n.startswith(old + DELIMITER)}
        if not moved:
            return
        after = before - moved
        for name in sorted(moved):
            target = new + name[len(old):]
            if len(target.encode()) <= MAX_NAME_OCTETS:
                await self.store.put_object(account.id, SUBSCRIPTION, target, {}, log=False)
                after.add(target)
        for name in sorted(moved - after):
            with contextlib.suppress(NotFound):
                await self.store.delete_object(account.id, SUBSCRIPTION, name, log=False)
        await self._tell(account, boxes, before, after)

    async def materialise(self, account: Account) -> None:
        """Write the list out if it is still the old column's, so that a mailbox about to be
        created does not join it through the column's default (IMAP CREATE)."""
        await self._materialise(account, await self.store.list_mailboxes(account.id))

    async def _materialise(self, account: Account, boxes: Sequence[Mailbox]) -> set[str]:
        objects = await self.store.get_objects(account.id, SUBSCRIPTION)
        if any(o.id == MARKER for o in objects):
            return {o.id for o in objects if o.id != MARKER}
        names = {imap_name(b) for b in boxes if b.subscribed}
        for name in sorted(names - {o.id for o in objects}):
            await self.store.put_object(account.id, SUBSCRIPTION, name, {}, log=False)
        # The marker last: a writer interrupted before it leaves a list that is read as
        # the column's again, and written out again by the next change.
        await self.store.put_object(account.id, SUBSCRIPTION, MARKER, {}, log=False)
        return names | {o.id for o in objects if o.id != MARKER}

    async def _tell(self, account: Account, boxes: Iterable[Mailbox], before: set[str],
                    after: set[str]) -> None:
        """Log a Mailbox update for each existing mailbox whose isSubscribed changed (JMAP
        Mailbox/changes, push), and wake the account's listeners once."""
        changed = False
        for box in boxes:
            now = imap_name(box) in after
            if (imap_name(box) in before) != now:
                with contextlib.suppress(NotFound):  # deleted meanwhile
                    await self.store.set_subscribed(account.id, box.id, now)
                    changed = True
        if changed:
            state = (await self.store.get_account_by_id(account.id)).modseq
            await self.bus.publish(account.id, state)
