"""BlobStore contract: immutable bytes by id, durable, idempotent, with a usage figure."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from mailyard.store.ports import NotFound
from tests.contract.conftest import Engine


def blob_id_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


INVALID_IDS = [
    "",
    "short",  # below the minimum length
    "x" * 129,  # above the maximum length
    "../../../../etc/passwd",
    "aaaa/bbbb/cccc",
    "with space in it",
    ".tmp-abcdefgh",
    "abcdefgh\x00ijkl",
    "abcdefgh\n",
]


async def test_put_get_round_trip(blobstore: Any) -> None:
    data = b"From: a@example.test\r\n\r\nhello\r\n"
    blob_id = blob_id_of(data)
    await blobstore.put(blob_id, data)
    assert await blobstore.get(blob_id) == data


async def test_empty_blob_round_trip(blobstore: Any) -> None:
    blob_id = blob_id_of(b"")
    await blobstore.put(blob_id, b"")
    assert await blobstore.exists(blob_id)
    assert await blobstore.get(blob_id) == b""


async def test_ten_megabyte_blob_round_trip(blobstore: Any) -> None:
    data = os.urandom(10 * 1024 * 1024)
    blob_id = blob_id_of(data)
    await blobstore.put(blob_id, data)
    back = await blobstore.get(blob_id)
    assert len(back) == len(data)
    assert back == data


async def test_binary_data_is_byte_exact(blobstore: Any) -> None:
    data = bytes(range(256)) * 17 + b"\r\n.\r\n\x00\r"
    blob_id = blob_id_of(data)
    await blobstore.put(blob_id, data)
    assert await blobstore.get(blob_id) == data


async def test_put_is_idempotent(blobstore: Any) -> None:
    data = b"the same bytes twice"
    blob_id = blob_id_of(data)
    await blobstore.put(blob_id, data)
    await blobstore.put(blob_id, data)
    await blobstore.put(blob_id, bytes(bytearray(data)))  # an equal but distinct object
    assert await blobstore.get(blob_id) == data


async def test_concurrent_puts_of_same_blob_all_succeed(blobstore: Any) -> None:
    """Two pipeline steps storing the same attachment at once: both must succeed."""
    for _ in range(5):
        data = os.urandom(512 * 1024)
        blob_id = blob_id_of(data)
        await asyncio.gather(*(blobstore.put(blob_id, data) for _ in range(8)))
        assert await blobstore.get(blob_id) == data


async def test_concurrent_puts_of_same_blob_distinct_objects(blobstore: Any) -> None:
    data = os.urandom(256 * 1024)
    blob_id = blob_id_of(data)
    copies = [bytes(bytearray(data)) for _ in range(8)]
    await asyncio.gather(*(blobstore.put(blob_id, copy) for copy in copies))
    assert await blobstore.get(blob_id) == data


async def test_get_missing_raises_not_found(blobstore: Any) -> None:
    with pytest.raises(NotFound):
        await blobstore.get(blob_id_of(b"never stored"))


async def test_exists(blobstore: Any) -> None:
    data = b"exists?"
    blob_id = blob_id_of(data)
    assert await blobstore.exists(blob_id) is False
    await blobstore.put(blob_id, data)
    assert await blobstore.exists(blob_id) is True


async def test_delete_is_idempotent(blobstore: Any) -> None:
    data = b"to be deleted"
    blob_id = blob_id_of(data)
    await blobstore.put(blob_id, data)
    await blobstore.delete(blob_id)
    assert await blobstore.exists(blob_id) is False
    with pytest.raises(NotFound):
        await blobstore.get(blob_id)
    await blobstore.delete(blob_id)  # again: no error
    await blobstore.delete(blob_id_of(b"never stored"))  # never there: no error


async def test_put_after_delete_stores_again(blobstore: Any) -> None:
    data = b"back again"
    blob_id = blob_id_of(data)
    await blobstore.put(blob_id, data)
    await blobstore.delete(blob_id)
    await blobstore.put(blob_id, data)
    assert await blobstore.get(blob_id) == data


async def test_usage_counts_stored_bytes_once(blobstore: Any) -> None:
    start = await blobstore.usage()
    first, second = b"a" * 1000, b"b" * 500
    await blobstore.put(blob_id_of(first), first)
    assert await blobstore.usage() == start + 1000
    await blobstore.put(blob_id_of(first), first)  # a repeated put is not counted twice
    assert await blobstore.usage() == start + 1000
    await blobstore.put(blob_id_of(second), second)
    assert await blobstore.usage() == start + 1500
    await blobstore.delete(blob_id_of(first))
    assert await blobstore.usage() == start + 500


@pytest.mark.parametrize("bad", INVALID_IDS)
async def test_invalid_ids_are_rejected(blobstore: Any, bad: str) -> None:
    with pytest.raises(ValueError):
        await blobstore.put(bad, b"data")
    with pytest.raises(ValueError):
        await blobstore.get(bad)
    with pytest.raises(ValueError):
        await blobstore.exists(bad)
    with pytest.raises(ValueError):
        await blobstore.delete(bad)


async def test_put_many(blobstore: Any) -> None:
    items = {blob_id_of(d): d for d in (f"part {i}".encode() * (i + 1) for i in range(20))}
    await blobstore.put_many(items)
    for blob_id, data in items.items():
        assert await blobstore.exists(blob_id)
        assert await blobstore.get(blob_id) == data
    assert await blobstore.usage() >= sum(len(d) for d in items.values())


async def test_put_many_empty(blobstore: Any) -> None:
    await blobstore.put_many({})
    assert await blobstore.usage() == 0


async def test_blobs_survive_reopen(blob_engine: Engine) -> None:
    store = await blob_engine.open()
    data = b"durable"
    await store.put(blob_id_of(data), data)
    await blob_engine.close(store)
    reopened = await blob_engine.open()
    assert await reopened.get(blob_id_of(data)) == data
    assert await reopened.usage() == len(data)


# --------------------------------------------------------------------------- fs-specific


async def test_fs_old_leftover_temporary_is_swept_on_reopen(tmp_path: Path) -> None:
    from mailyard.store.fs.blobstore import FsBlobStore

    root = tmp_path / "blobs"
    store = FsBlobStore(root)
    try:
        data = b"kept"
        blob_id = blob_id_of(data)
        await store.put(blob_id, data)
        directory = store.path(blob_id).parent
    finally:
        store.close()
    # What a SIGKILL in the middle of a put left behind, a day ago.
    leftover = directory / f".tmp-{blob_id}-12345-deadbeef"
    leftover.write_bytes(b"torn half of a blob")
    a_day_ago = time.time() - 86400
    os.utime(leftover, (a_day_ago, a_day_ago))

    reopened = FsBlobStore(root)
    try:
        assert not leftover.exists()
        assert await reopened.get(blob_id) == data
        assert await reopened.usage() == len(data)
    finally:
        reopened.close()


async def test_fs_fresh_temporary_of_a_live_writer_is_not_swept(tmp_path: Path) -> None:
    """Opening the store (an admin command, a second worker) must not break another process's
    put that is writing its temporary right now."""
    from mailyard.store.fs.blobstore import FsBlobStore

    root = tmp_path / "blobs"
    directory = root / "ab" / "cd"
    directory.mkdir(parents=True)
    in_flight = directory / ".tmp-0123456789abcd-999-1"
    in_flight.write_bytes(b"being written")
    store = FsBlobStore(root)
    try:
        assert in_flight.exists()
    finally:
        store.close()
