"""Layer 1 decisions on the real SQLite policy store (policy.db in a temporary dir), and the
Authentication-Results core: forged fields removed, everything else byte for byte, fuzzed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.core.authresults import MethodResult, authserv_id, format_value, strip_ours
from mailyard.dns import Resolver
from mailyard.services.checks import Action, SMTPEnvelope, Verdict
from mailyard.services.checks.policy import (
    ALLOWED,
    Lists,
    PolicyCheck,
    PolicySettings,
    parse_entry,
    triplet_key,
)
from mailyard.store.sqlite.policy import SqlitePolicyStore
from tests.dnsserver import TestDNS


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlitePolicyStore]:
    s = SqlitePolicyStore(tmp_path / "policy.db")
    yield s
    s.close()


def test_entries_are_canonical() -> None:
    assert parse_entry("192.0.2.7") == "192.0.2.7/32"
    assert parse_entry("192.0.2.7/24") == "192.0.2.0/24"
    assert parse_entry("2001:DB8::1") == "2001:db8::1/128"
    assert parse_entry("Mail.Example.COM.") == "mail.example.com"
    for bad in ("", "com", "exa mple.com", "a..b", "x" * 64 + ".com", "1.2.3.4/33"):
        with pytest.raises(ValueError):
            parse_entry(bad)


def test_most_specific_network_and_nearest_domain_win() -> None:
    lists = Lists.build([("10.0.0.0/8", "deny", "", 0.0), ("10.1.2.3/32", "allow", "", 0.0),
                         ("example.com", "deny", "", 0.0), ("ok.example.com", "allow", "", 0.0)])
    assert lists.for_ip("10.1.2.3").kind == "allow"  # type: ignore[union-attr]
    assert lists.for_ip("10.9.9.9").kind == "deny"  # type: ignore[union-attr]
    assert lists.for_ip("::ffff:10.9.9.9").kind == "deny"  # type: ignore[union-attr]
    assert lists.for_ip("192.0.2.1") is None
    assert lists.for_domain("a.ok.example.com").kind == "allow"  # type: ignore[union-attr]
    assert lists.for_domain("example.com").kind == "deny"  # type: ignore[union-attr]
    assert lists.for_domain("badexample.com") is None


def test_triplet_groups_neighbouring_addresses() -> None:
    assert triplet_key("192.0.2.7", "A@x.test", "b@y.test") == \
        triplet_key("192.0.2.200", "a@x.test", "B@y.test")
    assert triplet_key("192.0.3.7", "a@x.test", "b@y.test") != \
        triplet_key("192.0.2.7", "a@x.test", "b@y.test")
    assert triplet_key("2001:db8::1", "", "b@y.test").startswith("2001:db8::/64|")


async def test_lists_changed_by_another_connection_apply_at_once(
        store: SqlitePolicyStore, tmp_path: Path) -> None:
    check = PolicyCheck(store, Resolver(["127.0.0.1:9"], 0.5), PolicySettings())
    verdict = Verdict()
    await check.connect("192.0.2.7", verdict)
    assert verdict.action is Action.ACCEPT
    other = SqlitePolicyStore(tmp_path / "policy.db")  # as the CLI does
    other.put("192.0.2.0/24", "deny", "go away")
    other.close()
    verdict = Verdict()
    await check.connect("192.0.2.7", verdict)
    assert verdict.action is Action.REJECT
    assert verdict.reply == "554 5.7.1 Access denied for [192.0.2.7]: go away"


async def test_greylist_timeline(store: SqlitePolicyStore) -> None:
    check = PolicyCheck(store, Resolver(["127.0.0.1:9"], 0.5), PolicySettings(
        greylisting=True, greylist_delay=300, greylist_window=3600, greylist_expire=86400))
    key = triplet_key("192.0.2.7", "a@x.test", "b@y.test")
    t0 = 1_000_000.0
    assert check._greylist(key, t0) == 300
    assert check._greylist(key, t0 + 100) == 200          # too early
    assert check._greylist(key, t0 + 301) == 0            # retried in the window
    assert check._greylist(key, t0 + 50_000) == 0         # passed triplets go straight on
    other = triplet_key("192.0.2.7", "a@x.test", "c@y.test")
    assert check._greylist(other, t0) == 300
    assert check._greylist(other, t0 + 7200) == 300       # came back too late: starts over
    env = SMTPEnvelope("192.0.2.7", "h", "z@z.test", [], state={ALLOWED: True})
    verdict = Verdict()
    await check.rcpt_to(env, "b@y.test", verdict)
    assert verdict.action is Action.ACCEPT, "allow-listed senders are never greylisted"


async def test_blocklist_listing_and_dead_zone() -> None:
    with TestDNS({("7.2.0.192.bl.test", "A"): ["127.0.0.2"]}) as dns:
        dns.fail("dead.test", "TIMEOUT")
        check = PolicyCheck(SqlitePolicyStore(Path(":memory:")), Resolver([dns.address], 0.3),
                            PolicySettings(dnsbl_zones=("dead.test", "bl.test")))
        listed, clean = Verdict(), Verdict()
        await check.connect("192.0.2.7", listed)
        await check.connect("192.0.2.8", clean)
    assert listed.action is Action.REJECT and "bl.test" in listed.reply
    assert listed.reply.startswith("554 5.7.1 ")
    assert clean.action is Action.ACCEPT, "a zone that does not answer lists nobody"


# ------------------------------------------------------------------ Authentication-Results


def test_strip_ours_keeps_others_byte_for_byte() -> None:
    raw = (b"Received: x\r\nAuthentication-Results: (c) MX.Example.Test.;\r\n dkim=pass\r\n"
           b"Authentication-Results: other.test; spf=pass\r\nSubject: s\r\n\r\n"
           b"Authentication-Results: mx.example.test; in the body\r\n")
    assert strip_ours(raw, "mx.example.test") == (
        b"Received: x\r\nAuthentication-Results: other.test; spf=pass\r\nSubject: s\r\n\r\n"
        b"Authentication-Results: mx.example.test; in the body\r\n")
    assert authserv_id(b" mx.example.test 1; none") == "mx.example.test"


def test_format_value() -> None:
    value = format_value("mx.example.test", [
        MethodResult("spf", "pass", [("smtp.mailfrom", "a@b.test")]),
        MethodResult("dmarc", "fail", [("header.from", "b.test")], reason="p=reject"),
        MethodResult("dkim", "fail", [("header.s", "odd value")])])
    assert value == ("mx.example.test;\r\n\tspf=pass smtp.mailfrom=a@b.test;\r\n\t"
                     "dmarc=fail reason=p=reject header.from=b.test;\r\n\t"
                     'dkim=fail header.s="odd value"')
    assert format_value("mx.example.test", []) == "mx.example.test; none"


_header_line = st.one_of(
    st.sampled_from([b"Authentication-Results: mx.example.test; spf=pass",
                     b"authentication-results:MX.EXAMPLE.TEST;dkim=pass",
                     b"Authentication-Results: other.test; spf=fail",
                     b"Authentication-Results:", b" folded continuation", b"\tmore",
                     b"Subject: hello", b"X: y"]),
    st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")))


@settings(max_examples=300, deadline=None)
@given(st.lists(_header_line, max_size=12), st.binary(max_size=60), st.sampled_from(
    [b"\r\n", b"\n"]))
def test_strip_ours_fuzz(lines: list[bytes], body: bytes, eol: bytes) -> None:
    raw = eol.join(lines) + eol + eol + body
    out = strip_ours(raw, "mx.example.test")
    assert out.endswith(eol + body) or out == raw
    assert strip_ours(out, "mx.example.test") == out  # idempotent
    head = b"" if out.startswith(eol) else out[:out.find(eol + eol)]
    for line in head.split(eol):
        if line.lower().startswith(b"authentication-results:"):
            assert authserv_id(line.partition(b":")[2]) != "mx.example.test"
    kept = [x for x in raw.split(eol) if not x.lower().startswith(b"authentication-results")]
    for line in kept:
        if line and not line.startswith((b" ", b"\t")):
            assert line in out
