"""S3 for the tests: one real Ceph radosgw per test session, one key prefix per test.

Which gateway: $MAILYARD_TEST_S3_ENDPOINT with $MAILYARD_TEST_S3_KEY and $MAILYARD_TEST_S3_SECRET
when set (a gateway kept running between runs, or CI's own), else a private single-node Ceph that
scripts/ceph-rgw-up.sh starts in a temporary directory the first time a test asks (about 20 s)
and scripts/ceph-rgw-down.sh stops when the session exits. Tests share one bucket
(mailyard-test-<random>) and each gets its own prefix, so they share nothing and no bucket has
to be emptied and removed per test.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mailyard.store.s3.blobstore import S3BlobStore, S3Options

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Gateway:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str

    def options(self, **overrides: Any) -> S3Options:
        return replace(S3Options(endpoint=self.endpoint, access_key=self.access_key,
                                 secret_key=self.secret_key), **overrides)

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"


_gateway: Gateway | None = None
_lock = threading.Lock()


def _start_private() -> dict[str, str]:
    directory = tempfile.mkdtemp(prefix="mailyard-ceph-")
    script = ROOT / "scripts" / "ceph-rgw-up.sh"

    def stop() -> None:
        subprocess.run([str(ROOT / "scripts" / "ceph-rgw-down.sh"), directory],
                       check=False, capture_output=True, timeout=60)

    atexit.register(stop)
    out = subprocess.run([str(script), directory], capture_output=True, text=True,
                         timeout=300, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise RuntimeError(f"{script} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    found: dict[str, str] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def gateway() -> Gateway:
    """The session's gateway (found or started once; blocking, so call it off the loop or
    before it)."""
    global _gateway
    with _lock:
        if _gateway is None:
            bucket = f"mailyard-test-{uuid.uuid4().hex[:12]}"
            if os.environ.get("MAILYARD_TEST_S3_ENDPOINT"):
                _gateway = Gateway(os.environ["MAILYARD_TEST_S3_ENDPOINT"],
                                   os.environ.get("MAILYARD_TEST_S3_KEY", ""),
                                   os.environ.get("MAILYARD_TEST_S3_SECRET", ""), bucket)
            else:
                found = _start_private()
                _gateway = Gateway(found["endpoint"], found["access_key"], found["secret_key"],
                                   bucket)
        return _gateway


async def object_bytes(prefix: str) -> int:
    """Bytes of every object under `prefix/` in the session's bucket, listed with a client of
    the test's own: what a "nothing left behind" check must count includes objects the blob
    store would not list as blobs of its own (a stray temporary key, say)."""
    from aiobotocore.session import get_session
    from botocore.config import Config as BotoConfig

    g = gateway()
    config = BotoConfig(region_name="us-east-1", s3={"addressing_style": "path"})
    async with get_session().create_client(
            "s3", endpoint_url=g.endpoint, config=config, aws_access_key_id=g.access_key,
            aws_secret_access_key=g.secret_key) as client:
        total = 0
        async for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=g.bucket, Prefix=f"{prefix}/"):
            total += sum(int(o["Size"]) for o in page.get("Contents", []))
        return total


async def warm_up() -> None:
    """One object written and removed under a prefix of its own: a new gateway makes its
    pools on the first PUT (~2 s), which a benchmark must not time as the mail path's."""
    prefix = new_prefix()
    store = open_store(prefix, cache_bytes=0)
    try:
        await store.put("0" * 64, b"warm-up")
        await store.delete("0" * 64)
    finally:
        store.close()


def new_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


def open_store(prefix: str, **overrides: Any) -> S3BlobStore:
    g = gateway()
    return S3BlobStore(g.bucket, g.options(**overrides), prefix=f"{prefix}/")


async def remove_prefix(prefix: str) -> None:
    """Delete what a test left under its prefix (matters on a gateway that outlives the run)."""
    store = open_store(prefix, cache_bytes=0)
    try:
        for info in await store.inventory():
            await store.delete(info.blob_id)
    finally:
        store.close()
