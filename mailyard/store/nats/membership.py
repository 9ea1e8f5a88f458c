"""Who is alive: each node's heartbeat in a NATS key-value bucket (issue 21).

A serving node puts its card (name, pid, listeners, start time) under its name every
`every` seconds; the bucket forgets a key `ttl` seconds after its last put, so a node that
died (SIGKILL, power cut, partition) drops out of `mailyard cluster status` by itself. Reads
only: nothing in the mail path depends on this list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field

import orjson
from nats.js import api
from nats.js.errors import BucketNotFoundError, NoKeysError, NotFoundError
from nats.js.kv import KeyValue

from mailyard.store.nats.connection import NatsConnection, stream_name, subject_token

log = logging.getLogger("mailyard.nats")


@dataclass(slots=True)
class NodeCard:
    node: str
    pid: int
    host: str
    started_at: float
    seen_at: float = 0.0
    listeners: dict[str, str] = field(default_factory=dict)
    """Listener name -> "host:port", as configured in [listen] (the roles this node runs)."""


class NatsMembership:
    def __init__(self, connection: NatsConnection, *, prefix: str = "mailyard",
                 replicas: int = 1, ttl: float = 30.0) -> None:
        self.connection = connection
        self.bucket = stream_name(prefix, "nodes")
        self.replicas = replicas
        self.ttl = ttl
        self._kv: KeyValue | None = None

    async def _store(self) -> KeyValue:
        if self._kv is None:
            nc = await self.connection.client()
            js = nc.jetstream(timeout=5)
            try:
                self._kv = await js.key_value(self.bucket)
            except (BucketNotFoundError, NotFoundError):
                self._kv = await js.create_key_value(api.KeyValueConfig(
                    bucket=self.bucket, ttl=self.ttl, history=1, replicas=self.replicas))
        return self._kv

    async def announce(self, card: NodeCard) -> None:
        card.seen_at = time.time()
        kv = await self._store()
        await kv.put(subject_token(card.node), orjson.dumps(asdict(card)))

    async def run(self, card: NodeCard, every: float = 10.0) -> None:
        """Announce `card` every `every` seconds until cancelled; a NATS outage is logged
        once and waited out."""
        failing = False
        while True:
            try:
                await self.announce(card)
                failing = False
            except Exception as e:
                if not failing:
                    log.warning("NATS: cannot announce this node (%s); retrying", e)
                    failing = True
            await asyncio.sleep(every)

    async def leave(self, node: str) -> None:
        with contextlib.suppress(Exception):
            kv = await self._store()
            await kv.delete(subject_token(node))

    async def nodes(self) -> list[NodeCard]:
        kv = await self._store()
        try:
            keys = await kv.keys()
        except NoKeysError:
            return []
        cards = []
        for key in keys:
            with contextlib.suppress(Exception):
                entry = await kv.get(key)
                if entry.value:
                    cards.append(NodeCard(**orjson.loads(entry.value)))
        return sorted(cards, key=lambda c: c.node)
