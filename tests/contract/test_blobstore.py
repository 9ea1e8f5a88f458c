"""BlobStore contract: immutable bytes by id, durable, idempotent, with a usage figure."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from mailyard.core import blobkeys
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
    # Dated body ids must be exactly bodies/YYYY/MM/DD/<lower-case sha256 hex>.
    "bodies/2025/06/01/" + "A" * 64,
    "bodies/2025/13/01/" + "a" * 64,
    "bodies/2025/06/01/" + "a" * 63,
    "bodies/2025/06/01/../" + "a" * 64,
    "bodies/2025/06/01/" + "a" * 64 + "/",
    "/bodies/2025/06/01/" + "a" * 64,
    "bodies/2025/06/" + "a" * 64,
    "attachments/" + "a" * 64,
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


@pytest.mark.parametrize("size", [256 * 1024, 256 * 1024 + 1])
async def test_blobs_either_side_of_the_inline_read_limit(blobstore: Any, size: int) -> None:
    """The file store reads up to 256 KiB on the loop's thread and more on its pool."""
    data = os.urandom(size)
    blob_id = blob_id_of(data)
    await blobstore.put(blob_id, data)
    assert await blobstore.get(blob_id) == data


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


# --------------------------------------------------------------------------- dated body ids


def body_id_of(data: bytes, day: str = "2025/06/01") -> str:
    return f"bodies/{day}/{blob_id_of(data)}"


async def test_body_id_round_trip(blobstore: Any) -> None:
    data = b"MYSK1 a message skeleton\r\n" * 40
    blob_id = body_id_of(data)
    assert await blobstore.exists(blob_id) is False
    await blobstore.put(blob_id, data)
    await blobstore.put(blob_id, data)  # a retried delivery: the same key again
    assert await blobstore.exists(blob_id) is True
    assert await blobstore.get(blob_id) == data
    assert await blobstore.usage() == len(data)
    await blobstore.delete(blob_id)
    assert await blobstore.exists(blob_id) is False
    with pytest.raises(NotFound):
        await blobstore.get(blob_id)
    await blobstore.delete(blob_id)


async def test_concurrent_puts_of_same_body_all_succeed(blobstore: Any) -> None:
    """Two deliveries of one message on the same day share one body object."""
    data = os.urandom(300 * 1024)
    blob_id = body_id_of(data, "2024/02/29")
    await asyncio.gather(*(blobstore.put(blob_id, bytes(bytearray(data))) for _ in range(6)))
    assert await blobstore.get(blob_id) == data
    assert [(b.blob_id, b.size) for b in await blobstore.inventory()] == [(blob_id, len(data))]


async def test_inventory_names_every_blob_by_the_id_it_was_stored_under(blobstore: Any) -> None:
    """gc compares inventory ids with the ids email rows hold, so they must come back whole:
    dated bodies, the bare SHA-256 bodies of stores older than that layout, attachments,
    spool copies; the same content under a dated and a bare id is two blobs."""
    skeleton, attachment, spool = b"skeleton octets", b"A" * 3000, b"raw spooled message"
    ids = {
        body_id_of(skeleton, "2025/06/01"): skeleton,
        body_id_of(skeleton, "2025/06/02"): skeleton,  # the same message received next day
        blob_id_of(skeleton): skeleton,  # its body in a store older than the dated layout
        blob_id_of(attachment): attachment,
        "s01jx0abcdefghjkmnpqrstvwx": spool,
    }
    await blobstore.put_many(ids)
    found = {b.blob_id: b.size for b in await blobstore.inventory()}
    assert found == {k: len(v) for k, v in ids.items()}
    assert await blobstore.usage() == sum(map(len, ids.values()))
    for blob_id, data in ids.items():
        assert await blobstore.get(blob_id) == data
    await blobstore.delete(body_id_of(skeleton, "2025/06/01"))
    assert await blobstore.get(blob_id_of(skeleton)) == skeleton
    assert await blobstore.get(body_id_of(skeleton, "2025/06/02")) == skeleton
    assert {b.blob_id for b in await blobstore.inventory()} == set(ids) - {
        body_id_of(skeleton, "2025/06/01")}


async def test_body_ids_survive_reopen(blob_engine: Engine) -> None:
    store = await blob_engine.open()
    data = b"a durable skeleton"
    blob_id = blobkeys.body_id(blob_id_of(data), 1_748_736_000_000)  # 2025-06-01 UTC
    await store.put(blob_id, data)
    await blob_engine.close(store)
    reopened = await blob_engine.open()
    assert await reopened.get(blob_id) == data
    assert [b.blob_id for b in await reopened.inventory()] == [blob_id]


# --------------------------------------------------------------------------- fs-specific


async def test_fs_paths_of_each_id_form(tmp_path: Path) -> None:
    """Bodies by day under bodies/, flat ids one level under their last two characters
    (pinned: a store must find its files where it put them)."""
    from mailyard.store.fs.blobstore import FsBlobStore

    root = tmp_path / "blobs"
    store = FsBlobStore(root)
    try:
        sha = blob_id_of(b"x")
        assert store.path(f"bodies/2025/06/01/{sha}") == root / "bodies/2025/06/01" / sha
        assert store.path(sha) == root / sha[-2:] / sha
        assert store.path("s01jx0abcdefghjkmnpqrstvwx") == root / "wx/s01jx0abcdefghjkmnpqrstvwx"
        await store.put(f"bodies/2025/06/01/{sha}", b"x")
        assert (root / "bodies/2025/06/01" / sha).read_bytes() == b"x"
        await store.put(sha, b"x")
        assert (root / sha[-2:] / sha).read_bytes() == b"x"
        # One directory level per flat id, whatever the id: no leaf directory per blob.
        for n in range(50):
            await store.put(f"s01jx0abcdefghjkmnpqrst{n:03d}", b"spool %d" % n)
        assert {p.name for p in root.iterdir()} == {"bodies", sha[-2:]} | {
            f"{n:03d}"[-2:] for n in range(50)}
        assert not any(p.is_dir() for d in root.iterdir() if d.name != "bodies"
                       for p in d.iterdir())
    finally:
        store.close()


async def test_fs_blobs_of_the_old_two_level_layout_are_read_listed_and_deleted(
        tmp_path: Path) -> None:
    """A data directory written before issue 24 keeps flat ids at
    <id[-2:]>/<id[-4:-2]>/<id>: they are read, found, listed, counted, kept young by a
    repeated put (not written twice) and deleted where they are, with new blobs beside."""
    from mailyard.store.fs.blobstore import FsBlobStore

    root = tmp_path / "blobs"
    legacy = blob_id_of(b"an old skeleton")
    spool = "s01jx0abcdefghjkmnpqrstvwx"
    for blob_id, data in ((legacy, b"an old skeleton"), (spool, b"an old spool copy")):
        old = root / blob_id[-2:] / blob_id[-4:-2] / blob_id
        old.parent.mkdir(parents=True, exist_ok=True)
        old.write_bytes(data)
        a_day_ago = time.time() - 86400
        os.utime(old, (a_day_ago, a_day_ago))
    store = FsBlobStore(root)
    try:
        assert await store.get(legacy) == b"an old skeleton"
        assert await store.get(spool) == b"an old spool copy"
        assert await store.exists(legacy) and await store.exists(spool)
        fresh = blob_id_of(b"a new attachment")
        await store.put(fresh, b"a new attachment")
        assert {b.blob_id for b in await store.inventory()} == {legacy, spool, fresh}
        assert await store.usage() == len(b"an old skeleton") + len(b"an old spool copy") + len(
            b"a new attachment")
        # The same content put again is found in the old place: young again, no second copy.
        await store.put(legacy, b"an old skeleton")
        old_file = root / legacy[-2:] / legacy[-4:-2] / legacy
        assert old_file.stat().st_mtime > time.time() - 3600
        assert not store.path(legacy).exists()
        await store.delete(spool)
        assert not await store.exists(spool)
        with pytest.raises(NotFound):
            await store.get(spool)
        assert {b.blob_id for b in await store.inventory()} == {legacy, fresh}
    finally:
        store.close()


async def test_fs_concurrent_puts_into_one_directory_are_all_durable_and_readable(
        tmp_path: Path) -> None:
    """Puts into one directory at once share its fsync (group commit): every one of them
    returns, and every blob is there, whole, once they have."""
    from mailyard.store.fs.blobstore import FsBlobStore

    root = tmp_path / "blobs"
    store = FsBlobStore(root, threads=8)
    try:
        items = {f"bodies/2025/06/01/{blob_id_of(b'%d' % n)}": b"%d" % n for n in range(200)}
        await asyncio.gather(*(store.put(k, v) for k, v in items.items()))
        for blob_id, data in items.items():
            assert (root / blob_id).read_bytes() == data
    finally:
        store.close()


async def test_fs_leftover_temporary_in_a_day_directory_is_swept(tmp_path: Path) -> None:
    from mailyard.store.fs.blobstore import FsBlobStore

    root = tmp_path / "blobs"
    day = root / "bodies" / "2025" / "06" / "01"
    day.mkdir(parents=True)
    old, fresh = day / ".tmp-old-1", day / ".tmp-fresh-2"
    old.write_bytes(b"torn")
    fresh.write_bytes(b"being written")
    a_day_ago = time.time() - 86400
    os.utime(old, (a_day_ago, a_day_ago))
    store = FsBlobStore(root)
    try:
        assert not old.exists() and fresh.exists()
        assert await store.inventory() == [] and await store.usage() == 0
    finally:
        store.close()


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
