"""Concurrency, proved (issue 16): the model-based IMAP stress test, short run.

Four sessions (plain IMAP4rev1, CONDSTORE, QRESYNC, plain) share one INBOX, each doing 150
random operations (APPEND with twin messages, COPY, MOVE, STORE with and without
UNCHANGEDSINCE, EXPUNGE, UID EXPUNGE, FETCH, NOOP, IDLE, SMTP delivery through two pipeline
worker processes), each keeping its own view from what the server told it; at the end every
view must equal the server's state and nothing may be lost or resurrected. What is checked and
what NO is allowed: tests/e2e/imapmodel.py. A seed reproduces the workload (not the schedule);
the long run is bench/imap_model.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.imapmodel import Config, run_model
from tests.e2e.server import Server

PASSWORD = "model-password-123"
SEEDS = [1, 2, 3]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("imap-model"), workers=2,
                 limits={"messages_per_ip_per_minute": 0, "connections_per_ip": 0},
                 imap={"connections_per_ip": 0, "connections_per_user": 0})
    for seed in SEEDS:
        srv.add_user(f"model{seed}@example.test", PASSWORD)
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("seed", SEEDS)
def test_sessions_agree_with_the_server(server: Server, seed: int, tmp_path: Path) -> None:
    """One account per seed, so each run starts from an empty INBOX."""
    config = Config(port=server.imap_port, smtp_port=server.smtp_port,
                    user=f"model{seed}@example.test", password=PASSWORD,
                    sessions=4, ops=150, seed=seed)
    result = asyncio.run(run_model(config, drain=server.wait_queue_empty))
    print(result.summary())
    if result.failures:
        result.write_transcripts(tmp_path / "transcripts")
        raise AssertionError(result.report()
                             + f"\ntranscripts: {tmp_path / 'transcripts'}")
