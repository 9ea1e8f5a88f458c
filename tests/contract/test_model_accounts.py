"""The mail model's account rules (model/accounts.py) on every engine."""

from __future__ import annotations

from typing import Any

import pytest

from mailyard.store.ports import Account, Conflict, NotFound

MB = 1024 * 1024


async def test_password_and_quota_change_only_themselves(mailstore: Any,
                                                         account: Account) -> None:
    await mailstore.set_quota("ALICE@Example.Test", 3 * MB)
    await mailstore.set_password("alice@example.test", "hash-2")
    got = await mailstore.get_account_by_id(account.id)
    assert (got.quota, got.password_hash, got.used, got.modseq) == (
        3 * MB, "hash-2", 0, account.modseq), "neither is a change of the account's mail"


async def test_a_refused_account_leaves_nothing(mailstore: Any, account: Account) -> None:
    before = {b.id for b in await mailstore.list_mailboxes(account.id)}
    with pytest.raises(Conflict):
        await mailstore.create_account("Alice@EXAMPLE.TEST", "other", MB)
    assert [a.id for a in await mailstore.list_accounts()] == [account.id]
    assert {b.id for b in await mailstore.list_mailboxes(account.id)} == before
    with pytest.raises(NotFound):
        await mailstore.delete_account("nobody@example.test")
    bob = await mailstore.create_account("Bob@Example.TEST", "hash-b", MB)
    assert bob.address == "bob@example.test" and bob.used == 0 and bob.quota == MB
    assert {b.role for b in await mailstore.list_mailboxes(bob.id)} >= {"inbox", "all"}


async def test_an_account_is_found_under_the_address_it_is_stored_as(mailstore: Any,
                                                                     account: Account) -> None:
    made = await mailstore.create_account("Ev\x00e@Example.Test", "h", MB)
    assert made.address == "ev\ufffde@example.test"
    for spelling in ("Ev\x00e@example.test", "Ev\ufffde@EXAMPLE.test"):
        assert (await mailstore.get_account(spelling)).id == made.id
    await mailstore.set_quota("Ev\x00e@example.test", 2 * MB)
    assert (await mailstore.get_account_by_id(made.id)).quota == 2 * MB
