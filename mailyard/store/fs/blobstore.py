"""BlobStore on a local file system: one file per blob, durable before `put` returns.

A blob is written to a temporary name, fsync'd, renamed into place and its directory fsync'd:
after `put` returns, a power cut leaves either the whole blob or nothing (never a torn file), and
a SIGKILL in the middle leaves only a temporary file that start-up sweeps away.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from mailyard.store.ports import BlobInfo, NotFound

T = TypeVar("T")

_VALID = re.compile(r"^[A-Za-z0-9_-]{8,128}$")


class FsBlobStore:
    def __init__(self, root: Path, *, threads: int = 8) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="blob-io")
        self._sweep_temporaries()

    def path(self, blob_id: str) -> Path:
        if not _VALID.fullmatch(blob_id):
            raise ValueError(f"invalid blob id {blob_id!r}")
        return self.root / blob_id[-2:] / blob_id[-4:-2] / blob_id

    def _sweep_temporaries(self) -> None:
        """Remove what a killed writer left. Only old files: another process (the server, while
        an admin command opens the store) may be writing a fresh one right now."""
        cutoff = time.time() - 3600
        for tmp in self.root.glob("*/*/.tmp-*"):
            with contextlib.suppress(FileNotFoundError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()

    # The synchronous halves run on the I/O pool; the event loop never waits on a disk.

    def _put(self, blob_id: str, data: bytes) -> None:
        final = self.path(blob_id)
        if final.exists():
            # Written again (a deduplicated attachment): young again for `mailyard gc`.
            with contextlib.suppress(FileNotFoundError):
                os.utime(final)
            if final.exists():
                return
        directory = final.parent
        if not directory.exists():
            directory.mkdir(parents=True, exist_ok=True)
            _fsync_dir(directory.parent)
            _fsync_dir(directory.parent.parent)
        tmp = directory / f".tmp-{blob_id}-{os.urandom(8).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(directory)

    def _get(self, blob_id: str) -> bytes:
        try:
            return self.path(blob_id).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {blob_id}") from None

    def _usage(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("*/*/*")
                   if p.is_file() and not p.name.startswith(".tmp-"))

    def _inventory(self) -> list[BlobInfo]:
        out = []
        for p in self.root.glob("*/*/*"):
            if p.name.startswith(".tmp-") or not _VALID.fullmatch(p.name):
                continue
            with contextlib.suppress(FileNotFoundError):
                st = p.stat()
                out.append(BlobInfo(p.name, st.st_size, st.st_mtime))
        return out

    async def inventory(self) -> list[BlobInfo]:
        found: list[BlobInfo] = await self._run(self._inventory)
        return found

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def put(self, blob_id: str, data: bytes) -> None:
        await self._run(self._put, blob_id, data)

    async def put_many(self, items: dict[str, bytes]) -> None:
        await asyncio.gather(*(self.put(k, v) for k, v in items.items()))

    async def get(self, blob_id: str) -> bytes:
        data: bytes = await self._run(self._get, blob_id)
        return data

    async def exists(self, blob_id: str) -> bool:
        return bool(await self._run(self.path(blob_id).exists))

    async def delete(self, blob_id: str) -> None:
        await self._run(self.path(blob_id).unlink, True)

    async def usage(self) -> int:
        total: int = await self._run(self._usage)
        return total

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
