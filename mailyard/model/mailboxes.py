"""Mailboxes of an account as stored: the defaults, create, rename, subscribe, destroy.

Which names and roles a client may ask for is core/mailboxrules.py (every protocol checks
there first); what a store does with an allowed request is decided here, once for every
engine:
- A new account has the DEFAULT_MAILBOXES, All Mail among them, made under one MODSEQ and
  one UIDVALIDITY the account never gave before.
- A name is stored as store.ports.stored_text makes it (no NUL, no lone surrogate), on every
  engine alike.
- A name or a role is held by one mailbox of the account at most (Conflict otherwise); a new
  mailbox gets a fresh UIDVALIDITY, so that no client mistakes it for one it knew by name.
- Renaming a mailbox renames the mailboxes below it (their paths keep their tails), all under
  one MODSEQ, each "Mailbox updated".
- Destroying a mailbox leaves its emails (All Mail still holds them), touched so their
  mailboxIds change is seen; with `remove_emails` (JMAP onDestroyRemoveEmails, RFC 8621
  §2.5) those in no other mailbox (All Mail aside) are destroyed instead, in the same
  transaction and MODSEQ. The mailbox is "destroyed" in the change log.
Each writes the change log entries JMAP Mailbox/changes and IMAP NOTIFY read.
- A mailbox looked up by its name (`lookup`) is the one of exactly that name, except that
  "INBOX" in any case is the inbox-role mailbox (RFC 3501 §5.1), the name as stored.
- A mailbox named by a client outside IMAP and JMAP (`mailyard mail list --mailbox`) is
  the one of that name in any case, or the one of that role (`named`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from mailyard.core.mailboxrules import DELIMITER, is_inbox_name
from mailyard.model import labels
from mailyard.model.keywords import touch
from mailyard.store.ports.errors import Conflict
from mailyard.store.ports.mailtx import MailboxTx
from mailyard.store.ports.records import Mailbox
from mailyard.store.ports.text import stored_text

DEFAULT_MAILBOXES = (
    ("INBOX", "inbox"), ("Sent", "sent"), ("Drafts", "drafts"), ("Trash", "trash"),
    ("Junk", "junk"), ("Archive", "archive"), ("All Mail", "all"),
)


def named(boxes: Sequence[Mailbox], name: str) -> list[str]:
    """The ids of the account's `boxes` that `name` names: by name, in any case, or by
    role ("inbox", "Sent")."""
    folded = stored_text(name).lower()
    return [box.id for box in boxes if box.name.lower() == folded or box.role == folded]


MailboxKey = Literal["name", "role"]


def lookup(name: str) -> tuple[MailboxKey, str]:
    """The column and value a mailbox asked for by `name` is found by: the inbox role for
    "INBOX" in any case, the name as stored otherwise."""
    if is_inbox_name(name):
        return "role", "inbox"
    return "name", stored_text(name)


async def create_defaults(tx: MailboxTx, mailbox_ids: list[str]) -> None:
    """The new account's DEFAULT_MAILBOXES under `mailbox_ids` (one each, in order)."""
    modseq = await tx.next_modseq()
    uidvalidity = await tx.new_uidvalidity()
    await tx.insert_mailboxes([(mailbox_id, name, role) for mailbox_id, (name, role)
                               in zip(mailbox_ids, DEFAULT_MAILBOXES, strict=True)],
                              uidvalidity, 0)
    for mailbox_id in mailbox_ids:
        tx.log(modseq, "Mailbox", mailbox_id, "created")


async def create(tx: MailboxTx, mailbox_id: str, name: str, role: str | None) -> Mailbox:
    name = stored_text(name)
    modseq = await tx.next_modseq()  # locks the account: the checks hold to the commit
    if await tx.mailbox_named(name) is not None:
        raise Conflict(f"mailbox {name} exists")
    if role and await tx.mailboxes_by_role([role]):
        raise Conflict(f"a mailbox with role {role} exists")
    await tx.insert_mailboxes([(mailbox_id, name, role)], await tx.new_uidvalidity(), modseq)
    tx.log(modseq, "Mailbox", mailbox_id, "created")
    return await tx.mailbox(mailbox_id)


async def rename(tx: MailboxTx, mailbox_id: str, name: str) -> None:
    name = stored_text(name)
    modseq = await tx.next_modseq()  # locks the account: the checks hold to the commit
    old = (await tx.mailbox(mailbox_id)).name
    if await tx.mailbox_named(name) is not None:
        raise Conflict(f"mailbox {name} exists")
    below = await tx.mailboxes_below(old + DELIMITER)
    moves = {mailbox_id: name, **{child: name + path[len(old):] for child, path in below}}
    await tx.rename_mailboxes(moves, modseq)
    for moved in moves:
        tx.log(modseq, "Mailbox", moved, "updated")


async def set_subscribed(tx: MailboxTx, mailbox_id: str, subscribed: bool) -> None:
    await tx.mailbox(mailbox_id)  # NotFound for a wrong id
    modseq = await tx.next_modseq()
    await tx.write_subscribed(mailbox_id, subscribed)
    tx.log(modseq, "Mailbox", mailbox_id, "updated")


async def destroy(tx: MailboxTx, mailbox_id: str, *, remove_emails: bool = False) -> list[str]:
    """The ids of the emails destroyed with the mailbox (only with `remove_emails`)."""
    await tx.mailbox(mailbox_id)  # NotFound for a wrong id
    modseq = await tx.next_modseq()
    email_ids = await tx.mailbox_email_ids(mailbox_id)
    emails = await tx.email_flags(email_ids) if remove_emails else {}
    destroyed = []
    for email_id in email_ids:
        email = emails.get(email_id)
        if email is not None and not await labels.others(tx, email_id, besides=mailbox_id):
            await labels.destroy(tx, email_id, email, modseq)
            destroyed.append(email_id)
        else:
            await touch(tx, email_id, modseq)
    await tx.delete_mailbox(mailbox_id)
    tx.log(modseq, "Mailbox", mailbox_id, "destroyed")
    return destroyed
