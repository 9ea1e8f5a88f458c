"""The IMAP listeners: plain (with STARTTLS) and implicit TLS."""

from __future__ import annotations

import asyncio
import ssl

# The command modules register their handlers on import.
from mailyard.protocols.imap import cmd_any, cmd_mailbox, cmd_message, cmd_sort  # noqa: F401
from mailyard.protocols.imap.session import IMAPServices, Session
from mailyard.protocols.live import LIVE


async def start_imap(services: IMAPServices, host: str, port: int, *,
                     implicit_tls: ssl.SSLContext | None = None) -> asyncio.Server:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(services, reader, writer, implicit_tls=implicit_tls is not None)

        async def goodbye() -> None:
            session.untagged("BYE Server shutting down, reconnect in a moment")
            await session.flush()
            writer.close()

        with LIVE.session("imap", goodbye):
            await session.run()

    return await asyncio.start_server(client, host, port, ssl=implicit_tls,
                                      limit=services.policy.max_line + 1024,
                                      reuse_address=True)
