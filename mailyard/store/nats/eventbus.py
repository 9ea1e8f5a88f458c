"""EventBus over NATS core subjects: "account X is at state S" reaches every node.

One subject per account (`<prefix>.events.<account id>`), so the server sends a node only the
accounts its IDLE, push and web clients watch; a node subscribes to an account's subject
once, however many local subscribers it has, and fans each message out to them. Events are
at-most-once like the local bus's datagrams: a lost one only delays a client until its next
poll, and the change log stays the truth.

`subscribe` must be in place when it returns (IDLE subscribes, reads the state, then waits).
Events published by this process reach its own subscribers at once; the server-side
subscription follows a round trip later (the connection is `no_echo`, so nothing arrives
twice). A change published by another node inside that round trip is seen at the reader's
next check of the change log, as with the local bus's lost datagrams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from mailyard.store.nats.connection import NatsConnection, subject_token, token_value
from mailyard.store.subscription import BACKLOG, AccountChanges, Subscription, offer

log = logging.getLogger("mailyard.nats")

_background: set[asyncio.Future[None]] = set()
"""Fire-and-forget unsubscribes and closes, held until done (asyncio keeps weak references)."""

class NatsEventBus:
    def __init__(self, connection: NatsConnection, *, prefix: str = "mailyard") -> None:
        self.connection = connection
        self.prefix = prefix
        self._subscribers: dict[str, set[asyncio.Queue[int]]] = defaultdict(set)
        self._remote: dict[str, asyncio.Task[NatsSubscription | None]] = {}
        self._warned = False
        self._grouped: NatsConnection | None = None
        self._group_tasks: set[asyncio.Task[None]] = set()

    def subject(self, account_id: str) -> str:
        return f"{self.prefix}.events.{subject_token(account_id)}"

    async def publish(self, account_id: str, state: int) -> None:
        self._deliver(account_id, state)
        try:
            nc = await self.connection.client()
            await nc.publish(self.subject(account_id), str(state).encode())
        except Exception as e:  # the change is committed; readers poll the change log
            if not self._warned:
                log.warning("NATS: cannot publish account events (%s); other nodes' clients"
                            " see changes at their next poll", e)
                self._warned = True
            return
        self._warned = False

    def _deliver(self, account_id: str, state: int) -> None:
        for q in list(self._subscribers.get(account_id, ())):
            offer(q, state)

    def subscribe(self, account_id: str) -> Subscription:
        q: asyncio.Queue[int] = asyncio.Queue(maxsize=BACKLOG)
        self._subscribers[account_id].add(q)
        if account_id not in self._remote:
            self._remote[account_id] = asyncio.ensure_future(self._subscribe_remote(account_id))
        return Subscription(q, lambda: self._unsubscribe(account_id, q))

    async def _subscribe_remote(self, account_id: str) -> NatsSubscription | None:
        async def received(msg: Msg) -> None:
            with contextlib.suppress(ValueError):
                state = int(msg.data)
                if state >= 0:
                    self._deliver(account_id, state)

        try:
            nc = await self.connection.client()
            return await nc.subscribe(self.subject(account_id), cb=received)
        except Exception as e:
            log.warning("NATS: cannot subscribe to account events (%s)", e)
            self._remote.pop(account_id, None)
            return None

    def subscribe_all(self, group: str) -> AccountChanges:
        """A NATS queue group on every account's subject: the server hands each event to one
        member of `group` among all nodes. On a connection of its own that hears its own
        publishes too (the bus's connection is `no_echo`), so an event published here may
        land here or on any other node, once. Kept up through reconnects by the client."""
        prefix = f"{self.prefix}.events."
        joined: list[NatsSubscription] = []

        def leave() -> None:
            task.cancel()
            for sub in joined:
                _later(sub.unsubscribe())

        feed = AccountChanges(leave)

        async def received(msg: Msg) -> None:
            with contextlib.suppress(ValueError):
                state = int(msg.data)
                if state >= 0 and msg.subject.startswith(prefix):
                    feed.offer(token_value(msg.subject[len(prefix):]), state)

        async def join() -> None:
            if self._grouped is None:
                self._grouped = NatsConnection(self.connection.servers,
                                               name=f"{self.connection.name}-{group}",
                                               echo=True)
            while True:
                try:
                    nc = await self._grouped.client()
                    joined.append(await nc.subscribe(f"{prefix}>", queue=group, cb=received))
                    return
                except Exception as e:
                    log.warning("NATS: cannot join the %s group (%s); trying again", group, e)
                    await asyncio.sleep(1.0)

        task = asyncio.ensure_future(join())
        self._group_tasks.add(task)
        task.add_done_callback(self._group_tasks.discard)
        return feed

    def _unsubscribe(self, account_id: str, q: asyncio.Queue[int]) -> None:
        subscribers = self._subscribers.get(account_id)
        if subscribers is None:
            return
        subscribers.discard(q)
        if subscribers:
            return
        del self._subscribers[account_id]
        task = self._remote.pop(account_id, None)
        if task is not None:
            task.add_done_callback(_unsubscribe_when_done)

    # The local bus relays between the processes of one machine; here every process talks to
    # NATS itself, so app.py's relay wiring has nothing to do.
    async def listen(self, address: str) -> None:
        await self.connection.client()  # connect at start-up: a wrong URL stops the server

    def relay_to(self, address: str) -> None:
        pass

    def add_peer(self, address: str) -> None:
        pass

    def _stop(self) -> None:
        for task in self._remote.values():
            task.cancel()
        self._remote.clear()
        self._subscribers.clear()
        for joining in self._group_tasks:
            joining.cancel()
        if self._grouped is not None:
            _later(self._grouped.close())
            self._grouped = None

    def close(self) -> None:
        self._stop()
        with contextlib.suppress(RuntimeError):  # no loop running: the process is ending
            asyncio.get_running_loop()
            _background.add(t := asyncio.ensure_future(_quietly(self.connection.close())))
            t.add_done_callback(_background.discard)

    async def aclose(self) -> None:
        grouped, self._grouped = self._grouped, None
        self._stop()
        if grouped is not None:
            await grouped.close()
        await self.connection.close()


def _later(call: object) -> None:
    """Run an unsubscribe or close in the background (held until done), if a loop runs."""
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop()
        _background.add(t := asyncio.ensure_future(_quietly(call)))
        t.add_done_callback(_background.discard)


def _unsubscribe_when_done(task: asyncio.Task[NatsSubscription | None]) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    sub = task.result()
    if sub is not None:
        _background.add(t := asyncio.ensure_future(_quietly(sub.unsubscribe())))
        t.add_done_callback(_background.discard)


async def _quietly(call: asyncio.Future[None] | object) -> None:
    with contextlib.suppress(Exception):
        await call  # type: ignore[misc]
