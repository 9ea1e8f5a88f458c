"""BlobStore on any S3-compatible service (AWS S3, Ceph radosgw, MinIO, ...), via aiobotocore.

Keys (ids are core/blobkeys.py's; the layout mirrors the file-system adapter's paths):
- a dated body id is its own key, `<prefix>bodies/YYYY/MM/DD/<sha256>`. The date comes first so
  that the prefixes S3 filters on are calendar units: a lifecycle rule on `bodies/2023/`
  moves a year of bodies to a colder storage class or expires it, a listing of
  `bodies/2025/06/01/` is one day's mail, and `Delimiter="/"` walks the tree by year, month,
  day. The SHA-256 after the date keeps keys within a day random: AWS S3 partitions a busy
  prefix by key range, and a random tail gives it ranges to split one day's writes over
  (radosgw spreads a bucket's index over shards by a hash of the whole key, so there the
  order of the parts costs nothing).
- a flat id (attachments and uploads by SHA-256, spool copies, bodies written before the dated
  layout) is `<prefix>blobs/<id[-2:]>/<id[-4:-2]>/<id>`: the tail of a hash spreads keys
  evenly. Attachments stay content-addressed here, where stores have always kept them, so
  an old bucket is read unchanged, and an attachment shared by many messages of many days
  is one object.
`<prefix>blobs/` and `<prefix>bodies/` together are the whole store (`inventory`, `usage`).

Writes are conditional creates (`If-None-Match: *`): a blob's bytes are fixed by its id, so a
`412 Precondition Failed` means someone else already stored these very bytes, and counts as
success. The existing object is then copied onto itself to refresh its Last-Modified, because
`mailyard gc` spares blobs written within its grace period and a deduplicated attachment
written again is in use again (the file-system adapter touches the file for the same reason).
Above `multipart_threshold` (8 MiB) a blob goes up in parts, concurrently; a failed upload is
aborted so no orphan parts stay billed. S3 answers a PUT only once the object is durable, so
`put` returning is the acknowledgement the port asks for.

Transient failures (5xx, throttling, connection resets) are retried by botocore's "standard"
retry mode: exponential backoff with jitter, `max_attempts` in all.

The client lives on a private event loop in one thread of its own. aiobotocore's client and its
aiohttp session belong to the loop that made them, while the composition root builds adapters
before the serving loop runs, admin commands run their own loops, and `close()` is called
synchronously; a private loop makes all of these one case. It also keeps request signing and
SHA-256 payload hashing of large blobs (GIL-free in hashlib) off the serving loop. Each call
hops threads once (tens of microseconds, against a millisecond-scale round trip).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from mailyard.core import blobkeys
from mailyard.store.ports import BlobInfo, NotFound
from mailyard.store.s3.cache import BlobCache

T = TypeVar("T")

# One botocore session for the process: it caches the parsed S3 service model, which costs
# ~0.2 s to load per session. Client creation through it is serialised (botocore sessions are
# not meant to be shared across threads while they build clients).
_session: Any = None
_session_lock = threading.Lock()

_FLAT = "blobs/"
"""Key prefix (after the store's) of flat ids; bodies are under blobkeys.BODIES."""
MiB = 1024 * 1024


@dataclass(frozen=True)
class S3Options:
    """How to reach the service and how much to keep locally; `[store.s3]` in the config."""

    endpoint: str = ""
    """"http://127.0.0.1:7480" for a radosgw; "" for AWS (the region's endpoint)."""
    region: str = "us-east-1"
    access_key: str = ""
    """"" takes botocore's usual chain (AWS_ACCESS_KEY_ID, ~/.aws, instance role)."""
    secret_key: str = ""
    cache_bytes: int = 64 * MiB
    """Bytes of small hot blobs kept in memory by this process; 0 turns the cache off."""
    cache_max_blob: int = 1 * MiB
    """Blobs larger than this are never cached."""
    multipart_threshold: int = 8 * MiB
    part_size: int = 8 * MiB
    """At least 5 MiB (S3's minimum for every part but the last)."""
    max_attempts: int = 5
    """Tries per request, the first included, on 5xx, throttling and connection errors."""
    max_connections: int = 32
    connect_timeout: float = 10.0
    read_timeout: float = 60.0


def parse_url(url: str) -> tuple[str, str]:
    """"s3://bucket" or "s3://bucket/some/prefix" -> (bucket, "some/prefix/")."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"expected \"s3://bucket\" or \"s3://bucket/prefix\", got {url!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def _status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


class _LoopThread:
    """A private event loop on a daemon thread; coroutines are handed to it from any thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        if self.loop.is_closed():
            coro.close()
            raise RuntimeError("the S3 blob store is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` run on the private loop; cancelling the caller cancels it there too."""
        return await asyncio.wrap_future(self.submit(coro))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class S3BlobStore:
    """The BlobStore port over one bucket (and an optional key prefix) of an S3 service."""

    def __init__(self, bucket: str, options: S3Options | None = None, *,
                 prefix: str = "") -> None:
        """Nothing is contacted yet: the client is made, and the bucket created if missing,
        by the first call."""
        self.bucket = bucket
        self.prefix = prefix
        self.options = options or S3Options()
        self.cache = BlobCache(self.options.cache_bytes, self.options.cache_max_blob)
        self._io = _LoopThread("s3-io")
        self._client: Any = None
        self._client_cm: Any = None
        self._opening: asyncio.Lock | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, options: S3Options | None = None) -> S3BlobStore:
        bucket, prefix = parse_url(url)
        return cls(bucket, options, prefix=prefix)

    def key(self, blob_id: str) -> str:
        """The object key of a blob (ValueError for an id of neither form)."""
        if blobkeys.is_body(blob_id):
            return f"{self.prefix}{blob_id}"
        if not blobkeys.is_flat(blob_id):
            raise ValueError(f"invalid blob id {blob_id!r}")
        return f"{self.prefix}{_FLAT}{blob_id[-2:]}/{blob_id[-4:-2]}/{blob_id}"

    def blob_id(self, key: str) -> str | None:
        """The id whose key is `key`, or None for a key that is no blob of this store."""
        if not key.startswith(self.prefix):
            return None
        rest = key[len(self.prefix):]
        if rest.startswith(blobkeys.BODIES):
            return rest if blobkeys.is_body(rest) else None
        blob_id = rest.rsplit("/", 1)[-1]
        if rest.startswith(_FLAT) and blobkeys.is_flat(blob_id) and self.key(blob_id) == key:
            return blob_id
        return None

    # ------------------------------------------------------------------ the private loop's side

    async def _ready(self) -> Any:
        if self._client is not None:
            return self._client
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._client is None:
                o = self.options
                config = BotoConfig(
                    region_name=o.region,
                    retries={"mode": "standard", "total_max_attempts": o.max_attempts},
                    max_pool_connections=o.max_connections,
                    connect_timeout=o.connect_timeout, read_timeout=o.read_timeout,
                    s3={"addressing_style": "path"},
                    # botocore >= 1.36 adds CRC checksums to every request by default, which
                    # S3-compatible services before 2025 (Ceph Pacific..Reef) reject.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                credentials: dict[str, str] = {}
                if o.access_key:
                    credentials = {"aws_access_key_id": o.access_key,
                                   "aws_secret_access_key": o.secret_key}
                global _session
                with _session_lock:
                    if _session is None:
                        _session = get_session()
                    cm = _session.create_client("s3", endpoint_url=o.endpoint or None,
                                                config=config, **credentials)
                    client = await cm.__aenter__()
                try:
                    await self._ensure_bucket(client)
                except BaseException:
                    await cm.__aexit__(None, None, None)
                    raise
                self._client_cm, self._client = cm, client
        return self._client

    async def _ensure_bucket(self, client: Any) -> None:
        try:
            await client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as e:
            if _status(e) != 404:
                raise
        try:
            await client.create_bucket(Bucket=self.bucket)
        except ClientError as e:
            if _code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    async def _put(self, key: str, data: bytes) -> None:
        client = await self._ready()
        if len(data) >= self.options.multipart_threshold:
            await self._put_multipart(client, key, data)
            return
        for attempt in range(5):
            try:
                await client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                        IfNoneMatch="*")
                return
            except ClientError as e:
                if _status(e) == 412:
                    if await self._touch(client, key):
                        return
                    continue  # deleted between the two requests: store it again
                # 409 ConditionalRequestConflict: another conditional write of this key is in
                # flight (AWS); it will have stored the same bytes, or failed: ask again.
                if _status(e) != 409 or attempt == 4:
                    raise
                await asyncio.sleep(0.05 * 2**attempt)
        raise OSError(f"{key}: deleted each time it was found to exist; not stored")

    async def _touch(self, client: Any, key: str) -> bool:
        """Refresh Last-Modified of an existing object (a self-copy that replaces metadata:
        server-side, no bytes through us), so `mailyard gc` sees the blob as written now.
        False if the object is gone (gc deleted it in between)."""
        try:
            await client.copy_object(Bucket=self.bucket, Key=key,
                                     CopySource={"Bucket": self.bucket, "Key": key},
                                     MetadataDirective="REPLACE", Metadata={})
            return True
        except ClientError as e:
            if _status(e) == 404:
                return False
            raise

    async def _exists(self, key: str) -> bool:
        client = await self._ready()
        try:
            await client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as e:
            if _status(e) == 404:
                return False
            raise

    async def _put_multipart(self, client: Any, key: str, data: bytes) -> None:
        """Parts of `part_size`, four in flight; If-None-Match on the completion (honoured by
        AWS and recent Ceph; older gateways complete anyway, with the same bytes)."""
        if await self._exists(key) and await self._touch(client, key):
            return
        upload = await client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = upload["UploadId"]
        size = self.options.part_size
        view = memoryview(data)
        slots = asyncio.Semaphore(4)

        async def part(number: int, offset: int) -> dict[str, Any]:
            async with slots:
                answer = await client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                    Body=bytes(view[offset:offset + size]))
                return {"PartNumber": number, "ETag": answer["ETag"]}

        try:
            parts = await asyncio.gather(*(part(n + 1, off) for n, off in
                                           enumerate(range(0, len(data), size))))
            try:
                await client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": list(parts)}, IfNoneMatch="*")
            except ClientError as e:
                if _status(e) != 412:
                    raise
                await client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                    UploadId=upload_id)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id))
            raise

    async def _get(self, key: str) -> bytes:
        client = await self._ready()
        try:
            answer = await client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            # Only NoSuchKey says the blob is gone: a 404 NoSuchBucket (a gateway that has
            # not loaded its buckets yet, a wrong configuration) is an error to retry.
            if _status(e) == 404 and _code(e) == "NoSuchKey":
                raise NotFound(f"blob {self.blob_id(key) or key}") from None
            raise
        async with answer["Body"] as body:
            data: bytes = await body.read()
        if len(data) != answer["ContentLength"]:
            raise OSError(f"short read of {key}: {len(data)} of {answer['ContentLength']} bytes")
        return data

    async def _delete(self, key: str) -> None:
        client = await self._ready()
        await client.delete_object(Bucket=self.bucket, Key=key)

    async def _objects(self) -> AsyncIterator[dict[str, Any]]:
        client = await self._ready()
        paginator = client.get_paginator("list_objects_v2")
        for under in (_FLAT, blobkeys.BODIES):
            async for page in paginator.paginate(Bucket=self.bucket,
                                                 Prefix=f"{self.prefix}{under}"):
                for item in page.get("Contents", []):
                    yield item

    async def _usage(self) -> int:
        return sum([int(item["Size"]) async for item in self._objects()])

    async def _inventory(self) -> list[BlobInfo]:
        found = []
        async for item in self._objects():
            blob_id = self.blob_id(str(item["Key"]))
            if blob_id is not None:
                found.append(BlobInfo(blob_id, int(item["Size"]),
                                      item["LastModified"].timestamp()))
        return found

    async def _close(self) -> None:
        if self._client_cm is not None:
            cm, self._client_cm, self._client = self._client_cm, None, None
            await cm.__aexit__(None, None, None)

    # ------------------------------------------------------------------ the port

    async def put(self, blob_id: str, data: bytes) -> None:
        key = self.key(blob_id)
        await self._io.call(self._put(key, data))
        # New mail is read soon after delivery (IMAP IDLE, push): keep small ones at hand.
        self.cache.put(blob_id, bytes(data))

    async def put_many(self, items: dict[str, bytes]) -> None:
        slots = asyncio.Semaphore(max(1, self.options.max_connections // 2))

        async def one(blob_id: str, data: bytes) -> None:
            async with slots:
                await self.put(blob_id, data)

        await asyncio.gather(*(one(k, v) for k, v in items.items()))

    async def get(self, blob_id: str) -> bytes:
        key = self.key(blob_id)
        cached = self.cache.get(blob_id)
        if cached is not None:
            return cached
        data = await self._io.call(self._get(key))
        self.cache.put(blob_id, data)
        return data

    async def exists(self, blob_id: str) -> bool:
        """Always asks the service (HEAD): fsck, gc and /readyz want the truth, not the cache."""
        return await self._io.call(self._exists(self.key(blob_id)))

    async def delete(self, blob_id: str) -> None:
        key = self.key(blob_id)
        self.cache.discard(blob_id)
        await self._io.call(self._delete(key))

    async def usage(self) -> int:
        """Lists every object (ListObjectsV2, 1000 keys per request): O(blobs / 1000) requests;
        measured 0.4-0.7 s for 3,000 blobs on a local radosgw, so minutes per million. Meant
        for reports and occasional scrapes, not for a per-message path (S3 has no cheaper
        exact figure; radosgw's admin bucket stats are one, outside the S3 API)."""
        return await self._io.call(self._usage())

    async def inventory(self) -> list[BlobInfo]:
        """Every blob with its size and Last-Modified (same listing cost as `usage`)."""
        return await self._io.call(self._inventory())

    def close(self) -> None:
        """Synchronous, as the composition root closes every adapter: closes the client's
        connections on the private loop, then stops that loop. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._io.submit(self._close()).result(timeout=30)
        finally:
            self._io.stop()
