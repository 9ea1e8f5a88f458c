"""Read rules of the mail model (model/) on every engine: each engine reads its rows, the
model decides what a request means."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailyard.store.ports import Account, NewEmail
from tests.contract.test_mailstore import deliver

NewEmailFactory = Callable[..., NewEmail]


async def test_a_mailbox_is_named_in_any_case_beyond_ascii(mailstore: Any, account: Account,
                                                          new_email: NewEmailFactory) -> None:
    box = await mailstore.create_mailbox(account.id, "Ärger")
    email = new_email(account.id)
    await deliver(mailstore, email)
    await mailstore.add_to_mailbox(account.id, [email.email_id], box.id)
    await deliver(mailstore, new_email(account.id))
    for spelling in ("Ärger", "äRGER", "ÄRGER"):
        listed = await mailstore.list_emails(account.id, mailbox=spelling)
        assert [r.id for r in listed] == [email.email_id], spelling
    assert await mailstore.list_emails(account.id, mailbox="Arger") == []


async def test_threads_and_unread_threads_of_each_mailbox(mailstore: Any, account: Account,
                                                          new_email: NewEmailFactory) -> None:
    """A thread is unread in a mailbox while one of its emails there lacks $seen (a keyword
    that only contains the word is no $seen)."""
    first = new_email(account.id, subject="One", keywords=["$seen"])
    assert first.message_id is not None
    reply = new_email(account.id, subject="Re: One", in_reply_to=[first.message_id.strip("<>")])
    other = new_email(account.id, subject="Two", keywords=["$seen"])
    look_alike = new_email(account.id, subject="Three", keywords=["not$seen", "$seen-later"],
                           mailbox_roles=["archive"])
    for email in (first, reply, other, look_alike):
        await deliver(mailstore, email)
    boxes = {b.role: b.id for b in await mailstore.list_mailboxes(account.id)}
    counts = await mailstore.thread_counts(account.id)
    assert counts[boxes["inbox"]] == (2, 1)
    assert counts[boxes["archive"]] == (1, 1)
    assert counts[boxes["all"]] == (3, 2)
    assert boxes["junk"] not in counts, "a mailbox with no email is left out"
    await mailstore.set_keywords(account.id, [reply.email_id, look_alike.email_id],
                                 add=["$seen"])
    counts = await mailstore.thread_counts(account.id)
    assert (counts[boxes["inbox"]], counts[boxes["archive"]]) == ((2, 0), (1, 0))
