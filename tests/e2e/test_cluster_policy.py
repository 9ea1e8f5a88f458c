"""Two `mailyard serve` nodes on one PostgreSQL database share the MX connection policy
(issue 21): `mailyard policy` run with either node's configuration decides at both nodes' MX,
and without Redis (`[store] counters` unset) a greylisted client's retry to the other node
passes, since the triplets are in the same database. The nodes share nothing else here: each
its own data_dir, queue and blobs. Clients come from distinct loopback addresses."""

from __future__ import annotations

import asyncio
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import Server
from tests.pgserver import TestDatabase

DEADLINE = 60.0
"""Every wait below is on a condition; this only bounds a failure."""
GREYLIST_DELAY = 1.0


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    database = TestDatabase()
    dsn = asyncio.run(database.dsn())
    root = Path(tmp_path_factory.mktemp("cluster-policy"))
    made: dict[str, Server] = {}
    try:
        for name in ("a", "b"):
            made[name] = Server(root / name, metadata="", blobs="", cluster="",
                                store={"metadata": dsn},
                                checks={"greylisting": True, "greylist_delay": GREYLIST_DELAY})
        made["a"].add_user("alice@example.test")
        for node in made.values():
            node.start()
        yield made
    finally:
        for node in made.values():
            node.stop()
        asyncio.run(database.drop())


def mail_from(node: Server, source: str) -> tuple[int, bytes]:
    """The MX's answer to MAIL FROM on `node` for a client at `source`."""
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30,
                      source_address=(source, 0)) as client:
        client.ehlo("client.remote.test")
        return client.mail("sender@remote.test")


def until(answer: int, node: Server, source: str) -> bytes:
    deadline = time.monotonic() + DEADLINE
    while True:
        code, text = mail_from(node, source)
        if code == answer:
            return text
        assert time.monotonic() < deadline, f"still {code} {text!r}"
        time.sleep(0.05)


def test_a_deny_set_through_one_node_is_enforced_by_the_other(
        nodes: dict[str, Server]) -> None:
    a, b = nodes["a"], nodes["b"]
    ip = "127.0.0.61"
    assert mail_from(b, ip)[0] == 250
    a.cli("policy", "deny", ip, "--reason", "abuse desk")
    text = until(554, b, ip)
    assert b"abuse desk" in text
    assert mail_from(a, ip)[0] == 554
    assert mail_from(b, "127.0.0.62")[0] == 250  # another client is not denied
    assert ip in b.cli("policy", "list").stdout.decode()
    b.cli("policy", "remove", ip)
    until(250, a, ip)
    until(250, b, ip)


def rcpt(node: Server, source: str) -> int:
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30,
                      source_address=(source, 0)) as client:
        client.ehlo("client.remote.test")
        assert client.mail("sender@greylist.test")[0] == 250
        return client.rcpt("alice@example.test")[0]


def test_a_greylisted_retry_to_the_other_node_passes_without_redis(
        nodes: dict[str, Server]) -> None:
    a, b = nodes["a"], nodes["b"]
    ip = "127.0.0.71"
    assert rcpt(a, ip) == 451  # a new triplet, seen on node a
    time.sleep(GREYLIST_DELAY + 0.2)  # the client waits out the delay, then retries
    assert rcpt(b, ip) == 250  # at node b, which never saw it: node a's first sight counts
    assert rcpt(a, ip) == 250  # passed on b: passes on a too
