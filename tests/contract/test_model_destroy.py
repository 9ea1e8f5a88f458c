"""The mail model's destroy rules (model/labels.py, model/mailboxes.py) on every engine: JMAP
Email/set destroy, POP3 DELE in expunge mode (orphans), JMAP Mailbox/set destroy with
onDestroyRemoveEmails; each one transaction under one MODSEQ."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mailyard.store.ports import Account, NewEmail, NotFound
from tests.contract.test_mailstore import deliver

NewEmailFactory = Callable[..., NewEmail]


async def boxes(mailstore: Any, account: Account) -> dict[str, Any]:
    return {m.name: m for m in await mailstore.list_mailboxes(account.id)}


async def modseq(mailstore: Any, account: Account) -> int:
    return int((await mailstore.get_account_by_id(account.id)).modseq)


async def test_destroy_emails_is_one_modseq_everywhere(mailstore: Any, account: Account,
                                                       new_email: NewEmailFactory) -> None:
    a, b, kept = (new_email(account.id) for _ in range(3))
    for e in (a, b, kept):
        await deliver(mailstore, e)
    mb = await boxes(mailstore, account)
    work = await mailstore.create_mailbox(account.id, "Work")
    await mailstore.add_to_mailbox(account.id, [a.email_id, kept.email_id], work.id)
    used = (await mailstore.get_account_by_id(account.id)).used
    before = await modseq(mailstore, account)
    gone = await mailstore.destroy_emails(account.id, [a.email_id, "enope", b.email_id,
                                                       a.email_id])
    assert gone == [a.email_id, b.email_id]
    after = await modseq(mailstore, account)
    assert after == before + 1, "one MODSEQ step for the whole call"
    for email_id in gone:
        with pytest.raises(NotFound):
            await mailstore.get_email(account.id, email_id)
    assert (await mailstore.get_account_by_id(account.id)).used == used - a.size - b.size
    now = await boxes(mailstore, account)
    assert (now["INBOX"].total, now["Work"].total, now["All Mail"].total) == (1, 1, 1)
    assert now["INBOX"].unread == 1 and now["INBOX"].size == kept.size
    ops = {(c.kind, c.object_id, c.op) for c in await mailstore.changes_since(account.id, before)}
    assert {("Email", a.email_id, "destroyed"), ("Email", b.email_id, "destroyed"),
            ("Mailbox", work.id, "updated"), ("Mailbox", mb["INBOX"].id, "updated")} <= ops
    assert all(c.modseq == after for c in await mailstore.changes_since(account.id, before))
    delta = await mailstore.mailbox_delta(account.id, mb["INBOX"].id, before)
    assert delta.vanished == [1, 2]
    # nothing to destroy: no MODSEQ taken
    assert await mailstore.destroy_emails(account.id, [a.email_id, "enope"]) == []
    assert await modseq(mailstore, account) == after


async def test_destroy_emails_forgets_an_emptied_thread(mailstore: Any, account: Account,
                                                        new_email: NewEmailFactory) -> None:
    first = new_email(account.id, message_id="<root@x>")
    await deliver(mailstore, first)
    await mailstore.destroy_emails(account.id, [first.email_id])
    ops = [(c.kind, c.op) for c in await mailstore.changes_since(account.id, 0)
           if c.kind == "Thread"]
    assert ops[-1] == ("Thread", "destroyed")
    again = new_email(account.id, message_id="<reply@x>", in_reply_to=["<root@x>"])
    result = await deliver(mailstore, again)
    assert result.thread_id == "t" + again.email_id[1:], "the old thread's key was forgotten"


async def test_expunge_orphans_keeps_other_labels(mailstore: Any, account: Account,
                                                  new_email: NewEmailFactory) -> None:
    """POP3 DELE in expunge mode: out of INBOX; an email in no other mailbox (All Mail aside)
    is destroyed, one with a label elsewhere is kept there."""
    lone, labelled = new_email(account.id), new_email(account.id)
    for e in (lone, labelled):
        await deliver(mailstore, e)
    mb = await boxes(mailstore, account)
    work = await mailstore.create_mailbox(account.id, "Work")
    await mailstore.add_to_mailbox(account.id, [labelled.email_id], work.id)
    before = await modseq(mailstore, account)
    done = await mailstore.expunge(account.id, mb["INBOX"].id,
                                   [lone.email_id, labelled.email_id], orphans=True)
    assert done.uids == [1, 2] and done.destroyed == [lone.email_id]
    assert await modseq(mailstore, account) == before + 1
    with pytest.raises(NotFound):
        await mailstore.get_email(account.id, lone.email_id)
    assert set((await mailstore.get_email(account.id, labelled.email_id)).mailboxes) == {
        "All Mail", "Work"}
    # without orphans an expunge from INBOX destroys nothing; from Trash it does
    other = new_email(account.id)
    await deliver(mailstore, other)
    plain = await mailstore.expunge(account.id, mb["INBOX"].id, [other.email_id])
    assert plain.destroyed == [] and plain.uids == [3]
    await mailstore.add_to_mailbox(account.id, [other.email_id], mb["Trash"].id)
    trash = await mailstore.expunge(account.id, mb["Trash"].id, [other.email_id])
    assert trash.destroyed == [other.email_id]


async def test_delete_mailbox_removing_emails(mailstore: Any, account: Account,
                                              new_email: NewEmailFactory) -> None:
    """JMAP onDestroyRemoveEmails: the mailbox's emails in no other mailbox (All Mail aside)
    are destroyed with it, the others stay; one transaction, one MODSEQ."""
    lone, shared, elsewhere = (new_email(account.id) for _ in range(3))
    for e in (lone, shared, elsewhere):
        await deliver(mailstore, e)
    mb = await boxes(mailstore, account)
    work = await mailstore.create_mailbox(account.id, "Work")
    await mailstore.add_to_mailbox(account.id, [lone.email_id, shared.email_id], work.id)
    await mailstore.remove_from_mailbox(account.id, mb["INBOX"].id, [lone.email_id])
    used = (await mailstore.get_account_by_id(account.id)).used
    before = await modseq(mailstore, account)
    gone = await mailstore.delete_mailbox(account.id, work.id, remove_emails=True)
    assert gone == [lone.email_id]
    assert await modseq(mailstore, account) == before + 1
    assert "Work" not in await boxes(mailstore, account)
    with pytest.raises(NotFound):
        await mailstore.get_email(account.id, lone.email_id)
    assert set((await mailstore.get_email(account.id, shared.email_id)).mailboxes) == {
        "INBOX", "All Mail"}
    assert (await mailstore.get_account_by_id(account.id)).used == used - lone.size
    ops = {(c.kind, c.object_id, c.op) for c in await mailstore.changes_since(account.id, before)}
    assert {("Email", lone.email_id, "destroyed"), ("Email", shared.email_id, "updated"),
            ("Mailbox", work.id, "destroyed")} <= ops
    # without remove_emails nothing is destroyed
    keep = await mailstore.create_mailbox(account.id, "Keep")
    await mailstore.add_to_mailbox(account.id, [elsewhere.email_id], keep.id)
    await mailstore.remove_from_mailbox(account.id, mb["INBOX"].id, [elsewhere.email_id])
    assert await mailstore.delete_mailbox(account.id, keep.id) == []
    assert set((await mailstore.get_email(account.id, elsewhere.email_id)).mailboxes) == {
        "All Mail"}
