"""EventBus contract: "account X changed to state S" reaches every subscriber of X, only X's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.contract.conftest import Engine, local_relay_address

TIMEOUT = 30.0  # generous: an event is delivered in milliseconds; only a lost one waits this long


async def next_event(sub: AsyncIterator[int]) -> int:
    return await asyncio.wait_for(anext(sub), TIMEOUT)


async def listening(sub: AsyncIterator[int]) -> asyncio.Task[int]:
    """Start waiting for the next event and give the subscription time to be in place."""
    task = asyncio.ensure_future(anext(sub))
    await asyncio.sleep(0.05)
    return task


async def test_subscribe_then_publish_delivers(bus: Any) -> None:
    """The subscription starts when subscribe() returns, as for an IDLE that subscribes, then
    reads the current state, then waits: a change in between must not be lost."""
    sub = bus.subscribe("acct-1")
    try:
        await bus.publish("acct-1", 7)
        assert await asyncio.wait_for(anext(sub), 1.0) == 7
    finally:
        await sub.aclose()


async def test_publish_reaches_listening_subscriber(bus: Any) -> None:
    sub = bus.subscribe("acct-1")
    try:
        waiting = await listening(sub)
        await bus.publish("acct-1", 11)
        assert await asyncio.wait_for(waiting, TIMEOUT) == 11
    finally:
        await sub.aclose()


async def test_events_arrive_in_order(bus: Any) -> None:
    sub = bus.subscribe("acct-1")
    try:
        waiting = await listening(sub)
        for state in (1, 2, 3, 4):
            await bus.publish("acct-1", state)
        got = [await asyncio.wait_for(waiting, TIMEOUT)]
        got += [await next_event(sub) for _ in range(3)]
        assert got == [1, 2, 3, 4]
    finally:
        await sub.aclose()


async def test_two_subscribers_both_receive(bus: Any) -> None:
    one, two = bus.subscribe("acct-1"), bus.subscribe("acct-1")
    try:
        w1, w2 = await listening(one), await listening(two)
        await bus.publish("acct-1", 42)
        assert await asyncio.wait_for(w1, TIMEOUT) == 42
        assert await asyncio.wait_for(w2, TIMEOUT) == 42
    finally:
        await one.aclose()
        await two.aclose()


async def test_other_accounts_events_are_not_received(bus: Any) -> None:
    mine = bus.subscribe("acct-mine")
    try:
        waiting = await listening(mine)
        await bus.publish("acct-other", 1)
        await bus.publish("acct-other", 2)
        await bus.publish("acct-mine-not", 3)  # a prefix of another id is another account
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await bus.publish("acct-mine", 9)
        assert await asyncio.wait_for(waiting, TIMEOUT) == 9  # the first thing it ever saw
    finally:
        await mine.aclose()


async def test_publish_without_subscribers_is_harmless(bus: Any) -> None:
    await bus.publish("acct-nobody", 1)


async def test_closed_subscription_does_not_break_publish(bus: Any) -> None:
    gone, stays = bus.subscribe("acct-1"), bus.subscribe("acct-1")
    try:
        w_gone, w_stays = await listening(gone), await listening(stays)
        await bus.publish("acct-1", 1)
        assert await asyncio.wait_for(w_gone, TIMEOUT) == 1
        assert await asyncio.wait_for(w_stays, TIMEOUT) == 1
        await gone.aclose()
        waiting = await listening(stays)
        await bus.publish("acct-1", 2)
        assert await asyncio.wait_for(waiting, TIMEOUT) == 2
    finally:
        await stays.aclose()


async def test_publish_in_another_process_reaches_subscriber(bus_engine: Engine) -> None:
    listener = await bus_engine.open()  # the process with IDLE / push / web clients
    worker = await bus_engine.open()  # a pipeline worker process
    await bus_engine.link(listener, worker)
    sub = listener.subscribe("acct-1")
    try:
        waiting = await listening(sub)
        await worker.publish("acct-1", 5)
        assert await asyncio.wait_for(waiting, TIMEOUT) == 5
        await worker.publish("acct-1", 6)
        assert await next_event(sub) == 6
    finally:
        await sub.aclose()


# --------------------------------------------------------------------------- local-specific


async def test_local_relay_over_unix_socket(sock_dir: Path) -> None:
    from mailyard.store.local.eventbus import LocalEventBus

    address = local_relay_address(sock_dir, "relay")
    a, b = LocalEventBus(), LocalEventBus()
    try:
        await a.listen(address)
        b.relay_to(address)
        sub = a.subscribe("acct-9")
        waiting = await listening(sub)
        await b.publish("acct-9", 123)
        assert await asyncio.wait_for(waiting, TIMEOUT) == 123
        await sub.aclose()
    finally:
        b.close()
        a.close()


async def test_local_relay_without_listener_does_not_raise(sock_dir: Path) -> None:
    from mailyard.store.local.eventbus import LocalEventBus

    worker = LocalEventBus()
    try:
        worker.relay_to(local_relay_address(sock_dir, "nobody-listens"))
        await worker.publish("acct-1", 1)  # fire-and-forget
    finally:
        worker.close()


async def test_local_listener_ignores_garbage_datagrams(sock_dir: Path) -> None:
    import socket

    from mailyard.store.local.eventbus import LocalEventBus

    address = local_relay_address(sock_dir, "garbage")
    bus = LocalEventBus()
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    target = address if isinstance(address, str) else str(address)
    try:
        await bus.listen(address)
        sub = bus.subscribe("acct-1")
        waiting = await listening(sub)
        for junk in (b"", b"acct-1", b"acct-1 notanumber", b"\xff\xfe 12", b"acct-1 -3"):
            sender.sendto(junk, target)
        sender.sendto(b"acct-1 77", target)
        assert await asyncio.wait_for(waiting, TIMEOUT) == 77
        await sub.aclose()
    finally:
        sender.close()
        bus.close()


async def test_a_subscriber_that_never_reads_holds_a_bounded_backlog(bus: Any) -> None:
    sub = bus.subscribe("acct-idle")
    for state in range(10_000):
        await bus.publish("acct-idle", state)
    assert sub.drain() is True
    assert sub.drain() is False
    await bus.publish("acct-idle", 10_001)
    assert await asyncio.wait_for(anext(sub), 1) == 10_001
    await sub.aclose()


async def test_hub_forwards_to_peer_processes_and_a_peer_ignores_its_own(
        sock_dir: Path) -> None:
    """`[imap] processes`: a worker's event reaches an IMAP process through the hub; an IMAP
    process's event reaches the hub and the other IMAP process, and not itself twice."""
    from mailyard.store.local.eventbus import LocalEventBus

    hub_address = local_relay_address(sock_dir, "hub")
    peer_addresses = [local_relay_address(sock_dir, f"peer-{n}") for n in range(2)]
    hub, worker = LocalEventBus(), LocalEventBus()
    peers = [LocalEventBus(), LocalEventBus()]
    try:
        await hub.listen(hub_address)
        worker.relay_to(hub_address)
        for peer, address in zip(peers, peer_addresses, strict=True):
            await peer.listen(address)
            peer.relay_to(hub_address)
            hub.add_peer(address)
        subs = [bus.subscribe("acct-1") for bus in (hub, *peers)]

        await worker.publish("acct-1", 5)
        assert [await next_event(sub) for sub in subs] == [5, 5, 5]

        await peers[0].publish("acct-1", 6)
        assert [await next_event(sub) for sub in subs] == [6, 6, 6]
        await hub.publish("acct-1", 7)
        assert [await next_event(sub) for sub in subs] == [7, 7, 7]
        await asyncio.sleep(0.1)  # an echo of 6 would have come back to peer 0 by now
        assert [sub.drain() for sub in subs] == [False, False, False]
        for sub in subs:
            await sub.aclose()
    finally:
        for bus in (hub, worker, *peers):
            bus.close()


# --------------------------------------------------------------------------- subscribe_all


async def joined(bus: Any, feeds: list[Any]) -> None:
    """Publish warm-up events until every feed has heard one: each has joined its group (a
    NATS queue subscription is in place a round trip after subscribe_all returns)."""
    heard = [False] * len(feeds)
    pending = [asyncio.ensure_future(anext(f)) for f in feeds]
    for n in range(3000):
        await bus.publish(f"warm-{n}", 1)
        await asyncio.sleep(0.01)
        for i, task in enumerate(pending):
            if task.done():
                heard[i] = True
                pending[i] = asyncio.ensure_future(anext(feeds[i]))
        if all(heard):
            break
    for task in pending:
        task.cancel()
    assert all(heard), heard


async def test_feed_hears_every_account_and_its_newest_state(bus: Any) -> None:
    feed = bus.subscribe_all("webpush")
    try:
        await joined(bus, [feed])
        for account, state in (("a1", 1), ("a2", 5), ("a1", 2), ("a1", 3)):
            await bus.publish(account, state)
        seen: dict[str, list[int]] = {}
        while seen.get("a1", [0])[-1] != 3 or seen.get("a2") != [5]:
            account, state = await asyncio.wait_for(anext(feed), TIMEOUT)
            if not account.startswith("warm-"):
                seen.setdefault(account, []).append(state)
        assert seen["a1"] == sorted(seen["a1"]) and set(seen) == {"a1", "a2"}, seen
    finally:
        feed.cancel()


async def test_a_group_hands_each_change_to_one_member(bus_engine: Engine) -> None:
    """Two nodes' deliverers in one group: every change is heard by exactly one of them.
    (NATS: a queue group across connections. Local: one node is the whole cluster, so a
    second member only hears its own process's changes, never the hub's.)"""
    publisher = await bus_engine.open()
    members = [await bus_engine.open(), await bus_engine.open()]
    feeds = [m.subscribe_all("webpush") for m in members]
    try:
        if bus_engine.name == "local":
            await joined(members[0], feeds[:1])
            await joined(members[1], feeds[1:])
            publishers = members
        else:
            await joined(publisher, feeds)
            publishers = [publisher]
        heard: list[set[str]] = [set(), set()]
        sent = {f"acct-{n}" for n in range(40)}
        for n, account in enumerate(sorted(sent)):
            await publishers[n % len(publishers)].publish(account, 7)

        async def read(i: int) -> None:
            while True:
                account, _ = await anext(feeds[i])
                if account in sent:
                    heard[i].add(account)

        readers = [asyncio.ensure_future(read(i)) for i in range(2)]
        try:
            for _ in range(int(TIMEOUT / 0.01)):
                if heard[0] | heard[1] == sent:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)  # a change heard twice would arrive by now
        finally:
            for r in readers:
                r.cancel()
        assert heard[0] | heard[1] == sent
        assert not heard[0] & heard[1], heard[0] & heard[1]
    finally:
        for feed in feeds:
            feed.cancel()
