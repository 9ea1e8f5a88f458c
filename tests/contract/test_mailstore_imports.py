"""MailStore.store_imports contract (model/delivery.store_imports), on every engine: an import
batch in one transaction, in source order, a delivery over quota failing alone, an email met
again gaining labels and keywords."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailyard.store.ports import Account, ImportWrite, NewEmail, QuotaExceeded

DOMAIN = "example.test"
NewEmailFactory = Callable[..., NewEmail]


async def test_a_batch_is_stored_in_order_with_uids_following_it(
        mailstore: Any, account: Account, new_email: NewEmailFactory) -> None:
    emails = [new_email(account.id, subject=f"import {n}") for n in range(6)]
    before = (await mailstore.get_account_by_id(account.id)).modseq
    out = await mailstore.store_imports(
        account.id, [ImportWrite(e, None, [], []) for e in emails])
    assert out == [(e.email_id, True) for e in emails]
    uids = [(await mailstore.get_email(account.id, e.email_id)).mailboxes["INBOX"]
            for e in emails]
    assert uids == sorted(uids) and len(set(uids)) == 6
    assert (await mailstore.get_account_by_id(account.id)).modseq > before


async def test_over_quota_fails_alone_and_the_rest_are_stored(
        mailstore: Any, new_email: NewEmailFactory) -> None:
    acct = await mailstore.create_account(f"small@{DOMAIN}", "h", 1000)
    first, too_big, last = (new_email(acct.id, size=400), new_email(acct.id, size=700),
                            new_email(acct.id, size=500))
    out = await mailstore.store_imports(
        acct.id, [ImportWrite(e, None, [], []) for e in (first, too_big, last)])
    assert out[0] == (first.email_id, True) and out[2] == (last.email_id, True)
    assert isinstance(out[1], QuotaExceeded)
    assert (await mailstore.get_account_by_id(acct.id)).used == 900
    assert await mailstore.has_delivery(acct.id, too_big.delivery_key) is False


async def test_an_email_met_again_gains_labels_and_keywords(
        mailstore: Any, account: Account, new_email: NewEmailFactory) -> None:
    boxes = {b.name: b for b in await mailstore.list_mailboxes(account.id)}
    email = new_email(account.id)
    again = new_email(account.id, delivery_key=email.delivery_key)  # the same delivery key
    out = await mailstore.store_imports(account.id, [
        ImportWrite(email, None, [], []),
        ImportWrite(None, email.email_id, [boxes["Archive"].id], ["$flagged"]),
        ImportWrite(again, None, [boxes["Sent"].id], ["$seen"]),
    ])
    assert out == [(email.email_id, True), (email.email_id, False), (email.email_id, False)]
    record = await mailstore.get_email(account.id, email.email_id)
    assert {"INBOX", "Archive", "Sent"} <= set(record.mailboxes)
    assert {"$flagged", "$seen"} <= set(record.keywords)
