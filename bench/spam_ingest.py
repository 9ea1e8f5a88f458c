"""What the inbound checks cost the ingest path: bench/smtp_ingest.py's run against servers
that differ only in which layers of issue 7 are on.

Modes (--order, comma separated, run in that order so that alternating them spreads the
machine's background load over both):
  off    no authentication (layer 2) and no content check (layer 3)
  spam   the content check only
  auth   the authentication layer only
  all    both, as a default install runs them (no remote scanner configured)
Layer 1 runs in every mode (allow/deny lists; no blocklist zones or greylisting by default).
With --corpus, every server's global model is trained on the whole SpamAssassin corpus (about
100k tokens), so that every classification looks its tokens up in a full-size model.

    .venv/bin/python bench/spam_ingest.py --sessions 20 --mails 25 --size 20000 --workers 2 \
        --corpus ~/.cache/mailyard-spam-corpus --order off,all,off,all
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
from mailyard.config import load  # noqa: E402
from mailyard.core import spam  # noqa: E402
from mailyard.core.mime import parse_message  # noqa: E402
from mailyard.store.sqlite.spam import SqliteSpamModel  # noqa: E402
from tests.e2e.server import Server  # noqa: E402

#: mode -> ([checks] authenticate, [spam] enabled)
MODES = {"off": (False, False), "spam": (False, True), "auth": (True, False), "all": (True, True)}


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
    parser.add_argument("--order", default="off,all")
    parser.add_argument("--dns", choices=("loopback", "system"), default="loopback",
                        help="the server's resolver (see bench/smtp_ingest.py)")
    parser.set_defaults(store="sqlite", blobs="files")  # what smtp_ingest.run reports
    args = parser.parse_args()
    for mode in args.order.split(","):
        with tempfile.TemporaryDirectory(prefix="mailyard-bench-") as tmp, \
                smtp_ingest.bench_dns(args.dns) as dns:
            if mode not in MODES:
                parser.error(f"unknown mode {mode!r}: one of {', '.join(MODES)}")
            authenticate, content = MODES[mode]
            srv = Server(Path(tmp), workers=args.workers, checks={"authenticate": authenticate},
                         dns=smtp_ingest.dns_config(dns),
                         limits={"messages_per_ip_per_minute": 0, "connections_per_ip": 0})
            enabled = "true" if content else "false"
            srv.config_path.write_text(srv.config_path.read_text()
                                       + f"[spam]\nenabled = {enabled}\n")
            if args.corpus:
                asyncio.run(train(srv.data_dir / "spam.db", Path(args.corpus)))
            srv.add_user("alice@example.test")
            srv.start()
            try:
                print(f"--- {mode}: [checks] authenticate = {str(authenticate).lower()}, "
                      f"[spam] enabled = {enabled}", flush=True)
                asyncio.run(smtp_ingest.run(args, srv.smtp_port, load(str(srv.config_path))))
            finally:
                srv.stop()


if __name__ == "__main__":
    main()
