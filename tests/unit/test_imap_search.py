"""IMAP SEARCH keys compiled to the core.query tree (protocols.imap.search.to_query)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.core import query as q
from mailyard.protocols.imap.grammar import ParseError, Tokenizer, parse_search
from mailyard.protocols.imap.search import to_query
from mailyard.protocols.imap.session import Bad

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
LABELS = {"INBOX": "mb-inbox", "Work": "mb-work"}


def compiled(text: str) -> q.Node | None:
    return to_query(parse_search(Tokenizer(text.encode())).key, LABELS, NOW)


@pytest.mark.parametrize(("imap", "node"), [
    ("ALL", q.And(())),
    ("UNSEEN", q.Not(q.Keyword("$seen"))),
    ("FLAGGED DELETED", q.And((q.Keyword("$flagged"), q.Keyword("$deleted")))),
    ("KEYWORD $Work UNKEYWORD Later",
     q.And((q.Keyword("$work"), q.Not(q.Keyword("later"))))),
    ('SUBJECT "a b"', q.Header("subject", "a b")),
    ('HEADER X-Spam ""', q.Header("x-spam", "")),
    ("BODY lunch", q.Text("lunch", field="body", substring=True)),
    ('TEXT ""', q.And(())),
    ("BEFORE 1-Feb-2024", q.Date("before", dt.date(2024, 2, 1))),
    ("SINCE 1-Feb-2024", q.Date("after", dt.date(2024, 2, 1))),
    ("LARGER 100 SMALLER 2000", q.And((q.Size("larger", 100), q.Size("smaller", 2000)))),
    ("OLDER 3600", q.Received("before", NOW - dt.timedelta(hours=1))),
    ("YOUNGER 60", q.Received("after", NOW - dt.timedelta(minutes=1))),
    ("OR SEEN NOT SUBJECT x", q.Or((q.Keyword("$seen"), q.Not(q.Header("subject", "x"))))),
    ("X-GM-LABELS Work", q.Mailbox("mb-work", by_id=True)),
    ("X-GM-LABELS \\Inbox", q.Mailbox("mb-inbox", by_id=True)),
    ("X-GM-LABELS Nope", q.Or(())),
    ('X-GM-RAW "from:alice has:attachment"', q.parse("from:alice has:attachment")),
])
def test_keys_compile_to_the_query_language(imap: str, node: q.Node) -> None:
    assert compiled(imap) == node


@pytest.mark.parametrize("imap", ["1:3", "UID 5:*", "$", "MODSEQ 5", "EMAILID Mabc",
                                  "THREADID Tabc", "X-GM-MSGID 12", "NOT UID 1",
                                  "OR FROM a UID 2", "FROM a 1:2", "RECENT", "OLD", "NEW",
                                  'FROM "sender3@"', "TO bob", "CC carol", "BCC dave",
                                  'TEXT "invoice meet"', "SENTON 1-Feb-2024"])
def test_view_and_record_keys_stay_with_the_session(imap: str) -> None:
    """Sequence numbers, UIDs, `$` and \\Recent are this session's; MODSEQ and ids have no word
    in the query language; FROM/TO/CC/BCC (group names, comments), TEXT (words only in a
    header) and SENT* (the Date: field's own day) mean more than the index and the stored
    columns hold. A tree holding any of them is not handed over whole."""
    assert compiled(imap) is None


def test_bad_x_gm_raw_is_bad() -> None:
    with pytest.raises(Bad):
        compiled('X-GM-RAW "(unbalanced"')


def test_compiled_trees_have_a_text_form() -> None:
    """Every compiled tree can be written in the query language and read back unchanged, so
    the same search can be saved or sent as X-GM-RAW."""
    for text in ['OR HEADER X-A "a b" SUBJECT c', "NOT SEEN LARGER 5 SINCE 2-Mar-2025",
                 'BODY "x y" UNANSWERED', "KEYWORD $Forwarded BEFORE 1-Jan-2020"]:
        node = compiled(text)
        assert node is not None
        assert q.normalise(q.parse(q.format(node))) == q.normalise(node)


_KEYS = st.sampled_from([
    "ALL", "SEEN", "UNSEEN", "FLAGGED", "DRAFT", "ANSWERED", "DELETED", "NEW", "RECENT",
    'FROM "x@y"', "TO a", 'SUBJECT "q r"', "BODY b", "TEXT t", 'HEADER List-Id ""',
    "SINCE 1-Jan-2025", "SENTBEFORE 3-Mar-2024", "LARGER 10", "SMALLER 99", "UID 1:4",
    "1,3", "MODSEQ 7", "X-GM-LABELS Work", "KEYWORD k", "OLDER 10",
])


@st.composite
def programs(draw: st.DrawFn, depth: int = 3) -> str:
    kind = draw(st.sampled_from(["key", "not", "or", "list"]) if depth else st.just("key"))
    if kind == "key":
        return draw(_KEYS)
    if kind == "not":
        return "NOT " + draw(programs(depth - 1))
    if kind == "or":
        return f"OR {draw(programs(depth - 1))} {draw(programs(depth - 1))}"
    return "(" + " ".join(draw(st.lists(programs(depth - 1), min_size=1, max_size=3))) + ")"


@settings(max_examples=300, deadline=None)
@given(programs())
def test_any_program_compiles_or_says_it_cannot(program: str) -> None:
    """Whatever the tree, to_query answers a tree the query language can print, or None
    exactly when a view or record key is inside."""
    try:
        key = parse_search(Tokenizer(program.encode())).key
    except ParseError:
        return
    node = to_query(key, LABELS, NOW)
    local = any(word in program for word in ("UID", "MODSEQ", "1,3", "NEW", "RECENT", "FROM",
                                             "TO ", "TEXT", "SENT"))
    assert (node is None) == local
    if node is not None:
        q.format(node)
