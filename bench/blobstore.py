"""BlobStore latency: put and get of blobs of a given size, one at a time, on fs and on S3.

Each put stores fresh random bytes under a fresh id (no dedup hit); each get reads a blob
stored earlier, with the S3 adapter's cache off (what a cold read costs) and, for sizes the
cache keeps, on (a hot read). Prints median and p99 in milliseconds. S3 is the session's
gateway of tests/s3.py: $MAILYARD_TEST_S3_ENDPOINT/KEY/SECRET, else a private Ceph radosgw
started for the run.

    .venv/bin/python bench/blobstore.py --sizes 102400 10485760 --count 200 30
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mailyard.store.fs.blobstore import FsBlobStore  # noqa: E402
from tests import s3  # noqa: E402


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000


async def timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    await fn(*args)
    return time.perf_counter() - start


async def run(store: Any, size: int, count: int) -> dict[str, tuple[float, float]]:
    ids, puts, gets = [], [], []
    for _ in range(count):
        data = os.urandom(size)
        blob_id = hashlib.sha256(data).hexdigest()
        puts.append(await timed(store.put, blob_id, data))
        ids.append(blob_id)
    if getattr(store, "cache", None) is not None:
        store.cache.capacity = 0  # cold reads: every get goes to the service
        for blob_id in ids:
            store.cache.discard(blob_id)
    for blob_id in ids:
        gets.append(await timed(store.get, blob_id))
    return {"put": quantiles(puts), "get": quantiles(gets)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100 * 1024, 10 * 1024 * 1024])
    parser.add_argument("--count", type=int, nargs="+", default=[200, 30])
    args = parser.parse_args()
    await asyncio.get_running_loop().run_in_executor(None, s3.gateway)
    print(f"{'engine':6} {'size':>9} {'n':>4}  {'put median':>10} {'put p99':>8}  "
          f"{'get median':>10} {'get p99':>8}   (ms)")
    with tempfile.TemporaryDirectory(prefix="mailyard-bench-") as tmp:
        for size, count in zip(args.sizes, args.count, strict=True):
            for engine in ("fs", "s3"):
                prefix = s3.new_prefix()
                store: Any = FsBlobStore(Path(tmp) / prefix) if engine == "fs" \
                    else s3.open_store(prefix)
                try:
                    await store.put("warm-up-blob", b"x")  # connection, bucket
                    figures = await run(store, size, count)
                finally:
                    store.close()
                    if engine == "s3":
                        await s3.remove_prefix(prefix)
                (pm, pp), (gm, gp) = figures["put"], figures["get"]
                print(f"{engine:6} {size:>9} {count:>4}  {pm:>10.1f} {pp:>8.1f}  "
                      f"{gm:>10.1f} {gp:>8.1f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
