"""core/routing.py: subaddresses, SRS forward and reverse (the draft's SRS0 and SRS1 forms,
hash, timestamp), and the trace counts loop detection reads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailyard.core.routing import SRS, SRSError, split_detail, trace_counts

DAY = 86400.0
NOW = 1_796_000_000.0


def test_split_detail() -> None:
    assert split_detail("alice+news@example.org", "+") == ("alice@example.org", "news")
    assert split_detail("alice+a+b@example.org", "+") == ("alice@example.org", "a+b")
    assert split_detail("alice@example.org", "+") == ("alice@example.org", "")
    assert split_detail("+news@example.org", "+") == ("+news@example.org", "")
    assert split_detail("alice+news@example.org", "") == ("alice+news@example.org", "")
    assert split_detail("alice-news@example.org", "-") == ("alice@example.org", "news")


def test_srs0_round_trip_and_refusals() -> None:
    srs = SRS(b"key", "fwd.example")
    out = srs.forward("Dora@Sender.Example", now=NOW)
    assert out.startswith("SRS0=") and out.endswith("=Sender.Example=Dora@fwd.example")
    assert srs.reverse(out, now=NOW + DAY) == "Dora@Sender.Example"
    assert srs.reverse(out.lower(), now=NOW) == "dora@sender.example"  # a relay lower-cased it
    with pytest.raises(SRSError):
        SRS(b"other", "fwd.example").reverse(out, now=NOW)
    with pytest.raises(SRSError, match="expired"):
        srs.reverse(out, now=NOW + 22 * DAY)
    with pytest.raises(SRSError):
        srs.reverse(out.replace("=Dora@", "=Eve@"), now=NOW)
    with pytest.raises(SRSError):
        srs.reverse("dora@fwd.example", now=NOW)
    assert srs.forward("", now=NOW) == ""
    assert srs.forward("me@fwd.example", now=NOW) == "me@fwd.example"


def test_srs1_names_the_first_forwarder_and_reverses_one_hop() -> None:
    first = SRS(b"one", "first.example")
    second = SRS(b"two", "second.example")
    srs0 = first.forward("dora@sender.example", now=NOW)
    srs1 = second.forward(srs0, now=NOW)
    assert srs1.startswith("SRS1=") and "=first.example==" in srs1
    assert srs1.endswith("@second.example")
    assert second.reverse(srs1, now=NOW) == srs0
    assert first.reverse(second.reverse(srs1, now=NOW), now=NOW) == "dora@sender.example"
    third = SRS(b"three", "third.example")
    again = third.forward(srs1, now=NOW)  # still names the first forwarder
    assert "=first.example==" in again and third.reverse(again, now=NOW) == srs0


@given(st.from_regex(r"[a-z0-9._-]{1,20}", fullmatch=True),
       st.from_regex(r"[a-z0-9-]{1,12}\.[a-z]{2,6}", fullmatch=True),
       st.floats(min_value=0, max_value=4e9))
def test_srs_reverses_what_it_wrote(local: str, domain: str, now: float) -> None:
    srs = SRS(b"secret", "fwd.example")
    assert srs.reverse(srs.forward(f"{local}@{domain}", now=now), now=now) == \
        f"{local}@{domain}"


def test_trace_counts_read_the_top_header_block_only() -> None:
    raw = (b"Received: from a\r\n\tby b; date\r\nDelivered-To: Team@Example.org\r\n"
           b"Received: from c\r\nSubject: x\r\n\r\nReceived: not a header\r\n")
    assert trace_counts(raw) == (2, False)
    assert trace_counts(raw, "team@example.org") == (2, True)
    assert trace_counts(raw, "other@example.org") == (2, False)
