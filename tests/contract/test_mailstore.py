"""MailStore contract: domains, accounts, delivery, UIDs, dedup, quota, change log, threading."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from mailyard.store.ports import (
    Account,
    Change,
    Conflict,
    DeliveryResult,
    NewEmail,
    NotFound,
    QuotaExceeded,
)
from tests.contract.conftest import Engine

NewEmailFactory = Callable[..., NewEmail]

DOMAIN = "example.test"
MB = 1024 * 1024
DEFAULT_ROLES = {
    "INBOX": "inbox", "Sent": "sent", "Drafts": "drafts", "Trash": "trash", "Junk": "junk",
    "Archive": "archive", "All Mail": "all",
}


async def deliver(mailstore: Any, email: NewEmail) -> DeliveryResult:
    result: DeliveryResult = await mailstore.deliver(email)
    return result


async def thread_of(mailstore: Any, account: Account, email_id: str) -> str:
    return str((await mailstore.get_email(account.id, email_id)).thread_id)


# --------------------------------------------------------------------------- domains


async def test_domains_add_list_remove(mailstore: Any) -> None:
    assert await mailstore.list_domains() == []
    await mailstore.add_domain("example.test")
    await mailstore.add_domain("other.test")
    assert sorted(await mailstore.list_domains()) == ["example.test", "other.test"]
    await mailstore.remove_domain("other.test")
    assert await mailstore.list_domains() == ["example.test"]


async def test_domain_names_are_case_insensitive(mailstore: Any) -> None:
    await mailstore.add_domain("Example.TEST")
    assert await mailstore.list_domains() == ["example.test"]
    with pytest.raises(Conflict):
        await mailstore.add_domain("example.test")
    await mailstore.remove_domain("EXAMPLE.test")
    assert await mailstore.list_domains() == []


async def test_add_existing_domain_conflicts(mailstore: Any) -> None:
    await mailstore.add_domain("example.test")
    with pytest.raises(Conflict):
        await mailstore.add_domain("example.test")
    assert await mailstore.list_domains() == ["example.test"]


async def test_remove_missing_domain_not_found(mailstore: Any) -> None:
    with pytest.raises(NotFound):
        await mailstore.remove_domain("nowhere.test")


# --------------------------------------------------------------------------- accounts


async def test_create_account(mailstore: Any) -> None:
    await mailstore.add_domain(DOMAIN)
    acct = await mailstore.create_account(f"Alice@{DOMAIN}", "hash-1", 5 * MB)
    assert acct.id
    assert acct.address == f"alice@{DOMAIN}"
    assert acct.password_hash == "hash-1"
    assert acct.quota == 5 * MB
    assert acct.used == 0
    assert acct.modseq >= 1  # creating the default mailboxes is a change


async def test_new_account_has_default_mailboxes_with_roles(mailstore: Any,
                                                             account: Account) -> None:
    boxes = await mailstore.list_mailboxes(account.id)
    assert {b.name: b.role for b in boxes} == DEFAULT_ROLES
    assert len({b.id for b in boxes}) == len(DEFAULT_ROLES)
    for box in boxes:
        assert box.account_id == account.id
        assert box.uidvalidity > 0
        assert box.uidnext == 1
        assert box.total == 0
        assert box.unread == 0, f"empty {box.name} reports {box.unread} unread"


async def test_get_account_is_case_insensitive(mailstore: Any, account: Account) -> None:
    for spelling in (f"alice@{DOMAIN}", f"ALICE@{DOMAIN.upper()}", "Alice@Example.Test"):
        got = await mailstore.get_account(spelling)
        assert got.id == account.id
        assert got.address == f"alice@{DOMAIN}"
    assert (await mailstore.get_account_by_id(account.id)).address == f"alice@{DOMAIN}"


async def test_get_missing_account_not_found(mailstore: Any) -> None:
    with pytest.raises(NotFound):
        await mailstore.get_account(f"nobody@{DOMAIN}")
    with pytest.raises(NotFound):
        await mailstore.get_account_by_id("a-no-such-id")


async def test_duplicate_account_conflicts(mailstore: Any, account: Account) -> None:
    with pytest.raises(Conflict):
        await mailstore.create_account(f"ALICE@{DOMAIN}", "other", MB)
    assert (await mailstore.get_account(f"alice@{DOMAIN}")).password_hash == "hash-1"


async def test_list_accounts(mailstore: Any, account: Account) -> None:
    bob = await mailstore.create_account(f"bob@{DOMAIN}", "hash-b", MB)
    accounts = await mailstore.list_accounts()
    assert {a.id for a in accounts} == {account.id, bob.id}
    assert {a.address for a in accounts} == {f"alice@{DOMAIN}", f"bob@{DOMAIN}"}


async def test_delete_account(mailstore: Any, account: Account,
                              new_email: NewEmailFactory) -> None:
    email = new_email(account.id)
    await deliver(mailstore, email)
    await mailstore.delete_account(f"Alice@{DOMAIN}")
    with pytest.raises(NotFound):
        await mailstore.get_account(f"alice@{DOMAIN}")
    with pytest.raises(NotFound):
        await mailstore.get_account_by_id(account.id)
    with pytest.raises(NotFound):
        await mailstore.get_email(account.id, email.email_id)
    assert await mailstore.list_accounts() == []
    with pytest.raises(NotFound):
        await mailstore.delete_account(f"alice@{DOMAIN}")
    # The address is free again, and the new account starts empty.
    again = await mailstore.create_account(f"alice@{DOMAIN}", "hash-2", MB)
    assert again.id != account.id
    assert await mailstore.list_emails(again.id) == []
    assert await mailstore.changes_since(account.id, 0) == []


async def test_set_password(mailstore: Any, account: Account) -> None:
    await mailstore.set_password(f"ALICE@{DOMAIN}", "hash-new")
    assert (await mailstore.get_account(f"alice@{DOMAIN}")).password_hash == "hash-new"
    with pytest.raises(NotFound):
        await mailstore.set_password(f"nobody@{DOMAIN}", "x")


async def test_set_quota(mailstore: Any, account: Account) -> None:
    await mailstore.set_quota(f"alice@{DOMAIN}", 7 * MB)
    assert (await mailstore.get_account(f"alice@{DOMAIN}")).quota == 7 * MB
    with pytest.raises(NotFound):
        await mailstore.set_quota(f"nobody@{DOMAIN}", MB)


# --------------------------------------------------------------------------- delivery


async def test_deliver_then_read_back(mailstore: Any, account: Account,
                                      new_email: NewEmailFactory) -> None:
    email = new_email(account.id, subject="Quarterly report", keywords=["$flagged"],
                      in_reply_to=["<parent@example.test>"],
                      references=["<root@example.test>", "<parent@example.test>"])
    result = await deliver(mailstore, email)
    assert result.created is True
    assert result.email_id == email.email_id
    assert result.thread_id
    assert result.modseq > account.modseq

    record = await mailstore.get_email(account.id, email.email_id)
    assert record.id == email.email_id
    assert record.account_id == account.id
    assert record.thread_id == result.thread_id
    assert record.blob_id == email.blob_id
    assert record.size == email.size
    assert record.received_at == email.received_at
    assert record.sent_at == email.sent_at
    assert record.message_id == email.message_id
    assert record.subject == "Quarterly report"
    assert record.from_ == email.from_
    assert record.to == email.to
    assert record.cc == email.cc
    assert record.preview == email.preview
    assert record.has_attachment is False
    assert record.attachments == []
    assert record.keywords == ["$flagged"]
    assert record.mailboxes == {"INBOX": 1, "All Mail": 1}
    assert record.in_reply_to == ["<parent@example.test>"]
    assert record.references == ["<root@example.test>", "<parent@example.test>"]
    assert record.envelope == email.envelope
    assert record.bodystructure == email.bodystructure
    assert record.modseq == result.modseq

    assert await mailstore.has_delivery(account.id, email.delivery_key) is True
    assert await mailstore.has_delivery(account.id, "some-other-key") is False
    listed = await mailstore.list_emails(account.id)
    assert [e.id for e in listed] == [email.email_id]


async def test_attachments_round_trip(mailstore: Any, account: Account,
                                      new_email: NewEmailFactory) -> None:
    email = new_email(account.id)
    email.has_attachment = True
    email.attachments = [{"name": "report.pdf", "type": "application/pdf", "size": 12345,
                          "blob_id": "b" * 64}]
    await deliver(mailstore, email)
    record = await mailstore.get_email(account.id, email.email_id)
    assert record.has_attachment is True
    assert record.attachments == email.attachments


async def test_get_heads_reads_the_stored_header_block(mailstore: Any, account: Account,
                                                       new_email: NewEmailFactory) -> None:
    bob = await mailstore.create_account(f"bob@{DOMAIN}", "h", MB)
    first, second = new_email(account.id), new_email(account.id)
    first.head = b"Subject: Hello\r\n\r\n"
    await deliver(mailstore, first)
    await deliver(mailstore, second)
    heads = {h.id: h for h in await mailstore.get_heads(
        account.id, [first.email_id, second.email_id, "e-no-such-email"])}
    assert set(heads) == {first.email_id, second.email_id}
    assert heads[first.email_id].head == b"Subject: Hello\r\n\r\n"
    assert heads[first.email_id].size == first.size
    assert heads[first.email_id].received_at == first.received_at
    assert heads[second.email_id].head == b""  # not given: callers fall back to the blob
    assert await mailstore.get_heads(bob.id, [first.email_id]) == []


async def test_get_email_unknown_or_other_account_not_found(mailstore: Any, account: Account,
                                                            new_email: NewEmailFactory) -> None:
    bob = await mailstore.create_account(f"bob@{DOMAIN}", "h", MB)
    email = new_email(account.id)
    await deliver(mailstore, email)
    with pytest.raises(NotFound):
        await mailstore.get_email(account.id, "e-no-such-email")
    with pytest.raises(NotFound):
        await mailstore.get_email(bob.id, email.email_id)
    assert await mailstore.list_emails(bob.id) == []


async def test_deliver_to_unknown_account_not_found(mailstore: Any,
                                                    new_email: NewEmailFactory) -> None:
    with pytest.raises(NotFound):
        await deliver(mailstore, new_email("a-no-such-account"))


async def test_list_emails_by_mailbox_name_and_role(mailstore: Any, account: Account,
                                                    new_email: NewEmailFactory) -> None:
    inbox_only = new_email(account.id, mailbox_roles=["inbox"])
    both = new_email(account.id, mailbox_roles=["inbox", "archive"])
    sent = new_email(account.id, mailbox_roles=["sent"])
    for email in (inbox_only, both, sent):
        await deliver(mailstore, email)

    def ids(records: list[Any]) -> set[str]:
        return {r.id for r in records}

    assert ids(await mailstore.list_emails(account.id)) == {
        inbox_only.email_id, both.email_id, sent.email_id}
    assert ids(await mailstore.list_emails(account.id, mailbox="INBOX")) == {
        inbox_only.email_id, both.email_id}
    assert ids(await mailstore.list_emails(account.id, mailbox="inbox")) == {
        inbox_only.email_id, both.email_id}
    assert ids(await mailstore.list_emails(account.id, mailbox="Archive")) == {both.email_id}
    assert ids(await mailstore.list_emails(account.id, mailbox="archive")) == {both.email_id}
    assert ids(await mailstore.list_emails(account.id, mailbox="Sent")) == {sent.email_id}
    assert ids(await mailstore.list_emails(account.id, mailbox="sent")) == {sent.email_id}
    assert await mailstore.list_emails(account.id, mailbox="Junk") == []
    assert len(await mailstore.list_emails(account.id, limit=2)) == 2

    record = await mailstore.get_email(account.id, both.email_id)
    assert record.mailboxes == {"INBOX": 2, "Archive": 1, "All Mail": 2}


async def test_list_emails_newest_first(mailstore: Any, account: Account,
                                        new_email: NewEmailFactory) -> None:
    emails = [new_email(account.id) for _ in range(4)]
    for email in emails:
        await deliver(mailstore, email)
    listed = await mailstore.list_emails(account.id)
    assert [e.id for e in listed] == [e.email_id for e in reversed(emails)]


async def test_uids_per_mailbox_strictly_increasing_from_one(mailstore: Any, account: Account,
                                                             new_email: NewEmailFactory) -> None:
    inbox_uids, archive_uids = [], []
    for n in range(5):
        roles = ["inbox", "archive"] if n % 2 == 0 else ["inbox"]
        email = new_email(account.id, mailbox_roles=roles)
        await deliver(mailstore, email)
        record = await mailstore.get_email(account.id, email.email_id)
        inbox_uids.append(record.mailboxes["INBOX"])
        if "Archive" in record.mailboxes:
            archive_uids.append(record.mailboxes["Archive"])
    assert inbox_uids == [1, 2, 3, 4, 5]
    assert archive_uids == [1, 2, 3]
    boxes = {b.name: b for b in await mailstore.list_mailboxes(account.id)}
    assert boxes["INBOX"].uidnext == 6
    assert boxes["Archive"].uidnext == 4
    assert boxes["Sent"].uidnext == 1
    assert boxes["INBOX"].total == 5
    assert boxes["Archive"].total == 3


async def test_concurrent_deliveries_get_distinct_uids(mailstore: Any, account: Account,
                                                       new_email: NewEmailFactory) -> None:
    emails = [new_email(account.id) for _ in range(40)]
    results = await asyncio.gather(*(deliver(mailstore, e) for e in emails))
    assert all(r.created for r in results)
    records = await mailstore.list_emails(account.id, mailbox="INBOX")
    assert sorted(r.mailboxes["INBOX"] for r in records) == list(range(1, 41))
    boxes = {b.name: b for b in await mailstore.list_mailboxes(account.id)}
    assert boxes["INBOX"].uidnext == 41
    assert len({r.modseq for r in results}) == 40  # each delivery its own modseq


async def test_mailbox_unread_counts(mailstore: Any, account: Account,
                                     new_email: NewEmailFactory) -> None:
    await deliver(mailstore, new_email(account.id))
    await deliver(mailstore, new_email(account.id, keywords=["$seen"]))
    await deliver(mailstore, new_email(account.id, keywords=["$flagged"]))
    boxes = {b.name: b for b in await mailstore.list_mailboxes(account.id)}
    assert (boxes["INBOX"].total, boxes["INBOX"].unread) == (3, 2)
    assert (boxes["Trash"].total, boxes["Trash"].unread) == (0, 0)


async def test_seen_is_read_in_any_case_and_nothing_else_is(
        mailstore: Any, account: Account, new_email: NewEmailFactory) -> None:
    """Keywords are case-insensitive (stored lowercase): "$Seen" is read on every engine, and
    a keyword that merely contains "$seen" is not (SQLite's running count once matched by a
    LIKE over the JSON, its own rule beside the others')."""
    await deliver(mailstore, new_email(account.id, keywords=["$Seen"]))
    await deliver(mailstore, new_email(account.id, keywords=["x$seen"]))
    await deliver(mailstore, new_email(account.id, keywords=["$seenx"]))
    boxes = {b.name: b for b in await mailstore.list_mailboxes(account.id)}
    assert (boxes["INBOX"].total, boxes["INBOX"].unread) == (3, 2)


async def test_keywords_are_stored_alike_by_every_engine(
        mailstore: Any, account: Account, new_email: NewEmailFactory) -> None:
    """Lowercase, each once, no NUL: SQLite once kept "$seen" twice and a NUL that PostgreSQL
    turned into U+FFFD, so the same delivery read back differently by engine."""
    email = new_email(account.id, keywords=["$Seen", "$seen", "a\x00b", "$Flagged"])
    await deliver(mailstore, email)
    [stored] = await mailstore.get_emails(account.id, [email.email_id])
    assert list(stored.keywords) == ["$seen", "a\ufffdb", "$flagged"]


async def test_same_delivery_key_is_a_noop(mailstore: Any, account: Account,
                                           new_email: NewEmailFactory) -> None:
    first = new_email(account.id, delivery_key="queue-item-1")
    one = await deliver(mailstore, first)
    # The redelivered queue item is parsed again: a fresh email id, same delivery key.
    again = new_email(account.id, delivery_key="queue-item-1", subject="whatever")
    two = await deliver(mailstore, again)
    assert one.created is True
    assert two.created is False
    assert two.email_id == one.email_id == first.email_id
    assert two.thread_id == one.thread_id
    assert len(await mailstore.list_emails(account.id)) == 1
    acct = await mailstore.get_account_by_id(account.id)
    assert acct.used == first.size
    assert acct.modseq == one.modseq
    boxes = {b.name: b for b in await mailstore.list_mailboxes(account.id)}
    assert boxes["INBOX"].uidnext == 2


async def test_concurrent_redeliveries_create_one_email(mailstore: Any, account: Account,
                                                        new_email: NewEmailFactory) -> None:
    copies = [new_email(account.id, delivery_key="queue-item-2") for _ in range(10)]
    results = await asyncio.gather(*(deliver(mailstore, e) for e in copies))
    assert sum(r.created for r in results) == 1
    assert len({r.email_id for r in results}) == 1
    assert len(await mailstore.list_emails(account.id)) == 1


async def test_same_delivery_key_in_two_accounts_is_two_emails(mailstore: Any, account: Account,
                                                               new_email: NewEmailFactory
                                                               ) -> None:
    bob = await mailstore.create_account(f"bob@{DOMAIN}", "h", MB)
    a = await deliver(mailstore, new_email(account.id, delivery_key="queue-item-3"))
    b = await deliver(mailstore, new_email(bob.id, delivery_key="queue-item-3"))
    assert a.created and b.created
    assert a.email_id != b.email_id


async def test_same_message_id_and_content_is_a_noop(mailstore: Any, account: Account,
                                                     new_email: NewEmailFactory) -> None:
    content = b"Message-ID: <dup@example.test>\r\nSubject: Hi\r\n\r\nsame\r\n"
    first = new_email(account.id, message_id="<dup@example.test>", content=content,
                      delivery_key="via-mx-1")
    second = new_email(account.id, message_id="<dup@example.test>", content=content,
                       delivery_key="via-mx-2")
    one = await deliver(mailstore, first)
    two = await deliver(mailstore, second)
    assert (one.created, two.created) == (True, False)
    assert two.email_id == first.email_id
    assert len(await mailstore.list_emails(account.id)) == 1
    assert (await mailstore.get_account_by_id(account.id)).used == first.size


async def test_same_message_id_different_content_is_a_second_email(
        mailstore: Any, account: Account, new_email: NewEmailFactory) -> None:
    first = new_email(account.id, message_id="<same@example.test>", content=b"version one")
    second = new_email(account.id, message_id="<same@example.test>", content=b"version two!")
    one = await deliver(mailstore, first)
    two = await deliver(mailstore, second)
    assert one.created and two.created
    assert one.email_id != two.email_id
    assert {e.id for e in await mailstore.list_emails(account.id)} == {
        first.email_id, second.email_id}
    assert (await mailstore.get_account_by_id(account.id)).used == first.size + second.size


async def test_no_message_id_never_deduplicated_by_content(mailstore: Any, account: Account,
                                                           new_email: NewEmailFactory) -> None:
    one = await deliver(mailstore, new_email(account.id, message_id=None, content=b"same"))
    two = await deliver(mailstore, new_email(account.id, message_id=None, content=b"same"))
    assert one.created and two.created
    assert one.email_id != two.email_id


# --------------------------------------------------------------------------- quota


async def test_quota(mailstore: Any, new_email: NewEmailFactory) -> None:
    acct = await mailstore.create_account(f"small@{DOMAIN}", "h", 1000)
    await deliver(mailstore, new_email(acct.id, size=600))
    assert (await mailstore.get_account_by_id(acct.id)).used == 600

    too_big = new_email(acct.id, size=401)
    modseq_before = (await mailstore.get_account_by_id(acct.id)).modseq
    with pytest.raises(QuotaExceeded):
        await deliver(mailstore, too_big)
    after = await mailstore.get_account_by_id(acct.id)
    assert after.used == 600
    assert after.modseq == modseq_before  # nothing was written
    assert await mailstore.has_delivery(acct.id, too_big.delivery_key) is False
    with pytest.raises(NotFound):
        await mailstore.get_email(acct.id, too_big.email_id)

    await deliver(mailstore, new_email(acct.id, size=400))  # exactly up to the quota is fine
    assert (await mailstore.get_account_by_id(acct.id)).used == 1000
    with pytest.raises(QuotaExceeded):
        await deliver(mailstore, new_email(acct.id, size=1))


async def test_raising_quota_lets_mail_in(mailstore: Any, new_email: NewEmailFactory) -> None:
    acct = await mailstore.create_account(f"small@{DOMAIN}", "h", 100)
    with pytest.raises(QuotaExceeded):
        await deliver(mailstore, new_email(acct.id, size=500))
    await mailstore.set_quota(f"small@{DOMAIN}", 1000)
    assert (await deliver(mailstore, new_email(acct.id, size=500))).created


# --------------------------------------------------------------------------- change log


async def test_change_log(mailstore: Any, account: Account, new_email: NewEmailFactory) -> None:
    created = await mailstore.changes_since(account.id, 0)
    boxes = {b.id: b for b in await mailstore.list_mailboxes(account.id)}
    assert {(c.kind, c.object_id, c.op) for c in created} == {
        ("Mailbox", box_id, "created") for box_id in boxes}
    assert all(isinstance(c, Change) and c.modseq >= 1 for c in created)
    after_create = max(c.modseq for c in created)
    assert (await mailstore.get_account_by_id(account.id)).modseq == after_create

    email = new_email(account.id)
    result = await deliver(mailstore, email)
    inbox = next(b for b in boxes.values() if b.role == "inbox")
    new = await mailstore.changes_since(account.id, after_create)
    assert {c.modseq for c in new} == {result.modseq}
    assert result.modseq > after_create
    triples = {(c.kind, c.object_id, c.op) for c in new}
    assert ("Email", email.email_id, "created") in triples
    assert ("Mailbox", inbox.id, "updated") in triples
    assert (await mailstore.get_account_by_id(account.id)).modseq == result.modseq

    second = await deliver(mailstore, new_email(account.id))
    assert second.modseq > result.modseq
    everything = await mailstore.changes_since(account.id, 0)
    modseqs = [c.modseq for c in everything]
    assert modseqs == sorted(modseqs)
    assert everything[-1].modseq == second.modseq
    assert (await mailstore.get_account_by_id(account.id)).modseq == second.modseq
    assert await mailstore.changes_since(account.id, second.modseq) == []
    assert all(c.modseq > result.modseq
               for c in await mailstore.changes_since(account.id, result.modseq))


async def test_change_logs_are_per_account(mailstore: Any, account: Account,
                                           new_email: NewEmailFactory) -> None:
    bob = await mailstore.create_account(f"bob@{DOMAIN}", "h", MB)
    bob_before = await mailstore.changes_since(bob.id, 0)
    email = new_email(account.id)
    await deliver(mailstore, email)
    assert await mailstore.changes_since(bob.id, 0) == bob_before
    assert email.email_id not in {c.object_id for c in bob_before}


async def test_noop_redelivery_writes_no_change(mailstore: Any, account: Account,
                                                new_email: NewEmailFactory) -> None:
    first = await deliver(mailstore, new_email(account.id, delivery_key="k-1"))
    before = await mailstore.changes_since(account.id, 0)
    again = await deliver(mailstore, new_email(account.id, delivery_key="k-1"))
    assert again.created is False
    assert again.modseq == first.modseq
    assert await mailstore.changes_since(account.id, 0) == before


# --------------------------------------------------------------------------- threading


async def test_reply_joins_parent_thread(mailstore: Any, account: Account,
                                         new_email: NewEmailFactory) -> None:
    parent = new_email(account.id, subject="Lunch?", message_id="<p1@example.test>")
    reply = new_email(account.id, subject="Re: Lunch?", message_id="<r1@example.test>",
                      in_reply_to=["<p1@example.test>"], references=["<p1@example.test>"])
    p = await deliver(mailstore, parent)
    r = await deliver(mailstore, reply)
    assert r.thread_id == p.thread_id
    assert await thread_of(mailstore, account, reply.email_id) == p.thread_id


async def test_reply_by_references_only_joins(mailstore: Any, account: Account,
                                              new_email: NewEmailFactory) -> None:
    root = new_email(account.id, subject="Plan", message_id="<root@example.test>")
    child = new_email(account.id, subject="Different words", message_id="<c@example.test>",
                      references=["<root@example.test>", "<gone@example.test>"])
    a = await deliver(mailstore, root)
    b = await deliver(mailstore, child)
    assert a.thread_id == b.thread_id


async def test_unrelated_emails_get_separate_threads(mailstore: Any, account: Account,
                                                     new_email: NewEmailFactory) -> None:
    a = await deliver(mailstore, new_email(account.id, subject="Alpha"))
    b = await deliver(mailstore, new_email(account.id, subject="Beta"))
    assert a.thread_id != b.thread_id


async def test_child_before_parent_share_thread(mailstore: Any, account: Account,
                                                new_email: NewEmailFactory) -> None:
    child = new_email(account.id, subject="Re: Minutes", message_id="<child@example.test>",
                      in_reply_to=["<parent@example.test>"],
                      references=["<parent@example.test>"])
    parent = new_email(account.id, subject="Minutes", message_id="<parent@example.test>")
    c = await deliver(mailstore, child)
    p = await deliver(mailstore, parent)
    assert p.thread_id == c.thread_id
    assert await thread_of(mailstore, account, parent.email_id) == c.thread_id


async def test_missing_link_merges_threads(mailstore: Any, account: Account,
                                           new_email: NewEmailFactory) -> None:
    a = new_email(account.id, subject="Budget 2025", message_id="<a@example.test>")
    c = new_email(account.id, subject="Re: Offsite venue", message_id="<c@example.test>",
                  in_reply_to=["<x@example.test>"],
                  references=["<a@example.test-unknown>", "<x@example.test>"])
    ra = await deliver(mailstore, a)
    rc = await deliver(mailstore, c)
    assert rc.thread_id != ra.thread_id  # C's parent X is not there yet: its own thread

    before_x = (await mailstore.get_account_by_id(account.id)).modseq
    x = new_email(account.id, subject="Re: Budget 2025", message_id="<x@example.test>",
                  in_reply_to=["<a@example.test>"], references=["<a@example.test>"])
    rx = await deliver(mailstore, x)

    assert rx.thread_id == ra.thread_id  # the oldest thread survives
    for email in (a, x, c):
        assert await thread_of(mailstore, account, email.email_id) == ra.thread_id
    c_record = await mailstore.get_email(account.id, c.email_id)
    assert c_record.modseq == rx.modseq  # C changed (its thread), so its modseq moved

    changes = await mailstore.changes_since(account.id, before_x)
    triples = {(ch.kind, ch.object_id, ch.op) for ch in changes}
    assert ("Thread", rc.thread_id, "destroyed") in triples
    assert ("Email", c.email_id, "updated") in triples
    assert ("Email", x.email_id, "created") in triples
    assert ("Email", a.email_id, "updated") not in triples  # A did not move
    assert {ch.modseq for ch in changes} == {rx.modseq}

    # A later reply to C lands in the merged thread too.
    d = new_email(account.id, subject="Re: Offsite venue", message_id="<d@example.test>",
                  in_reply_to=["<c@example.test>"], references=["<c@example.test>"])
    assert (await deliver(mailstore, d)).thread_id == ra.thread_id


async def test_subject_fallback_joins_reply_with_dangling_references(
        mailstore: Any, account: Account, new_email: NewEmailFactory) -> None:
    hello = new_email(account.id, subject="Hello")
    assert hello.thread_subject == "hello"
    h = await deliver(mailstore, hello)

    reply = new_email(account.id, subject="Re: Hello", in_reply_to=["<lost@elsewhere.test>"],
                      references=["<lost@elsewhere.test>"])
    assert reply.thread_subject == "hello"
    r = await deliver(mailstore, reply)
    assert r.thread_id == h.thread_id

    unrelated = new_email(account.id, subject="Hello")  # no refs, no prefix: a new conversation
    u = await deliver(mailstore, unrelated)
    assert u.thread_id != h.thread_id


async def test_subject_fallback_ignores_old_threads(mailstore: Any, account: Account,
                                                    new_email: NewEmailFactory) -> None:
    year_ms = 365 * 24 * 3600 * 1000
    old = new_email(account.id, subject="Hello")
    old.received_at -= year_ms
    o = await deliver(mailstore, old)
    reply = new_email(account.id, subject="Re: Hello", references=["<lost@elsewhere.test>"])
    r = await deliver(mailstore, reply)
    assert r.thread_id != o.thread_id


async def test_threads_are_per_account(mailstore: Any, account: Account,
                                       new_email: NewEmailFactory) -> None:
    bob = await mailstore.create_account(f"bob@{DOMAIN}", "h", MB)
    to_alice = new_email(account.id, message_id="<shared@example.test>", subject="Both")
    to_bob = new_email(bob.id, message_id="<shared@example.test>", subject="Both")
    a = await deliver(mailstore, to_alice)
    b = await deliver(mailstore, to_bob)
    assert a.created and b.created
    assert (await mailstore.get_email(bob.id, to_bob.email_id)).account_id == bob.id
    reply = new_email(bob.id, subject="Re: Both", in_reply_to=["<shared@example.test>"])
    rb = await deliver(mailstore, reply)
    assert rb.thread_id == b.thread_id
    assert await thread_of(mailstore, account, to_alice.email_id) == a.thread_id


# --------------------------------------------------------------------------- durability


async def test_mail_survives_reopen(mail_engine: Engine, new_email: NewEmailFactory) -> None:
    store = await mail_engine.open()
    acct = await store.create_account(f"alice@{DOMAIN}", "h", MB)
    email = new_email(acct.id)
    result = await store.deliver(email)
    await mail_engine.close(store)

    reopened = await mail_engine.open()
    record = await reopened.get_email(acct.id, email.email_id)
    assert record.thread_id == result.thread_id
    assert (await reopened.get_account(f"alice@{DOMAIN}")).used == email.size
    nxt = await reopened.deliver(new_email(acct.id))
    assert nxt.modseq > result.modseq
    boxes = {b.name: b for b in await reopened.list_mailboxes(acct.id)}
    assert boxes["INBOX"].uidnext == 3


async def test_dkim_keys_add_list_retire(mailstore: Any) -> None:
    from mailyard.store.ports import DKIMKeyRecord

    old = DKIMKeyRecord("Example.TEST", "s2025", "rsa-sha256", b"-----BEGIN...", 1000.0)
    new = DKIMKeyRecord("example.test", "s2026", "ed25519-sha256", b"seed\x00\xff", 2000.0)
    await mailstore.add_dkim_key(old)
    await mailstore.add_dkim_key(new)
    with pytest.raises(Conflict):
        await mailstore.add_dkim_key(new)
    keys = await mailstore.dkim_keys("EXAMPLE.test")
    assert [(k.selector, k.algorithm, k.private_key, k.active) for k in keys] == [
        ("s2026", "ed25519-sha256", b"seed\x00\xff", True),
        ("s2025", "rsa-sha256", b"-----BEGIN...", True)]
    await mailstore.retire_dkim_key("example.test", "s2025")
    assert [k.active for k in await mailstore.dkim_keys("example.test")] == [True, False]
    with pytest.raises(NotFound):
        await mailstore.retire_dkim_key("example.test", "nope")
    assert await mailstore.dkim_keys("other.test") == []


async def test_thread_emails_in_arrival_order(mailstore: Any, account: Account,
                                              new_email: NewEmailFactory) -> None:
    bob = await mailstore.create_account(f"bob@{DOMAIN}", "h", MB)
    first = new_email(account.id, subject="Plan", received_at=1_800_000_000_000)
    assert first.message_id is not None
    reply = new_email(account.id, subject="Re: Plan", in_reply_to=[first.message_id.strip("<>")],
                      references=[first.message_id.strip("<>")], received_at=1_800_000_100_000)
    other = new_email(account.id, subject="Unrelated", received_at=1_800_000_050_000)
    for e in (first, reply, other):
        await deliver(mailstore, e)
    t1 = await thread_of(mailstore, account, first.email_id)
    t2 = await thread_of(mailstore, account, other.email_id)
    found = await mailstore.thread_emails(account.id, [t1, t2, "t-unknown"])
    assert found[t1][0] == first.email_id and set(found) == {t1, t2}
    assert found[t2] == [other.email_id]
    assert await mailstore.thread_emails(bob.id, [t1]) == {}
