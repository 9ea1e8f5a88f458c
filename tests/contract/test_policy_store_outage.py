"""The PostgreSQL policy store (store/postgres/policy.py) through a PostgreSQL crash: the lists
in force stay in force on every node while the database is down (a node never lets a denied
client in because PostgreSQL restarts), and once it is back a change made through one node
reaches the other without a restart of either. A private server of the test's own, killed
as by a power cut (tests/faults.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from mailyard.dns import Resolver
from mailyard.services.checks.policy import PolicyCheck, PolicySettings
from mailyard.store.postgres.policy import PostgresPolicyStore
from tests.contract.test_policy_store import eventually
from tests.faults import PrivatePostgres


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.remove()


async def test_lists_survive_a_crash_and_changes_flow_again_after_it(
        postgres: PrivatePostgres) -> None:
    dsn = await asyncio.to_thread(postgres.database, "policy")
    cli = await asyncio.to_thread(PostgresPolicyStore, dsn, refresh=0.5)
    node = await asyncio.to_thread(PostgresPolicyStore, dsn, refresh=0.5)
    try:
        check = PolicyCheck(node, Resolver(), PolicySettings())
        await asyncio.to_thread(cli.put, "192.0.2.0/24", "deny", "spam run")
        await eventually(lambda: check.lists().for_ip("192.0.2.9") is not None)

        await asyncio.to_thread(postgres.kill)
        await asyncio.sleep(1.5)  # the node's watcher meets the dead server meanwhile
        entry = check.lists().for_ip("192.0.2.9")
        assert entry is not None and entry.kind == "deny"
        with pytest.raises(Exception):  # noqa: B017 - whichever error the driver gives
            await asyncio.to_thread(cli.put, "198.51.100.0/24", "deny")

        await asyncio.to_thread(postgres.start)
        await eventually(lambda: _put(cli, "198.51.100.0/24"), seconds=60)
        await eventually(lambda: check.lists().for_ip("198.51.100.1") is not None, seconds=60)
        assert check.lists().for_ip("192.0.2.9") is not None
    finally:
        await asyncio.to_thread(cli.close)
        await asyncio.to_thread(node.close)


def _put(store: PostgresPolicyStore, entry: str) -> bool:
    """One attempt of the CLI (an admin runs it again when the database was not back)."""
    try:
        store.put(entry, "deny")
    except Exception:
        return False
    return True
