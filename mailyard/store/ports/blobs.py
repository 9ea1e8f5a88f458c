"""The BlobStore port: immutable byte objects by id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class BlobStore(Protocol):
    """Immutable byte objects by id: raw spooled messages, message bodies (skeletons) as
    ``bodies/YYYY/MM/DD/<sha256>`` by the day received, attachments and uploads by SHA-256; the
    id forms and why are in core/blobkeys.py, and no other form is accepted.

    `put` returns only once the object is durable (fsync'd / acknowledged by the engine); writing
    the same id twice is harmless, which is what makes pipeline steps safe to repeat.
    """

    async def put(self, blob_id: str, data: bytes) -> None: ...

    async def put_many(self, items: dict[str, bytes]) -> None: ...

    async def get(self, blob_id: str) -> bytes: ...

    async def exists(self, blob_id: str) -> bool: ...

    async def delete(self, blob_id: str) -> None: ...

    async def usage(self) -> int:
        """Bytes held by all objects together."""
        ...

    async def inventory(self) -> list[BlobInfo]:
        """Every object held, with its size and when it was written (for `mailyard gc`,
        which must leave alone what an in-flight delivery wrote a moment ago)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BlobInfo:
    blob_id: str
    size: int
    written_at: float
    """Seconds since the epoch."""
