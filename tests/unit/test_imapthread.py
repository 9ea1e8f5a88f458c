"""RFC 5256 base subject, THREAD=REFERENCES / ORDEREDSUBJECT and RFC 5957 keys (core.imapthread)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.core import imapthread as th
from mailyard.core.mime import decode_words, parse_address_list


def msg(seq: int, subject: str = "", mid: str | None = None, refs: tuple[str, ...] = (),
        irt: tuple[str, ...] = (), date: int | None = None) -> th.ThreadMessage:
    return th.ThreadMessage(seq=seq, number=seq, date=seq if date is None else date,
                            subject=subject, message_id=mid, references=refs, in_reply_to=irt)


def refs_thread(*messages: th.ThreadMessage) -> str:
    return th.render(th.references(messages))


# -------------------------------------------------------------------------- base subject


@pytest.mark.parametrize(("subject", "base", "refwd"), [
    ("Hello", "Hello", False),
    ("Re: Hello", "Hello", True),
    ("RE: re: Fwd: FW: Hello", "Hello", True),
    ("Re[2]: Hello", "Hello", True),
    ("Fw : Hello", "Hello", True),
    ("[list] Re: Hello", "Hello", True),
    ("Re: [list] Hello", "Hello", True),
    ("[list] Hello", "Hello", False),
    ("[list][other]  Hello", "Hello", False),
    ("[list]", "[list]", False),  # the last subj-blob is the subj-base if nothing else is left
    ("[a] [b]", "[b]", False),
    ("Hello (fwd)", "Hello", True),
    ("Hello (FWD) (fwd)  ", "Hello", True),
    ("[Fwd: Hello]", "Hello", True),
    ("Re: [fwd: [Fwd: Re: Hello] ] (fwd)", "Hello", True),
    ("  Hello \t  world  ", "Hello world", False),
    ("Hello\r\n world", "Hello world", False),
    ("Re:", "", True),
    ("", "", False),
    ("Reply: hi", "Reply: hi", False),  # "re" must be followed by *WSP [blob] ":"
    ("Re hi", "Re hi", False),
    ("Fwd: (fwd)", "", True),
])
def test_base_subject(subject: str, base: str, refwd: bool) -> None:
    assert th.base_subject(subject) == th.BaseSubject(base, refwd)


def test_base_subject_linear_on_many_prefixes() -> None:
    assert th.base_subject("[x]" * 20_000 + " y").text == "y"
    assert th.base_subject("[fwd: " * 5_000 + "y" + "]" * 5_000).text == "y"
    assert th.base_subject("Re: " * 20_000 + "y").text == "y"


def test_casemap_is_i_unicode_casemap() -> None:
    assert th.casemap("hello") == th.casemap("HELLO") == "HELLO"
    assert th.casemap("é") == th.casemap("É") == th.casemap("e\u0301")
    assert th.casemap("ǆ") == th.casemap("Ǆ")  # titlecase, then decomposition: "D" "ž"
    assert th.casemap("ﬁ") == "FI"  # compatibility decomposition, then titlecase again
    assert th.casemap("a") < th.casemap("B") < th.casemap("c")


# -------------------------------------------------------------------------- address keys


def keys(header: str) -> tuple[str, str]:
    addrs = parse_address_list(header)
    return th.address_key(addrs, decode_words), th.display_key(addrs, decode_words)


def test_address_and_display_keys() -> None:
    assert keys('"Zed Example" <alpha@b.test>') == ("ALPHA", "ZED EXAMPLE")
    assert keys("beta@b.test") == ("BETA", "BETA@B.TEST")
    assert keys("undisclosed-recipients:;") == ("UNDISCLOSED-RECIPIENTS",) * 2
    assert keys("The Team: zed@b.test, ann@b.test;") == ("THE TEAM",) * 2
    assert keys("=?utf-8?q?=C3=89mile?= <x@b.test>") == ("X", th.casemap("Émile"))
    assert keys("") == ("", "")


# -------------------------------------------------------------------------- REFERENCES


def test_missing_common_parent_is_a_dummy() -> None:
    a = msg(1, "one", "<a@x>", refs=("<gone@x>",))
    b = msg(2, "two", "<b@x>", refs=("<gone@x>",))
    assert refs_thread(a, b) == "((1)(2))"


def test_dummy_with_one_child_is_promoted() -> None:
    assert refs_thread(msg(1, "one", "<a@x>", refs=("<gone@x>",))) == "(1)"


def test_chain_siblings_and_nesting() -> None:
    m = [
        msg(1, "s", "<1>"),
        msg(2, "Re: s", "<2>", refs=("<1>",)),
        msg(3, "Re: s", "<3>", refs=("<1>", "<2>")),
        msg(4, "Re: s", "<4>", refs=("<1>",)),
        msg(5, "Re: s", "<5>", refs=("<1>", "<4>")),
        msg(6, "other", "<6>"),
    ]
    assert refs_thread(*m) == "(1 (2 3)(4 5))(6)"


def test_duplicate_message_ids_are_separate_messages() -> None:
    m = [msg(1, "a", "<dup>"), msg(2, "b", "<dup>"), msg(3, "c", "<3>", refs=("<dup>",))]
    assert refs_thread(*m) == "(1 3)(2)"


def test_in_reply_to_stands_in_for_missing_references() -> None:
    m = [msg(1, "a", "<1>"), msg(2, "b", "<2>", irt=("<1>", "<9>"))]
    assert refs_thread(*m) == "(1 2)"
    # References win over In-Reply-To when there are both
    m = [msg(1, "a", "<1>"), msg(2, "b", "<2>"), msg(3, "c", "<3>", refs=("<2>",), irt=("<1>",))]
    assert refs_thread(*m) == "(1)(2 3)"


def test_reference_loops_are_broken() -> None:
    m = [msg(1, "a", "<a>", refs=("<b>",)), msg(2, "b", "<b>", refs=("<a>",))]
    assert refs_thread(*m) == "(2 1)"
    # a message that refers to itself
    assert refs_thread(msg(1, "a", "<a>", refs=("<a>",))) == "(1)"
    # a References chain that contradicts an earlier one: the first link stands
    m = [msg(1, "x", "<1>", refs=("<p>", "<q>")), msg(2, "y", "<2>", refs=("<q>", "<p>"))]
    assert refs_thread(*m) == "((1)(2))"


def test_truncated_references_are_corrected_by_the_last_reference() -> None:
    # 3 says (wrongly, truncated) that 2 is a child of 9; 2's own References put it under 1
    m = [
        msg(1, "s", "<1>"),
        msg(2, "s", "<2>", refs=("<1>",)),
        msg(3, "s", "<3>", refs=("<9>", "<2>")),
    ]
    assert refs_thread(*m) == "(1 2 3)"


def test_siblings_sorted_by_sent_date_then_sequence() -> None:
    m = [
        msg(1, "s", "<1>", date=10),
        msg(2, "x", "<2>", refs=("<1>",), date=30),
        msg(3, "y", "<3>", refs=("<1>",), date=20),
        msg(4, "z", "<4>", date=5),
        msg(5, "w", "<5>", date=5),
    ]
    assert refs_thread(*m) == "(4)(5)(1 (3)(2))"


def test_subject_gathering() -> None:
    # a reply with no references goes under the original of its base subject
    assert refs_thread(msg(1, "Hello"), msg(2, "Re: Hello")) == "(1 2)"
    # two originals of one subject become siblings under a dummy
    assert refs_thread(msg(1, "Hello"), msg(2, "hello")) == "((1)(2))"
    # the original is preferred to the reply as the subject table's message
    assert refs_thread(msg(1, "Re: Hello"), msg(2, "Hello")) == "(2 1)"
    # two replies: a dummy
    assert refs_thread(msg(1, "Re: Hello"), msg(2, "Fwd: Hello")) == "((1)(2))"
    # a dummy already in the table takes the others as its children
    m = [msg(1, "Hi", "<1>", refs=("<gone>",)), msg(2, "Hi", "<2>", refs=("<gone>",)),
         msg(3, "Re: Hi")]
    assert refs_thread(*m) == "((1)(2)(3))"
    # empty subjects are never gathered
    assert refs_thread(msg(1, ""), msg(2, "Re:")) == "(1)(2)"
    # a dummy of subject "Hi" and another dummy of subject "Hi" merge their children
    m = [msg(1, "Hi", "<1>", refs=("<g1>",)), msg(2, "Hi", "<2>", refs=("<g1>",)),
         msg(3, "Hi", "<3>", refs=("<g2>",)), msg(4, "Hi", "<4>", refs=("<g2>",))]
    assert refs_thread(*m) == "((1)(2)(3)(4))"


def test_deep_chain_does_not_recurse() -> None:
    n = 5000
    m = [msg(1, "s", "<1>")] + [msg(i, "s", f"<{i}>", refs=(f"<{i - 1}>",))
                                for i in range(2, n + 1)]
    assert refs_thread(*m) == "(" + " ".join(str(i) for i in range(1, n + 1)) + ")"
    wide = [msg(1, "s", "<1>")] + [msg(i, f"s{i}", f"<{i}>", refs=("<1>", f"<x{i}>"))
                                   for i in range(2, 2000)]
    assert refs_thread(*wide).startswith("(1 (")


# -------------------------------------------------------------------------- ORDEREDSUBJECT


def test_orderedsubject() -> None:
    m = [
        msg(1, "b", date=50),
        msg(2, "Re: a", date=20),
        msg(3, "a", date=10),
        msg(4, "A", date=30),
        msg(5, "Re: b", date=60),
        msg(6, "c", date=40),
    ]
    assert th.render(th.orderedsubject(m)) == "(3 (2)(4))(6)(1 5)"
    assert th.render(th.orderedsubject([])) == ""


# -------------------------------------------------------------------------- properties

_IDS = st.sampled_from([f"<{c}@x>" for c in "abcdefg"])
_messages = st.lists(
    st.tuples(st.one_of(st.none(), _IDS), st.lists(_IDS, max_size=4),
              st.lists(_IDS, max_size=2), st.sampled_from(["", "Hi", "Re: Hi", "hi", "Yo",
                                                           "Fwd: Yo", "[l] Yo"]),
              st.integers(0, 5)),
    max_size=25)


def _parse(text: str) -> list[int]:
    """The numbers of a thread response, checking its syntax (RFC 5256 §4) as it goes."""
    assert re.fullmatch(r"[0-9() ]*", text)
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    assert "()" not in text and "  " not in text and "( " not in text and " )" not in text
    return [int(n) for n in re.findall(r"\d+", text)]


def _build(spec: list[tuple[str | None, list[str], list[str], str, int]]
           ) -> list[th.ThreadMessage]:
    return [msg(i + 1, subject, mid, tuple(refs), tuple(irt), date)
            for i, (mid, refs, irt, subject, date) in enumerate(spec)]


@settings(max_examples=300, deadline=None)
@given(_messages)
def test_every_message_appears_exactly_once(spec: list[tuple[str | None, list[str],
                                                               list[str], str, int]]) -> None:
    messages = _build(spec)
    for algorithm in (th.references, th.orderedsubject):
        numbers = _parse(th.render(algorithm(messages)))
        assert sorted(numbers) == [m.seq for m in messages]


@settings(max_examples=200, deadline=None)
@given(_messages)
def test_references_tree_shape(spec: list[tuple[str | None, list[str], list[str], str, int]]
                               ) -> None:
    """Dummies only at the top with two or more children; siblings in date order."""
    threads = th.references(_build(spec))
    stack = [(t, True) for t in threads]
    while stack:
        node, top = stack.pop()
        if node.message is None:
            assert top and len(node.children) >= 2
        dates = [th._date_key(c) for c in node.children]
        assert dates == sorted(dates)
        stack.extend((c, False) for c in node.children)
    assert [th._date_key(t) for t in threads] == sorted(th._date_key(t) for t in threads)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]():ReFwdx \t")), max_size=40))
def test_base_subject_is_idempotent_and_trimmed(subject: str) -> None:
    once = th.base_subject(subject).text
    assert th.base_subject(once).text == once
    assert once == once.strip(" \t")
