"""EventBus inside one process, with an optional relay across processes on one machine.

Pipeline workers run as separate processes (`serve --workers N`); they send "account changed"
as a datagram to a Unix socket in data_dir, where the listener process fans it out to its own
subscribers (IDLE, push, web). Datagrams are fire-and-forget: a lost one only delays a client
until its next poll, and the change log is the truth either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

_BACKLOG = 64
"""States kept per subscriber. A subscriber that does not read (an IMAP session sitting
authenticated, ten thousand idle ones) must not grow memory; since every state only says
"look again", dropping the newest when full loses nothing a reader needs."""


def _offer(q: asyncio.Queue[int], state: int) -> None:
    if not q.full():
        q.put_nowait(state)


class Subscription:
    """The states published for one account, in order, until `aclose`."""

    def __init__(self, queue: asyncio.Queue[int], cancel: Callable[[], None]) -> None:
        self._queue = queue
        self._cancel = cancel

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> int:
        return await self._queue.get()

    def drain(self) -> bool:
        """Take every state waiting; say whether there was any (a cheap "anything changed?")."""
        had = False
        while not self._queue.empty():
            self._queue.get_nowait()
            had = True
        return had

    def cancel(self) -> None:
        self._cancel()

    async def aclose(self) -> None:
        self._cancel()


def socket_address(data_dir: Path) -> str:
    """An abstract-namespace Unix socket (Linux) named after the data directory: no file to
    clean up after a SIGKILL, and no 108-byte limit on deep data paths."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:32]
    return f"\0mailyard-events-{digest}"


class LocalEventBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[int]]] = defaultdict(set)
        self._relay_to: str | None = None
        self._relay_socket: socket.socket | None = None
        self._transport: asyncio.DatagramTransport | None = None

    async def publish(self, account_id: str, state: int) -> None:
        for q in list(self._subscribers.get(account_id, ())):
            _offer(q, state)
        if self._relay_to is not None and self._relay_socket is not None:
            with contextlib.suppress(OSError):  # no listener process right now
                self._relay_socket.sendto(f"{account_id} {state}".encode(), self._relay_to)

    def subscribe(self, account_id: str) -> Subscription:
        """Registered when this returns, so nothing published after it is missed (IDLE reads
        the state after subscribing, then waits)."""
        q: asyncio.Queue[int] = asyncio.Queue(maxsize=_BACKLOG)
        self._subscribers[account_id].add(q)
        return Subscription(q, lambda: self._subscribers[account_id].discard(q))

    def relay_to(self, address: str) -> None:
        """In a worker process: also send every event to the listener's socket at `address`."""
        self._relay_to = address
        self._relay_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._relay_socket.setblocking(False)

    async def listen(self, address: str) -> None:
        """In the listener process: receive the workers' events at `address`."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(address)
        sock.setblocking(False)
        bus = self

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                account_id, _, state = data.decode(errors="replace").partition(" ")
                if state.isdigit():
                    for q in list(bus._subscribers.get(account_id, ())):
                        _offer(q, int(state))

        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Receiver, sock=sock)
        self._transport = transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._relay_socket is not None:
            self._relay_socket.close()
