"""Delivery of one email into an account: de-duplication, quota, threading, its mailboxes.

Rules, once for every engine:
- A redelivery is no delivery: the same delivery key (a queue item retried after a crash), or
  for SMTP the same Message-ID with the same content (a sender's retry after a lost 250),
  answers with the email already stored and writes nothing.
- The account's quota counts every octet stored; a delivery that would pass it is refused
  (QuotaExceeded) and writes nothing.
- The email joins the thread of any stored email sharing one of its keys (its Message-ID,
  In-Reply-To, References: core.threading). When its keys reach several threads, the oldest
  (ids are time-ordered) absorbs the others: their emails move to it ("Email updated"), their
  keys too, and they are "destroyed". With no key found, what looks like a reply joins the
  latest thread of the same base subject within REPLY_WINDOW_MS. Otherwise it starts a thread
  of its own, named after the email.
- The email is in the mailboxes it names, those of its roles, and always All Mail; one MODSEQ
  covers the whole delivery.
- An import batch (`store_imports`) is its deliveries in source order in one transaction; a
  message the import met before (or a delivery that found the email stored) has its labels
  and keywords added to what is stored; a delivery over quota fails alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailyard.core.threading import REPLY_WINDOW_MS, thread_keys, wants_subject_fallback
from mailyard.model.keywords import set_keywords
from mailyard.model.labels import ALL, add_to_mailbox, label
from mailyard.store.ports import (
    DeliveryResult,
    DeliveryTx,
    EmailFlags,
    ImportWrite,
    NewEmail,
    NotFound,
    QuotaExceeded,
    StoreTx,
)


async def deliver(tx: DeliveryTx, email: NewEmail) -> DeliveryResult:
    """Store `email` (or find it stored already) in one transaction."""
    # The account lock first: a concurrent redelivery of the same item waits here and then
    # finds this one's email.
    usage = await tx.lock_usage()
    existing = await tx.find_delivery(email.delivery_key)
    if existing is None and email.message_id and email.same_content_is_same_email:
        existing = await tx.find_same_content(email.message_id, email.content_sha256)
    if existing is not None:
        return existing
    if usage is None:
        raise NotFound(f"no account {tx.account_id}")
    quota, used = usage
    if used + email.size > quota:
        raise QuotaExceeded(f"mailbox full: {used} + {email.size} bytes > quota {quota}")
    modseq = await tx.next_modseq()
    keys = thread_keys(email.message_id, email.in_reply_to, email.references)
    thread_id = await _join_thread(tx, email, keys, modseq)
    await tx.put_thread_keys(keys, thread_id)
    await tx.insert_email(email, thread_id, modseq)
    tx.log(modseq, "Email", email.email_id, "created")
    roles = list(dict.fromkeys([*email.mailbox_roles, ALL]))
    by_role = await tx.mailboxes_by_role(roles)
    for role in roles:
        if role not in by_role:
            raise NotFound(f"account {tx.account_id} has no {role} mailbox")
    stored = EmailFlags(email.keywords, modseq, email.size, email.received_at)
    uids = {mailbox_id: await label(tx, email.email_id, stored, mailbox_id, modseq, fresh=True)
            for mailbox_id in dict.fromkeys([*email.mailbox_ids, *(by_role[r] for r in roles)])}
    await tx.add_usage(email.size)
    return DeliveryResult(email_id=email.email_id, thread_id=thread_id, created=True,
                          modseq=modseq, uids=uids)


async def _join_thread(tx: DeliveryTx, email: NewEmail, keys: list[str], modseq: int) -> str:
    """The thread the email joins; merges every thread its keys touch into the oldest one."""
    found = await tx.threads_of_keys(keys) if keys else set()
    if not found and wants_subject_fallback(
            email.subject, email.thread_subject, bool(email.in_reply_to or email.references)):
        latest = await tx.latest_thread_by_subject(email.thread_subject,
                                                   email.received_at - REPLY_WINDOW_MS)
        if latest is not None:
            found.add(latest)
    if not found:
        thread_id = "t" + email.email_id[1:]
        tx.log(modseq, "Thread", thread_id, "created")
        return thread_id
    thread_id = min(found)  # ids are time-ordered: the oldest thread absorbs the others
    for other in sorted(found - {thread_id}):
        for moved_id in await tx.merge_thread(other, thread_id, modseq):
            tx.log(modseq, "Email", moved_id, "updated")
        tx.log(modseq, "Thread", other, "destroyed")
    tx.log(modseq, "Thread", thread_id, "updated")
    return thread_id


async def store_imports(tx: StoreTx, account_id: str, writes: Sequence[ImportWrite]
                        ) -> list[tuple[str, bool] | QuotaExceeded]:
    """An import batch on one open transaction, in order (MailStore.store_imports)."""
    out: list[tuple[str, bool] | QuotaExceeded] = []
    for write in writes:
        if write.email is not None:
            try:
                result = await deliver(tx, write.email)
            except QuotaExceeded as refused:  # raised before the delivery wrote anything
                out.append(refused)
                continue
            email_id, created = result.email_id, result.created
        else:
            assert write.existing is not None, "an ImportWrite names an email or a delivery"
            email_id, created = write.existing, False
        if not created:
            for box in write.mailboxes:
                await add_to_mailbox(tx, [email_id], box)
            if write.keywords:
                await set_keywords(tx, [email_id], add=write.keywords)
        out.append((email_id, created))
    return out
