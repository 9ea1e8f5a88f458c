"""CPU of each step the ingest applies to a message's octets, one process, no I/O (issue 24).

For the bench's own mails (bench/smtp_ingest.make_mail, 5 KB and 50 KB by default) with our
trace fields in front: the worker's parse, the spam filter's content, tokens and fingerprint,
the index text, the attachment split, the X-Spam-* field insert, a SHA-256, the pipeline's
analysis of a parsed message, and the MX's head parse. Each step is run --repeat times after
one warm-up; process time per run is printed.

    .venv/bin/python bench/ingest_steps.py --sizes 5000,50000
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.smtp_ingest import make_mail  # noqa: E402
from mailyard.core import mime, skeleton, spam  # noqa: E402
from mailyard.core.indextext import DEFAULT_LIMITS, index_text  # noqa: E402
from mailyard.pipeline import fields  # noqa: E402
from mailyard.pipeline.inbound import InboundPipeline  # noqa: E402

TRACE = b"Return-Path: <bench0@remote.test>\r\nReceived: from mail.remote.test ([127.0.0.1])\r\n"


def steps_of(pipeline: InboundPipeline, raw: bytes) -> dict[str, Callable[[], object]]:
    """The steps, each bound to one message."""
    parsed = pipeline.parse(raw)
    content = spam.content(raw, parsed)
    added = b"X-Spam-Score: 0.1\r\nX-Spam-Status: No, score=0.1\r\n"
    return {
        "parse (worker)": lambda: pipeline.parse(raw),
        "parse_head (MX checks)": lambda: mime.parse_head(raw),
        "spam.content": lambda: spam.content(raw, parsed),
        "spam.token_ids": lambda: spam.token_ids(content),
        "spam.fingerprint": lambda: spam.fingerprint(content),
        "index_text": lambda: index_text(raw, parsed, DEFAULT_LIMITS),
        "skeleton.split": lambda: skeleton.split(raw, parsed, min_size=2048),
        "fields.insert": lambda: fields.insert(raw, parsed, len(TRACE), added),
        "sha256": lambda: hashlib.sha256(raw).hexdigest(),
        "pipeline analysis": lambda: pipeline._analyse(raw, parsed, len(TRACE)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="5000,50000")
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    pipeline = InboundPipeline(cast(Any, None), cast(Any, None))  # parse and _analyse only
    for size in (int(s) for s in args.sizes.split(",")):
        raw = TRACE + make_mail(0, 0, size)
        for name, step in steps_of(pipeline, raw).items():
            step()
            start = time.process_time()
            for _ in range(args.repeat):
                step()
            took = (time.process_time() - start) / args.repeat
            print(f"{len(raw):>7} B  {name:<24} {took * 1000:7.3f} ms", flush=True)


if __name__ == "__main__":
    main()
