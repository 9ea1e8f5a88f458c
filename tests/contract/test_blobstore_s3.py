"""What the S3 BlobStore does beyond the port's contract, on the session's real Ceph radosgw.

Faults are injected by a loopback HTTP proxy between the adapter and the gateway (the outside
world misbehaving: throttling, 5xx); everything else reaches radosgw unchanged, so retries,
conditional creates, multipart uploads and aborts are checked against a real S3 implementation.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard import config as configuration
from mailyard.app import open_blobstore
from mailyard.config import ConfigError
from mailyard.store.ports import NotFound
from mailyard.store.s3.blobstore import S3BlobStore, parse_url
from tests import s3
from tests.s3client import keys, raw_client

MiB = 1024 * 1024
_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "te", "upgrade",
        "proxy-authorization", "proxy-authenticate", "content-length"}


def blob_id_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_blob_put(request: web.Request) -> bool:
    """An object's PUT (not the bucket's, which the first test of a session makes)."""
    return request.method == "PUT" and "/blobs/" in request.path


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    status: int


@dataclass
class FaultProxy:
    """Forwards to the gateway unless `fault(request)` names a status to answer instead."""

    upstream: str
    fault: Callable[[web.Request], int | None] = lambda request: None
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        status = self.fault(request)
        if status is not None:
            self.seen.append(Seen(request.method, request.path, dict(request.query), status))
            code = {503: "SlowDown", 404: "NoSuchBucket"}.get(status, "InternalError")
            return web.Response(status=status, content_type="application/xml",
                                text=f"<Error><Code>{code}</Code><Message>injected</Message>"
                                     f"</Error>")
        # The Host header is kept: it is part of what SigV4 signed.
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(request.method, self.upstream + request.path_qs,
                                         headers=headers, data=body) as answer:
            payload = await answer.read()
            self.seen.append(Seen(request.method, request.path, dict(request.query),
                                  answer.status))
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
            return web.Response(status=answer.status, headers=out, body=payload)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * MiB)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        await self._runner.cleanup()
        await self._session.close()

    def count(self, method: str, *, status: int | None = None, query: str | None = None) -> int:
        """Requests about blobs (not about the bucket) seen so far."""
        return sum(1 for s in self.seen if s.method == method and "/blobs/" in s.path
                   and (status is None or s.status == status)
                   and (query is None or query in s.query))


@pytest.fixture
async def gateway() -> s3.Gateway:
    return await asyncio.get_running_loop().run_in_executor(None, s3.gateway)


@pytest.fixture
async def prefix(gateway: s3.Gateway) -> AsyncIterator[str]:
    name = s3.new_prefix()
    yield name
    await s3.remove_prefix(name)


@pytest.fixture
async def proxy(gateway: s3.Gateway) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(gateway.endpoint)
    await p.start()
    yield p
    await p.close()


@pytest.fixture
async def stores() -> AsyncIterator[Callable[..., S3BlobStore]]:
    """Opens adapters (through the proxy with endpoint=...) and closes them all at the end."""
    opened: list[S3BlobStore] = []

    def open_one(prefix: str, **overrides: Any) -> S3BlobStore:
        store = s3.open_store(prefix, **overrides)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


async def test_throttling_and_5xx_are_retried_until_the_put_is_stored(
        prefix: str, proxy: FaultProxy, stores: Callable[..., S3BlobStore]) -> None:
    failures = iter([503, 500])  # SlowDown, then InternalError, then the real gateway

    def fault(request: web.Request) -> int | None:
        return next(failures, None) if is_blob_put(request) else None

    proxy.fault = fault
    store = stores(prefix, endpoint=proxy.url, max_attempts=5)
    data = os.urandom(4096)
    await store.put(blob_id_of(data), data)
    puts = [s.status for s in proxy.seen if s.method == "PUT" and "/blobs/" in s.path]
    assert puts == [503, 500, 200]
    direct = stores(prefix, cache_bytes=0)
    assert await direct.get(blob_id_of(data)) == data


async def test_persistent_5xx_fails_the_put_after_max_attempts(
        prefix: str, proxy: FaultProxy, stores: Callable[..., S3BlobStore]) -> None:
    """Nothing is acknowledged that was not stored: the caller sees the failure."""
    proxy.fault = lambda request: 500 if is_blob_put(request) else None
    store = stores(prefix, endpoint=proxy.url, max_attempts=3)
    data = b"never stored " * 10
    with pytest.raises(ClientError):
        await store.put(blob_id_of(data), data)
    assert [s.status for s in proxy.seen if s.method == "PUT" and "/blobs/" in s.path
            ] == [500, 500, 500]
    assert not await stores(prefix).exists(blob_id_of(data))


async def test_only_no_such_key_says_a_blob_is_gone(
        prefix: str, proxy: FaultProxy, stores: Callable[..., S3BlobStore]) -> None:
    """A 404 NoSuchBucket (a gateway that has not loaded its buckets yet after a restart)
    is an error to retry, not "not found": the worker buries an item whose spool is gone."""
    data = b"stored before the gateway restarted"
    await stores(prefix).put(blob_id_of(data), data)
    proxy.fault = lambda request: 404 if request.method == "GET" else None
    store = stores(prefix, endpoint=proxy.url, cache_bytes=0, max_attempts=1)
    with pytest.raises(ClientError):
        await store.get(blob_id_of(data))
    proxy.fault = lambda request: None
    assert await store.get(blob_id_of(data)) == data
    with pytest.raises(NotFound):
        await store.get(blob_id_of(b"never stored"))


async def test_conditional_create_never_overwrites_what_is_stored(
        prefix: str, proxy: FaultProxy, stores: Callable[..., S3BlobStore]) -> None:
    """The PUT carries If-None-Match: * — the gateway keeps the first object and answers 412,
    which the adapter takes as "already stored"."""
    blob_id = blob_id_of(b"the real bytes")
    first = stores(prefix)
    await first.put(blob_id, b"the bytes another writer stored first")
    second = stores(prefix, endpoint=proxy.url, cache_bytes=0)
    await second.put(blob_id, b"the real bytes")
    assert proxy.count("PUT", status=412) == 1
    assert await second.get(blob_id) == b"the bytes another writer stored first"


async def test_a_repeated_put_makes_the_blob_young_again_for_gc(
        prefix: str, stores: Callable[..., S3BlobStore]) -> None:
    store, other = stores(prefix), stores(prefix)
    data = b"an attachment written by two messages"
    await store.put(blob_id_of(data), data)
    [before] = await store.inventory()
    await asyncio.sleep(1.2)  # Last-Modified has a resolution of one second
    await other.put(blob_id_of(data), data)
    [after] = await other.inventory()
    assert after.written_at >= before.written_at + 1
    assert after.size == len(data)
    assert await other.get(blob_id_of(data)) == data


async def test_concurrent_puts_from_two_adapters_all_succeed(
        prefix: str, stores: Callable[..., S3BlobStore]) -> None:
    a, b = stores(prefix, cache_bytes=0), stores(prefix, cache_bytes=0)
    data = os.urandom(300 * 1024)
    await asyncio.gather(*(s.put(blob_id_of(data), data) for s in (a, b) * 4))
    assert await a.get(blob_id_of(data)) == data
    assert [i.size for i in await b.inventory()] == [len(data)]


async def test_large_blobs_go_up_in_parts(
        prefix: str, proxy: FaultProxy, stores: Callable[..., S3BlobStore]) -> None:
    store = stores(prefix, endpoint=proxy.url, cache_bytes=0)
    data = os.urandom(20 * MiB)  # 8 + 8 + 4 MiB
    blob_id = blob_id_of(data)
    await store.put(blob_id, data)
    assert proxy.count("POST", query="uploads") == 1
    assert proxy.count("PUT", status=200, query="partNumber") == 3
    assert proxy.count("POST", status=200, query="uploadId") == 1
    assert await store.get(blob_id) == data
    # A second put of the same content finds it and uploads nothing.
    await store.put(blob_id, data)
    assert proxy.count("POST", query="uploads") == 1
    assert proxy.count("HEAD", status=200) == 1


async def test_a_failed_multipart_upload_is_aborted(
        gateway: s3.Gateway, prefix: str, proxy: FaultProxy,
        stores: Callable[..., S3BlobStore]) -> None:
    proxy.fault = lambda r: 500 if r.query.get("partNumber") == "2" else None
    store = stores(prefix, endpoint=proxy.url, max_attempts=2)
    data = os.urandom(17 * MiB)
    with pytest.raises(ClientError):
        await store.put(blob_id_of(data), data)
    assert proxy.count("DELETE", status=204, query="uploadId") == 1
    assert not await store.exists(blob_id_of(data))
    # The gateway holds no unfinished upload under the prefix (no orphan parts).
    client = await store._io.call(store._ready())
    uploads = await store._io.call(client.list_multipart_uploads(Bucket=gateway.bucket,
                                                                  Prefix=f"{prefix}/"))
    assert uploads.get("Uploads", []) == []


async def test_small_hot_blobs_are_served_from_a_bounded_cache(
        prefix: str, proxy: FaultProxy, stores: Callable[..., S3BlobStore]) -> None:
    store = stores(prefix, endpoint=proxy.url, cache_bytes=300 * 1024,
                   cache_max_blob=100 * 1024)
    blobs = [os.urandom(100 * 1024) for _ in range(5)]
    for data in blobs:
        await store.put(blob_id_of(data), data)
    big = os.urandom(150 * 1024)
    await store.put(blob_id_of(big), big)
    assert store.cache.size <= 300 * 1024
    assert len(store.cache) == 3  # the three newest small ones; the big one is never kept

    proxy.fault = lambda request: 500  # the gateway is down from here on
    for data in blobs[2:]:
        assert await store.get(blob_id_of(data)) == data
    assert proxy.count("GET") == 0
    with pytest.raises(ClientError):
        await store.get(blob_id_of(blobs[0]))  # evicted: asks the gateway
    assert proxy.count("GET", status=500) >= 1

    proxy.fault = lambda request: None
    assert await store.get(blob_id_of(blobs[0])) == blobs[0]
    assert await store.get(blob_id_of(big)) == big
    await store.delete(blob_id_of(blobs[0]))
    assert len(store.cache) <= 3
    with pytest.raises(NotFound):
        await store.get(blob_id_of(blobs[0]))


async def test_keys_are_laid_out_by_id_under_the_prefix(
        gateway: s3.Gateway, prefix: str, stores: Callable[..., S3BlobStore]) -> None:
    store = stores(prefix)
    data = b"where does it go"
    blob_id = blob_id_of(data)
    await store.put(blob_id, data)
    client = await store._io.call(store._ready())
    listing = await store._io.call(client.list_objects_v2(Bucket=gateway.bucket,
                                                          Prefix=f"{prefix}/"))
    assert [o["Key"] for o in listing["Contents"]] == [
        f"{prefix}/blobs/{blob_id[-2:]}/{blob_id[-4:-2]}/{blob_id}"]


async def test_close_is_synchronous_and_idempotent(prefix: str) -> None:
    store = s3.open_store(prefix)
    await store.put("closing-blob-1", b"x")
    store.close()
    store.close()
    with pytest.raises(RuntimeError):
        await store.exists("closing-blob-1")


# --------------------------------------------------------------------------- configuration


def test_store_s3_config_selects_the_adapter(tmp_path: Path) -> None:
    config = configuration.parse({
        "data_dir": str(tmp_path),
        "store": {"blobs": "s3://mail-bucket/node-a",
                  "s3": {"endpoint": "http://127.0.0.1:7480", "access_key": "AK",
                         "secret_key": "SK", "cache_bytes": 1024, "region": "eu-west-1"}}})
    store = open_blobstore(config)
    try:
        assert isinstance(store, S3BlobStore)
        assert (store.bucket, store.prefix) == ("mail-bucket", "node-a/")
        assert (store.options.endpoint, store.options.region) == ("http://127.0.0.1:7480",
                                                                  "eu-west-1")
        assert store.cache.capacity == 1024
    finally:
        store.close()
    assert not isinstance(open_blobstore(configuration.parse({"data_dir": str(tmp_path)})),
                          S3BlobStore)


@pytest.mark.parametrize("store", [
    {"blobs": "s3://"},
    {"blobs": "file:///var/mail"},
    {"blobs": 42},
    {"s3": {"endpoint": "http://x", "colour": "blue"}},
    {"s3": {"cache_bytes": -1}},
    {"s3": "not a table"},
])
def test_bad_store_s3_config_names_the_key(store: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"store"):
        configuration.parse({"store": store})


@pytest.mark.parametrize(("url", "expected"), [
    ("s3://bucket", ("bucket", "")),
    ("s3://bucket/", ("bucket", "")),
    ("s3://bucket/a/b/", ("bucket", "a/b/")),
])
def test_parse_url(url: str, expected: tuple[str, str]) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize("url", ["s3:/bucket", "http://bucket", "s3://bucket?x=1", "s3://"])
def test_parse_url_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60) | st.from_regex(r"s3://[a-z0-9.-]{0,8}(/[^?#]{0,12})?", fullmatch=True))
def test_parse_url_answers_or_refuses_any_text(url: str) -> None:
    try:
        bucket, prefix = parse_url(url)
    except ValueError:
        return
    assert url.startswith("s3://") and bucket and "/" not in bucket
    assert prefix == "" or (prefix.endswith("/") and not prefix.startswith("/"))


def test_any_blob_id_is_refused_or_kept_under_the_prefix() -> None:
    store = S3BlobStore("bucket", prefix="p/")  # contacts nothing until used

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=140) | st.from_regex(r"[A-Za-z0-9_.-]{6,130}", fullmatch=True)
           | st.from_regex(r"bodies/[0-9]{3,5}/[0-9]{1,3}/[0-9]{1,3}/[0-9a-f./]{62,66}",
                           fullmatch=True))
    def check(blob_id: str) -> None:
        try:
            key = store.key(blob_id)
        except ValueError:
            return
        if key.startswith("p/bodies/"):
            assert key == "p/" + blob_id and key.count("/") == 5
        else:
            assert key.startswith("p/blobs/") and key.endswith("/" + blob_id)
            assert key.count("/") == 4
        assert ".." not in key.split("/") and "" not in key.split("/")
        assert store.blob_id(key) == blob_id  # what inventory reads back from a listing

    try:
        check()
    finally:
        store.close()


def test_keys_of_each_id_form_are_pinned() -> None:
    """Bodies by day under bodies/; flat ids where every bucket has kept them (an old bucket
    must be read where it was written); keys of neither layout are no blob of the store."""
    store = S3BlobStore("bucket", prefix="p/")
    try:
        sha = blob_id_of(b"x")
        assert store.key(f"bodies/2025/06/01/{sha}") == f"p/bodies/2025/06/01/{sha}"
        assert store.key(sha) == f"p/blobs/{sha[-2:]}/{sha[-4:-2]}/{sha}"
        for stray in (f"q/blobs/{sha[-2:]}/{sha[-4:-2]}/{sha}", f"p/blobs/00/00/{sha}",
                      f"p/bodies/2025/06/01/{sha}.tmp", f"p/bodies/2025/6/1/{sha}",
                      f"p/other/{sha}", f"p/blobs/{sha}"):
            assert store.blob_id(stray) is None, stray
    finally:
        store.close()


async def test_an_old_bucket_is_read_listed_and_deleted_in_place(
        gateway: s3.Gateway, prefix: str, stores: Callable[..., S3BlobStore]) -> None:
    """A skeleton stored under its bare SHA-256 by an older Mailyard (written here by a plain
    S3 client at the key that version used) sits beside a dated body of today's layout."""
    store = stores(prefix, cache_bytes=0)
    old, new = b"a skeleton from last year", b"a skeleton from today"
    old_id, new_id = blob_id_of(old), f"bodies/2025/06/01/{blob_id_of(new)}"
    await store.put(new_id, new)  # (and the bucket made, if this test is the first)
    async with raw_client(gateway) as client:
        await client.put_object(Bucket=gateway.bucket, Body=old,
                                Key=f"{prefix}/blobs/{old_id[-2:]}/{old_id[-4:-2]}/{old_id}")
    assert await keys(gateway, f"{prefix}/bodies/") == [f"{prefix}/{new_id}"]
    assert await store.get(old_id) == old and await store.get(new_id) == new
    assert {(b.blob_id, b.size) for b in await store.inventory()} == {
        (old_id, len(old)), (new_id, len(new))}
    await store.delete(old_id)
    assert [b.blob_id for b in await store.inventory()] == [new_id]
