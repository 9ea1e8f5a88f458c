"""Read rules of the mail model (model/) on every engine: each engine reads its rows, the
model decides what a request means."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mailyard.store.ports import Account, NewEmail, NotFound
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


async def test_a_mailbox_view_and_what_changed_since(mailstore: Any, account: Account,
                                                     new_email: NewEmailFactory) -> None:
    """model/views.py: the view by UID; since a MODSEQ, the emails changed after it, the
    UIDs gone after it, and the mailbox's MODSEQ; another account's mailbox is NotFound."""
    kept, flagged, gone, moved = (new_email(account.id) for _ in range(4))
    for email in (kept, flagged, gone, moved):
        await deliver(mailstore, email)
    boxes = {b.role: b for b in await mailstore.list_mailboxes(account.id)}
    inbox, archive = boxes["inbox"], boxes["archive"]
    view = await mailstore.snapshot(account.id, inbox.id)
    assert [e.uid for e in view.entries] == [1, 2, 3, 4]
    assert [e.email_id for e in view.entries] == [
        kept.email_id, flagged.email_id, gone.email_id, moved.email_id]
    mark = view.mailbox.highest_modseq
    await mailstore.set_keywords(account.id, [flagged.email_id], add=["$flagged"])
    await mailstore.remove_from_mailbox(account.id, inbox.id, [gone.email_id])
    await mailstore.move(account.id, [moved.email_id], inbox.id, archive.id)
    await mailstore.move(account.id, [moved.email_id], archive.id, inbox.id)
    delta = await mailstore.mailbox_delta(account.id, inbox.id, mark)
    assert [(e.uid, e.email_id) for e in delta.changed] == [
        (2, flagged.email_id), (5, moved.email_id)]
    assert delta.changed[0].keywords == ["$flagged"]
    assert delta.vanished == [3, 4]
    now = await mailstore.snapshot(account.id, inbox.id)
    assert delta.highest_modseq == now.mailbox.highest_modseq > mark
    assert [e.uid for e in now.entries] == [1, 2, 5]
    empty = await mailstore.mailbox_delta(account.id, inbox.id, delta.highest_modseq)
    assert (empty.changed, empty.vanished) == ([], [])
    bob = await mailstore.create_account("bob@example.test", "h", 1 << 20)
    for call in (mailstore.snapshot(bob.id, inbox.id),
                 mailstore.mailbox_delta(bob.id, inbox.id, 0)):
        with pytest.raises(NotFound):
            await call


async def test_a_delivery_key_is_looked_up_as_stored(mailstore: Any, account: Account,
                                                     new_email: NewEmailFactory) -> None:
    """model/reads.py: has_delivery asks for the key as the delivery stored it (stored_text:
    a NUL is U+FFFD there); SQLite looked the raw key up and missed it."""
    key = "queue-1\x00rcpt"
    await deliver(mailstore, new_email(account.id, delivery_key=key))
    assert await mailstore.has_delivery(account.id, key)
    assert await mailstore.has_delivery(account.id, "queue-1\ufffdrcpt")
    assert not await mailstore.has_delivery(account.id, "queue-1")


async def test_listed_emails_are_the_query_s_newest_first(mailstore: Any, account: Account,
                                                         new_email: NewEmailFactory) -> None:
    """model/reads.py: `mail list` is the newest first (arrival, then id) cut at `limit`,
    over every mailbox a name names (here the Sent role's and another mailbox named
    "sent"), with each email's mailboxes."""
    made = [new_email(account.id, received_at=1_700_000_000 + n % 3) for n in range(7)]
    for email in made:
        await deliver(mailstore, email)
    newest = sorted(made, key=lambda e: (e.received_at, e.email_id), reverse=True)
    listed = await mailstore.list_emails(account.id, limit=5)
    assert [r.id for r in listed] == [e.email_id for e in newest[:5]]
    assert all(set(r.mailboxes) == {"INBOX", "All Mail"} for r in listed)
    other = await mailstore.create_mailbox(account.id, "sent")
    await mailstore.add_to_mailbox(account.id, [made[0].email_id], other.id)
    sent = new_email(account.id, mailbox_roles=["sent"], received_at=1_600_000_000)
    await deliver(mailstore, sent)
    listed = await mailstore.list_emails(account.id, mailbox="SENT")
    assert [r.id for r in listed] == [made[0].email_id, sent.email_id]
    assert set(listed[0].mailboxes) == {"INBOX", "All Mail", "sent"}
    assert await mailstore.list_emails(account.id, mailbox="Nowhere") == []


async def test_accounts_by_address_by_id_and_all(mailstore: Any, account: Account) -> None:
    """model/reads.py: an address as stored (any case of its domain), an id, NotFound for
    either when unknown, every account by address."""
    bob = await mailstore.create_account("bob@example.test", "hash-2", 1000)
    assert (await mailstore.get_account("alice@EXAMPLE.test")).id == account.id
    assert (await mailstore.get_account_by_id(bob.id)).address == "bob@example.test"
    for lookup in (mailstore.get_account("carol@example.test"),
                   mailstore.get_account_by_id("a-unknown")):
        with pytest.raises(NotFound):
            await lookup
    assert [a.address for a in await mailstore.list_accounts()] == [
        "alice@example.test", "bob@example.test"]


async def test_a_mailbox_found_by_its_exact_name_and_inbox_in_any_case(
        mailstore: Any, account: Account, new_email: NewEmailFactory) -> None:
    """model/reads.py find_mailbox: exactly the name (no other case of it), the name as
    stored (a NUL is U+FFFD there), "INBOX" in any case the inbox role (RFC 3501 §5.1); the
    row as listed, counters included; None for a name no mailbox of the account has."""
    await deliver(mailstore, new_email(account.id))
    work = await mailstore.create_mailbox(account.id, "Work/Ärger")
    odd = await mailstore.create_mailbox(account.id, "odd\x00name")
    listed = {b.id: b for b in await mailstore.list_mailboxes(account.id)}
    inbox = next(b for b in listed.values() if b.role == "inbox")
    for spelling in ("INBOX", "inbox", "InBoX"):
        assert await mailstore.find_mailbox(account.id, spelling) == inbox, spelling
    assert inbox.total == 1
    assert await mailstore.find_mailbox(account.id, "Work/Ärger") == listed[work.id]
    assert await mailstore.find_mailbox(account.id, "odd\x00name") == listed[odd.id]
    sent = await mailstore.find_mailbox(account.id, "Sent")
    assert sent is not None and sent.role == "sent"
    for missing in ("sent", "work/ärger", "Work", "INBOX/Work", "Nowhere"):
        assert await mailstore.find_mailbox(account.id, missing) is None, missing
    await mailstore.rename_mailbox(account.id, work.id, "Play/Ärger")
    assert await mailstore.find_mailbox(account.id, "Work/Ärger") is None
    renamed = await mailstore.find_mailbox(account.id, "Play/Ärger")
    assert renamed is not None and renamed.id == work.id
    bob = await mailstore.create_account("bob@example.test", "h", 1 << 20)
    assert await mailstore.find_mailbox(bob.id, "Play/Ärger") is None
    bob_inbox = await mailstore.find_mailbox(bob.id, "inbox")
    assert bob_inbox is not None and bob_inbox.id != inbox.id
