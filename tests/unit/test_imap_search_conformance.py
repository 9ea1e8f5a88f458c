"""The pieces of SEARCH conformance that are plain functions: RETURN options with PARTIAL and
UPDATE (RFC 9394, RFC 5267), PARTIAL windows, what SAVE and MODSEQ cover, ESEARCH data, and the
header readings behind FROM/TO/CC/BCC, TEXT and SENT* (RFC 3501 §6.4.4)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailyard.protocols.imap.esearch import esearch_data, partial_window, returned
from mailyard.protocols.imap.grammar import (
    ParseError,
    PartialRange,
    SearchProgram,
    Tokenizer,
    parse_search,
)
from mailyard.protocols.imap.search import field_text, head_text, sent_day


def program(text: str) -> SearchProgram:
    return parse_search(Tokenizer(text.encode()))


@pytest.mark.parametrize(("text", "options", "partial"), [
    ("RETURN (PARTIAL 1:100) ALL", ("PARTIAL",), PartialRange(1, 100)),
    ("RETURN (PARTIAL 500:400) ALL", ("PARTIAL",), PartialRange(400, 500)),
    ("RETURN (PARTIAL -1:-100) ALL", ("PARTIAL",), PartialRange(1, 100, True)),
    ("RETURN (MIN PARTIAL -5:-1 COUNT) ALL", ("MIN", "PARTIAL", "COUNT"),
     PartialRange(1, 5, True)),
    ("RETURN (UPDATE) ALL", ("ALL", "UPDATE"), None),
    ("RETURN (CONTEXT) ALL", ("ALL", "CONTEXT"), None),
    ("RETURN (UPDATE COUNT) ALL", ("UPDATE", "COUNT"), None),
    ("RETURN (SAVE) ALL", ("SAVE",), None),
    ("RETURN (SAVE UPDATE) ALL", ("ALL", "SAVE", "UPDATE"), None),
    ("RETURN () ALL", ("ALL",), None),
    ("ALL", None, None),
])
def test_return_options(text: str, options: tuple[str, ...] | None,
                        partial: PartialRange | None) -> None:
    parsed = program(text)
    assert parsed.return_options == options
    assert parsed.partial == partial


@pytest.mark.parametrize("text", [
    "RETURN (PARTIAL 1:5 ALL) ALL", "RETURN (ALL PARTIAL 1:5) ALL",
    "RETURN (PARTIAL 1:5 PARTIAL 6:9) ALL", "RETURN (PARTIAL) ALL", "RETURN (PARTIAL 0:5) ALL",
    "RETURN (PARTIAL 1:*) ALL", "RETURN (PARTIAL -1:5) ALL", "RETURN (PARTIAL 5) ALL",
    'RETURN (PARTIAL "1:5") ALL', "RETURN (PARTIAL 1:4294967296) ALL", "RETURN (BOGUS) ALL",
])
def test_bad_return_options(text: str) -> None:
    with pytest.raises(ParseError):
        program(text)


def test_partial_range_text() -> None:
    assert str(PartialRange(1, 100)) == "1:100"
    assert str(PartialRange(1, 100, True)) == "-1:-100"


ITEMS = [10, 20, 30, 40, 50]


@pytest.mark.parametrize(("rng", "window"), [
    (PartialRange(1, 2), [10, 20]),
    (PartialRange(4, 100), [40, 50]),
    (PartialRange(6, 9), []),
    (PartialRange(1, 1, True), [50]),
    (PartialRange(1, 2, True), [40, 50]),
    (PartialRange(2, 9, True), [10, 20, 30, 40]),
    (PartialRange(6, 9, True), []),
])
def test_partial_window(rng: PartialRange, window: list[int]) -> None:
    assert partial_window(ITEMS, rng) == window


@given(st.lists(st.integers(), max_size=30), st.integers(1, 40), st.integers(1, 40),
       st.booleans())
def test_partial_window_is_the_positions_counted(items: list[int], a: int, b: int,
                                                 from_end: bool) -> None:
    rng = PartialRange(min(a, b), max(a, b), from_end)
    n = len(items)
    positions = range(rng.low, rng.high + 1)
    want = [items[n - p] for p in reversed(positions) if p <= n] if from_end else \
        [items[p - 1] for p in positions if p <= n]
    assert partial_window(items, rng) == want


@pytest.mark.parametrize(("options", "partial", "picked"), [
    (("ALL",), None, ITEMS),
    (("SAVE",), None, ITEMS),
    (("MIN",), None, [10]),
    (("MAX",), None, [50]),
    (("MIN", "MAX"), None, [10, 50]),
    (("MIN", "COUNT"), None, ITEMS),
    (("PARTIAL",), PartialRange(2, 3), [20, 30]),
    (("MIN", "PARTIAL"), PartialRange(1, 2, True), [10, 40, 50]),
])
def test_returned(options: tuple[str, ...], partial: PartialRange | None,
                  picked: list[int]) -> None:
    """What SAVE keeps (RFC 5182 §2.1) and MODSEQ is taken over (RFC 7162 §3.1.5)."""
    assert returned(ITEMS, options, partial) == picked


def test_esearch_data() -> None:
    assert esearch_data([2, 3, 4, 9], ("MIN", "MAX", "COUNT", "ALL"), None, 7) == [
        "MIN 2", "MAX 9", "COUNT 4", "ALL 2:4,9", "MODSEQ 7"]
    assert esearch_data([], ("MIN", "MAX", "COUNT", "ALL"), None) == ["COUNT 0"]
    assert esearch_data([1, 2], ("PARTIAL",), PartialRange(3, 5)) == ["PARTIAL (3:5 NIL)"]
    assert esearch_data([1, 2, 5], ("PARTIAL",), PartialRange(1, 2, True)) == [
        "PARTIAL (-1:-2 2,5)"]


HEAD = (b'From: "Joe Q" (the boss) <joe@x.test>\r\n'
        b"To: friends: ann@a.test,\r\n\tbob@b.test;\r\n"
        b"Cc: =?utf-8?q?J=C3=BCrgen?= <j@x.test>\r\n"
        b"Date: Mon, 1 Jan 2024 23:30:00 -0500\r\n"
        b"Subject: alpha\r\n\r\n")


def test_field_text_is_the_decoded_value() -> None:
    assert field_text(HEAD, "from") == '"joe q" (the boss) <joe@x.test>'
    assert field_text(HEAD, "to") == "friends: ann@a.test, bob@b.test;"
    assert field_text(HEAD, "cc") == "jürgen <j@x.test>"
    assert field_text(HEAD, "bcc") is None


def test_head_text_has_every_field() -> None:
    text = head_text(HEAD)
    assert "subject: alpha" in text and "jürgen" in text and "ann@a.test, bob@b.test" in text


@pytest.mark.parametrize(("date", "day"), [
    ("Mon, 1 Jan 2024 23:30:00 -0500", dt.date(2024, 1, 1)),
    ("Tue, 2 Jan 2024 00:30:00 +0200", dt.date(2024, 1, 2)),
    ("2 Jan 2024 00:30 GMT", dt.date(2024, 1, 2)),
    ("Wed, 31 Dec 99 23:59:59 +1400", dt.date(1999, 12, 31)),
    ("not a date", None),
    ("Mon, 31 Feb 2024 10:00:00 +0000", None),
])
def test_sent_day_is_the_day_the_field_names(date: str, day: dt.date | None) -> None:
    assert sent_day(f"Subject: x\r\nDate: {date}\r\n\r\n".encode()) == day


def test_no_date_field_no_sent_day() -> None:
    assert sent_day(b"Subject: x\r\n\r\n") is None
