"""The connection policy's store (services/checks/policy.PolicyStore) on both engines: SQLite
(policy.db in the data dir, one node) and PostgreSQL (the directory database, every node). Two
store objects on one backing store play the CLI and a running server, or two nodes: what one
commits, the other's MX decides with."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mailyard.dns import Resolver
from mailyard.services.checks.policy import PolicyCheck, PolicySettings
from tests.contract.conftest import Engine, closing, sqlite_or_postgres

POLICY_STORES = ["sqlite", "postgres"]


def _open_policy_store(name: str, tmp_path: Path) -> Engine:
    from mailyard.store.postgres.policy import PostgresPolicyStore
    from mailyard.store.sqlite.policy import SqlitePolicyStore

    async def postgres(dsn: str) -> PostgresPolicyStore:
        # Its constructor waits for the first snapshot: off the test's event loop.
        return await asyncio.to_thread(PostgresPolicyStore, dsn)

    return sqlite_or_postgres(name, "PolicyStore", postgres=postgres,
                              sqlite=lambda: SqlitePolicyStore(tmp_path / "policy.db"))


@pytest.fixture(params=POLICY_STORES)
async def policy_engine(request: pytest.FixtureRequest,
                        tmp_path: Path) -> AsyncIterator[Engine]:
    async with closing(_open_policy_store(request.param, tmp_path)) as engine:
        yield engine


async def eventually(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    """Wait for `condition` (another store's commit reaching this one), failing after
    `seconds`: a bound on a hang, not on speed."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the change never arrived"
        await asyncio.sleep(0.02)


async def test_entries_are_put_listed_updated_and_removed(policy_engine: Engine) -> None:
    store: Any = await policy_engine.open()
    assert store.entries() == []
    store.put("192.0.2.0/24", "deny", "spam run")
    store.put("example.org", "allow")
    store.put("10.0.0.1/32", "allow", "monitoring")
    rows = store.entries()
    assert [(e, k, r) for e, k, r, _ in rows] == [
        ("10.0.0.1/32", "allow", "monitoring"), ("example.org", "allow", ""),
        ("192.0.2.0/24", "deny", "spam run")]
    assert all(abs(added - time.time()) < 3600 for *_, added in rows)
    store.put("example.org", "deny", "changed its mind")
    assert ("example.org", "deny", "changed its mind") in [(e, k, r) for e, k, r, _ in
                                                             store.entries()]
    assert store.remove("192.0.2.0/24") is True
    assert store.remove("192.0.2.0/24") is False
    assert [e for e, *_ in store.entries()] == ["10.0.0.1/32", "example.org"]


async def test_a_commit_through_another_store_reaches_this_one(policy_engine: Engine) -> None:
    server: Any = await policy_engine.open()
    cli: Any = await policy_engine.open()
    check = PolicyCheck(server, Resolver(), PolicySettings())
    assert check.lists().for_ip("198.51.100.7") is None
    before = server.data_version()

    cli.put("198.51.100.0/24", "deny", "abuse")
    await eventually(lambda: server.data_version() != before)
    entry = check.lists().for_ip("198.51.100.7")
    assert entry is not None and (entry.kind, entry.reason) == ("deny", "abuse")

    version = server.data_version()
    cli.remove("198.51.100.0/24")
    await eventually(lambda: server.data_version() != version)
    assert check.lists().for_ip("198.51.100.7") is None


async def test_a_store_opened_later_reads_what_was_committed(policy_engine: Engine) -> None:
    first: Any = await policy_engine.open()
    first.put("example.net", "deny")
    await policy_engine.close(first)
    again: Any = await policy_engine.open()
    assert [(e, k) for e, k, *_ in again.entries()] == [("example.net", "deny")]


async def test_greylist_triplets_persist_and_expire(policy_engine: Engine) -> None:
    one: Any = await policy_engine.open()
    other: Any = await policy_engine.open()
    key = "192.0.2.0/24|a@example.org|b@example.test"
    assert one.triplet(key) is None
    one.put_triplet(key, 1000.0, None)
    assert other.triplet(key) == (1000.0, None)  # a retry to another node counts
    other.put_triplet(key, 1000.0, 1400.0)
    assert one.triplet(key) == (1000.0, 1400.0)
    one.put_triplet("old|x@example.org|y@example.test", 10.0, None)
    assert one.expire_triplets(1200.0) == 1
    assert one.triplet("old|x@example.org|y@example.test") is None
    assert one.triplet(key) == (1000.0, 1400.0)
    assert one.expire_triplets(1500.0) == 1
    assert other.triplet(key) is None
