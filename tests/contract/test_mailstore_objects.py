"""MailStore's small per-account objects: stored, replaced, deleted, logged, isolated."""

from __future__ import annotations

from typing import Any

import pytest

from mailyard.store.ports import Account, NotFound


async def test_put_get_replace_delete(mailstore: Any, account: Account) -> None:
    first = await mailstore.put_object(account.id, "Identity", "i1", {"name": "Alice"})
    second = await mailstore.put_object(account.id, "Identity", "i2", {"name": "Work"})
    assert second > first
    [one] = await mailstore.get_objects(account.id, "Identity", ["i1", "missing"])
    assert (one.id, one.data, one.modseq) == ("i1", {"name": "Alice"}, first)
    await mailstore.put_object(account.id, "Identity", "i1", {"name": "Alice B."})
    assert [o.data["name"] for o in await mailstore.get_objects(account.id, "Identity")] \
        == ["Alice B.", "Work"]
    await mailstore.delete_object(account.id, "Identity", "i2")
    assert [o.id for o in await mailstore.get_objects(account.id, "Identity")] == ["i1"]
    with pytest.raises(NotFound):
        await mailstore.delete_object(account.id, "Identity", "i2")
    assert await mailstore.get_objects(account.id, "Identity", []) == []


async def test_changes_are_logged_with_the_account_modseq(mailstore: Any,
                                                         account: Account) -> None:
    start = (await mailstore.get_account_by_id(account.id)).modseq
    created = await mailstore.put_object(account.id, "VacationResponse", "singleton", {})
    updated = await mailstore.put_object(account.id, "VacationResponse", "singleton",
                                         {"isEnabled": True})
    destroyed = await mailstore.delete_object(account.id, "VacationResponse", "singleton")
    assert (await mailstore.get_account_by_id(account.id)).modseq == destroyed
    log = [(c.modseq, c.kind, c.object_id, c.op)
           for c in await mailstore.changes_since(account.id, start)]
    assert log == [(created, "VacationResponse", "singleton", "created"),
                   (updated, "VacationResponse", "singleton", "updated"),
                   (destroyed, "VacationResponse", "singleton", "destroyed")]


async def test_unlogged_objects_stay_out_of_the_change_log(mailstore: Any,
                                                          account: Account) -> None:
    start = (await mailstore.get_account_by_id(account.id)).modseq
    await mailstore.put_object(account.id, "Token", "t1", {"hash": "x"}, log=False)
    await mailstore.delete_object(account.id, "Token", "t1", log=False)
    assert await mailstore.changes_since(account.id, start) == []


async def test_objects_are_per_account_and_per_kind(mailstore: Any, account: Account) -> None:
    other = await mailstore.create_account("bob@example.test", "hash-2", 1024)
    await mailstore.put_object(account.id, "Identity", "same", {"owner": "alice"})
    await mailstore.put_object(other.id, "Identity", "same", {"owner": "bob"})
    await mailstore.put_object(account.id, "EmailSubmission", "same", {"owner": "x"})
    assert [o.data for o in await mailstore.get_objects(other.id, "Identity")] \
        == [{"owner": "bob"}]
    with pytest.raises(NotFound):
        await mailstore.delete_object(other.id, "EmailSubmission", "same")
    await mailstore.delete_account("bob@example.test")
    assert await mailstore.get_objects(other.id, "Identity") == []


async def test_ids_as_stored_and_any_number_of_them(mailstore: Any, account: Account) -> None:
    """A kind and an id are stored as stored_text makes them (a NUL is U+FFFD) and found
    under either spelling; a look-up by more ids than one SQL statement binds misses none."""
    await mailstore.put_object(account.id, "Identity", "a\x00b", {"name": "Nul"})
    await mailstore.put_object(account.id, "Identity", "real", {"name": "Real"})
    for spelling in ("a\x00b", "a\ufffdb"):
        [found] = await mailstore.get_objects(account.id, "Identity", [spelling, spelling])
        assert (found.id, found.data) == ("a\ufffdb", {"name": "Nul"})
    many = [f"missing-{n}" for n in range(10_500)] + ["real", "a\x00b"]
    assert [o.id for o in await mailstore.get_objects(account.id, "Identity", many)] == [
        "a\ufffdb", "real"]
    await mailstore.delete_object(account.id, "Identity", "a\x00b")
    assert [o.id for o in await mailstore.get_objects(account.id, "Identity")] == ["real"]
