"""A queue change whose answer from JetStream does not come is tried again, and applied once.

A JetStream publish or delete may be stored by the server and its answer still not reach the
worker in time (a stream leader busy at load 20, a leader election). The NATS queue then asks
again with the same message id: JetStream's duplicate detection answers the second try with
the first one's sequence. Without that, a retry whose first try had landed was refused by its
own compare-and-set (the worker believed another had taken the item, which stayed leased by
nobody who knew it until the lease ran out), and an unanswered ack looked like a lost lease.

The NATS server here is a private one, paused with SIGSTOP while a change is in flight, so
that its answer comes only after the worker's short request timeout, and resumed once the
queue has logged that it asks again (a condition, not a sleep).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from mailyard.store.nats.connection import NatsConnection
from mailyard.store.nats.queue import NatsQueue
from tests.natsserver import NatsCluster

KIND = "inbound"
T = TypeVar("T")


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "nats", size=1).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def queue(nats: NatsCluster) -> AsyncIterator[NatsQueue]:
    q = NatsQueue(NatsConnection(nats.urls, request_timeout=1.0), prefix="unanswered",
                  holder="worker", poll_interval=0.05)
    yield q
    await q.aclose()


async def lease_one(queue: NatsQueue) -> list[object]:
    for _ in range(600):
        items = await queue.lease([KIND], 10, 600.0)
        if items:
            return list(items)
        await queue.wait(0.1)
    raise AssertionError("nothing came due")


def stopped(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    return any(line.startswith("State:") and "stopped" in line for line in status.splitlines())


async def while_paused(nats: NatsCluster, caplog: pytest.LogCaptureFixture,
                       change: Awaitable[T]) -> T:
    """Run `change` with the server stopped until the queue says it asks again."""
    process = nats.nodes[0].process
    assert process is not None
    caplog.clear()
    process.send_signal(signal.SIGSTOP)
    try:
        for _ in range(1200):  # a signal reaches every thread of the server a moment later
            if stopped(process.pid):
                break
            await asyncio.sleep(0.01)
        assert stopped(process.pid), "nats-server did not stop"
        task = asyncio.ensure_future(change)
        for _ in range(1200):
            if any("no answer" in r.getMessage() for r in caplog.records) or task.done():
                break
            await asyncio.sleep(0.1)
    finally:
        process.send_signal(signal.SIGCONT)
    return await task


async def test_a_retry_whose_answer_was_lost_is_applied_once(
        nats: NatsCluster, queue: NatsQueue, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailyard.nats")
    item_id = await queue.enqueue(KIND, {"n": 1})
    [item] = await lease_one(queue)
    assert await while_paused(nats, caplog, queue.retry(item, "try later", 0.0)) is True
    assert any("no answer" in r.getMessage() for r in caplog.records)
    [again] = await lease_one(queue)
    assert (again.id, again.attempts, again.last_error) == (item_id, 2, "try later")
    assert await queue.ack(again) is True
    assert (await queue.stats()).ready == 0 and await queue.pending() == []


async def test_an_ack_whose_answer_was_lost_counts_as_done(
        nats: NatsCluster, queue: NatsQueue, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailyard.nats")
    await queue.enqueue(KIND, {"n": 2})
    [item] = await lease_one(queue)
    assert await while_paused(nats, caplog, queue.ack(item)) is True
    assert await queue.pending() == []
    assert await queue.lease([KIND], 10, 600.0) == []


async def test_an_enqueue_whose_answer_was_lost_queues_one_item(
        nats: NatsCluster, queue: NatsQueue, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailyard.nats")
    await queue.enqueue(KIND, {"warm": True}, item_id="warm")  # streams made while running
    [warm] = await lease_one(queue)
    assert await queue.ack(warm) is True
    item_id = await while_paused(nats, caplog, queue.enqueue(KIND, {"n": 3}, item_id="paused"))
    assert item_id == "paused"
    assert [p.id for p in await queue.pending()] == ["paused"]
    [item] = await lease_one(queue)
    assert (item.id, item.attempts) == ("paused", 1)
