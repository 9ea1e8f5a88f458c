"""Every listener fuzzed at once (tests/fuzzlisteners.py): SMTP, submission (STARTTLS and
implicit TLS), IMAP and IMAPS, POP3 and POP3S, and the HTTPS listener (the JMAP API, upload,
download, EventSource, /jmap/ws, /metrics /healthz /readyz and the webmail's paths), with
random and mutated input, while EHLO, NOOP and a JMAP call on other connections must keep
answering within max(250 ms, 5x their baseline measured here before the fuzzing) (less the
time the kernel kept a server thread or the probe runnable but off the CPU; one lone slow
probe that no input open then makes slow again alone is an outlier of a busy machine, shown
with the figures), the
server's RSS stays within its baseline + 150 MB, the server stays up and ready, and its log
gets no traceback and no ERROR record, and no reply carries one.

Seeded and deterministic per case: MAILYARD_FUZZ_SEED=<seed> runs the same inputs again (the
seed is in the failure message); MAILYARD_FUZZ_SECONDS bounds the fuzzing (default 90 s;
replaying the inputs behind a failure alone, to name the one that does it, takes up to
MAILYARD_FUZZ_REPLAY_SECONDS more, default 60 s). The long run: bench/fuzz_listeners.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.fuzzlisteners import SECONDS_ENV, SEED_ENV, Campaign, env_seed, fuzz_server

SECONDS = float(os.environ.get(SECONDS_ENV, "90"))
REPLAY_SECONDS = float(os.environ.get("MAILYARD_FUZZ_REPLAY_SECONDS", "60"))


def test_every_listener_survives_fuzzing(tmp_path: Path) -> None:
    seed = env_seed()
    with fuzz_server(tmp_path) as (srv, ctx, targets):
        campaign = Campaign(srv, ctx, targets, seed)
        try:
            campaign.run(SECONDS)
            findings = campaign.analyse(REPLAY_SECONDS)
        finally:
            campaign.probes.close()
        # Fuzzing that sent nothing anywhere could not fail: every listener took cases.
        idle = [name for name, f in campaign.fuzzer.figures.items() if f.cases == 0]
        figures = campaign.figures()
    assert not idle, f"listeners never fuzzed: {idle}\n{figures}"
    assert not findings, (
        f"{len(findings)} finding(s) fuzzing the listeners with seed {seed} "
        f"(again: {SEED_ENV}={seed}):\n\n" + "\n\n".join(map(str, findings))
        + f"\n\n{figures}")
