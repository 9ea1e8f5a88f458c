"""The long run of the listener fuzzer (tests/fuzzlisteners.py; the short one is
tests/e2e/test_fuzz_listeners.py in `make test`): every listener of a fresh `mailyard serve`
fuzzed for N minutes while EHLO, NOOP and a JMAP call are timed on connections of their own.

Prints, per listener, the cases and bytes sent and how the connections ended; per probe, the
baseline (p90 with no fuzzing), the limit (max(250 ms, 5x baseline)), p50/p99/max while fuzzed
and how many went over; the server's RSS (min/max) and CPU time; then every finding (log
errors, slow probes, RSS, leaks into replies), each with the input that causes it when
replaying the suspects alone finds it.

    .venv/bin/python bench/fuzz_listeners.py --minutes 5 --seed 17
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fuzzlisteners import Campaign, env_seed, fuzz_server  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", default=env_seed())
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--replay-seconds", type=float, default=180.0,
                        help="time to replay suspects alone and shrink the reproducers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailyard-fuzz-") as tmp, \
            fuzz_server(Path(tmp)) as (srv, ctx, targets):
        campaign = Campaign(srv, ctx, targets, args.seed, args.concurrency)
        try:
            campaign.run(args.minutes * 60)
            findings = campaign.analyse(args.replay_seconds)
        finally:
            campaign.probes.close()
        print(campaign.figures())
        print(f"\n{len(findings)} finding(s):")
        for finding in findings:
            print(f"\n{finding}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
