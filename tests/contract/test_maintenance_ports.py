"""The port calls fsck and gc rely on, for every adapter: SearchIndex.indexed_ids and
BlobStore.inventory."""

from __future__ import annotations

import time
from typing import Any

from tests.contract.test_search import doc


async def test_indexed_ids_per_account(search_index: Any) -> None:
    a, b, c = doc("a-one"), doc("a-one"), doc("a-two")
    assert await search_index.indexed_ids("a-one") == set()
    await search_index.index([a, b, c])
    assert await search_index.indexed_ids("a-one") == {a.email_id, b.email_id}
    assert await search_index.indexed_ids("a-two") == {c.email_id}
    await search_index.delete("a-one", [a.email_id])
    assert await search_index.indexed_ids("a-one") == {b.email_id}
    await search_index.clear("a-two")
    assert await search_index.indexed_ids("a-two") == set()


async def test_inventory_lists_every_blob_with_size_and_time(blobstore: Any) -> None:
    before = time.time() - 1
    assert await blobstore.inventory() == []
    await blobstore.put("blob-one-0001", b"x" * 10)
    await blobstore.put("blob-two-0002", b"")
    found = {b.blob_id: b for b in await blobstore.inventory()}
    assert set(found) == {"blob-one-0001", "blob-two-0002"}
    assert (found["blob-one-0001"].size, found["blob-two-0002"].size) == (10, 0)
    assert all(before <= b.written_at <= time.time() + 1 for b in found.values())
    await blobstore.delete("blob-one-0001")
    assert [b.blob_id for b in await blobstore.inventory()] == ["blob-two-0002"]
