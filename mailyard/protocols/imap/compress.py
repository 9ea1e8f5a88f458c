"""COMPRESS=DEFLATE (RFC 4978): the rest of the connection as raw deflate, both ways.

After the tagged OK of `COMPRESS DEFLATE`, every octet either side sends is one continuous
raw-deflate stream (RFC 1951, no zlib header: wbits -15). The server flushes its stream with
Z_SYNC_FLUSH after each burst of responses, so the client can inflate all of it at once
instead of waiting for more data (RFC 4978 §4).

The switch happens between two commands. Reading: the session's `CommandReader` keeps no buffer
of its own, so it is pointed at a new StreamReader that a pump task fills with the inflated
octets of the old one. The pump inflates at most one chunk ahead of what the session has read
(the new reader "pauses" it past its limit), so a small compressed input that inflates to
gigabytes (a deflate bomb) never holds more than a chunk and the reader's buffer in memory.
Writing: `DeflateWriter` stands where the StreamWriter stood and compresses each write.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from typing import Any

_CHUNK = 65_536
"""Largest piece of inflated data fed to the reader at once."""


class _Gate(asyncio.ReadTransport):
    """What the new StreamReader believes is its transport: it pauses and resumes the pump,
    which is how StreamReader's own flow control bounds the inflated octets it buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()
        self.open.set()

    def pause_reading(self) -> None:
        self.open.clear()

    def resume_reading(self) -> None:
        self.open.set()

    def is_reading(self) -> bool:
        return self.open.is_set()


class Inflater:
    """Inflates `source` into `reader` until the source ends or the stream is bad."""

    def __init__(self, source: asyncio.StreamReader, limit: int) -> None:
        self.source = source
        self.reader = asyncio.StreamReader(limit=limit)
        self._gate = _Gate()
        self.reader.set_transport(self._gate)
        self._inflate = zlib.decompressobj(-15)
        self.task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        try:
            while data := await self.source.read(_CHUNK):
                while data:
                    out = self._inflate.decompress(data, _CHUNK)
                    data = self._inflate.unconsumed_tail
                    if out:
                        self.reader.feed_data(out)
                        await self._gate.open.wait()
                if self._inflate.eof:
                    break  # the client ended its deflate stream: nothing valid can follow
        except (zlib.error, ConnectionError):
            pass  # a corrupt stream ends the connection like an EOF would
        finally:
            self.reader.feed_eof()

    def close(self) -> None:
        self.task.cancel()


class DeflateWriter:
    """A StreamWriter look-alike that deflates every write and sync-flushes it."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.inner = writer
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)

    @property
    def transport(self) -> asyncio.WriteTransport:
        return self.inner.transport

    def write(self, data: bytes) -> None:
        self.inner.write(self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH))

    async def drain(self) -> None:
        await self.inner.drain()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.inner.get_extra_info(name, default)

    def close(self) -> None:
        with contextlib.suppress(zlib.error):
            self.inner.write(self._deflate.flush(zlib.Z_FINISH))
        self.inner.close()
