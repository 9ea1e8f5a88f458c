"""PushSubscriptionStore contract: per-account put/get/delete, the deliverer's view of verified
unexpired subscriptions, expiry, and durability across a reopen."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mailyard.store.ports import NotFound, PushSubscriptionRecord
from tests.contract.conftest import Engine


@pytest.fixture
async def subs(push_engine: Engine) -> Any:
    return await push_engine.open()


def record(sub_id: str, account: str = "acct-a", **changes: Any) -> PushSubscriptionRecord:
    base = PushSubscriptionRecord(
        id=sub_id, account_id=account, device_client_id="device-1",
        url="https://push.example/abc", keys={"p256dh": "BKey", "auth": "c2VjcmV0"},
        verification_code="code-" + sub_id, verified=False, expires=2_000_000_000.0,
        types=("Email", "Mailbox"))
    return replace(base, **changes)


async def test_put_then_get_round_trips_every_field(subs: Any) -> None:
    a = record("s1")
    b = record("s2", keys=None, types=None, verified=True)
    await subs.put(b)
    await subs.put(a)
    assert await subs.get("acct-a") == [a, b]
    assert await subs.get("acct-a", ["s2", "nope"]) == [b]
    assert await subs.get("acct-a", []) == []


async def test_another_accounts_subscription_is_not_found(subs: Any) -> None:
    await subs.put(record("s1", account="acct-a"))
    assert await subs.get("acct-b") == []
    assert await subs.get("acct-b", ["s1"]) == []
    with pytest.raises(NotFound):
        await subs.delete("acct-b", "s1")
    assert len(await subs.get("acct-a")) == 1


async def test_put_replaces_and_delete_removes(subs: Any) -> None:
    await subs.put(record("s1"))
    verified = record("s1", verified=True, expires=2_100_000_000.0, types=("Email",))
    await subs.put(verified)
    assert await subs.get("acct-a") == [verified]
    await subs.delete("acct-a", "s1")
    assert await subs.get("acct-a") == []
    with pytest.raises(NotFound):
        await subs.delete("acct-a", "s1")


async def test_verified_lists_only_verified_unexpired_of_every_account(subs: Any) -> None:
    now = 1_500_000_000.0
    live_a = record("s1", verified=True)
    live_b = record("s2", account="acct-b", verified=True)
    await subs.put(live_a)
    await subs.put(live_b)
    await subs.put(record("s3"))  # not verified
    await subs.put(record("s4", verified=True, expires=now - 1))  # expired
    assert await subs.verified(now) == [live_a, live_b]


async def test_delete_expired(subs: Any) -> None:
    now = 1_500_000_000.0
    await subs.put(record("old", expires=now))
    await subs.put(record("new", expires=now + 60))
    assert await subs.delete_expired(now) == 1
    assert [r.id for r in await subs.get("acct-a")] == ["new"]


async def test_durable_across_reopen(push_engine: Engine) -> None:
    first = await push_engine.open()
    await first.put(record("s1", verified=True))
    await push_engine.close(first)
    second = await push_engine.open()
    assert await second.get("acct-a") == [record("s1", verified=True)]


async def test_another_process_sees_what_one_made(push_engine: Engine) -> None:
    """Two adapters on one store, as two nodes of a cluster (or two processes of one): a
    subscription made or destroyed through one is what the other reads."""
    one, other = await push_engine.open(), await push_engine.open()
    await one.put(record("s1", verified=True))
    assert await other.get("acct-a") == [record("s1", verified=True)]
    assert await other.verified(1_500_000_000.0) == [record("s1", verified=True)]
    await other.delete("acct-a", "s1")
    assert await one.get("acct-a") == []
