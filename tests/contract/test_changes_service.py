"""ChangeService over every MailStore: the one reader of the change log that JMAP /changes,
/queryChanges, Quota/changes and GET /sync page through."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from mailyard.services.changes import ChangeService, FutureState
from mailyard.store.ports import Account


async def _history(mailstore: Any, account: Account) -> int:
    """A log with one modseq that touches three objects (a rename moves the children too)
    between single-object ones, objects changed twice, and two kinds. The state before it."""
    start = (await mailstore.get_account_by_id(account.id)).modseq
    parent = await mailstore.create_mailbox(account.id, "Pager")
    await mailstore.create_mailbox(account.id, "Pager/A")
    await mailstore.create_mailbox(account.id, "Pager/B")
    await mailstore.put_object(account.id, "Identity", "i1", {"name": "one"})
    await mailstore.rename_mailbox(account.id, parent.id, "Pager2")
    await mailstore.put_object(account.id, "Identity", "i1", {"name": "two"})
    await mailstore.put_object(account.id, "Identity", "i2", {"name": "three"})
    await mailstore.delete_object(account.id, "Identity", "i1")
    return start


async def test_state_and_kinds(mailstore: Any, account: Account) -> None:
    service = ChangeService(mailstore)
    start = await _history(mailstore, account)
    state = await service.state(account)
    assert state == (await mailstore.get_account_by_id(account.id)).modseq > start
    every = await service.changes(account, start)
    assert (every.state, every.has_more) == (state, False)
    assert every.changes == await mailstore.changes_since(account.id, start)
    identities = await service.changes(account, start, kinds=("Identity",))
    assert [(c.object_id, c.op) for c in identities.changes] == [
        ("i1", "created"), ("i1", "updated"), ("i2", "created"), ("i1", "destroyed")]
    assert identities.state == state
    assert (await service.changes(account, state)).changes == []
    with pytest.raises(FutureState) as raised:
        await service.changes(account, state + 1)
    assert raised.value.state == state


@pytest.mark.parametrize("limit", [1, 2, 3, 4])
async def test_pages_end_between_modseqs_and_miss_nothing(mailstore: Any, account: Account,
                                                          limit: int) -> None:
    service = ChangeService(mailstore)
    start = await _history(mailstore, account)
    whole = (await service.changes(account, start)).changes
    pages, since = [], start
    while True:
        page = await service.changes(account, since, limit=limit)
        assert page.changes, "a page always moves on"
        pages.append(page.changes)
        if not page.has_more:
            break
        assert page.state == page.changes[-1].modseq
        since = page.state
    assert [c for p in pages for c in p] == whole
    for p in pages:
        objects = {(c.kind, c.object_id) for c in p}
        modseqs = {c.modseq for c in p}
        # At most `limit` objects, unless one modseq alone touches more.
        assert len(objects) <= limit or len(modseqs) == 1
    for p, after in itertools.pairwise(pages):
        # Full: the next modseq would have taken the page over `limit` objects.
        following = [c for c in after if c.modseq == after[0].modseq]
        assert len({(c.kind, c.object_id) for c in p + following}) > limit
