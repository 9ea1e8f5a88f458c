"""The IMAP listeners: plain (with STARTTLS) and implicit TLS."""

from __future__ import annotations

import asyncio
import ssl

# The command modules register their handlers on import.
from mailyard.protocols.imap import (  # noqa: F401 (each registers its commands)
    cmd_any,
    cmd_append,
    cmd_mailbox,
    cmd_message,
    cmd_notify,
    cmd_search,
    cmd_select,
    cmd_sort,
)
from mailyard.protocols.imap.session import Connection, IMAPServices


async def start_imap(services: IMAPServices, host: str, port: int, *,
                     implicit_tls: ssl.SSLContext | None = None,
                     reuse_port: bool = False) -> asyncio.Server:
    """Each connection gets a `Connection` (asyncio's stream protocol running the session);
    a session resting in IDLE hands its transport to a `Hibernation` (session.py). LIVE
    tracks the services' session set, so the server's goodbye reaches hibernated ones too.
    `reuse_port`:
    several processes listen on the port (`[imap] processes`)."""
    tls = implicit_tls is not None
    return await asyncio.get_running_loop().create_server(
        lambda: Connection(services, implicit_tls=tls), host, port, ssl=implicit_tls,
        reuse_address=True, reuse_port=reuse_port)
