"""MTA-STS policies seen, shared by the nodes of a cluster (issue 21) through the directory
database (store/postgres/mtasts.py): a node that never fetched a domain's policy still refuses
the downgrade an attacker makes by stripping the TXT record or blocking the policy host, and a
node that saw an old policy picks up the new one another node fetched without fetching it.
Real servers: a TestDNS, an HTTPS policy host with a CA of the test's own, PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mailyard.dns import Resolver
from mailyard.mtasts import MTASTS, Policy
from mailyard.store.postgres.mtasts import PostgresSeenPolicies
from tests.dnsserver import TestDNS
from tests.e2e.server import free_port
from tests.unit import test_mtasts as base
from tests.unit.test_mtasts import (
    DOMAIN,
    HOST,
    NOW,
    PKI,
    TXT_NAME,
    Clock,
    PolicyServer,
    response,
)

# The single-node suite's fixtures: its DNS, HTTPS policy host, CA and clock.
pki = base.pki
dns = base.dns
https = base.https
clock = base.clock


@pytest.fixture
def dsn(postgres_dsn: str) -> str:
    return postgres_dsn


class Nodes:
    """MTA-STS lookups of several nodes: each its own memory, all one database."""

    def __init__(self, dns: TestDNS, https: PolicyServer, pki: PKI, clock: Clock,
                 dsn: str) -> None:
        self.args = (dns, https, pki, clock, dsn)
        self.stores: list[PostgresSeenPolicies] = []

    def node(self, dsn: str | None = None) -> MTASTS:
        dns, https, pki, clock, shared = self.args
        store = PostgresSeenPolicies(dsn or shared)
        self.stores.append(store)
        return MTASTS(Resolver([dns.address], timeout=2.0), port=https.port,
                      cafile=pki.ca_file, timeout=2.0, clock=clock, seen=store)

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture
async def nodes(dns: TestDNS, https: PolicyServer, pki: PKI, clock: Clock,
                dsn: str) -> AsyncIterator[Nodes]:
    made = Nodes(dns, https, pki, clock, dsn)
    try:
        yield made
    finally:
        made.close()


ENFORCED = Policy("enforce", ("mx1.remote.test", "*.mx.remote.test"), 86400,
                  "20261129T000000", NOW)


async def test_a_node_that_never_fetched_the_policy_keeps_it_when_txt_is_stripped(
        nodes: Nodes, dns: TestDNS, https: PolicyServer) -> None:
    a, b = nodes.node(), nodes.node()
    assert await a.policy(DOMAIN) == ENFORCED
    dns.remove(TXT_NAME)  # the attacker on the path
    assert await b.policy(DOMAIN) == ENFORCED
    assert len(https.requests) == 1


async def test_a_node_that_never_fetched_the_policy_keeps_it_when_the_host_is_blocked(
        nodes: Nodes, dns: TestDNS, https: PolicyServer) -> None:
    a = nodes.node()
    assert await a.policy(DOMAIN) == ENFORCED
    https.reply = b""  # the policy host answers nothing usable
    dns.set(HOST, "A", ["127.0.0.2"])  # or is not reachable at all
    b = nodes.node()
    assert await b.policy(DOMAIN) == ENFORCED  # same id in TXT: no fetch needed


async def test_a_restarted_node_keeps_what_it_fetched(nodes: Nodes, dns: TestDNS) -> None:
    assert await nodes.node().policy(DOMAIN) == ENFORCED
    dns.remove(TXT_NAME)
    assert await nodes.node().policy(DOMAIN) == ENFORCED


async def test_a_new_policy_fetched_by_one_node_reaches_another_without_a_fetch(
        nodes: Nodes, dns: TestDNS, https: PolicyServer, clock: Clock) -> None:
    a, b = nodes.node(), nodes.node()
    assert await a.policy(DOMAIN) == ENFORCED
    assert await b.policy(DOMAIN) == ENFORCED
    assert len(https.requests) == 1
    dns.set(TXT_NAME, "TXT", ["v=STSv1; id=2"])
    https.reply = response("version: STSv1\nmode: enforce\nmx: mx9.remote.test\nmax_age: 600\n")
    clock.now += 10
    new = await a.policy(DOMAIN)
    assert new == Policy("enforce", ("mx9.remote.test",), 600, "2", NOW + 10)
    assert await b.policy(DOMAIN) == new
    assert len(https.requests) == 2


async def test_an_older_policy_does_not_replace_a_newer_one(nodes: Nodes, dsn: str) -> None:
    store = PostgresSeenPolicies(dsn)
    try:
        newer = Policy("enforce", ("mx9.remote.test",), 600, "2", NOW + 10)
        await store.put(DOMAIN, newer)
        await store.put(DOMAIN, ENFORCED)
        assert await store.get(DOMAIN) == newer
        assert await store.get("other.test") is None
    finally:
        store.close()


async def test_an_expired_shared_policy_is_not_used(nodes: Nodes, dns: TestDNS,
                                                    clock: Clock) -> None:
    assert await nodes.node().policy(DOMAIN) == ENFORCED
    dns.remove(TXT_NAME)
    clock.now += 86400
    assert await nodes.node().policy(DOMAIN) is None


async def test_an_unreachable_database_costs_the_sharing_not_the_policy(
        nodes: Nodes, https: PolicyServer) -> None:
    node = nodes.node(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    assert await node.policy(DOMAIN) == ENFORCED
    assert len(https.requests) == 1


async def test_a_domain_without_a_policy_is_asked_about_once_per_recheck(
        nodes: Nodes, dns: TestDNS, clock: Clock) -> None:
    """The price of not asking the database per message: a node that found no policy for a
    domain learns one another node fetched meanwhile at its next look, `seen_recheck` later,
    if the TXT record it sees did not change (here: stripped all along on its path)."""
    dns.remove(TXT_NAME)
    b = nodes.node()
    assert await b.policy(DOMAIN) is None
    dns.set(TXT_NAME, "TXT", [base.TXT])
    a = nodes.node()
    assert await a.policy(DOMAIN) == ENFORCED
    dns.remove(TXT_NAME)
    clock.now += b.seen_recheck - 1
    assert await b.policy(DOMAIN) is None
    clock.now += 1
    policy = await b.policy(DOMAIN)
    assert policy is not None and policy.id == ENFORCED.id
