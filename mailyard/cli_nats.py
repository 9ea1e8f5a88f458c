"""An admin command that waits for NATS says so. The NATS connection retries for ever (a
serving node must outlast an outage), so `mailyard queue stats` with `[cluster] nats` pointing
at nothing used to sit silent until interrupted; now, while it waits, one line names the
servers and why they cannot be reached, and the command keeps waiting (Ctrl-C ends it)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

NOTICE_AFTER = 5.0
"""Seconds a command may take before its NATS servers are probed (most finish well before)."""


def _address(server: str) -> tuple[str, int]:
    """host and port of "nats://host:port", "tls://host", "host:port" (4222 by default)."""
    parts = urlsplit(server if "://" in server else "nats://" + server)
    return parts.hostname or "127.0.0.1", parts.port or 4222


async def unreachable(servers: Sequence[str], timeout: float = 3.0) -> str | None:
    """Why none of `servers` takes a TCP connection, or None when one does."""
    reasons = []
    for server in servers:
        host, port = _address(server)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as e:
            errno = getattr(e, "errno", None)
            reasons.append(f"{server}: {os.strerror(errno) if errno else 'no answer'}")
            continue
        writer.close()
        return None
    return "; ".join(reasons)


async def noticed(work: Awaitable[T], servers: Sequence[str]) -> T:
    """`work`'s result; if it is still running after NOTICE_AFTER seconds and no NATS server
    answers, one line on stderr says what it is waiting for."""
    task = asyncio.ensure_future(work)
    if not servers:
        return await task
    done, _ = await asyncio.wait({task}, timeout=NOTICE_AFTER)
    if not done and (why := await unreachable(servers)) is not None:
        print(f"mailyard: waiting for NATS ([cluster] nats), which does not answer: {why}"
              " (Ctrl-C to stop)", file=sys.stderr, flush=True)
    return await task
