"""The long run of the model-based IMAP concurrency stress test (issue 16, "Concurrency, proved").

--sessions sessions (plain IMAP4rev1, CONDSTORE, QRESYNC in turn) share one INBOX and do
--ops random operations each (APPEND with byte-identical twins, COPY, MOVE, STORE with and
without UNCHANGEDSINCE, EXPUNGE, UID EXPUNGE, FETCH FLAGS MODSEQ, NOOP, IDLE, SMTP delivery
through the server's pipeline workers), or fewer if --seconds runs out first; every session
keeps its own view from what the server told it, and the end checks compare every view with
the server's state and look for lost and resurrected mail (the checks: tests/e2e/imapmodel.py).

Starts its own `mailyard serve` (tests/e2e/server.Server, temporary data_dir, --workers
pipeline workers) unless --port is given; with --port, --user/--password name an existing
account (its INBOX need not be empty) and --smtp-port enables deliveries. Prints the seed,
operations, ops/s and checks passed/failed; exits 1 if any check failed, writing every
session's transcript to --transcripts (default: a temporary directory, kept).

    .venv/bin/python bench/imap_model.py --sessions 8 --ops 2000 --seed 7
    MAILYARD_TEST_STORE=postgres .venv/bin/python bench/imap_model.py --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.imapmodel import Config, Result, run_model  # noqa: E402
from tests.e2e.server import Server  # noqa: E402

USER = "model@example.test"
PASSWORD = "model-password-123"


def report(result: Result, transcripts: Path | None) -> int:
    if not result.failures:
        print(result.summary())
        return 0
    directory = transcripts or Path(tempfile.mkdtemp(prefix="imap-model-"))
    result.write_transcripts(directory)
    print(result.report())
    print(f"transcripts and the full report: {directory}")
    return 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--ops", type=int, default=1000, help="operations per session")
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="stop the operations after this long (0: when --ops are done)")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--workers", type=int, default=2, help="server --workers")
    parser.add_argument("--no-deliver", action="store_true", help="no SMTP deliveries")
    parser.add_argument("--port", type=int, help="use a running server's IMAP port")
    parser.add_argument("--smtp-port", type=int, default=0, help="with --port: deliveries")
    parser.add_argument("--user", default=USER, help="with --port: an existing user")
    parser.add_argument("--password", default=PASSWORD, help="with --port: its password")
    parser.add_argument("--transcripts", type=Path, help="where failures' transcripts go")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"seed {seed}", flush=True)

    def config(port: int, smtp_port: int, user: str, password: str) -> Config:
        return Config(port=port, smtp_port=smtp_port, user=user, password=password,
                      sessions=args.sessions, ops=args.ops, seconds=args.seconds, seed=seed,
                      deliver=not args.no_deliver)

    if args.port:
        result = asyncio.run(run_model(config(args.port, args.smtp_port, args.user,
                                              args.password)))
        sys.exit(report(result, args.transcripts))
    with tempfile.TemporaryDirectory(prefix="mailyard-bench-") as tmp:
        srv = Server(Path(tmp), workers=args.workers,
                     limits={"messages_per_ip_per_minute": 0, "connections_per_ip": 0},
                     imap={"connections_per_ip": 0, "connections_per_user": 0})
        srv.add_user(USER, PASSWORD)
        srv.start()
        try:
            result = asyncio.run(run_model(config(srv.imap_port, srv.smtp_port, USER, PASSWORD),
                                           drain=srv.wait_queue_empty))
        finally:
            srv.stop()
            log = srv.log_path.read_text(errors="replace")
            if "Traceback" in log:
                start = log.index("Traceback")
                print(f"server log: {log.count('Traceback')} tracebacks; the first:")
                print(log[start:start + 2000])
    print(f"machine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}")
    sys.exit(report(result, args.transcripts))


if __name__ == "__main__":
    main()
