"""An acknowledged message whose spooled octets cannot be found for a moment is not buried.

An object store that is restarting (radosgw, in test_cluster_faults) may answer "no such key"
for a while; the worker must ask again after its usual backoff and deliver once the octets are
back, and bury the item only when several attempts all found the spool gone. The real embedded
runtime (SQLite store and queue, files) and its real worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailyard.app import Runtime
from mailyard.config import Config, Queue
from mailyard.core.ids import new_id
from mailyard.core.workitems import INBOUND
from mailyard.services.delivery import spool_id

SPOOL_TRIES = 4
"""Not the default (3), so that the setting is seen to be used."""

RAW = (b"From: s@remote.test\r\nTo: alice@example.test\r\nSubject: spool back\r\n"
       b"Message-ID: <spool-back@remote.test>\r\n\r\nbody\r\n")


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    config = Config(data_dir=tmp_path, domains=("example.test",),
                    queue=Queue(backoff_base=0.01, backoff_max=0.01, max_attempts=10,
                                spool_tries=SPOOL_TRIES))
    rt = Runtime.open(config)
    await rt.store.create_account("alice@example.test", "x", 10**9)
    yield rt
    rt.close()


async def queue_item(rt: Runtime, queue_id: str) -> None:
    await rt.queue.enqueue(INBOUND, {
        "spool": spool_id(queue_id), "mail_from": "s@remote.test",
        "recipients": ["alice@example.test"], "trace_length": 0,
        "received_at": 1_800_000_000_000, "peer": "192.0.2.1", "helo": "mx.remote.test"},
        item_id=queue_id)


async def one_round(rt: Runtime) -> int:
    """Lease what is due (waiting for the retry's short backoff) and run it; how many."""
    for _ in range(1000):
        items = await rt.queue.lease([INBOUND], 10, 60.0)
        if items:
            await rt.worker().handle(items)
            return len(items)
        await asyncio.sleep(0.01)
    raise AssertionError("the retried item never came due")


async def test_a_spool_missing_once_is_retried_and_delivered(runtime: Runtime) -> None:
    rt = runtime
    queue_id = new_id("q")
    await queue_item(rt, queue_id)
    assert await one_round(rt) == 1
    assert await rt.queue.dead_letters() == []
    await rt.blobs.put(spool_id(queue_id), RAW)
    assert await one_round(rt) == 1
    account = await rt.mailbox.account("alice@example.test")
    [email] = await rt.mailbox.emails(account, "inbox", 10)
    assert email.subject == "spool back"
    assert await rt.queue.dead_letters() == []
    assert (await rt.queue.stats()).ready == 0


async def test_a_spool_missing_on_every_try_is_buried_with_the_reason(runtime: Runtime
                                                                       ) -> None:
    rt = runtime
    queue_id = new_id("q")
    await queue_item(rt, queue_id)
    for attempt in range(1, SPOOL_TRIES + 1):
        assert await one_round(rt) == 1
        assert bool(await rt.queue.dead_letters()) == (attempt == SPOOL_TRIES)
    [dead] = await rt.queue.dead_letters()
    assert dead.id == queue_id and dead.attempts == SPOOL_TRIES
    assert "is missing" in dead.error
