"""MailStore contract, part 2: mailboxes as labels (COPY, MOVE, EXPUNGE, keywords, deltas)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mailyard.store.ports import Account, Conflict, NewEmail, NotFound
from tests.contract.test_mailstore import deliver

NewEmailFactory = Callable[..., NewEmail]


async def boxes(mailstore: Any, account: Account) -> dict[str, Any]:
    return {m.name: m for m in await mailstore.list_mailboxes(account.id)}


async def test_create_rename_delete_subscribe(mailstore: Any, account: Account) -> None:
    work = await mailstore.create_mailbox(account.id, "Work")
    child = await mailstore.create_mailbox(account.id, "Work/Reports")
    assert work.uidnext == 1 and work.role is None and work.subscribed
    with pytest.raises(Conflict):
        await mailstore.create_mailbox(account.id, "Work")
    with pytest.raises(Conflict):
        await mailstore.create_mailbox(account.id, "Other inbox", role="inbox")
    await mailstore.rename_mailbox(account.id, work.id, "Jobs")
    names = await boxes(mailstore, account)
    assert "Jobs" in names and "Jobs/Reports" in names and "Work" not in names
    assert names["Jobs/Reports"].id == child.id
    await mailstore.set_subscribed(account.id, child.id, False)
    assert not (await boxes(mailstore, account))["Jobs/Reports"].subscribed
    await mailstore.delete_mailbox(account.id, child.id)
    assert "Jobs/Reports" not in await boxes(mailstore, account)
    with pytest.raises(NotFound):
        await mailstore.delete_mailbox(account.id, "mnope")


async def test_copy_adds_a_label_with_a_new_uid(mailstore: Any, account: Account,
                                                new_email: NewEmailFactory) -> None:
    email = new_email(account.id)
    await deliver(mailstore, email)
    work = await mailstore.create_mailbox(account.id, "Work")
    assert await mailstore.add_to_mailbox(account.id, [email.email_id], work.id) == {
        email.email_id: 1}
    assert await mailstore.add_to_mailbox(account.id, [email.email_id], work.id) == {
        email.email_id: 1}, "copying again keeps the UID"
    record = await mailstore.get_email(account.id, email.email_id)
    assert record.mailboxes == {"INBOX": 1, "All Mail": 1, "Work": 1}
    snap = await mailstore.snapshot(account.id, work.id)
    assert [(e.uid, e.email_id) for e in snap.entries] == [(1, email.email_id)]
    assert snap.mailbox.uidnext == 2 and snap.mailbox.total == 1


async def test_move_and_expunge_semantics(mailstore: Any, account: Account,
                                          new_email: NewEmailFactory) -> None:
    a, b = new_email(account.id), new_email(account.id)
    for e in (a, b):
        await deliver(mailstore, e)
    mb = await boxes(mailstore, account)
    moved = await mailstore.move(account.id, [a.email_id], mb["INBOX"].id, mb["Trash"].id)
    assert moved == {a.email_id: (1, 1)}
    assert (await mailstore.get_email(account.id, a.email_id)).mailboxes == {
        "All Mail": 1, "Trash": 1}
    # expunge from INBOX: the label goes, the email stays in All Mail
    assert await mailstore.remove_from_mailbox(account.id, mb["INBOX"].id, [b.email_id]) == [2]
    assert (await mailstore.get_email(account.id, b.email_id)).mailboxes == {"All Mail": 2}
    used = (await mailstore.get_account_by_id(account.id)).used
    # expunge from Trash with no other label: the email is destroyed, quota given back
    assert await mailstore.remove_from_mailbox(account.id, mb["Trash"].id, [a.email_id]) == [1]
    with pytest.raises(NotFound):
        await mailstore.get_email(account.id, a.email_id)
    assert (await mailstore.get_account_by_id(account.id)).used == used - a.size
    # expunge from All Mail destroys
    await mailstore.remove_from_mailbox(account.id, mb["All Mail"].id, [b.email_id])
    assert await mailstore.list_emails(account.id) == []
    ops = [(c.kind, c.object_id, c.op) for c in await mailstore.changes_since(account.id, 0)]
    assert ("Email", a.email_id, "destroyed") in ops and ("Email", b.email_id, "destroyed") in ops


async def test_keywords_modseq_and_unchanged_since(mailstore: Any, account: Account,
                                                   new_email: NewEmailFactory) -> None:
    a, b = new_email(account.id), new_email(account.id)
    for e in (a, b):
        await deliver(mailstore, e)
    inbox = (await boxes(mailstore, account))["INBOX"]
    before = await mailstore.snapshot(account.id, inbox.id)
    assert before.mailbox.unread == 2
    result = await mailstore.set_keywords(account.id, [a.email_id], add=["$seen", "$flagged"])
    [(email_id, keywords, modseq)] = result.updated
    assert email_id == a.email_id and sorted(keywords) == ["$flagged", "$seen"]
    assert modseq > max(e.modseq for e in before.entries)
    assert result.modseq == modseq  # the MODSEQ the write took, what the change publishes
    again = await mailstore.set_keywords(account.id, [a.email_id], add=["$seen"])
    assert again.updated == [(a.email_id, keywords, modseq)] and again.modseq is None
    after = await mailstore.snapshot(account.id, inbox.id)
    assert after.mailbox.unread == 1 and after.mailbox.highest_modseq == modseq
    # UNCHANGEDSINCE older than the email's modseq: a conflict, nothing written
    stale = await mailstore.set_keywords(account.id, [a.email_id, b.email_id], remove=["$seen"],
                                         unchanged_since=modseq - 1)
    assert stale.conflicts == [a.email_id]
    assert [u[0] for u in stale.updated] == [b.email_id]
    assert stale.modseq is None  # b had no $seen: nothing written, only a conflict
    replaced = await mailstore.set_keywords(account.id, [a.email_id], replace=["$answered"])
    assert replaced.updated[0][1] == ["$answered"]
    delta = await mailstore.mailbox_delta(account.id, inbox.id, modseq)
    assert [e.email_id for e in delta.changed] == [a.email_id] and delta.vanished == []


async def test_delta_reports_vanished_uids(mailstore: Any, account: Account,
                                           new_email: NewEmailFactory) -> None:
    emails = [new_email(account.id) for _ in range(3)]
    for e in emails:
        await deliver(mailstore, e)
    inbox = (await boxes(mailstore, account))["INBOX"]
    mark = (await mailstore.snapshot(account.id, inbox.id)).mailbox.highest_modseq
    await mailstore.remove_from_mailbox(account.id, inbox.id, [emails[1].email_id])
    delta = await mailstore.mailbox_delta(account.id, inbox.id, mark)
    assert delta.vanished == [2]
    assert delta.highest_modseq > mark
    snap = await mailstore.snapshot(account.id, inbox.id)
    assert [e.uid for e in snap.entries] == [1, 3]
    # a new delivery never reuses UID 2
    late = new_email(account.id)
    await deliver(mailstore, late)
    assert (await mailstore.get_email(account.id, late.email_id)).mailboxes["INBOX"] == 4
    got = await mailstore.get_emails(account.id, [emails[0].email_id, late.email_id, "enope"])
    assert {r.id for r in got} == {emails[0].email_id, late.email_id}


async def test_brief_records_leave_out_the_imap_structures(mailstore: Any, account: Account,
                                                           new_email: NewEmailFactory) -> None:
    email = new_email(account.id)
    await deliver(mailstore, email)
    [full] = await mailstore.get_emails(account.id, [email.email_id])
    [brief] = await mailstore.get_emails(account.id, [email.email_id], brief=True)
    assert full.envelope == email.envelope and full.parts == email.parts
    assert brief.envelope == b"" and brief.parts == {}
    for name in ("id", "subject", "from_", "to", "size", "received_at", "keywords", "mailboxes",
                 "thread_id", "modseq"):
        assert getattr(brief, name) == getattr(full, name), name


async def test_mailbox_counts_follow_every_change(mailstore: Any, account: Account,
                                                  new_email: NewEmailFactory) -> None:
    """total / unread / size are kept as counters: after any mix of deliveries, flag changes,
    COPY, MOVE and EXPUNGE they must equal a recount from the snapshot."""
    emails = [new_email(account.id, keywords=["$seen"] if i % 3 == 0 else [])
              for i in range(9)]
    for e in emails:
        await deliver(mailstore, e)
    mb = await boxes(mailstore, account)
    work = await mailstore.create_mailbox(account.id, "Work")
    ids = [e.email_id for e in emails]
    await mailstore.add_to_mailbox(account.id, ids[:5], work.id)
    await mailstore.set_keywords(account.id, ids[:4], add=["$seen"])
    await mailstore.set_keywords(account.id, ids[2:3], remove=["$seen"])
    await mailstore.set_keywords(account.id, ids[6:8], replace=["$flagged", "$seen"])
    await mailstore.move(account.id, ids[4:6], mb["INBOX"].id, mb["Archive"].id)
    await mailstore.remove_from_mailbox(account.id, work.id, ids[:2])
    await mailstore.move(account.id, ids[7:9], mb["INBOX"].id, mb["Trash"].id)
    await mailstore.remove_from_mailbox(account.id, mb["Trash"].id, ids[8:9])  # destroyed
    sizes = {e.email_id: e.size for e in emails}
    for box in await mailstore.list_mailboxes(account.id):
        snap = await mailstore.snapshot(account.id, box.id)
        assert box.total == len(snap.entries), box.name
        assert box.unread == sum("$seen" not in e.keywords for e in snap.entries), box.name
        assert box.size == sum(sizes[e.email_id] for e in snap.entries), box.name
        assert snap.mailbox.total == box.total and snap.mailbox.unread == box.unread
