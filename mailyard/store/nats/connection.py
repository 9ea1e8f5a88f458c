"""One NATS connection per process, opened on first use, shared by the bus and the queue.

`Runtime` builds its parts synchronously (admin commands build only what they run), so the
adapters cannot connect in their constructors; they ask `NatsConnection.client()` when they
first talk to NATS, and every caller of one process waits on the same connect.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence

import nats
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.manager import JetStreamManager

log = logging.getLogger("mailyard.nats")

_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def subject_token(value: str) -> str:
    """`value` as one subject token: kept when it is only letters, digits, `-` and `_`, else
    `~` and its UTF-8 in hex, so a `.` in an id never makes two tokens and two values never
    share a token (`~` is never kept)."""
    if _SAFE_TOKEN.fullmatch(value):
        return value
    return "~" + value.encode().hex()


def token_value(token: str) -> str:
    """The value `subject_token` made `token` from."""
    if token.startswith("~"):
        return bytes.fromhex(token[1:]).decode()
    return token


def stream_name(prefix: str, role: str) -> str:
    """A JetStream stream name (no `.`, `*`, `>` or space) for `prefix` and `role`."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{prefix}_{role}").upper()


class NatsConnection:
    def __init__(self, servers: Sequence[str], *, name: str = "mailyard",
                 connect_timeout: float = 5.0, request_timeout: float = 10.0,
                 echo: bool = False) -> None:
        """`request_timeout`: seconds a JetStream request (a publish, an API call) waits for
        its answer before the caller may try again. `echo`: also receive what this
        connection publishes (the event bus's own connection does not: it hands its events
        to its subscribers itself)."""
        self.servers = list(servers)
        self.name = name
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.echo = echo
        self._client: Client | None = None
        self._connecting: asyncio.Task[Client] | None = None

    async def client(self) -> Client:
        if self._client is not None and not self._client.is_closed:
            return self._client
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect())
        self._client = await asyncio.shield(self._connecting)
        return self._client

    async def _connect(self) -> Client:
        async def disconnected() -> None:
            if self._client is None or self._client.is_closed or self._client.is_draining:
                return  # our own close
            log.warning("NATS: disconnected from %s; reconnecting", self.servers)

        async def reconnected() -> None:
            log.warning("NATS: reconnected")

        async def error(e: Exception) -> None:
            log.debug("NATS: %s", e)

        # Reconnects never stop: a node whose NATS is away answers 4xx to SMTP (the publish
        # fails) and resumes when NATS comes back. The first connection is tried here, one
        # pass over the servers at a time, and not by nats-py's own endless loop: Python
        # 3.11's wait_for can swallow a cancellation that arrives as a refused connect
        # completes, and that loop then never ends (asyncio.run waited on it for ever when
        # Ctrl-C stopped an admin command waiting for NATS). Between passes a cancellation
        # asked for is honoured even when it was swallowed.
        while True:
            try:
                client = await nats.connect(
                    servers=self.servers, name=self.name, no_echo=not self.echo,
                    connect_timeout=self.connect_timeout, max_reconnect_attempts=1,
                    reconnect_time_wait=0.5, disconnected_cb=disconnected,
                    reconnected_cb=reconnected, error_cb=error)
            except (nats.errors.Error, OSError, TimeoutError) as e:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from e
                await asyncio.sleep(0.5)
                continue
            client.options["max_reconnect_attempts"] = -1  # connected: reconnect for ever
            return client

    async def jetstream(self, timeout: float | None = None
                        ) -> tuple[JetStreamContext, JetStreamManager]:
        nc = await self.client()
        wait = self.request_timeout if timeout is None else timeout
        return nc.jetstream(timeout=wait), nc.jsm(timeout=wait)

    async def close(self) -> None:
        if self._client is not None and not self._client.is_closed:
            await self._client.drain()
        self._client = None
