"""What the content check costs the ingest path: bench/smtp_ingest.py's run, twice, against
servers that differ only in `[spam] enabled`.

Both servers have the authentication layer off (it would wait on DNS for the bench's made-up
sender domains, which is not what is measured here) and, with --corpus, a global model trained
on the whole SpamAssassin corpus (about 100k tokens), so that every classification looks its
tokens up in a full-size model rather than an empty one.

    .venv/bin/python bench/spam_ingest.py --sessions 20 --mails 25 --size 20000 --workers 2 \
        --corpus ~/.cache/mailyard-spam-corpus
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import smtp_ingest  # noqa: E402
from bench.spam_eval import corpus  # noqa: E402
from mailyard.core import spam  # noqa: E402
from mailyard.core.mime import parse_message  # noqa: E402
from mailyard.store.sqlite.spam import SqliteSpamModel  # noqa: E402
from tests.e2e.server import Server  # noqa: E402


async def train(path: Path, cache: Path) -> None:
    model = SqliteSpamModel(path)
    messages = corpus(cache)
    start = time.perf_counter()
    lessons = []
    for n, (raw, is_spam) in enumerate(messages):
        ids = spam.token_ids(spam.content(raw, parse_message(raw)))
        lessons.append(model.learn("bench-corpus", f"m{n}", ids, is_spam, global_weight=1.0))
    await asyncio.gather(*lessons)
    print(f"global model: {len(messages)} lessons in {time.perf_counter() - start:.1f} s")
    model.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--mails", type=int, default=25)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--corpus", help="SpamAssassin corpus cache dir (see spam_eval.py)")
    parser.add_argument("--order", default="off,on")
    args = parser.parse_args()
    for mode in args.order.split(","):
        with tempfile.TemporaryDirectory(prefix="mailyard-bench-") as tmp:
            srv = Server(Path(tmp), workers=args.workers, checks={"authenticate": False},
                         limits={"messages_per_ip_per_minute": 0, "connections_per_ip": 0})
            enabled = "true" if mode == "on" else "false"
            srv.config_path.write_text(srv.config_path.read_text()
                                       + f"[spam]\nenabled = {enabled}\n")
            if args.corpus:
                asyncio.run(train(srv.data_dir / "spam.db", Path(args.corpus)))
            srv.add_user("alice@example.test")
            srv.start()
            try:
                print(f"--- [spam] enabled = {mode}")
                asyncio.run(smtp_ingest.run(args, srv.smtp_port, srv.data_dir))
            finally:
                srv.stop()


if __name__ == "__main__":
    main()
