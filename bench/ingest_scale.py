"""Ingest into a full account against an empty one (issue 24): does the cost grow with the mailbox?

Two servers' data directories under --root: `empty` (the account only) and `full` (the account
pre-filled with --prefill messages of bench/search.py's generated mailbox, loaded the way that
bench loads it: `InboundPipeline.ingest` with 8 tasks, then indexed in batches of 500; kept, so
a later run with the same --root reuses it, and an interrupted load is used as far as it got).
Each round starts `mailyard serve --workers W` (tests/e2e/server.Server) on each directory in
turn (the order alternates between rounds), --sessions SMTP connections send --mails messages of
--size bytes each to the account, and the bench prints accepted mails/s (first MAIL to the last
250) and delivered mails/s (to the queue drained: stored and indexed), with the load averages.
The medians and the full/empty ratios come last.

    .venv/bin/python bench/ingest_scale.py --root /tmp/ingest-scale --prefill 100000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import smtplib
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import search as searchbench  # noqa: E402

from mailyard.app import Runtime  # noqa: E402
from mailyard.config import Config  # noqa: E402
from tests.e2e.server import Server  # noqa: E402

USER, PASSWORD, DOMAIN = searchbench.USER, searchbench.PASSWORD, searchbench.DOMAIN
NO_LIMITS = {"messages_per_ip_per_minute": 0, "connections_per_ip": 0}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def prefill(data: Path, messages: int) -> int:
    """Load `messages` generated messages into `data` (or finish an interrupted load)."""
    meta_path = data / searchbench.META
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("loaded", 0) >= messages:
        return int(meta["loaded"])
    if meta.get("loaded"):
        return int(meta["loaded"])  # an interrupted load: used as far as it got
    data.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(Config(), data_dir=data, domains=(DOMAIN,))
    runtime = Runtime.open(config)
    try:
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        meta = {"messages": messages, "seed": 1, "end_ms": int(end.timestamp() * 1000),
                "engine": "sqlite", "blobs": "files"}
        args = argparse.Namespace(messages=messages, seed=1, concurrency=8, data_dir=str(data))
        await searchbench.load(runtime, args, searchbench.make_corpus(1), meta)
        return int(meta["loaded"])
    finally:
        runtime.close()


def body(size: int, n: int, session: int) -> bytes:
    head = (f"From: sender{session}@remote.test\r\nTo: {USER}\r\nSubject: scale {session} {n}"
            f"\r\nMessage-ID: <scale-{session}-{n}-{time.time_ns()}@remote.test>\r\n\r\n")
    line = f"the quick brown fox jumps over the lazy dog, mail number {n}\r\n"
    return (head + line * max(1, (size - len(head)) // len(line))).encode()


def send(port: int, session: int, mails: int, size: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
        for n in range(mails):
            smtp.sendmail(f"sender{session}@remote.test", [USER], body(size, n, session))


@dataclasses.dataclass
class Run:
    name: str
    accepted: float
    delivered: float
    loads: tuple[str, str]


def measure(name: str, root: Path, args: argparse.Namespace) -> Run:
    server = Server(root, domains=(DOMAIN,), workers=args.workers, limits=NO_LIMITS)
    server.start()
    try:
        before = loadavg()
        threads = [threading.Thread(target=send, args=(server.smtp_port, s, args.mails,
                                                      args.size))
                   for s in range(args.sessions)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        accepted = time.perf_counter() - started
        server.wait_queue_empty(timeout=600)
        delivered = time.perf_counter() - started
        total = args.sessions * args.mails
        return Run(name, total / accepted, total / delivered, (before, loadavg()))
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--prefill", type=int, default=100_000)
    parser.add_argument("--prefill-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--mails", type=int, default=100, help="per session")
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    full, empty = args.root / "full", args.root / "empty"
    loaded = asyncio.run(prefill(full / "data", args.prefill))
    print(f"full account: {loaded} messages pre-filled", flush=True)
    if args.prefill_only:
        return
    if not (empty / "data").exists():
        Server(empty, domains=(DOMAIN,)).add_user(USER, PASSWORD)
    runs: dict[str, list[Run]] = {"empty": [], "full": []}
    for r in range(args.rounds):
        order = [("empty", empty), ("full", full)]
        for name, root in (order if r % 2 == 0 else order[::-1]):
            run = measure(name, root, args)
            runs[name].append(run)
            print(f"round {r + 1} {name}: accepted {run.accepted:.1f} mails/s, delivered "
                  f"{run.delivered:.1f} mails/s (load average {run.loads[0]} -> "
                  f"{run.loads[1]})", flush=True)
    acc = {k: statistics.median(x.accepted for x in v) for k, v in runs.items()}
    dlv = {k: statistics.median(x.delivered for x in v) for k, v in runs.items()}
    print(f"medians over {args.rounds} rounds ({args.sessions}x{args.mails} mails of {args.size}"
          f" B, workers={args.workers}, full = {loaded} messages): accepted empty "
          f"{acc['empty']:.1f}, full {acc['full']:.1f} mails/s ({acc['full'] / acc['empty']:.2f}x);"
          f" delivered empty {dlv['empty']:.1f}, full {dlv['full']:.1f} mails/s "
          f"({dlv['full'] / dlv['empty']:.2f}x)")


if __name__ == "__main__":
    main()
