"""`[outbound] per_domain_per_minute` over a cluster (issue 21): the outbound workers of two
nodes (two Runtimes, each with its own data_dir and queue) that share Redis (`[store]
counters`, the machine's redis-server on 6379, under a prefix of the test's own) send one
domain at most the limit between them; the rest waits in each node's queue. Without Redis, or
with it unreachable, each node counts alone and mail still goes out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailyard.app import Runtime
from mailyard.config import Cluster, Config, Outbound, Store
from mailyard.core.ids import new_id
from mailyard.core.workitems import OUTBOUND, OutboundItem
from tests.contract.conftest import close_adapter
from tests.e2e.server import free_port
from tests.fakemx import FakeMX

LIMIT = 3
PER_NODE = 4
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def mx(tmp_path: Path) -> Iterator[FakeMX]:
    with FakeMX(tmp_path / "mx") as server:
        yield server


def node(root: Path, name: str, mx: FakeMX, counters: str, prefix: str) -> Runtime:
    (root / name).mkdir()
    return Runtime(Config(
        data_dir=root / name, hostname=f"{name}.example.test", domains=("example.test",),
        store=Store(counters=counters), cluster=Cluster(prefix=prefix),
        outbound=Outbound(relayhost=f"smtp+insecure://127.0.0.1:{mx.port}",
                          per_domain_per_minute=LIMIT, mta_sts=False)))


async def send_all(runtimes: list[Runtime]) -> list[str]:
    """Queue PER_NODE messages to remote.test on each node, then let each node's outbound
    worker take them all at once; the errors of the items put back."""
    for rt in runtimes:
        for n in range(PER_NODE):
            spool = f"spool-{new_id('s')}"
            await rt.blobs.put(spool, f"Subject: {n}\r\n\r\nbody {n}\r\n".encode())
            await rt.queue.enqueue(OUTBOUND, OutboundItem(
                spool=spool, mail_from="alice@example.test",
                recipients=(f"r{n}@remote.test",), domain="remote.test",
                submitted_at=time.time(), submission=new_id("m")).to_json())
    workers = [rt.outbound() for rt in runtimes]
    leased = [await rt.queue.lease([OUTBOUND], 100, 60.0) for rt in runtimes]
    assert [len(items) for items in leased] == [PER_NODE] * len(runtimes)
    await asyncio.gather(*(w.handle(item) for w, items in zip(workers, leased, strict=True)
                           for item in items))
    errors: list[str] = []
    for rt in runtimes:
        errors += [i.last_error or "" for i in await rt.queue.pending([OUTBOUND])]
    return errors


async def close(runtimes: list[Runtime]) -> None:
    for rt in runtimes:
        if "shared_state" in rt.__dict__:  # Runtime.close leaves the Redis clients open
            for part in (rt.shared_state.ledger, rt.shared_state.counters):
                if hasattr(part, "close"):
                    await close_adapter(part)
        rt.close()


async def test_two_nodes_sharing_redis_send_the_limit_between_them(tmp_path: Path,
                                                                    mx: FakeMX) -> None:
    prefix = f"mailyard-test-{new_id('o')}"
    runtimes = [node(tmp_path, name, mx, REDIS, prefix) for name in ("a", "b")]
    try:
        errors = await send_all(runtimes)
    finally:
        await close(runtimes)
    assert len(mx.received) == LIMIT
    assert sorted(errors) == ["rate limit for remote.test"] * (2 * PER_NODE - LIMIT)


async def test_without_shared_counters_each_node_counts_alone(tmp_path: Path,
                                                             mx: FakeMX) -> None:
    runtimes = [node(tmp_path, name, mx, "", "mailyard") for name in ("a", "b")]
    try:
        errors = await send_all(runtimes)
    finally:
        await close(runtimes)
    assert len(mx.received) == 2 * LIMIT
    assert errors == ["rate limit for remote.test"] * (2 * (PER_NODE - LIMIT))


async def test_with_redis_unreachable_each_node_counts_alone(tmp_path: Path,
                                                            mx: FakeMX) -> None:
    away = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    prefix = f"mailyard-test-{new_id('o')}"
    runtimes = [node(tmp_path, name, mx, away, prefix) for name in ("a", "b")]
    try:
        errors = await send_all(runtimes)
    finally:
        await close(runtimes)
    assert len(mx.received) == 2 * LIMIT
    assert errors == ["rate limit for remote.test"] * (2 * (PER_NODE - LIMIT))
