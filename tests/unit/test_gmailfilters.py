"""Gmail-style filters compiled to Sieve (core/sieve/gmailfilters.py): each criterion and
action parsed by our Sieve parser and run by the interpreter on sample messages; the filter
list read back from the script; hostile strings kept inside their Sieve strings."""

from __future__ import annotations

import pytest

from mailyard.core.sieve import Envelope, FileInto, Keep, Redirect, Result, SieveMessage, parse, run
from mailyard.core.sieve.gmailfilters import (
    Filter,
    FilterError,
    compile_filters,
    parse_filters,
)


def message(frm: str = "Boss <boss@remote.test>", to: str = "alice@example.test",
            subject: str = "Quarterly numbers", body: str = "Please read the report.",
            cc: str = "") -> bytes:
    head = f"From: {frm}\r\nTo: {to}\r\n" + (f"Cc: {cc}\r\n" if cc else "")
    return (head + f"Subject: {subject}\r\nMessage-ID: <1@remote.test>\r\n\r\n{body}\r\n"
            ).encode()


def outcome(filters: list[Filter], raw: bytes) -> Result:
    script = parse(compile_filters(filters))
    return run(script, SieveMessage.from_bytes(raw), Envelope("boss@remote.test",
                                                              "alice@example.test"))


def where(result: Result) -> list[tuple[str, tuple[str, ...]]]:
    """(mailbox, flags) of each delivery; the Inbox as INBOX."""
    return [("INBOX" if isinstance(d, Keep) else d.mailbox, tuple(sorted(d.flags)))
            for d in result.deliveries()]


def test_from_label_star_read() -> None:
    f = Filter(from_="boss@remote.test", label="Work", star=True, mark_read=True)
    hit = outcome([f], message())
    assert where(hit) == [("Work", ("\\Flagged", "\\Seen")), ("INBOX", ("\\Flagged", "\\Seen"))]
    assert next(a for a in hit.actions if isinstance(a, FileInto)).copy is True
    miss = outcome([f], message(frm="Someone <someone@else.test>"))
    assert where(miss) == [("INBOX", ())]
    assert miss.actions == []


@pytest.mark.parametrize(("f", "hit", "miss"), [
    (Filter(to="team@example.test", label="Team"),
     message(to="team@example.test"), message()),
    (Filter(to="team@example.test", label="Team"),
     message(cc="Team <team@example.test>"), message()),
    (Filter(subject="invoice", label="Bills"),
     message(subject="Your INVOICE for May"), message()),
    (Filter(has_words="report quarterly", label="Reports"),
     message(), message(subject="Hello")),
    (Filter(has_words="unsubscribe", label="Lists"),
     message(body="click to UNSUBSCRIBE"), message()),
    (Filter(from_="boss@", doesnt_have="report", label="Boss"),
     message(body="lunch?"), message()),
])
def test_each_criterion(f: Filter, hit: bytes, miss: bytes) -> None:
    assert where(outcome([f], hit))[0][0] == f.label
    assert where(outcome([f], miss)) == [("INBOX", ())]


def test_archive_with_and_without_label() -> None:
    assert where(outcome([Filter(from_="boss", label="Work", archive=True)], message())) \
        == [("Work", ())]
    assert where(outcome([Filter(from_="boss", archive=True)], message())) == [("Archive", ())]


def test_forward_keeps_a_copy() -> None:
    result = outcome([Filter(from_="boss", forward_to="me@elsewhere.test")], message())
    assert Redirect("me@elsewhere.test", copy=True) in result.actions
    assert where(result) == [("INBOX", ())]


def test_never_spam_is_an_explicit_inbox_fileinto() -> None:
    result = outcome([Filter(from_="boss", never_spam=True)], message())
    assert result.actions == [FileInto("INBOX")]
    assert result.implicit_keep is False


def test_flags_of_a_later_filter_reach_an_earlier_label() -> None:
    result = outcome([Filter(subject="numbers", label="Work", archive=True),
                      Filter(from_="boss", star=True)], message())
    assert where(result) == [("Work", ("\\Flagged",))]


def test_round_trip() -> None:
    filters = [Filter(from_="boss@remote.test", label="Work", star=True, mark_read=True,
                      id="f1"),
               Filter(to="x@y.test", subject="s", has_words="a b", doesnt_have="c",
                      archive=True, forward_to="z@w.test", never_spam=True, id="f2"),
               Filter(subject='he said "hi" \\o/ *?', label="Ärger & Co", id="f3")]
    script = compile_filters(filters)
    back = parse_filters(script)
    assert back == filters
    assert [f.id for f in back] == ["f1", "f2", "f3"]
    assert parse_filters("require \"fileinto\";\n# mailyard-filters: []\n") == []
    assert parse_filters(compile_filters([])) == []
    parse(compile_filters([]))


@pytest.mark.parametrize("subject", [
    'a"; discard; if true { keep',
    'back\\"; discard; #',
    '\\',
    '"',
    "*",
    "?",
    "a*b?c",
    "${x}",
])
def test_hostile_strings_match_literally(subject: str) -> None:
    f = Filter(subject=subject, label="Caught")
    script = compile_filters([f])
    parse(script)
    assert parse_filters(script) == [f]
    assert where(outcome([f], message(subject=f"x {subject} y")))[0][0] == "Caught"
    # Wildcards are literal: a subject without the characters does not match.
    other = outcome([f], message(subject="plain words"))
    assert where(other) == [("INBOX", ())]
    assert not any(isinstance(a, FileInto) and a.mailbox != "Caught" for a in
                   outcome([f], message(subject=subject)).actions)


@pytest.mark.parametrize(("f", "field"), [
    (Filter(subject="a\nb", label="L"), "subject"),
    (Filter(subject="a\rdiscard;", label="L"), "subject"),
    (Filter(from_="x\u2028y", label="L"), "from"),
    (Filter(label="L"), "from"),
    (Filter(from_="x"), "label"),
    (Filter(from_="x", label="INBOX"), "label"),
    (Filter(from_="x", forward_to="not an address"), "forward_to"),
    (Filter(from_="x", label="a" * 501), "label"),
])
def test_invalid_filters_are_refused(f: Filter, field: str) -> None:
    with pytest.raises(FilterError) as e:
        compile_filters([f])
    assert e.value.field == field


def test_from_json_refuses_unknown_and_wrong_types() -> None:
    assert Filter.from_json({"from": "a", "star": True}) == Filter(from_="a", star=True)
    with pytest.raises(FilterError):
        Filter.from_json({"from": "a", "sieve": "discard;"})
    with pytest.raises(FilterError):
        Filter.from_json({"from": 1})
    with pytest.raises(FilterError):
        Filter.from_json({"star": "yes"})
