"""The query language: every Gmail operator and extension, precedence, errors with positions, the
JMAP filter compiler, and round trips through format() for any tree (hypothesis)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailyard.core import query as q
from mailyard.core.query import (
    Age,
    And,
    Anywhere,
    Date,
    FilterError,
    HasAttachment,
    Header,
    Keyword,
    Mailbox,
    MessageId,
    Node,
    Not,
    Or,
    QueryError,
    Received,
    Size,
    Text,
    ThreadKeyword,
    from_jmap,
    normalise,
    parse,
)

T = Text


def test_empty_and_blank_queries_match_everything() -> None:
    assert parse("") == And(())
    assert parse("   \t\n") == And(())
    assert q.format(And(())) == ""


def test_words_and_phrases() -> None:
    assert parse("pizza") == T("pizza")
    assert parse("pizza  lunch") == And((T("pizza"), T("lunch")))
    assert parse('"amount is due"') == T("amount is due", phrase=True)
    assert parse('a"b c"d') == And((T("a"), T("b c", phrase=True), T("d")))
    assert parse('""') == T("", phrase=True)
    assert parse("AROUND NOT") == And((T("AROUND"), T("NOT"))), "Gmail has no NOT; words"
    assert parse("café 日本") == And((T("café"), T("日本")))


@pytest.mark.parametrize("field", ["from", "to", "cc", "bcc", "subject", "filename", "list",
                                   "body"])
def test_text_field_operators(field: str) -> None:
    assert parse(f"{field}:alice@shop.test") == T("alice@shop.test", field)
    assert parse(f'{field}:"quarterly report"') == T("quarterly report", field, phrase=True)
    assert parse(f"{field.upper()}:x") == T("x", field), "operator names ignore case"


def test_text_operator_value_runs_to_the_next_space_or_bracket() -> None:
    assert parse("from:a:b") == T("a:b", "from")
    assert parse("(from:a)") == T("a", "from")
    assert parse("from:a|b") == Or((T("a", "from"), T("b")))


def test_operator_applies_to_each_term_of_a_group() -> None:
    assert parse("subject:(a OR b)") == Or((T("a", "subject"), T("b", "subject")))
    assert parse("from:(a b)") == And((T("a", "from"), T("b", "from")))
    assert parse("from:{a b}") == Or((T("a", "from"), T("b", "from")))
    assert parse('subject:(a -"b c")') == And(
        (T("a", "subject"), Not(T("b c", "subject", phrase=True))))
    assert parse("subject:(a (b OR c))") == And(
        (T("a", "subject"), Or((T("b", "subject"), T("c", "subject")))))
    assert parse("subject:(a from:b)") == And((T("a", "subject"), T("b", "from"))), \
        "an operator inside the group keeps its meaning"
    assert parse("subject:(a to:(b c))") == And((T("a", "subject"), T("b", "to"), T("c", "to")))
    assert parse("in:(inbox OR Work)") == Or((Mailbox("inbox"), Mailbox("Work")))
    assert parse("is:(starred unread)") == And((Keyword("$flagged"), Not(Keyword("$seen"))))
    assert parse("subject:()") == And(())
    assert parse("before:(2026/1/5 2026/2/1)") == And(
        (Date("before", date(2026, 1, 5)), Date("before", date(2026, 2, 1))))
    with pytest.raises(QueryError, match='before: cannot read "soon"'):
        parse("before:(2026/1/5 soon)")


def test_flags_and_mailboxes() -> None:
    assert parse("has:attachment") == HasAttachment()
    assert parse("has:ATTACHMENT") == HasAttachment()
    assert parse("in:anywhere") == Anywhere()
    assert parse("label:anywhere") == Mailbox("anywhere")
    assert parse("is:unread") == Not(Keyword("$seen"))
    assert parse("is:read") == Keyword("$seen")
    assert parse("is:starred") == Keyword("$flagged")
    assert parse("is:important") == Keyword("$important")
    for role in ("inbox", "sent", "drafts", "trash", "spam", "important", "starred", "all"):
        assert parse(f"in:{role.upper()}") == Mailbox(role)
        assert parse(f"label:{role.title()}") == Mailbox(role)
    assert parse("label:Work/Projects") == Mailbox("Work/Projects")
    assert parse('label:"My Label"') == Mailbox("My Label")
    assert parse("in:Receipts") == Mailbox("Receipts")


@pytest.mark.parametrize(("text", "day"), [
    ("2026/11/28", date(2026, 11, 28)),
    ("2026-11-28", date(2026, 11, 28)),
    ("2026/1/5", date(2026, 1, 5)),
    ("11/28/2026", date(2026, 11, 28)),
    ("1388552400", date(2014, 1, 1)),
    ("0", date(1970, 1, 1)),
])
def test_dates(text: str, day: date) -> None:
    assert parse(f"before:{text}") == Date("before", day)
    assert parse(f"after:{text}") == Date("after", day)
    assert parse(f'after:"{text}"') == Date("after", day)


def test_year_less_dates_need_a_clock() -> None:
    assert parse("after:11/28", now=date(2025, 3, 1)) == Date("after", date(2025, 11, 28))
    with pytest.raises(QueryError, match='after: cannot read "11/28"'):
        parse("after:11/28")


@pytest.mark.parametrize("bad", ["notadate", "2026/13/01", "2026/02/30", "2026/11-28",
                                 "99999999999999", "26/11/28",
                                 "\u0662\u0660\u0662\u0666/\u0661\u0661/\u0662\u0668"])
def test_dates_that_do_not_parse_name_the_operator(bad: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(f"from:bob before:{bad}")
    assert info.value.message.startswith(f'before: cannot read "{bad}", expected a date')
    assert info.value.position == len("from:bob before:") + 1, "where the value starts"


def test_ages() -> None:
    assert parse("older_than:7d") == Age("older", 7, "d")
    assert parse("newer_than:2m") == Age("newer", 2, "m")
    assert parse("newer_than:1Y") == Age("newer", 1, "y")
    for bad in ("3h", "d", "xyz"):  # Gmail: d, m and y only
        with pytest.raises(QueryError, match=f'older_than: cannot read "{bad}"'):
            parse(f"older_than:{bad}")
    with pytest.raises(QueryError, match='newer_than: cannot read "1w"'):
        parse("newer_than:1w")


@pytest.mark.parametrize(("text", "size"), [
    ("1000", 1000), ("500K", 500 * 1024), ("500k", 500 * 1024), ("10M", 10 * 1024**2),
    ("10mb", 10 * 1024**2), ("2G", 2 * 1024**3), ("7b", 7), ("0", 0),
])
def test_sizes_use_powers_of_1024(text: str, size: int) -> None:
    assert parse(f"larger:{text}") == Size("larger", size)
    assert parse(f"size:{text}") == Size("larger", size), "Gmail's size: is larger:"
    assert parse(f"smaller:{text}") == Size("smaller", size)


def test_sizes_that_do_not_parse_name_the_operator() -> None:
    for query in ("larger:abc", "larger:huge", "larger:1.5M", "size:10T"):
        with pytest.raises(QueryError, match=query.partition(":")[0] + ": cannot read"):
            parse(query)
    with pytest.raises(QueryError, match=r'smaller: cannot read "9{37}\.\.\.", expected a size'):
        parse("smaller:" + "9" * 5000)


def test_message_id() -> None:
    assert parse("rfc822msgid:<abc.123@shop.test>") == MessageId("abc.123@shop.test")
    assert parse("rfc822msgid:abc.123@shop.test") == MessageId("abc.123@shop.test")
    assert parse('rfc822msgid:"<a b@c>"') == MessageId("a b@c")
    with pytest.raises(QueryError, match="rfc822msgid: cannot read"):
        parse("rfc822msgid:<>")


def test_or_binds_tighter_than_and() -> None:
    a, b, c, d = T("a"), T("b"), T("c"), T("d")
    assert parse("a b OR c") == And((a, Or((b, c))))
    assert parse("a OR b c") == And((Or((a, b)), c))
    assert parse("a OR b OR c") == Or((a, b, c))
    assert parse("a OR b c OR d") == And((Or((a, b)), Or((c, d))))
    assert parse("a | b|c") == Or((a, b, c))
    assert parse("a AND b OR c") == And((a, Or((b, c))))
    assert parse("a or b") == And((a, T("or"), b)), "only upper-case OR is an operator"
    assert parse("a OR(b)") == Or((a, b))
    assert parse('"OR" from:OR') == And((T("OR", phrase=True), T("OR", "from")))


def test_negation() -> None:
    assert parse("-a") == Not(T("a"))
    assert parse("--a") == Not(Not(T("a"))), "not simplified"
    assert parse("a -b") == And((T("a"), Not(T("b"))))
    assert parse("-(a b)") == Not(And((T("a"), T("b"))))
    assert parse("-{a b}") == Not(Or((T("a"), T("b"))))
    assert parse('-"a b"') == Not(T("a b", phrase=True))
    assert parse("-from:x") == Not(T("x", "from"))
    assert parse("-a OR b") == Or((Not(T("a")), T("b")))
    assert parse("a-b") == T("a-b")


def test_a_dash_between_spaces_is_punctuation() -> None:
    assert parse("a - b") == And((T("a"), T("b")))
    assert parse("a OR - b") == Or((T("a"), T("b")))
    assert parse("- -a") == Not(T("a"))


def test_grouping_and_flattening() -> None:
    a, b, c, d = T("a"), T("b"), T("c"), T("d")
    assert parse("(a b) (c d)") == And((a, b, c, d))
    assert parse("((a))") == a
    assert parse("(a OR b) OR (c OR d)") == Or((a, b, c, d))
    assert parse("(a OR b) c") == And((Or((a, b)), c))
    assert parse("()") == And(())
    assert parse("a ()") == a
    assert parse("-()") == Not(And(()))
    assert parse("{a b c}") == Or((a, b, c))
    assert parse("{a}") == a
    assert parse("{}") == Or(())
    assert parse("{a (b c)} d") == And((Or((a, And((b, c)))), d))
    assert parse("{a b} OR c") == Or((a, b, c))


def test_quotes_and_escapes() -> None:
    assert parse(r'"say \"hi\" now"') == T('say "hi" now', phrase=True)
    assert parse(r'"back\\slash"') == T("back\\slash", phrase=True)
    assert parse(r'"C:\temp"') == T("C:\\temp", phrase=True), "other backslashes are kept"
    assert parse('"a (b) {c} OR -d | e:f"') == T("a (b) {c} OR -d | e:f", phrase=True)
    assert parse(r"a\b") == T("a\\b")


@pytest.mark.parametrize("query", ["foo:bar", "in:", "from:", "before:", "is:", "larger:",
                                   "category:promotions", "http://x.test/a"])
def test_unknown_operators_and_operators_without_a_value_are_words(query: str) -> None:
    assert parse(query) == T(query)


@pytest.mark.parametrize(("query", "message"), [
    ("is:bogus", 'is: cannot read "bogus", expected one of unread, read, starred, important'),
    ("is:muted", 'is: cannot read "muted"'),
    ('is:"muted"', 'is: cannot read "muted"'),
    ("has:yellow-star", 'has: cannot read "yellow-star", expected only has:attachment'),
    ("-has:drive", 'has: cannot read "drive"'),
    ('label:""', 'label: cannot read "", expected a mailbox name'),
    ("received-after:2026-11-28", 'received-after: cannot read "2026-11-28", expected an'
                                  " instant"),
    ("thread-keyword:most:$seen", 'thread-keyword: cannot read "most", expected all, some'
                                  " or none"),
    ("subject:(a OR before:x)", 'before: cannot read "x"'),
    ("before:(2026/1/1 OR junk)", 'before: cannot read "junk"'),
    ("IS:Bogus", 'IS: cannot read "Bogus"'),
])
def test_unreadable_values_of_known_operators_name_the_operator(query: str,
                                                                 message: str) -> None:
    """Read as words they found nothing: "0 found" for a filter the user believed in."""
    with pytest.raises(QueryError) as info:
        parse(query)
    assert info.value.message.startswith(message), info.value.message
    assert 1 <= info.value.position <= len(query)


def test_unknown_operators_keep_their_quoting() -> None:
    assert parse('foo:"bar baz"') == And((T("foo:"), T("bar baz", phrase=True)))
    assert parse("foo:(a b)") == And((T("foo:"), T("a"), T("b")))
    assert parse("header:x") == T("header:x")


@pytest.mark.parametrize(("query", "message"), [
    (")", 'unbalanced ")" at position 1'),
    ("a b)", 'unbalanced ")" at position 4'),
    ("(a", 'unbalanced "(" at position 1'),
    ("a (b (c)", 'unbalanced "(" at position 3'),
    ("(pizza OR revenue", 'unbalanced "(" at position 1'),
    ("{a b", 'unbalanced "{" at position 1'),
    ("a}", 'unbalanced "}" at position 2'),
    ("(a}", 'unbalanced "}" at position 3'),
    ("{a)", 'unbalanced ")" at position 3'),
    ("subject:(a", 'unbalanced "(" at position 9'),
    ('"abc', "unterminated quote at position 1"),
    ('a "b', "unterminated quote at position 3"),
    ('subject:"x', "unterminated quote at position 9"),
    ('"a\\"', "unterminated quote at position 1"),
    ('header:x:"v', "unterminated quote at position 10"),
    ("OR a", '"OR" with nothing before it at position 1'),
    ("a OR", '"OR" with nothing after it at position 3'),
    ("a OR  ", '"OR" with nothing after it at position 3'),
    ("a OR OR b", '"OR" with nothing after it at position 3'),
    ("a OR )", '"OR" with nothing after it at position 3'),
    ("(OR a)", '"OR" with nothing before it at position 2'),
    ("a |", '"|" with nothing after it at position 3'),
    ("| a", '"|" with nothing before it at position 1'),
    ("a || b", '"|" with nothing after it at position 3'),
    ("AND a", '"AND" with nothing before it at position 1'),
    ("a AND", '"AND" with nothing after it at position 3'),
    ("a AND OR b", '"AND" with nothing after it at position 3'),
    ("-", 'nothing after "-" at position 1'),
    ("a -", 'nothing after "-" at position 3'),
    ("a -  ", 'nothing after "-" at position 3'),
    ("a --", 'nothing after "-" at position 4'),
    ("(a -)", 'nothing after "-" at position 4'),
    ("a -|b", 'nothing after "-" at position 3'),
    ("a -OR b", 'nothing after "-" at position 3'),
    ("(" * 65 + ")" * 65, "nesting deeper than 64 at position 65"),
    ("-" * 65 + "a", "nesting deeper than 64 at position 65"),
])
def test_malformed_queries_name_the_position(query: str, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(query)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)
    assert info.value.position == int(message.rsplit(" ", 1)[1])


def test_nesting_up_to_the_limit_parses() -> None:
    assert parse("(" * 64 + "a" + ")" * 64) == T("a")
    node = parse("-" * 64 + "a")
    assert q.format(node) == "-" * 64 + "a"


@pytest.mark.parametrize(("node", "text"), [
    (And((T("a"), Or((T("b"), T("c"))))), "a (b OR c)"),
    (Or((And((T("a"), T("b"))), T("c"))), "(a b) OR c"),
    (Not(Or((T("a"), T("b")))), "-(a OR b)"),
    (Not(Not(T("a"))), "--a"),
    (Or(()), "{}"),
    (Not(And(())), "-()"),
    (T("a b", phrase=True), '"a b"'),
    (T('say "hi" \\o/', "subject", phrase=True), r'subject:"say \"hi\" \\o/"'),
    (T("a b"), 'words:"a b"'),
    (T("OR"), 'words:"OR"'),
    (T("-a"), 'words:"-a"'),
    (T("from:x"), 'words:"from:x"'),
    (T("foo:bar"), "foo:bar"),
    (T("", "from"), 'words:from:""'),
    (T("alice smith", "from"), 'words:from:"alice smith"'),
    (T("x", "body"), "body:x"),
    (T("abc", substring=True), 'substring:"abc"'),
    (T("abc", "subject", substring=True), 'substring:subject:"abc"'),
    (T("a b", "to", phrase=True, substring=True), 'substring-phrase:to:"a b"'),
    (Keyword("$seen"), "is:read"),
    (Not(Keyword("$seen")), "is:unread"),
    (Keyword("$flagged"), "is:starred"),
    (Keyword("$important"), "is:important"),
    (Keyword("$draft"), "keyword:$draft"),
    (Keyword("my label"), 'keyword:"my label"'),
    (Mailbox("inbox"), "in:inbox"),
    (Mailbox("Work"), "label:Work"),
    (Mailbox("My Label"), 'label:"My Label"'),
    (Mailbox("anywhere"), "label:anywhere"),
    (Mailbox("M42", by_id=True), "mailbox-id:M42"),
    (Anywhere(), "in:anywhere"),
    (HasAttachment(), "has:attachment"),
    (Date("before", date(2026, 1, 5)), "before:2026/01/05"),
    (Date("after", date(2026, 11, 28)), "after:2026/11/28"),
    (Date("on", date(2026, 11, 28)), "on:2026/11/28"),
    (Date("before", date(9, 1, 1), "sent"), "sent-before:0009/01/01"),
    (Date("after", date(2026, 11, 28), "sent"), "sent-after:2026/11/28"),
    (Date("on", date(2026, 11, 28), "sent"), "sent-on:2026/11/28"),
    (Received("before", datetime(2026, 11, 28, 10, tzinfo=UTC)),
     "received-before:2026-11-28T10:00:00Z"),
    (Received("after", datetime(2026, 11, 28, 10, 0, 0, 5, tzinfo=UTC)),
     "received-after:2026-11-28T10:00:00.000005Z"),
    (Age("older", 7, "d"), "older_than:7d"),
    (Age("newer", 1, "y"), "newer_than:1y"),
    (Size("larger", 10 * 1024**2), "larger:10485760"),
    (Size("smaller", 0), "smaller:0"),
    (MessageId("abc@shop.test"), "rfc822msgid:<abc@shop.test>"),
    (MessageId("a b"), 'rfc822msgid:"<a b>"'),
    (Header("x-spam", "yes it is"), 'header:x-spam:"yes it is"'),
    (Header("x-mailer", ""), 'header:x-mailer:""'),
    (Header("x:(y)", "v"), 'header:"x:(y)":"v"'),
    (ThreadKeyword("all", "$seen"), "thread-keyword:all:$seen"),
    (ThreadKeyword("none", "$flagged"), "thread-keyword:none:$flagged"),
])
def test_format_is_canonical_and_parses_back(node: Node, text: str) -> None:
    assert q.format(node) == text
    assert parse(text) == node


def test_extension_syntax_is_lenient_where_unambiguous() -> None:
    assert parse("header:X-Spam:yes") == Header("x-spam", "yes")
    assert parse("header:x-spam:") == Header("x-spam", "")
    assert parse("thread-keyword:SOME:$Seen") == ThreadKeyword("some", "$seen")
    assert parse("words:from:alice") == T("alice", "from")
    assert parse("words:tomato") == T("tomato")
    assert parse("keyword:$Junk") == Keyword("$junk")
    assert parse("received-after:2026-11-28T12:00:00+02:00") == Received(
        "after", datetime(2026, 11, 28, 10, tzinfo=UTC))


def test_format_accepts_trees_parse_would_not_build() -> None:
    assert q.format(And((And((T("a"), T("b"))), T("c")))) == "(a b) c"
    assert q.format(Or((T("a"),))) == "a"
    assert q.format(And((Or(()),))) == "{}"
    node = Received("after", datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))))
    assert parse(q.format(node)) == node
    with pytest.raises(ValueError, match="no query text"):
        q.format(Date("during", date(2026, 1, 1)))


def test_normalise() -> None:
    a, b, c = T("a"), T("b"), T("c")
    assert normalise(And((And((a, b)), And(()), c))) == And((a, b, c))
    assert normalise(Or((Or((a,)), b))) == Or((a, b))
    assert normalise(Not(And((Or((a,)),)))) == Not(a)
    assert normalise(Not(Not(a))) == Not(Not(a))
    assert normalise(And(())) == And(())


# ---------------------------------------------------------------------------------- JMAP

NOON = datetime(2026, 11, 28, 10, tzinfo=UTC)


@pytest.mark.parametrize(("condition", "node"), [
    ({}, And(())),
    ({"inMailbox": "M1"}, Mailbox("M1", by_id=True)),
    ({"inMailboxOtherThan": ["M1", "M2"]},
     Not(Or((Mailbox("M1", by_id=True), Mailbox("M2", by_id=True))))),
    ({"inMailboxOtherThan": ["M1"]}, Not(Mailbox("M1", by_id=True))),
    ({"inMailboxOtherThan": []}, Not(Or(()))),
    ({"before": "2026-11-28T10:00:00Z"}, Received("before", NOON)),
    ({"after": "2026-11-28T10:00:00.250Z"},
     Received("after", NOON.replace(microsecond=250000))),
    ({"minSize": 1000}, Size("larger", 999)),
    ({"minSize": 0}, And(())),
    ({"maxSize": 1000}, Size("smaller", 1000)),
    ({"allInThreadHaveKeyword": "$Seen"}, ThreadKeyword("all", "$seen")),
    ({"someInThreadHaveKeyword": "$flagged"}, ThreadKeyword("some", "$flagged")),
    ({"noneInThreadHaveKeyword": "$seen"}, ThreadKeyword("none", "$seen")),
    ({"hasKeyword": "$Flagged"}, Keyword("$flagged")),
    ({"notKeyword": "$seen"}, Not(Keyword("$seen"))),
    ({"hasAttachment": True}, HasAttachment()),
    ({"hasAttachment": False}, Not(HasAttachment())),
    ({"text": "amount due"}, T("amount due")),
    ({"from": "alice"}, T("alice", "from")),
    ({"to": "bob"}, T("bob", "to")),
    ({"cc": "carol"}, T("carol", "cc")),
    ({"bcc": "dave"}, T("dave", "bcc")),
    ({"subject": "quarterly report"}, T("quarterly report", "subject")),
    ({"body": "totals"}, T("totals", "body")),
    ({"header": ["X-Mailer"]}, Header("x-mailer", "")),
    ({"header": ["X-Mailer", "Outlook"]}, Header("x-mailer", "Outlook")),
    ({"from": "alice", "hasAttachment": True}, And((T("alice", "from"), HasAttachment()))),
])
def test_jmap_conditions(condition: dict[str, object], node: Node) -> None:
    assert from_jmap(condition) == node
    assert parse(q.format(node)) == node


def test_jmap_operators() -> None:
    a, b = {"from": "a"}, {"to": "b"}
    ta, tb = T("a", "from"), T("b", "to")
    assert from_jmap({"operator": "AND", "conditions": [a, b]}) == And((ta, tb))
    assert from_jmap({"operator": "OR", "conditions": [a, b]}) == Or((ta, tb))
    assert from_jmap({"operator": "NOT", "conditions": [a, b]}) == Not(Or((ta, tb))), \
        "NOT is none of the conditions"
    assert from_jmap({"operator": "NOT", "conditions": [a]}) == Not(ta)
    assert from_jmap({"operator": "AND", "conditions": []}) == And(())
    assert from_jmap({"operator": "OR", "conditions": []}) == Or(())
    nested = {"operator": "AND", "conditions": [
        a, {"operator": "AND", "conditions": [b, {"operator": "OR", "conditions": [a]}]}]}
    assert from_jmap(nested) == And((ta, tb, ta))


@pytest.mark.parametrize(("filter_", "prop", "unsupported"), [
    ({"inMailbox": 5}, "inMailbox", False),
    ({"inMailbox": ""}, "inMailbox", False),
    ({"inMailbox": None}, "inMailbox", False),
    ({"inMailboxOtherThan": "M1"}, "inMailboxOtherThan", False),
    ({"inMailboxOtherThan": ["M1", 2]}, "inMailboxOtherThan", False),
    ({"before": "2026-11-28"}, "before", False),
    ({"after": "2026-11-28T10:00:00+02:00"}, "after", False),
    ({"after": 0}, "after", False),
    ({"minSize": -1}, "minSize", False),
    ({"minSize": True}, "minSize", False),
    ({"maxSize": "10"}, "maxSize", False),
    ({"maxSize": 2**53}, "maxSize", False),
    ({"hasKeyword": "a b"}, "hasKeyword", False),
    ({"notKeyword": ""}, "notKeyword", False),
    ({"allInThreadHaveKeyword": "$a*"}, "allInThreadHaveKeyword", False),
    ({"hasAttachment": "yes"}, "hasAttachment", False),
    ({"text": 1}, "text", False),
    ({"subject": None}, "subject", False),
    ({"header": []}, "header", False),
    ({"header": ["a", "b", "c"]}, "header", False),
    ({"header": ["bad:name"]}, "header", False),
    ({"header": "X-Mailer"}, "header", False),
    ({"header": ["x", 1]}, "header", False),
    ({"attachmentName": "x"}, "attachmentName", True),
    ({"operator": "XOR", "conditions": []}, "operator", False),
    ({"operator": "AND"}, "conditions", False),
    ({"operator": "AND", "conditions": {}}, "conditions", False),
    ({"operator": "AND", "conditions": [], "from": "x"}, "from", False),
    ({"operator": "AND", "conditions": ["x"]}, "filter", False),
    ({"operator": "OR", "conditions": [{"nope": 1}]}, "nope", True),
])
def test_jmap_errors_name_the_property(filter_: dict[str, object], prop: str,
                                       unsupported: bool) -> None:
    with pytest.raises(FilterError) as info:
        from_jmap(filter_)
    assert info.value.property == prop
    assert info.value.unsupported is unsupported
    assert isinstance(info.value, ValueError)


def test_jmap_nesting_is_bounded() -> None:
    deep: dict[str, object] = {"from": "a"}
    for _ in range(500):
        deep = {"operator": "NOT", "conditions": [deep]}
    with pytest.raises(FilterError):
        from_jmap(deep)


# ---------------------------------------------------------------------------------- properties

RICH = st.sampled_from([
    "a", "b", "z", " ", "  ", "\t", '"', "\\", ":", "(", ")", "{", "}", "|", "-", "OR", " OR ",
    "AND", "$", "@", ".", "/", "é", "\x00", "\u2028", "日", "from:", "subject:", "in:", "is:",
    "has:", "label:", "before:", "2026/1/5", "larger:", "10M", "older_than:", "7d", "words:",
    "header:", "thread-keyword:", "all:", "rfc822msgid:", "<", ">", "keyword:", "substring:",
    "received-before:", "2026-11-28T10:00:00Z", "attachment", "unread", "anywhere",
])
rich_text = st.lists(RICH, max_size=24).map("".join)
values = st.one_of(st.text(max_size=8), st.lists(RICH, max_size=5).map("".join))
nonempty = values.filter(bool)
lower = nonempty.filter(lambda s: s.lower() == s)

PROPERTY = settings(max_examples=150, deadline=500,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@PROPERTY
@given(st.one_of(rich_text, st.text(max_size=40)))
def test_parse_never_raises_anything_but_query_error(text: str) -> None:
    try:
        node = parse(text)
    except QueryError as e:
        assert 1 <= e.position <= max(len(text), 1)
        return
    assert normalise(node) == node
    assert parse(q.format(node)) == node, "whatever parse builds, format writes back"


def test_long_and_hostile_inputs_are_fast() -> None:
    hostile = ["a " * 5000, "(" * 10000, ")" * 10000, "-" * 10000 + "a", '"' * 10001,
               "from:" * 2000, "a OR " * 2000 + "b", "{" * 10000, "\x00" * 10000,
               "x" * 10000, '"' + "\\" * 10000, "a:" * 5000, "(a " * 3000 + ")" * 3000]
    start = time.process_time()
    for text in hostile:
        try:
            node = parse(text)
        except QueryError:
            continue
        assert parse(q.format(node)) == node
    # CPU time, so a busy machine cannot fail it; quadratic work would take minutes.
    assert time.process_time() - start < 5.0


FIELDS = st.sampled_from([None, *q.TEXT_FIELDS])
leaves: st.SearchStrategy[Node] = st.one_of(
    st.builds(Text, values, FIELDS, st.booleans(), st.booleans()),
    st.builds(Keyword, st.one_of(st.sampled_from(["$seen", "$flagged", "$important"]), lower)),
    st.builds(Mailbox, nonempty.filter(
        lambda s: s.lower() not in q.ROLE_NAMES or s in q.ROLE_NAMES)),
    st.builds(Mailbox, nonempty, st.just(True)),
    st.just(Anywhere()),
    st.just(HasAttachment()),
    st.builds(Date, st.sampled_from(["before", "after", "on"]), st.dates(),
              st.sampled_from(["received", "sent"])),
    st.builds(Received, st.sampled_from(["before", "after"]),
              st.datetimes(timezones=st.just(UTC))),
    st.builds(Age, st.sampled_from(["older", "newer"]), st.integers(0, 10**9 - 1),
              st.sampled_from(["d", "m", "y"])),
    st.builds(Size, st.sampled_from(["larger", "smaller"]), st.integers(0, 10**15 - 1)),
    st.builds(MessageId, nonempty),
    st.builds(Header, lower, values),
    st.builds(ThreadKeyword, st.sampled_from(["all", "some", "none"]), lower),
)


def _depth(node: Node) -> int:
    if isinstance(node, And | Or):
        return 1 + max((_depth(n) for n in node.items), default=0)
    if isinstance(node, Not):
        return 1 + _depth(node.item)
    return 0


trees = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4).map(lambda xs: And(tuple(xs))),
        st.lists(kids, max_size=4).map(lambda xs: Or(tuple(xs))),
        st.builds(Not, kids),
    ),
    max_leaves=10,
).filter(lambda n: _depth(n) <= 30)


@PROPERTY
@given(trees)
def test_every_tree_round_trips_through_its_text(node: Node) -> None:
    text = q.format(node)
    assert parse(text) == normalise(node), text


@PROPERTY
@given(trees)
def test_format_is_idempotent_through_parse(node: Node) -> None:
    node = normalise(node)
    text = q.format(node)
    assert q.format(parse(text)) == text
