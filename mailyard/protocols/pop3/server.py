"""The POP3 listeners: plain (with STLS) and implicit TLS (POP3S)."""

from __future__ import annotations

import asyncio
import ssl

from mailyard.protocols.live import LIVE

# The command modules register their handlers on import.
from mailyard.protocols.pop3 import cmd_auth, cmd_maildrop  # noqa: F401
from mailyard.protocols.pop3.session import POP3Services, Session


async def start_pop3(services: POP3Services, host: str, port: int, *,
                     implicit_tls: ssl.SSLContext | None = None) -> asyncio.Server:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(services, reader, writer, implicit_tls=implicit_tls is not None)

        async def goodbye() -> None:
            session.err("Server shutting down, reconnect in a moment", "SYS/TEMP")
            await session.flush()
            writer.close()

        with LIVE.session("pop3", goodbye):
            await session.run()

    return await asyncio.start_server(client, host, port, ssl=implicit_tls,
                                      limit=services.policy.max_line + 1024,
                                      reuse_address=True)
