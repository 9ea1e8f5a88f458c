"""A clamd client: the INSTREAM command over TCP or a Unix socket (clamd(8), "zINSTREAM").

The protocol is three lines of code's worth (a null-terminated command, length-prefixed chunks,
a zero-length chunk, one reply line), so it is spoken here on asyncio streams rather than
through a blocking client library that would stall the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass

CHUNK = 64 * 1024


class ClamdError(Exception):
    """clamd could not be asked or did not answer sensibly; the caller must not treat the
    message as clean."""


@dataclass(frozen=True, slots=True)
class ScanResult:
    infected: bool
    name: str = ""  # the signature that matched


async def _open(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """`host:port`, `[v6]:port` or a path to a Unix socket."""
    if address.startswith("/") or address.startswith("unix:"):
        return await asyncio.open_unix_connection(address.removeprefix("unix:"))
    host, _, port = address.rpartition(":")
    return await asyncio.open_connection(host.strip("[]"), int(port))


def parse_reply(line: bytes) -> ScanResult:
    """`stream: OK`, `stream: Name FOUND`, or an error (`... ERROR`, size limit exceeded)."""
    text = line.rstrip(b"\0\r\n").decode("utf-8", "replace")
    _, _, verdict = text.partition(": ")
    if verdict == "OK":
        return ScanResult(False)
    if verdict.endswith(" FOUND"):
        return ScanResult(True, verdict.removesuffix(" FOUND").strip())
    raise ClamdError(f"clamd answered {text!r}")


async def scan(address: str, data: bytes, *, timeout: float = 30.0) -> ScanResult:
    """Stream `data` to clamd and return its verdict."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await _open(address)
            try:
                writer.write(b"zINSTREAM\0")
                for start in range(0, len(data), CHUNK):
                    chunk = data[start : start + CHUNK]
                    writer.write(struct.pack("!I", len(chunk)) + chunk)
                    await writer.drain()
                writer.write(struct.pack("!I", 0))
                await writer.drain()
                reply = await reader.readuntil(b"\0")
            finally:
                writer.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.wait_closed()
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
            TimeoutError, ValueError) as e:
        raise ClamdError(f"clamd at {address}: {e or type(e).__name__}") from e
    return parse_reply(reply)
