"""LIST/LSUB pattern matching (RFC 3501 §6.3.8): the linear-time matcher agrees with a plain
reference definition, and a pattern built to make a backtracking matcher explode is fast."""

from __future__ import annotations

import functools
import time

from hypothesis import given
from hypothesis import strategies as st

from mailyard.protocols.imap.listmatch import ListPattern, Matcher, collapse, combine


def reference_match(pattern: str, name: str, delimiter: str = "/") -> bool:
    """The definition, by recursion on both strings (exponential without the cache)."""

    @functools.cache
    def go(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(name)
        ch = pattern[i]
        if ch == "*":
            return go(i + 1, j) or (j < len(name) and go(i, j + 1))
        if ch == "%":
            return go(i + 1, j) or (j < len(name) and name[j] != delimiter and go(i, j + 1))
        return j < len(name) and name[j] == ch and go(i + 1, j + 1)

    return go(0, 0)


ALPHABET = st.sampled_from("ab/*%")
NAMES = st.text(alphabet=st.sampled_from("ab/"), max_size=12)


@given(st.text(alphabet=ALPHABET, max_size=10), NAMES)
def test_agrees_with_the_definition(pattern: str, name: str) -> None:
    assert Matcher.compile(pattern).match(name) == reference_match(pattern, name)


@given(st.text(alphabet=ALPHABET, max_size=10), NAMES)
def test_collapsing_wildcards_keeps_the_meaning(pattern: str, name: str) -> None:
    assert reference_match(collapse(pattern), name) == reference_match(pattern, name)


@given(st.text(alphabet=st.sampled_from("ab.*%"), max_size=8),
       st.text(alphabet=st.sampled_from("ab./"), max_size=10))
def test_other_delimiters(pattern: str, name: str) -> None:
    assert Matcher.compile(pattern, ".").match(name) == reference_match(pattern, name, ".")


def test_rfc3501_examples() -> None:
    def names(reference: str, pattern: str) -> list[str]:
        p = ListPattern(combine(reference, pattern))
        return [n for n in ["INBOX", "INBOX/a", "Mail", "Mail/x", "Mail/x/y", "~/Mail/z", "a.b"]
                if p.match(n)]

    assert names("", "*") == ["INBOX", "INBOX/a", "Mail", "Mail/x", "Mail/x/y", "~/Mail/z", "a.b"]
    assert names("", "%") == ["INBOX", "Mail", "a.b"]
    assert names("Mail/", "%") == ["Mail/x"]
    assert names("Mail/", "/%") == ["Mail/x"]
    assert names("", "Mail/*") == ["Mail/x", "Mail/x/y"]
    assert names("", "inbox") == ["INBOX"]
    assert names("", "InBoX/%") == ["INBOX/a"]
    assert names("", "in%") == ["INBOX"]  # INBOX is case-insensitive, wildcards or not
    assert names("~/Mail/", "%") == ["~/Mail/z"]
    assert names("", "(x)[y]") == []
    assert ListPattern(combine("", "a.?")).match("a.?")
    assert not ListPattern(combine("", "a?")).match("ab")
    assert Matcher.compile("a%", "").match("a/b")


def test_many_stars_take_linear_time() -> None:
    """Issue 17: "************x" against a 30-character name took 44 s as a regex. Compared
    with an ordinary pattern on the same name, never against a wall-clock figure."""
    name = "a" * 30
    evil = Matcher.compile("*a" * 200 + "x")
    plain = Matcher.compile("a" * 30)

    def timed(m: Matcher, rounds: int = 20) -> float:
        started = time.perf_counter()
        for _ in range(rounds):
            m.match(name)
        return time.perf_counter() - started

    assert not evil.match(name) and plain.match(name)
    # The evil pattern is ~13x longer; a backtracking matcher would be astronomically slower.
    assert timed(evil) < 200 * max(timed(plain), 1e-4)


def test_inbox_case_folding_needs_a_spelled_prefix() -> None:
    assert ListPattern("in%").match("INBOX") and ListPattern("Inbox").match("INBOX")
    assert ListPattern("iNbOx*").match("INBOX") and ListPattern("inb*").match("INBOX")
    assert ListPattern("*").match("INBOX") and ListPattern("%X").match("INBOX")
    assert not ListPattern("*x").match("INBOX") and not ListPattern("*o*").match("INBOX")
    assert not ListPattern("inboxes").match("INBOX") and not ListPattern("x%").match("INBOX")
