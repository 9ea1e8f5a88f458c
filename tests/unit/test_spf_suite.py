"""The RFC 7208 conformance suite (rfc7208-tests.yml, vendored from the pyspf sdist under its
BSD licence in tests/data/spf) run through our SPF step, `auth.spf_check`.

Each scenario's zone data is served by a real DNS server on loopback (tests/dnsserver.py), and
`spf_check` asks it through the blocking twin of the server's resolver, exactly as the MX does:
the suite tests our DNS answers' wire handling (multi-string TXT, CNAMEs, timeouts) as well as
the evaluation. Zone conventions are the suite's own (see its README and pyspf's testspf.py):
an "SPF" record is also published as TXT unless the name has a TXT entry ("TXT: NONE" means
none), and a bare TIMEOUT entry makes queries for the types the name lacks go unanswered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dnslib import AAAA, CNAME, MX, PTR, A

from mailyard.dns import Resolver
from mailyard.services.checks.auth import SPFResult, spf_check
from tests.dnsserver import TIMEOUT, TestDNS

SUITE = Path(__file__).resolve().parents[1] / "data" / "spf" / "rfc7208-tests.yml"
QTYPES = ("A", "AAAA", "MX", "PTR", "TXT")
DNS_TIMEOUT = 0.4
"""Seconds the resolver waits for each answer: short, since the suite's TIMEOUT names are never
answered and every such case waits this long."""
PATIENT_TIMEOUT = 15.0
"""An unexpected temperror is asked again with this: on a busy machine the loopback server may
answer a query after DNS_TIMEOUT (CI saw it once), which says nothing about SPF."""


def _scenarios() -> list[dict[str, Any]]:
    with SUITE.open("rb") as f:
        return [s for s in yaml.safe_load_all(f) if s]


SCENARIOS = _scenarios()
CASES = [(n, name) for n, s in enumerate(SCENARIOS) for name in s["tests"]]


def _strings(value: Any) -> list[bytes]:
    """A record's character-strings. The suite's "no strings at all" (null-text) cannot go on
    the wire (RFC 1035 §3.3.14: one or more), so it is served as one empty string, the
    nearest record a real server could publish; both are "not an SPF record"."""
    values = value if isinstance(value, list) else [value]
    return [str(v).encode("utf-8") for v in values] or [b""]


def _rdata(rtype: str, value: Any) -> Any:
    if rtype == "MX":
        return MX(str(value[1]).rstrip(".") + ".", int(value[0]))
    if rtype == "PTR":
        return PTR(str(value).rstrip(".") + ".")
    if rtype == "CNAME":
        return CNAME(str(value).rstrip(".") + ".")
    if rtype == "AAAA":
        return AAAA(str(value))
    if rtype == "A":
        return A(str(value))
    raise ValueError(f"zone data of type {rtype} is not in the suite")


def load_zone(dns: TestDNS, zonedata: dict[str, list[Any]]) -> None:
    for name, entries in zonedata.items():
        records: dict[str, list[Any]] = {}
        timeout = False
        for entry in entries:
            if entry == "TIMEOUT":
                timeout = True
                continue
            for rtype, value in entry.items():
                records.setdefault(rtype, []).append(value)
        if "SPF" in records and "TXT" not in records:
            records["TXT"] = records["SPF"]
        txt = [_strings(v) for v in records.pop("TXT", []) if v != "NONE"]
        records.pop("SPF", None)
        if txt:
            dns.set_txt_strings(name, txt)
        for rtype, values in records.items():
            dns.set_rdata(name, rtype, [_rdata(rtype, v) for v in values])
        if timeout:
            present = set(records) | ({"TXT"} if txt else set())
            if not present:
                dns.fail(name, TIMEOUT)
            for rtype in QTYPES:
                if rtype not in present:
                    dns.fail_type(name, rtype, TIMEOUT)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[int, TestDNS]]:
    started: dict[int, TestDNS] = {}
    yield started
    for dns in started.values():
        dns.stop()


def _server(servers: dict[int, TestDNS], n: int) -> TestDNS:
    if n not in servers:
        dns = TestDNS().start()
        load_zone(dns, SCENARIOS[n]["zonedata"])
        servers[n] = dns
    return servers[n]


@pytest.mark.parametrize(("scenario", "name"), CASES, ids=[name for _, name in CASES])
def test_rfc7208(servers: dict[int, TestDNS], scenario: int, name: str) -> None:
    case = SCENARIOS[scenario]["tests"][name]
    dns = _server(servers, scenario)
    expected = case["result"] if isinstance(case["result"], list) else [case["result"]]
    got = _check(dns, case, DNS_TIMEOUT)
    if got.result == "temperror" and "temperror" not in expected:
        got = _check(dns, case, PATIENT_TIMEOUT)
    assert got.result in expected, f"{case.get('spec')}: {case.get('description')}"
    if "explanation" in case:
        assert got.explanation == case["explanation"]


def _check(dns: TestDNS, case: dict[str, Any], timeout: float) -> SPFResult:
    resolver = Resolver([dns.address], timeout=timeout).sync()
    return spf_check(resolver, case["host"], case["mailfrom"], case["helo"],
                     querytime=max(20.0, timeout * 4), default_explanation="DEFAULT")


def test_suite_is_complete() -> None:
    """The vendored file is the whole suite (guards against a truncated copy)."""
    assert len(SCENARIOS) >= 15
    assert len(CASES) >= 200
