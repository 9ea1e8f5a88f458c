"""EventBus inside one process, with a relay across processes on one machine.

Pipeline workers run as separate processes (`serve --workers N`), and so may IMAP listeners
(`[imap] processes`). Each sends "account changed" as a datagram to a Unix socket of the
listener process (the hub), which fans it out to its own subscribers (push, web, IMAP) and
forwards it to the IMAP processes, its peers; a process ignores its own events coming back.
Datagrams are fire-and-forget: a lost one only delays a client until its next poll, and the
change log is the truth either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections import defaultdict
from pathlib import Path

from mailyard.store.subscription import BACKLOG, AccountChanges, Subscription, offer


def socket_address(data_dir: Path, peer: str = "") -> str:
    """An abstract-namespace Unix socket (Linux) named after the data directory (and the peer
    process's name, for the sockets of the IMAP processes): no file to clean up after a
    SIGKILL, and no 108-byte limit on deep data paths."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:32]
    return f"\0mailyard-events-{digest}" + (f"-{peer}" if peer else "")


class LocalEventBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[int]]] = defaultdict(set)
        self._feeds: set[AccountChanges] = set()
        self._origin = os.urandom(6).hex()
        """Names this bus in the datagrams it sends, so that it can ignore them when the hub
        forwards them back."""
        self._relay_to: str | None = None
        self._relay_socket: socket.socket | None = None
        self._peers: list[str] = []
        self._transport: asyncio.DatagramTransport | None = None

    async def publish(self, account_id: str, state: int) -> None:
        self._deliver(account_id, state)
        data = f"{account_id} {state} {self._origin}".encode()
        if self._relay_to is not None:
            self._send(data, self._relay_to)
        for peer in self._peers:
            self._send(data, peer)

    def _deliver(self, account_id: str, state: int) -> None:
        for q in list(self._subscribers.get(account_id, ())):
            offer(q, state)
        for feed in self._feeds:
            feed.offer(account_id, state)

    def _send(self, data: bytes, address: str) -> None:
        sock = self._relay_socket
        if sock is None:
            sock = self._relay_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
        with contextlib.suppress(OSError):  # nobody listening there right now, or a full queue
            sock.sendto(data, address)

    def subscribe(self, account_id: str) -> Subscription:
        """Registered when this returns, so nothing published after it is missed (IDLE reads
        the state after subscribing, then waits)."""
        q: asyncio.Queue[int] = asyncio.Queue(maxsize=BACKLOG)
        self._subscribers[account_id].add(q)
        return Subscription(q, lambda: self._subscribers[account_id].discard(q))

    def subscribe_all(self, group: str) -> AccountChanges:
        """One node is the whole cluster here: the hub process hears every process's events,
        so its feed is every change once (`group` has no other members)."""
        feed = AccountChanges(lambda: self._feeds.discard(feed))
        self._feeds.add(feed)
        return feed

    def relay_to(self, address: str) -> None:
        """In a worker or IMAP process: also send every event to the hub's socket."""
        self._relay_to = address

    def add_peer(self, address: str) -> None:
        """In the hub: forward every event, its own and those it receives, to `address` (an
        IMAP process's socket, see `listen`)."""
        self._peers.append(address)

    async def listen(self, address: str) -> None:
        """Receive events at `address`: the hub, the workers' and IMAP processes' events; an
        IMAP process, the events the hub forwards."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(address)
        sock.setblocking(False)
        bus = self

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                bus._received(data)

        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Receiver, sock=sock)
        self._transport = transport

    def _received(self, data: bytes) -> None:
        fields = data.decode(errors="replace").split(" ")
        if len(fields) not in (2, 3) or not fields[1].isdigit():
            return
        if len(fields) == 3 and fields[2] == self._origin:
            return  # our own event, forwarded back by the hub
        self._deliver(fields[0], int(fields[1]))
        for peer in self._peers:
            self._send(data, peer)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._relay_socket is not None:
            self._relay_socket.close()
