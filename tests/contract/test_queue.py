"""Queue contract: durable items, leases with tokens, retries, dead letters (at-least-once)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mailyard.store.ports import NewItem, NotFound
from tests.contract.conftest import Engine

KIND = "inbound"
SHORT = 2.0
"""A lease or delay short enough to watch it run out, and far longer than the few store calls
that check it still holds (milliseconds; a busy machine makes them a hundred times slower)."""
LONG = 30.0  # a lease that will not run out during a test


async def lease_one(queue: Any, lease_seconds: float = LONG, kinds: tuple[str, ...] = (KIND,)
                    ) -> Any:
    items = await queue.lease(list(kinds), 10, lease_seconds)
    assert len(items) == 1, items
    return items[0]


async def lease_when_due(queue: Any, not_before: float) -> Any:
    """The one item, leased as soon as it comes due (polling, not sleeping for a guessed
    time); it must not come before `not_before`, read from the clock the store uses before
    the store set the due time."""
    deadline = time.monotonic() + 60
    while not (items := await queue.lease([KIND], 10, LONG)):
        assert time.monotonic() < deadline, "the item never came due"
        await asyncio.sleep(0.02)
    assert time.time() >= not_before, "leased before it was due"
    assert len(items) == 1, items
    return items[0]


async def test_enqueue_lease_ack(queue: Any) -> None:
    payload = {"spool": "b1", "rcpt": ["ann@example.test", "bo@example.test"], "n": 3,
               "nested": {"ok": True, "text": "héllo ✓"}}
    item_id = await queue.enqueue(KIND, payload)
    assert item_id
    item = await lease_one(queue)
    assert item.id == item_id
    assert item.kind == KIND
    assert item.payload == payload
    assert item.attempts == 1
    assert item.lease_token
    assert item.created_at > 0
    assert await queue.ack(item) is True
    assert await queue.lease([KIND], 10, LONG) == []
    stats = await queue.stats()
    assert (stats.ready, stats.leased, stats.delayed, stats.dead) == (0, 0, 0, 0)


async def test_ack_twice_second_is_false(queue: Any) -> None:
    await queue.enqueue(KIND, {})
    item = await lease_one(queue)
    assert await queue.ack(item) is True
    assert await queue.ack(item) is False


async def test_lease_only_requested_kinds(queue: Any) -> None:
    inbound = await queue.enqueue("inbound", {"k": "in"})
    outbound = await queue.enqueue("outbound", {"k": "out"})
    items = await queue.lease(["outbound"], 10, LONG)
    assert [i.id for i in items] == [outbound]
    items = await queue.lease(["inbound", "outbound"], 10, LONG)
    assert [i.id for i in items] == [inbound]


async def test_lease_respects_limit(queue: Any) -> None:
    for n in range(5):
        await queue.enqueue(KIND, {"n": n})
    first = await queue.lease([KIND], 2, LONG)
    second = await queue.lease([KIND], 2, LONG)
    third = await queue.lease([KIND], 2, LONG)
    assert (len(first), len(second), len(third)) == (2, 2, 1)
    ids = [i.id for i in first + second + third]
    assert len(set(ids)) == 5


async def test_caller_chosen_item_id(queue: Any) -> None:
    item_id = await queue.enqueue(KIND, {"a": 1}, item_id="spool-0001")
    assert item_id == "spool-0001"
    assert (await lease_one(queue)).id == "spool-0001"


async def test_enqueue_same_item_id_twice_is_one_item(queue: Any) -> None:
    first = await queue.enqueue(KIND, {"try": 1}, item_id="same-id-1")
    second = await queue.enqueue(KIND, {"try": 2}, item_id="same-id-1")
    assert first == second == "same-id-1"
    assert (await queue.stats()).ready == 1
    items = await queue.lease([KIND], 10, LONG)
    assert [i.id for i in items] == ["same-id-1"]


async def test_enqueue_with_delay_is_invisible_until_due(queue: Any) -> None:
    before = time.time()
    await queue.enqueue(KIND, {}, delay=SHORT)
    assert await queue.lease([KIND], 10, LONG) == []
    assert (await queue.stats()).delayed == 1
    await lease_when_due(queue, before + SHORT)


async def test_leased_item_is_invisible_until_lease_expires(queue: Any) -> None:
    item_id = await queue.enqueue(KIND, {"x": 1})
    before = time.time()
    first = await lease_one(queue, SHORT)
    assert await queue.lease([KIND], 10, SHORT) == []
    second = await lease_when_due(queue, before + SHORT)
    assert second.id == item_id
    assert second.attempts == first.attempts + 1 == 2
    assert second.lease_token and second.lease_token != first.lease_token
    assert second.payload == {"x": 1}


async def test_stale_token_cannot_disturb_new_holder(queue: Any) -> None:
    await queue.enqueue(KIND, {})
    before = time.time()
    stale = await lease_one(queue, SHORT)
    holder = await lease_when_due(queue, before + SHORT)

    assert await queue.ack(stale) is False
    assert await queue.retry(stale, "lost my lease", 0) is False
    assert await queue.bury(stale, "lost my lease") is False

    # The new holder still holds it: nobody else can lease it, nothing went to the DLQ.
    assert await queue.lease([KIND], 10, LONG) == []
    stats = await queue.stats()
    assert (stats.ready, stats.leased, stats.dead) == (0, 1, 0)
    assert await queue.dead_letters() == []
    assert await queue.ack(holder) is True


async def test_retry_without_delay_makes_item_available_again(queue: Any) -> None:
    await queue.enqueue(KIND, {})
    item = await lease_one(queue)
    assert await queue.retry(item, "temporary failure", 0) is True
    again = await lease_one(queue)
    assert again.attempts == 2
    assert again.last_error == "temporary failure"
    assert again.lease_token != item.lease_token
    assert await queue.ack(item) is False  # the retried lease is over


async def test_retry_with_delay_is_invisible_until_delay_passes(queue: Any) -> None:
    await queue.enqueue(KIND, {})
    item = await lease_one(queue)
    before = time.time()
    assert await queue.retry(item, "451 try later", SHORT) is True
    assert await queue.lease([KIND], 10, LONG) == []
    stats = await queue.stats()
    assert (stats.ready, stats.leased, stats.delayed) == (0, 0, 1)
    again = await lease_when_due(queue, before + SHORT)
    assert again.attempts == 2
    assert again.last_error == "451 try later"


async def test_bury_moves_to_dead_letters(queue: Any) -> None:
    item_id = await queue.enqueue(KIND, {"spool": "poison"})
    item = await lease_one(queue)
    before = time.time()
    assert await queue.bury(item, "550 cannot parse") is True
    assert await queue.lease([KIND], 10, LONG) == []

    dead = await queue.dead_letters()
    assert len(dead) == 1
    letter = dead[0]
    assert letter.id == item_id
    assert letter.kind == KIND
    assert letter.payload == {"spool": "poison"}
    assert letter.error == "550 cannot parse"
    assert letter.attempts == 1
    assert letter.died_at >= before - 1
    assert letter.created_at <= letter.died_at

    one = await queue.dead_letter(item_id)
    assert (one.id, one.error, one.payload) == (item_id, "550 cannot parse", {"spool": "poison"})
    stats = await queue.stats()
    assert (stats.ready, stats.leased, stats.delayed, stats.dead) == (0, 0, 0, 1)
    assert await queue.ack(item) is False


async def test_dead_letters_limit(queue: Any) -> None:
    for n in range(3):
        await queue.enqueue(KIND, {"n": n})
    for item in await queue.lease([KIND], 10, LONG):
        await queue.bury(item, "bad")
    assert len(await queue.dead_letters()) == 3
    assert len(await queue.dead_letters(limit=2)) == 2


async def test_revive_one_resets_attempts(queue: Any) -> None:
    item_id = await queue.enqueue(KIND, {"p": 1})
    other_id = await queue.enqueue(KIND, {"p": 2})
    for _ in range(3):  # three failed attempts, then the DLQ
        item = await lease_one_of(queue, item_id, other_id)
        await queue.retry(item, "fail", 0)
    item = await lease_one_of(queue, item_id, other_id)
    assert item.attempts == 4
    await queue.bury(item, "gave up")
    other = await lease_one(queue)
    assert other.id == other_id
    await queue.bury(other, "gave up too")

    assert await queue.revive(item_id) == 1
    with pytest.raises(NotFound):
        await queue.dead_letter(item_id)
    assert [d.id for d in await queue.dead_letters()] == [other_id]
    revived = await lease_one(queue)
    assert revived.id == item_id
    assert revived.attempts == 1  # a fresh retry budget
    assert revived.payload == {"p": 1}


async def lease_one_of(queue: Any, wanted: str, other: str) -> Any:
    """Lease `wanted` while leaving `other` alone (retry it straight back)."""
    found = None
    for item in await queue.lease([KIND], 10, LONG):
        if item.id == wanted:
            found = item
        else:
            assert item.id == other
            await queue.retry(item, "not now", 0)
    assert found is not None
    return found


async def test_revive_all(queue: Any) -> None:
    ids = {await queue.enqueue(KIND, {"n": n}) for n in range(3)}
    for item in await queue.lease([KIND], 10, LONG):
        await queue.bury(item, "bad")
    assert (await queue.stats()).dead == 3
    assert await queue.revive(None) == 3
    assert await queue.dead_letters() == []
    items = await queue.lease([KIND], 10, LONG)
    assert {i.id for i in items} == ids
    assert all(i.attempts == 1 for i in items)
    assert await queue.revive(None) == 0  # nothing dead any more
    assert await queue.revive() == 0


async def test_drop_dead_letter(queue: Any) -> None:
    item_id = await queue.enqueue(KIND, {})
    await queue.bury(await lease_one(queue), "bad")
    await queue.drop(item_id)
    assert await queue.dead_letters() == []
    with pytest.raises(NotFound):
        await queue.dead_letter(item_id)
    assert await queue.lease([KIND], 10, LONG) == []
    assert (await queue.stats()).dead == 0
    with pytest.raises(NotFound):
        await queue.drop(item_id)


async def test_unknown_ids_raise_not_found(queue: Any) -> None:
    with pytest.raises(NotFound):
        await queue.dead_letter("no-such-item")
    with pytest.raises(NotFound):
        await queue.revive("no-such-item")
    with pytest.raises(NotFound):
        await queue.drop("no-such-item")


async def test_stats_counts_each_state(queue: Any) -> None:
    await queue.enqueue(KIND, {"state": "ready"})
    await queue.enqueue(KIND, {"state": "delayed"}, delay=60)
    await queue.enqueue("to-lease", {"state": "leased"})
    await queue.enqueue("to-bury", {"state": "dead"})
    await lease_one(queue, LONG, kinds=("to-lease",))
    assert await queue.bury(await lease_one(queue, LONG, kinds=("to-bury",)), "on purpose")

    stats = await queue.stats()
    assert (stats.ready, stats.leased, stats.delayed, stats.dead) == (1, 1, 1, 1)


async def test_wait_returns_within_timeout(queue: Any) -> None:
    # Nothing is enqueued: a wait that ignored its timeout would never end.
    await asyncio.wait_for(queue.wait(0.1), 60)


async def test_wait_wakes_up_for_new_work(queue: Any) -> None:
    waiter = asyncio.create_task(queue.wait(120))
    await asyncio.sleep(0.01)  # the waiter starts waiting (or it finds the item at once)
    await queue.enqueue(KIND, {})
    await asyncio.wait_for(waiter, 60)  # well before its own timeout
    await lease_one(queue)


# --------------------------------------------------------------------------- durability


async def test_enqueued_item_survives_reopen(queue_engine: Engine) -> None:
    first = await queue_engine.open()
    item_id = await first.enqueue(KIND, {"durable": True})
    await queue_engine.close(first)

    second = await queue_engine.open()
    item = await lease_one(second)
    assert (item.id, item.payload) == (item_id, {"durable": True})


async def test_lease_of_dead_worker_runs_out_after_reopen(queue_engine: Engine) -> None:
    first = await queue_engine.open()
    item_id = await first.enqueue(KIND, {})
    before = time.time()
    await lease_one(first, SHORT)
    await queue_engine.close(first)  # the worker dies holding the lease

    second = await queue_engine.open()
    item = await lease_when_due(second, before + SHORT)
    assert (item.id, item.attempts) == (item_id, 2)


async def test_dead_letters_survive_reopen(queue_engine: Engine) -> None:
    first = await queue_engine.open()
    item_id = await first.enqueue(KIND, {})
    await first.bury(await lease_one(first), "kept")
    await queue_engine.close(first)

    second = await queue_engine.open()
    assert (await second.dead_letter(item_id)).error == "kept"


async def test_two_processes_never_lease_the_same_item(queue_engine: Engine) -> None:
    one = await queue_engine.open()
    two = await queue_engine.open()
    ids = {await one.enqueue(KIND, {"n": n}) for n in range(200)}
    assert len(ids) == 200

    calls = [q.lease([KIND], 5, LONG) for _ in range(40) for q in (one, two)]
    batches = await asyncio.gather(*calls)
    leased = [item.id for batch in batches for item in batch]
    assert len(leased) == len(set(leased)), "an item was handed to two workers"
    assert set(leased) == ids
    # Both "processes" can ack what they got, and nothing is left.
    by_id = {item.id: (q, item) for q, batch in zip(
        [q for _ in range(40) for q in (one, two)], batches, strict=True) for item in batch}
    acks = await asyncio.gather(*(q.ack(item) for q, item in by_id.values()))
    assert all(acks)
    assert await one.lease([KIND], 10, LONG) == []
    stats = await two.stats()
    assert (stats.ready, stats.leased) == (0, 0)


async def test_release_leases_at_startup_hands_items_back_at_once(queue: Any) -> None:
    first = await queue.enqueue(KIND, {"n": 1})
    await queue.enqueue(KIND, {"n": 2})
    held = await queue.lease([KIND], 1, LONG)
    assert [i.id for i in held] == [first]
    assert await queue.release_leases() == 1
    items = await queue.lease([KIND], 10, LONG)
    assert sorted(i.id for i in items) == sorted([first, items[0].id if items[0].id != first
                                                  else items[1].id])
    assert len(items) == 2
    again = next(i for i in items if i.id == first)
    assert again.attempts == 2 and again.lease_token != held[0].lease_token
    assert await queue.ack(held[0]) is False  # the old holder's token is dead


async def test_enqueue_many_is_all_or_nothing_and_idempotent(queue: Any) -> None:
    from mailyard.store.ports import NewItem

    ids = await queue.enqueue_many([
        NewItem(KIND, {"n": 1}, item_id="q-sub.1"),
        NewItem("outbound", {"n": 2}, item_id="q-sub.2"),
        NewItem("outbound", {"n": 3}, item_id="q-sub.3", delay=30.0),
    ])
    assert ids == ["q-sub.1", "q-sub.2", "q-sub.3"]
    await queue.enqueue_many([NewItem(KIND, {"n": 9}, item_id="q-sub.1")])  # a repeat: no-op
    item = await lease_one(queue)
    assert item.payload == {"n": 1}
    assert [i.payload for i in await queue.lease(["outbound"], 10, LONG)] == [{"n": 2}]
    pending = await queue.pending(prefix="q-sub.")
    assert [p.id for p in pending] == ["q-sub.1", "q-sub.2", "q-sub.3"]
    assert [p.leased for p in pending] == [True, True, False]
    assert pending[2].available_at > time.time() + 20
    assert [p.id for p in await queue.pending(["outbound"])] == ["q-sub.2", "q-sub.3"]
    assert await queue.pending(prefix="q-other") == []


async def test_retry_and_bury_can_replace_the_payload(queue: Any) -> None:
    await queue.enqueue(KIND, {"rcpts": ["a", "b", "c"]})
    item = await lease_one(queue)
    assert await queue.retry(item, "4xx for c", 0.0, payload={"rcpts": ["c"]})
    item = await lease_one(queue)
    assert item.payload == {"rcpts": ["c"]} and item.last_error == "4xx for c"
    assert await queue.bury(item, "550 for c", payload={"rcpts": ["c"], "why": "550"})
    [dead] = await queue.dead_letters()
    assert dead.payload == {"rcpts": ["c"], "why": "550"} and dead.error == "550 for c"


async def test_cancel_a_waiting_item_but_not_one_being_worked_on(queue: Any) -> None:
    held = await queue.enqueue(KIND, {"held": True}, delay=60.0)
    busy = await queue.enqueue(KIND, {"held": False})
    item = await lease_one(queue)
    assert item.id == busy
    assert await queue.cancel(busy) is False
    assert await queue.cancel(held) is True
    assert [p.id for p in await queue.pending()] == [busy]
    with pytest.raises(NotFound):
        await queue.cancel(held)


# --------------------------------------------------------------------------- NATS JetStream

_KILLED_WORKER = """
import asyncio, os, signal, sys
from mailyard.store.nats.connection import NatsConnection
from mailyard.store.nats.queue import NatsQueue

async def main(url, prefix, how):
    queue = NatsQueue(NatsConnection([url]), prefix=prefix, holder="doomed",
                      delivery_ack_wait=2.0)
    if how == "holding":   # leased the item, then dies before ack
        items = await queue.lease(["inbound"], 10, 2.0)
    else:                  # JetStream delivered the item's state; dies before leasing it
        items = await queue._pull(queue.items_stream, await queue._consumer("inbound"), 10)
    print(len(items), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.parametrize("how", ["holding", "mid-lease"])
async def test_nats_item_of_a_sigkilled_worker_is_delivered_again(how: str) -> None:
    """A worker process SIGKILLed with an item (leased, or delivered by JetStream and not yet
    answered) loses nothing: another worker gets it once the lease, or JetStream's ack wait,
    runs out, exactly once."""
    import sys

    from mailyard.store.nats.connection import NatsConnection
    from mailyard.store.nats.queue import NatsQueue
    from tests.contract.conftest import drop_nats_streams, nats_prefix, nats_url

    prefix = nats_prefix()
    queue = NatsQueue(NatsConnection([nats_url()]), prefix=prefix, holder="survivor",
                      delivery_ack_wait=2.0, poll_interval=0.05)
    try:
        item_id = await queue.enqueue(KIND, {"precious": True})
        before = time.time()
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _KILLED_WORKER, nats_url(), prefix, how,
            stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(worker.communicate(), 60)
        assert worker.returncode == -9 and out.strip() == b"1", (worker.returncode, out)
        assert await queue.lease([KIND], 10, LONG) == []  # not before the lease runs out
        item = await lease_when_due(queue, before + SHORT)
        assert (item.id, item.payload) == (item_id, {"precious": True})
        assert item.attempts == (2 if how == "holding" else 1)
        assert await queue.ack(item) is True
        await asyncio.sleep(2.5)  # past another ack wait: nothing comes back
        assert await queue.lease([KIND], 10, LONG) == []
        assert (await queue.stats()).ready == 0
    finally:
        await queue.aclose()
        await drop_nats_streams(prefix)


@pytest.mark.parametrize("committed", [False, True])
async def test_nats_enqueue_many_cut_short_is_all_or_nothing(committed: bool) -> None:
    """An enqueuer that dies inside `enqueue_many`: its items were published held; without
    the commit marker (the client got no 250) a worker deletes them, with it (the 250 may
    have gone out) a worker releases every one of them. Nothing in between."""
    from mailyard.store.nats.connection import NatsConnection
    from mailyard.store.nats.queue import ItemState, NatsQueue
    from tests.contract.conftest import drop_nats_streams, nats_prefix, nats_url

    prefix = nats_prefix()
    queue = NatsQueue(NatsConnection([nats_url()]), prefix=prefix, poll_interval=0.05,
                      batch_grace=1.0)
    try:
        now = time.time()
        for n in range(3):  # what the dead enqueuer got as far as
            state = ItemState(id=f"cut.{n}", kind=KIND, payload={"n": n}, attempts=0,
                              available_at=now, created_at=now, batch="b-dead")
            assert await queue._put(queue._subject(KIND, state.id), state, expected=0)
        if committed:
            js, _ = await queue._js()
            await js.publish(queue._commit_subject("b-dead"), b"")
        assert await queue.lease([KIND], 10, LONG) == []  # held: not before the grace
        deadline = time.monotonic() + 60
        got: list[Any] = []
        while time.monotonic() < deadline:
            got += await queue.lease([KIND], 10, LONG)
            if len(got) == 3 or (not committed and not await queue.pending()):
                break
            await asyncio.sleep(0.05)
        if committed:
            assert sorted(i.payload["n"] for i in got) == [0, 1, 2]
            assert all(i.attempts == 1 for i in got)
        else:
            assert got == [] and await queue.pending() == []
            await asyncio.sleep(0.3)
            assert await queue.lease([KIND], 10, LONG) == []
    finally:
        await queue.aclose()
        await drop_nats_streams(prefix)


async def test_release_replaces_a_dead_letter_by_new_items_once(queue: Any) -> None:
    """Held spam released by an admin (services/routing_delivery.py release_held): the dead
    letter goes, the sends it stood for come; a second release finds nothing."""
    item_id = await queue.enqueue(KIND, {"spool": "held"})
    await queue.bury(await lease_one(queue), "spam: not forwarded")
    sends = [NewItem("outbound", {"n": n}, item_id=f"{item_id}.r{n}") for n in (1, 2)]
    await queue.release(item_id, sends)
    with pytest.raises(NotFound):
        await queue.dead_letter(item_id)
    assert (await queue.stats()).dead == 0
    items = await queue.lease(["outbound"], 10, LONG)
    assert sorted((i.id, i.payload["n"]) for i in items) == [
        (f"{item_id}.r1", 1), (f"{item_id}.r2", 2)]
    assert all(i.attempts == 1 for i in items)
    with pytest.raises(NotFound):
        await queue.release(item_id, sends)
    for item in items:
        assert await queue.ack(item) is True
    assert await queue.lease(["outbound"], 10, LONG) == []  # the second release queued none


async def test_release_of_an_unknown_letter_queues_nothing(queue: Any) -> None:
    with pytest.raises(NotFound):
        await queue.release("no-such-letter", [NewItem("outbound", {}, item_id="x.r1")])
    assert await queue.pending() == []


async def test_expire_dead_deletes_only_letters_that_died_before(queue: Any) -> None:
    """The retention `mailyard gc` applies: the cutoff is an argument, so the test names a
    time on either side of the letters' death instead of waiting for one."""
    ids = [await queue.enqueue(KIND, {"n": n}) for n in range(2)]
    before = time.time() - 1
    for item in await queue.lease([KIND], 10, LONG):
        await queue.bury(item, "bad")
    died = max(d.died_at for d in await queue.dead_letters())
    assert await queue.expire_dead(before) == 0
    assert sorted(d.id for d in await queue.dead_letters()) == sorted(ids)
    assert await queue.expire_dead(died + 1) == 2
    assert await queue.dead_letters() == []
    assert (await queue.stats()).dead == 0
    assert await queue.expire_dead(died + 1) == 0
