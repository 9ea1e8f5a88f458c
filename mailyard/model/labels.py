"""Mailboxes as labels: COPY, MOVE, EXPUNGE, JMAP mailboxIds, and when an email is destroyed.

Rules, once for every engine:
- An email enters a mailbox under the mailbox's next UID, at most once (a second add returns
  the UID it has); leaving records the UID as vanished at the MODSEQ (QRESYNC). Either way the
  mailbox's counters move by the email (one message, unread unless $seen, its octets), the
  mailbox takes the MODSEQ, and the change log says the Mailbox was updated; the email itself
  is touched (its MODSEQ, "Email updated").
- Every write takes one MODSEQ for all it changes.
- An expunge from All Mail destroys the email; so does one from a destroying role (Trash)
  when no mailbox but All Mail holds it any more, and, when the caller asks for `orphans`
  (POP3 DELE in expunge mode, JMAP onDestroyRemoveEmails), one from any mailbox. Destroying
  takes the email out of every mailbox, gives its octets back to the quota, logs "Email
  destroyed", and the thread is "updated" while it has emails, else "destroyed" and its
  Message-ID keys forgotten. JMAP Email/set destroy destroys outright (`destroy_emails`).
- A MOVE takes the email out of the source first: one another session expunged meanwhile
  is not moved (it would turn up in the target unannounced).
"""

from __future__ import annotations

from collections.abc import Sequence

from mailyard.model.keywords import SEEN, touch
from mailyard.store.ports.errors import NotFound
from mailyard.store.ports.mailtx import CountChange, EmailFlags, MailTx
from mailyard.store.ports.records import Expunged

ALL = "all"
"""The role of the mailbox every email is in (Gmail's All Mail): an email with no other label
is still there, and only an expunge from it (or from Trash) destroys the email."""
DESTROYING_ROLES = frozenset({ALL, "trash"})


def counts(email: EmailFlags, sign: int) -> CountChange:
    """How a mailbox's counters move when `email` enters (+1) or leaves (-1) it."""
    return CountChange(total=sign, unread=sign * (SEEN not in email.keywords),
                       size=sign * email.size)


def destroys(role: str | None, others: int, *, orphans: bool = False) -> bool:
    """Whether an expunge from a mailbox of `role` destroys the email, `others` being the
    mailboxes other than All Mail that still hold it; with `orphans`, an email left in no
    such mailbox is destroyed whatever the role."""
    return role == ALL or ((orphans or role in DESTROYING_ROLES) and others == 0)


async def others(tx: MailTx, email_id: str, *, besides: str = "") -> int:
    """How many mailboxes other than All Mail (and `besides`) hold the email."""
    return sum(m != besides and r != ALL for m, r in (await tx.holders(email_id)).items())


async def label(tx: MailTx, email_id: str, email: EmailFlags, mailbox_id: str, modseq: int,
                *, fresh: bool = False) -> int:
    """Put the email in the mailbox (or return the UID it has there); `fresh`: the caller
    knows the mailbox does not hold it."""
    if not fresh and (have := await tx.uids(mailbox_id, [email_id])):
        return have[email_id]
    uid = await tx.insert_label(mailbox_id, email_id, modseq, email.received_at,
                                counts(email, +1))
    if uid is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    tx.log(modseq, "Mailbox", mailbox_id, "updated")
    return uid


async def unlabel(tx: MailTx, email_id: str, email: EmailFlags, mailbox_id: str,
                  modseq: int) -> int | None:
    """Take the email out of the mailbox: its UID there, or None when it was not there."""
    uid = await tx.delete_label(mailbox_id, email_id, modseq, counts(email, -1))
    if uid is not None:
        tx.log(modseq, "Mailbox", mailbox_id, "updated")
    return uid


async def destroy(tx: MailTx, email_id: str, email: EmailFlags, modseq: int) -> None:
    """Remove an email everywhere; its blobs stay (shared, content-addressed) for a later GC."""
    for mailbox_id in await tx.holders(email_id):
        await unlabel(tx, email_id, email, mailbox_id, modseq)
    row = await tx.delete_email(email_id)
    if row is None:
        return
    await tx.release_quota(row.size)
    tx.log(modseq, "Email", email_id, "destroyed")
    left = await tx.thread_exists(row.thread_id)
    tx.log(modseq, "Thread", row.thread_id, "updated" if left else "destroyed")
    if not left:
        await tx.delete_thread_keys(row.thread_id)


async def add_to_mailbox(tx: MailTx, email_ids: Sequence[str], mailbox_id: str, *,
                         fresh_only: bool = False, source_id: str | None = None
                         ) -> dict[str, int]:
    """Label the emails (unknown ids skipped): email id -> its UID in the mailbox. With
    `fresh_only`, one the mailbox already holds is left out; with `source_id`, only those
    that mailbox holds are added (a COPY of what another session has not expunged)."""
    await tx.mailbox(mailbox_id)  # NotFound for a wrong id
    modseq = await tx.next_modseq()
    emails = await tx.email_flags(email_ids)
    held = await tx.uids(mailbox_id, email_ids) if fresh_only else {}
    there = await tx.uids(source_id, email_ids) if source_id is not None else None
    uids = {}
    for email_id in email_ids:
        email = emails.get(email_id)
        if email is None or email_id in held or (there is not None and email_id not in there):
            continue
        uids[email_id] = await label(tx, email_id, email, mailbox_id, modseq)
        await touch(tx, email_id, modseq)
    return uids


async def destroy_emails(tx: MailTx, email_ids: Sequence[str]) -> list[str]:
    """Destroy the emails (JMAP Email/set destroy), unknown ids skipped, all under one MODSEQ
    (none taken when there is nothing to destroy); the ids destroyed."""
    await tx.lock_account()
    emails = await tx.email_flags(email_ids)
    if not emails:
        return []
    modseq = await tx.next_modseq()
    gone = [email_id for email_id in dict.fromkeys(email_ids) if email_id in emails]
    for email_id in gone:
        await destroy(tx, email_id, emails[email_id], modseq)
    return gone


async def remove_from_mailbox(tx: MailTx, mailbox_id: str, email_ids: Sequence[str], *,
                              if_keyword: str | None = None, orphans: bool = False
                              ) -> Expunged:
    """Unlabel the emails (only those with `if_keyword`, when given: EXPUNGE of \\Deleted),
    destroying those the rule says (see `destroys`); the UIDs removed, ascending, and the
    emails destroyed."""
    role = (await tx.mailbox(mailbox_id)).role
    modseq = await tx.next_modseq()  # locks the account: no STORE in between
    emails = await tx.email_flags(email_ids)
    result = Expunged(uids=[], destroyed=[], modseq=modseq)
    for email_id in dict.fromkeys(email_ids):
        email = emails.get(email_id)
        if email is None or (if_keyword is not None and if_keyword not in email.keywords):
            continue
        uid = await unlabel(tx, email_id, email, mailbox_id, modseq)
        if uid is None:
            continue
        result.uids.append(uid)
        if destroys(role, await others(tx, email_id), orphans=orphans):
            await destroy(tx, email_id, email, modseq)
            result.destroyed.append(email_id)
        else:
            await touch(tx, email_id, modseq)
    result.uids.sort()
    return result


async def move(tx: MailTx, email_ids: Sequence[str], source_id: str, target_id: str, *,
               fresh_only: bool = False) -> dict[str, tuple[int, int]]:
    """Email id -> (old UID in the source, new UID in the target), in one MODSEQ. With
    `fresh_only`, an email the target (another mailbox) already holds is not moved."""
    await tx.mailbox(source_id)  # NotFound for a wrong id
    await tx.mailbox(target_id)
    modseq = await tx.next_modseq()
    emails = await tx.email_flags(email_ids)
    held = await tx.uids(target_id, email_ids) \
        if fresh_only and source_id != target_id else {}
    moved = {}
    for email_id in email_ids:
        email = emails.get(email_id)
        if email is None or email_id in held:
            continue
        old = await unlabel(tx, email_id, email, source_id, modseq)
        if old is None:
            continue
        moved[email_id] = (old, await label(tx, email_id, email, target_id, modseq,
                                            fresh=source_id == target_id))
        await touch(tx, email_id, modseq)
    return moved
