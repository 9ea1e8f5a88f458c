"""`serve` runs `mailyard gc` on its own every `[queue] gc_interval` seconds: a dead letter
older than `[queue] dead_letter_days` goes without anyone running the command, one of today
stays. The age is put into the stored `died_at` (no waiting for the clock); the interval is
short only so that the test does not wait a day, and the test waits on the condition."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.server import Server
from tests.e2e.test_dlq_release import age_dead_letter, dead_letters, send, wait_dead

BOB = "bob@example.test"


def test_serve_expires_dead_letters_by_itself(tmp_path: Path) -> None:
    srv = Server(tmp_path, queue={"max_attempts": 1, "gc_interval": 0.5})
    srv.add_user(BOB)
    srv.cli("user", "quota", BOB, "2K")
    srv.start()
    try:
        send(srv, BOB, "old failure", "O" * 5000 + "\n")
        old = wait_dead(srv, BOB)
        send(srv, BOB, "young failure", "Y" * 5000 + "\n")
        deadline = time.monotonic() + 60
        while len(dead_letters(srv)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        young = set(dead_letters(srv)) - {old}
        assert len(young) == 1, dead_letters(srv)
        age_dead_letter(srv, old, 31 * 86400)
        deadline = time.monotonic() + 120
        while old in dead_letters(srv) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert set(dead_letters(srv)) == young
        assert "gc: 1 dead letter(s) expired" in srv.log_path.read_text()
    finally:
        srv.stop()


def test_a_gc_interval_of_0_runs_nothing(tmp_path: Path) -> None:
    """Off: a letter 31 days old stays while the server runs (checked after the server
    answered a later CLI command, so its loop has run for a while)."""
    srv = Server(tmp_path, queue={"max_attempts": 1, "gc_interval": 0})
    srv.add_user(BOB)
    srv.cli("user", "quota", BOB, "2K")
    srv.start()
    try:
        send(srv, BOB, "kept", "K" * 5000 + "\n")
        dead = wait_dead(srv, BOB)
        age_dead_letter(srv, dead, 31 * 86400)
        send(srv, BOB, "second", "S" * 5000 + "\n")
        deadline = time.monotonic() + 60
        while len(dead_letters(srv)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert dead in dead_letters(srv)
        assert "gc:" not in srv.log_path.read_text()
    finally:
        srv.stop()


def test_serve_forgets_greylist_triplets_that_can_no_longer_matter(tmp_path: Path) -> None:
    """Greylisting's table does not only grow: every gc interval the triplets neither retried
    within the window nor passed within the expiry go; a recent one stays. The ages are put
    into the stored times (no waiting for the clock)."""
    from mailyard.app import open_policy_store
    from mailyard.config import load

    srv = Server(tmp_path, queue={"gc_interval": 0.5}, checks={"greylisting": True})
    srv.start()
    srv.stop()  # the data directory and configuration made, the policy store's file too
    policy = open_policy_store(load(str(srv.config_path)))
    now = time.time()
    try:
        policy.put_triplet("old", now - 90 * 86400, now - 60 * 86400)
        policy.put_triplet("recent", now - 3600, now - 1800)
    finally:
        policy.close()
    srv.start()
    try:
        deadline = time.monotonic() + 120
        while "greylist: 1 old triplet(s) forgotten" not in srv.log_path.read_text() \
                and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        srv.stop()
    policy = open_policy_store(load(str(srv.config_path)))
    try:
        assert policy.triplet("old") is None
        assert policy.triplet("recent") is not None
    finally:
        policy.close()
