"""The IMAP command grammar, checked against the examples of the RFCs that define it."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailyard.protocols.imap.grammar import (
    All,
    And,
    BadCharset,
    Body,
    Command,
    Date,
    EmailId,
    FetchItem,
    Flag,
    GmLabel,
    GmMsgId,
    GmRaw,
    GmThrId,
    Header,
    Keyword,
    ModSeq,
    Not,
    Or,
    ParseError,
    QResync,
    Section,
    SeqSet,
    SequenceSet,
    Size,
    SortCriterion,
    Text,
    ThreadId,
    Tokenizer,
    Uid,
    Within,
    decode_mailbox_name,
    encode_mailbox_name,
    parse_append,
    parse_authenticate,
    parse_command,
    parse_copy,
    parse_enable,
    parse_fetch,
    parse_fetch_items,
    parse_id,
    parse_list,
    parse_login,
    parse_search,
    parse_select,
    parse_sort,
    parse_status,
    parse_store,
    parse_thread,
)


def args(line: bytes, *, utf8: bool = False) -> Tokenizer:
    return parse_command(line).tokenizer(utf8=utf8)


def bad(fn: Callable[[Tokenizer], Any], line: bytes, **kw: Any) -> ParseError:
    with pytest.raises(ParseError) as info:
        fn(args(line), **kw)
    return info.value


# --------------------------------------------------------------------------- command line


def test_rfc3501_sample_session_commands() -> None:
    assert parse_command(b"a001 login mrc secret") == Command("a001", "LOGIN", b"mrc secret", 11)
    assert parse_command(b"a002 select inbox").name == "SELECT"
    assert parse_command(b"a006 logout") == Command("a006", "LOGOUT", b"", 11)
    assert parse_command(b"A999 UID FETCH 4827313:4828442 FLAGS") == Command(
        "A999", "UID FETCH", b"4827313:4828442 FLAGS", 15
    )
    assert parse_command(b"x uid expunge 1:3").uid


@pytest.mark.parametrize(
    "line",
    [b"", b"* LOGIN a b", b"+ NOOP", b"a+b NOOP", b"abc", b"abc ", b"(x NOOP", b"a\x00 NOOP",
     b"a UID NOOP", b"a UID", b"a  NOOP", b"a NOOP\r\n", b"a NOOP{3}", b"a \xff"],
)
def test_bad_command_lines(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse_command(line)


def test_tag_may_hold_close_bracket_and_other_astring_chars() -> None:
    assert parse_command(b"]a.1$ NOOP").tag == "]a.1$"


# --------------------------------------------------------------------------- tokens


def test_strings_atoms_literals() -> None:
    tok = Tokenizer(b'"a \\"b\\" \\\\c" {3}\r\nxyz {2+}\nhi NIL atom]x')
    assert tok.astring() == b'a "b" \\c'
    tok.sp()
    assert tok.string() == b"xyz"
    tok.sp()
    assert tok.nstring() == b"hi"
    tok.sp()
    assert tok.nstring() is None
    tok.sp()
    assert tok.astring() == b"atom]x"
    assert tok.at_end()


@pytest.mark.parametrize(
    "data",
    [b'"abc', b'"a\\x"', b'"a\r"', b"{5}\r\nabc", b"~{3}\r\nabc", b"{3}\r\na\x00c", b"{3}x",
     b"(", b")", b"", b"{99999999999999999999999}\r\n"],
)
def test_bad_strings(data: bytes) -> None:
    tok = Tokenizer(data)
    with pytest.raises(ParseError):
        tok.astring()
        tok.end()


def test_numbers_are_bounded() -> None:
    assert Tokenizer(b"4294967295").number() == 2**32 - 1
    assert Tokenizer(b"9223372036854775807").number64() == 2**63 - 1
    for data, fn in [(b"4294967296", "number"), (b"0", "nz_number"), (b"x", "number"),
                     (b"9" * 5000, "number64")]:
        with pytest.raises(ParseError):
            getattr(Tokenizer(data), fn)()


def test_flags_and_flag_lists() -> None:
    assert Tokenizer(b"(\\SEEN \\deleted $Forwarded Junk \\Custom)").flag_list() == [
        "\\Seen", "\\Deleted", "$Forwarded", "Junk", "\\Custom"]
    assert Tokenizer(b"()").flag_list() == []
    for data in [b"(\\)", b"(a b", b"(a  b)", b"(\\*)", b'("x")']:
        with pytest.raises(ParseError):
            Tokenizer(data).flag_list()


def test_dates() -> None:
    assert Tokenizer(b"1-Feb-1994").date() == dt.date(1994, 2, 1)
    assert Tokenizer(b'"01-feb-1994"').date() == dt.date(1994, 2, 1)
    when = Tokenizer(b'"17-Jul-1996 02:44:25 -0700"').date_time()
    assert when == dt.datetime(1996, 7, 17, 9, 44, 25, tzinfo=dt.UTC)
    assert Tokenizer(b'" 7-Feb-1994 22:43:04 -0800"').date_time().day == 7
    for data in [b"31-Feb-1994", b"1-Foo-1994", b"1994-02-01", b'"1-Feb-1994']:
        with pytest.raises(ParseError):
            Tokenizer(data).date()
    for data in [b'"17-Jul-1996 25:44:25 -0700"', b'"17-Jul-1996 02:44:25 +9999"',
                 b"17-Jul-1996 02:44:25 -0700", b'"17-Jul-1996 02:44 -0700"']:
        with pytest.raises(ParseError):
            Tokenizer(data).date_time()


# --------------------------------------------------------------------------- mailbox names


def test_modified_utf7_rfc3501_example() -> None:
    assert decode_mailbox_name("~peter/mail/&U,BTFw-/&ZeVnLIqe-") == "~peter/mail/台北/日本語"
    assert encode_mailbox_name("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert decode_mailbox_name(b"&Jjo-!") == "☺!"
    assert decode_mailbox_name("Tom &- Jerry") == "Tom & Jerry"
    assert encode_mailbox_name("Tom & Jerry") == "Tom &- Jerry"
    assert encode_mailbox_name("😀 x") == "&2D3eAA- x"


@pytest.mark.parametrize(
    "bad_name", ["&U,BTFw", "&A-", "&AGE-", "&2D0-", "a\x01", "caf\xe9", "&!!-"]
)
def test_invalid_modified_utf7(bad_name: str) -> None:
    with pytest.raises(ValueError):
        decode_mailbox_name(bad_name)


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30))
def test_modified_utf7_round_trips(name: str) -> None:
    assert decode_mailbox_name(encode_mailbox_name(name)) == name


def test_mailbox_inbox_and_utf8() -> None:
    assert Tokenizer(b"inbox").mailbox() == "INBOX"
    assert Tokenizer(b'"InBoX"').mailbox() == "INBOX"
    assert Tokenizer(b"INBOX/Sub").mailbox() == "INBOX/Sub"
    assert Tokenizer(b"Caf&AOk-").mailbox() == "Café"
    assert Tokenizer('"Café"'.encode(), utf8=True).mailbox() == "Café"
    assert Tokenizer("Café".encode(), utf8=True).mailbox() == "Café"
    with pytest.raises(ParseError):
        Tokenizer('"Café"'.encode()).mailbox()
    with pytest.raises(ParseError):
        Tokenizer(b'"\xff"', utf8=True).mailbox()
    with pytest.raises(ParseError):
        Tokenizer(b"{3}\r\na\nb").mailbox()


# --------------------------------------------------------------------------- sequence sets


def test_sequence_sets() -> None:
    seq = Tokenizer(b"2,4:7,9,12:*").sequence_set()
    assert seq.ranges == ((2, 2), (4, 7), (9, 9), (12, None))
    assert str(seq) == "2,4:7,9,12:*"
    assert seq.resolve(15) == [(2, 2), (4, 7), (9, 9), (12, 15)]
    assert seq.resolve(10) == [(2, 2), (4, 7), (9, 12)]  # 12:* = 10:12
    assert seq.contains(6, 15) and not seq.contains(8, 15) and seq.contains(15, 15)
    assert list(seq.iter([1, 2, 3, 5, 8, 9, 13, 20])) == [2, 5, 9, 13, 20]
    assert list(Tokenizer(b"*:4").sequence_set().iter(range(1, 7))) == [4, 5, 6]
    assert Tokenizer(b"*").sequence_set().resolve(0) == []
    assert list(Tokenizer(b"1:*").sequence_set().iter([])) == []
    saved = Tokenizer(b"$").sequence_set()
    assert saved.is_saved and str(saved) == "$"
    with pytest.raises(ValueError):
        saved.resolve(3)
    assert SequenceSet.from_values([9, 1, 2, 3, 5, 10]).resolve(0) == [(1, 3), (5, 5), (9, 10)]
    for data in [b"0", b"1:", b",1", b"1,,2", b"a", b"4294967296", b"1:0"]:
        tok = Tokenizer(data)
        with pytest.raises(ParseError):
            tok.sequence_set()
            tok.end()
    with pytest.raises(ParseError):
        Tokenizer(b"1:*").sequence_set(allow_star=False)
    with pytest.raises(ParseError):
        Tokenizer(b"$").sequence_set(allow_saved=False)


@given(st.lists(st.tuples(st.integers(1, 60), st.integers(1, 60) | st.none()), min_size=1,
                max_size=6), st.integers(0, 70))
def test_sequence_set_resolution_matches_brute_force(
    ranges: list[tuple[int, int | None]], max_value: int
) -> None:
    seq = SequenceSet(tuple(ranges))
    expected = set()
    for a, b in ranges:
        lo, hi = sorted((a, max_value if b is None else b))
        expected |= set(range(max(lo, 1), hi + 1))
    got = {n for lo, hi in seq.resolve(max_value) for n in range(lo, hi + 1)}
    assert got == expected
    assert all(seq.contains(n, max_value) == (n in expected) for n in range(0, 72))
    assert list(seq.iter(range(1, max_value + 1))) == sorted(n for n in expected if n <= max_value)
    assert Tokenizer(str(seq).encode()).sequence_set() == seq


# --------------------------------------------------------------------------- FETCH


def test_fetch_rfc3501_examples() -> None:
    cmd = parse_fetch(args(b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])"))
    assert cmd.sequence_set == SequenceSet(((2, 4),))
    assert cmd.items == [
        FetchItem("FLAGS"), FetchItem("BODY", Section((), "HEADER.FIELDS", ("DATE", "FROM")))]
    assert cmd.items[1].response_name() == "BODY[HEADER.FIELDS (DATE FROM)]"
    assert [i.name for i in parse_fetch(args(b"a003 fetch 12 full")).items] == [
        "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]
    assert [i.name for i in parse_fetch(args(b"a FETCH 1 ALL")).items] == [
        "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]
    assert [i.name for i in parse_fetch(args(b"a FETCH 1 fast")).items] == [
        "FLAGS", "INTERNALDATE", "RFC822.SIZE"]
    header = parse_fetch(args(b"a004 fetch 12 body[header]")).items
    assert header == [FetchItem("BODY", Section((), "HEADER"))]
    assert header[0].response_name() == "BODY[HEADER]"
    assert parse_fetch(args(b"A999 UID FETCH 4827313:4828442 FLAGS")).items == [FetchItem("FLAGS")]


def test_fetch_sections_partials_and_extensions() -> None:
    items = parse_fetch_items(Tokenizer(
        b"(BODY.PEEK[1.2.MIME] body[]<0.2048> BODY[3.HEADER.FIELDS.NOT (X-Y \"A B\")] "
        b"BODY[1.TEXT] BODY[4.2] BINARY.PEEK[1.2]<0.1024> BINARY[] BINARY.SIZE[3] RFC822.HEADER "
        b"RFC822 RFC822.TEXT RFC822.SIZE BODYSTRUCTURE BODY ENVELOPE UID MODSEQ EMAILID THREADID "
        b"X-GM-MSGID X-GM-THRID X-GM-LABELS SAVEDATE INTERNALDATE)"))
    assert items[0] == FetchItem("BODY", Section((1, 2), "MIME"), None, True)
    assert items[0].response_name() == "BODY[1.2.MIME]"
    assert items[1] == FetchItem("BODY", Section(), (0, 2048))
    assert items[1].response_name() == "BODY[]<0>"
    assert items[2].section == Section((3,), "HEADER.FIELDS.NOT", ("X-Y", "A B"))
    assert items[2].response_name() == 'BODY[3.HEADER.FIELDS.NOT (X-Y "A B")]'
    assert items[3].response_name() == "BODY[1.TEXT]"
    assert items[4].response_name() == "BODY[4.2]"
    assert items[5] == FetchItem("BINARY", Section((1, 2)), (0, 1024), True)
    assert items[5].response_name() == "BINARY[1.2]<0>"
    assert items[6].response_name() == "BINARY[]"
    assert items[7].response_name() == "BINARY.SIZE[3]"
    assert [i.response_name() for i in items[8:]] == [
        "RFC822.HEADER", "RFC822", "RFC822.TEXT", "RFC822.SIZE", "BODYSTRUCTURE", "BODY",
        "ENVELOPE", "UID", "MODSEQ", "EMAILID", "THREADID", "X-GM-MSGID", "X-GM-THRID",
        "X-GM-LABELS", "SAVEDATE", "INTERNALDATE"]


def test_fetch_modifiers_rfc7162() -> None:
    cmd = parse_fetch(args(b"s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)"),
                      uid=True)
    assert (cmd.changedsince, cmd.vanished) == (12345, True)
    cmd = parse_fetch(args(b"a FETCH 1:* (UID FLAGS) (CHANGEDSINCE 12345)"))
    assert (cmd.changedsince, cmd.vanished) == (12345, False)
    assert parse_fetch(args(b"A283 FETCH $ (UID INTERNALDATE FLAGS RFC822.HEADER)")).sequence_set \
        == SequenceSet(is_saved=True)
    bad(parse_fetch, b"a FETCH 1 FLAGS (VANISHED)", uid=True)
    bad(parse_fetch, b"a FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)")  # not UID FETCH
    bad(parse_fetch, b"a FETCH 1 FLAGS (CHANGEDSINCE 0)")
    bad(parse_fetch, b"a FETCH 1 FLAGS (FOO)")


@pytest.mark.parametrize(
    "line",
    [b"a FETCH 1", b"a FETCH 1 (FLAGS", b"a FETCH 1 ()", b"a FETCH 1 (ALL)", b"a FETCH 1 FOO",
     b"a FETCH 1 BODY[MIME]", b"a FETCH 1 BODY[0]", b"a FETCH 1 BODY[1.]", b"a FETCH 1 BODY[TEXT",
     b"a FETCH 1 BINARY[HEADER]", b"a FETCH 1 BINARY", b"a FETCH 1 BODY[HEADER.FIELDS]",
     b"a FETCH 1 BODY[HEADER.FIELDS ()]", b"a FETCH 1 BODY[]<1>", b"a FETCH 1 BODY[]<1.0>",
     b"a FETCH 1 FLAGS extra", b"a FETCH x FLAGS", b"a FETCH 1 BODY.PEEK",
     b"a FETCH 1 BINARY.SIZE[1]<0.5>"],
)
def test_bad_fetch(line: bytes) -> None:
    bad(parse_fetch, line)


# --------------------------------------------------------------------------- STORE


def test_store_rfc3501_and_rfc7162() -> None:
    assert parse_store(args(b"A003 STORE 2:4 +FLAGS (\\Deleted)")) == (
        SequenceSet(((2, 4),)), None, "+", False, ["\\Deleted"], False)
    assert parse_store(args(b"a005 store 12 +flags \\deleted")).flags == ["\\Deleted"]
    store = parse_store(args(b"A160 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT "
                             b"(\\Deleted)"))
    assert store.unchangedsince == 320162338 and store.silent and store.mode == "+"
    assert parse_store(args(b"a STORE 1 FLAGS ()")).flags == []
    assert parse_store(args(b"a STORE 1 -FLAGS \\Seen $Junk")).flags == ["\\Seen", "$Junk"]
    assert parse_store(args(b"a STORE 1 (UNCHANGEDSINCE 0) FLAGS.SILENT ()")).unchangedsince == 0


def test_store_gmail_labels() -> None:
    store = parse_store(args(b'a010 STORE 1 +X-GM-LABELS (foo "bar baz" \\Important inbox)'))
    assert store.is_gm_labels and store.flags == ["foo", "bar baz", "\\Important", "INBOX"]
    assert parse_store(args(b"a011 STORE 1 -X-GM-LABELS \\Inbox")).flags == ["\\Inbox"]


@pytest.mark.parametrize(
    "line",
    [b"a STORE 1 FLAGS", b"a STORE 1 +LABELS (x)", b"a STORE 1 (FOO 1) FLAGS (x)",
     b"a STORE 1 *FLAGS (x)", b"a STORE FLAGS (x)", b"a STORE 1 FLAGS (x) y",
     b"a STORE 1 FLAGS (\"x\")", b"a STORE 1 (UNCHANGEDSINCE) FLAGS (x)"],
)
def test_bad_store(line: bytes) -> None:
    bad(parse_store, line)


# --------------------------------------------------------------------------- SEARCH


def test_search_rfc3501_examples() -> None:
    prog = parse_search(args(b'A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"'))
    assert prog.key == And((Flag("\\Flagged"), Date("internal", "since", dt.date(1994, 2, 1)),
                            Not(Header("from", "Smith"))))
    assert prog.return_options is None and prog.charset is None
    assert parse_search(args(b'A283 SEARCH TEXT "string not in mailbox"')).key == Text(
        "string not in mailbox")
    prog = parse_search(args(b"A284 SEARCH CHARSET UTF-8 TEXT {6}\r\nXXXXXX"))
    assert prog.charset == "UTF-8" and prog.key == Text("XXXXXX")
    prog = parse_search(args("a SEARCH CHARSET UTF-8 SUBJECT {7}\r\nCafé!!".encode()))
    assert prog.key == Header("subject", "Café!!")


def test_search_all_keys() -> None:
    prog = parse_search(args(
        b"a UID SEARCH ALL ANSWERED BCC b BEFORE 1-Jan-2000 BODY x CC c DELETED FLAGGED FROM f "
        b"KEYWORD $Junk NEW OLD ON 2-Jan-2000 RECENT SEEN SINCE 3-Jan-2000 SUBJECT s TEXT t TO o "
        b"UNANSWERED UNDELETED UNFLAGGED UNKEYWORD Work UNSEEN DRAFT UNDRAFT "
        b"HEADER Message-ID <x@y> LARGER 100 SMALLER 200 SENTBEFORE 4-Jan-2000 SENTON 5-Jan-2000 "
        b"SENTSINCE 6-Jan-2000 UID 1:5,7 1,3:* (SEEN FLAGGED) OLDER 60 YOUNGER 30 MODSEQ 5 "
        b"EMAILID M6d99ac3275bb4e THREADID T64b478a75b7ea9 X-GM-RAW \"has:attachment in:unread\" "
        b"X-GM-MSGID 1278455344230334865 X-GM-THRID 1266894439832287888 X-GM-LABELS \\Starred "
        b"KEYWORD \\Seen"), uid=True)
    assert prog.uid
    assert isinstance(prog.key, And)
    assert list(prog.key.keys) == [
        All(), Flag("\\Answered"), Header("bcc", "b"), Date("internal", "before",
                                                             dt.date(2000, 1, 1)),
        Body("x"), Header("cc", "c"), Flag("\\Deleted"), Flag("\\Flagged"), Header("from", "f"),
        Keyword("$Junk"), And((Flag("\\Recent"), Flag("\\Seen", False))),
        Flag("\\Recent", False), Date("internal", "on", dt.date(2000, 1, 2)), Flag("\\Recent"),
        Flag("\\Seen"), Date("internal", "since", dt.date(2000, 1, 3)), Header("subject", "s"),
        Text("t"), Header("to", "o"), Flag("\\Answered", False), Flag("\\Deleted", False),
        Flag("\\Flagged", False), Keyword("Work", False), Flag("\\Seen", False),
        Flag("\\Draft"), Flag("\\Draft", False), Header("message-id", "<x@y>"),
        Size("larger", 100), Size("smaller", 200), Date("sent", "before", dt.date(2000, 1, 4)),
        Date("sent", "on", dt.date(2000, 1, 5)), Date("sent", "since", dt.date(2000, 1, 6)),
        Uid(SequenceSet(((1, 5), (7, 7)))), SeqSet(SequenceSet(((1, 1), (3, None)))),
        And((Flag("\\Seen"), Flag("\\Flagged"))), Within("older", 60), Within("younger", 30),
        ModSeq(5), EmailId("M6d99ac3275bb4e"), ThreadId("T64b478a75b7ea9"),
        GmRaw("has:attachment in:unread"), GmMsgId(1278455344230334865),
        GmThrId(1266894439832287888), GmLabel("\\Starred"), Flag("\\Seen")]


def test_search_or_not_nesting() -> None:
    prog = parse_search(args(b'a SEARCH OR (FROM "a" TO b) NOT OR SEEN 1:3'))
    assert prog.key == Or(And((Header("from", "a"), Header("to", "b"))),
                          Not(Or(Flag("\\Seen"), SeqSet(SequenceSet(((1, 3),))))))
    assert parse_search(args(b"a SEARCH (DELETED)")).key == Flag("\\Deleted")
    deep = b"a SEARCH " + b"NOT " * 200 + b"ALL"
    assert "deeply" in bad(parse_search, deep).message
    deep = b"a SEARCH " + b"(" * 200 + b"ALL" + b")" * 200
    bad(parse_search, deep)


def test_esearch_and_searchres() -> None:
    prog = parse_search(args(b'A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM '
                             b'"Smith"'))
    assert prog.return_options == ("MIN", "COUNT")
    assert parse_search(args(b"A283 SEARCH RETURN () FLAGGED")).return_options == ("ALL",)
    prog = parse_search(args(b"A282 SEARCH RETURN (SAVE) FLAGGED SINCE 1-Feb-1994"))
    assert prog.return_options == ("SAVE",)
    prog = parse_search(args(b"A301 UID SEARCH UID $ SMALLER 4096"), uid=True)
    assert prog.key == And((Uid(SequenceSet(is_saved=True)), Size("smaller", 4096)))
    assert parse_search(args(b"a SEARCH $")).key == SeqSet(SequenceSet(is_saved=True))
    bad(parse_search, b"a SEARCH RETURN (FOO) ALL")
    bad(parse_search, b"a SEARCH RETURN ALL")


def test_search_modseq_rfc7162() -> None:
    prog = parse_search(args(b'A285 SEARCH MODSEQ "/flags/\\\\draft" all 620162338'))
    assert prog.key == ModSeq(620162338, "/flags/\\draft", "all")
    assert parse_search(args(b"a SEARCH MODSEQ 0")).key == ModSeq(0)
    bad(parse_search, b'a SEARCH MODSEQ "/flags/x" any 5')


def test_search_charsets() -> None:
    prog = parse_search(args(b"a SEARCH CHARSET ISO-8859-1 SUBJECT {4}\r\ncaf\xe9"))
    assert prog.key == Header("subject", "café")
    with pytest.raises(BadCharset) as info:
        parse_search(args(b"a SEARCH CHARSET X-UNKNOWN TEXT x"))
    assert info.value.charset == "X-UNKNOWN"
    with pytest.raises(BadCharset):
        parse_search(args(b"a SEARCH CHARSET rot13 TEXT x"))
    bad(parse_search, b"a SEARCH CHARSET US-ASCII TEXT {1}\r\n\xe9")
    bad(parse_search, b"a SEARCH TEXT {1}\r\n\xff")


@pytest.mark.parametrize(
    "line",
    [b"a SEARCH", b"a SEARCH FOO", b"a SEARCH FROM", b"a SEARCH OR SEEN", b"a SEARCH NOT",
     b"a SEARCH ()", b"a SEARCH (SEEN", b"a SEARCH SEEN)", b"a SEARCH SINCE yesterday",
     b"a SEARCH LARGER -1", b"a SEARCH SEEN  DELETED", b"a SEARCH UID", b"a SEARCH EMAILID a/b",
     b"a SEARCH KEYWORD (x)", b"a SEARCH CHARSET", b"a SEARCH X-GM-MSGID x",
     b'a SEARCH HEADER "" x', b'a SEARCH HEADER "a:b" x'],
)
def test_bad_search(line: bytes) -> None:
    bad(parse_search, line)


# --------------------------------------------------------------------------- SORT / THREAD


def test_sort_rfc5256_examples() -> None:
    sort = parse_sort(args(b"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994"))
    assert sort.criteria == (SortCriterion("SUBJECT"),)
    assert sort.search.charset == "UTF-8"
    assert sort.search.key == Date("internal", "since", dt.date(1994, 2, 1))
    sort = parse_sort(args(b"A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL"))
    assert sort.criteria == (SortCriterion("SUBJECT"), SortCriterion("DATE", True))
    sort = parse_sort(args(b'A284 SORT (SUBJECT) US-ASCII TEXT "not in mailbox"'))
    assert sort.search.key == Text("not in mailbox")
    sort = parse_sort(args(b"a UID SORT RETURN (MIN COUNT) (DISPLAYFROM REVERSE ARRIVAL) "
                           b"UTF-8 UNDELETED"), uid=True)
    assert sort.search.return_options == ("MIN", "COUNT") and sort.search.uid
    assert sort.criteria[1] == SortCriterion("ARRIVAL", True)
    for line in [b"a SORT SUBJECT UTF-8 ALL", b"a SORT () UTF-8 ALL", b"a SORT (SUBJECT) ALL",
                 b"a SORT (REVERSE) UTF-8 ALL", b"a SORT (FOO) UTF-8 ALL",
                 b"a SORT (SUBJECT) UTF-8"]:
        bad(parse_sort, line)


def test_thread_rfc5256_examples() -> None:
    thread = parse_thread(args(b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000"))
    assert thread.algorithm == "ORDEREDSUBJECT"
    assert thread.search.key == Date("internal", "since", dt.date(2000, 3, 5))
    thread = parse_thread(args(b'A284 THREAD REFERENCES US-ASCII TEXT "gewp"'))
    assert thread.algorithm == "REFERENCES" and thread.search.key == Text("gewp")
    bad(parse_thread, b"a THREAD REFERENCES ALL")
    bad(parse_thread, b"a THREAD")


# --------------------------------------------------------------------------- mailboxes


def test_list_rfc3501_examples() -> None:
    lst = parse_list(args(b"A101 LIST \"\" \"\""))
    assert (lst.reference, lst.patterns, lst.extended) == ("", ("",), False)
    lst = parse_list(args(b"A202 LIST ~/Mail/ %"))
    assert (lst.reference, lst.patterns) == ("~/Mail/", ("%",))
    lst = parse_list(args(b'A102 LIST #news.comp.mail.misc ""'))
    assert lst.reference == "#news.comp.mail.misc"
    assert parse_list(args(b"a LIST \"\" *")).patterns == ("*",)
    assert parse_list(args(b"a LIST \"\" INBOX.*]")).patterns == ("INBOX.*]",)
    assert parse_list(args(b"a LIST \"\" &U,BTFw-/%")).patterns == ("台北/%",)


def test_list_extended_rfc5258_examples() -> None:
    lst = parse_list(args(b'A02 LIST (SUBSCRIBED) "" "*"'))
    assert lst.selection == ("SUBSCRIBED",) and lst.extended
    lst = parse_list(args(b'A03 LIST () "" "%" RETURN (CHILDREN)'))
    assert lst.selection == () and lst.return_options == ("CHILDREN",)
    lst = parse_list(args(b'A04 LIST (REMOTE) "" "%" RETURN (CHILDREN)'))
    assert lst.selection == ("REMOTE",)
    lst = parse_list(args(b'A05 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)'))
    assert lst.selection == ("SUBSCRIBED", "RECURSIVEMATCH")
    lst = parse_list(args(b'A06 LIST "" ("foo" "foo/*")'))
    assert lst.patterns == ("foo", "foo/*") and lst.extended
    lst = parse_list(args(b"A01 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN) SPECIAL-USE)"))
    assert lst.return_options == ("STATUS", "SPECIAL-USE")
    assert lst.status_items == ("MESSAGES", "UNSEEN")
    lst = parse_list(args(b'a LIST (SPECIAL-USE) "" *'))
    assert lst.selection == ("SPECIAL-USE",)
    for line in [b'a LIST (RECURSIVEMATCH) "" *', b'a LIST (FOO) "" *',
                 b'a LIST "" * RETURN (FOO)', b'a LIST "" * (CHILDREN)', b'a LIST ""',
                 b'a LIST "" ()', b'a LIST "" * RETURN (STATUS ())', b'a LIST "" * x']:
        bad(parse_list, line)
    bad(parse_list, b'a LSUB "" ("a")', extended=False)


def test_status() -> None:
    assert parse_status(args(b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)")) == (
        "blurdybloop", ["UIDNEXT", "MESSAGES"])
    assert parse_status(args(b"a STATUS inbox (highestmodseq size deleted appendlimit "
                             b"mailboxid unseen uidvalidity recent)"))[1] == [
        "HIGHESTMODSEQ", "SIZE", "DELETED", "APPENDLIMIT", "MAILBOXID", "UNSEEN", "UIDVALIDITY",
        "RECENT"]
    for line in [b"a STATUS x ()", b"a STATUS x (FOO)", b"a STATUS x", b"a STATUS (MESSAGES)"]:
        bad(parse_status, line)


def test_select_params_rfc7162() -> None:
    assert parse_select(args(b"a002 select inbox")) == ("INBOX", parse_select(args(b"a x y"))[1])
    mailbox, params = parse_select(args(b"A142 SELECT INBOX (CONDSTORE)"))
    assert params.condstore and params.qresync is None
    _, params = parse_select(args(
        b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))"))
    assert params.qresync == QResync(
        67890007, 20050715194045000, SequenceSet(((41, 41), (43, 211), (214, 541))))
    _, params = parse_select(args(
        b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,"
        b"9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,"
        b"29997)))"))
    assert params.qresync is not None and params.qresync.seq_match is not None
    assert params.qresync.seq_match[0].ranges[-1] == (9990, 9999)
    _, params = parse_select(args(b"a EXAMINE x (QRESYNC (1 2 (1:3 4:6)) CONDSTORE)"))
    assert params.condstore and params.qresync == QResync(
        1, 2, None, (SequenceSet(((1, 3),)), SequenceSet(((4, 6),))))
    _, params = parse_select(args(b"a SELECT x (QRESYNC (1 2))"))
    assert params.qresync == QResync(1, 2)
    for line in [b"a SELECT x (QRESYNC (1 2 1:*))", b"a SELECT x (QRESYNC (0 2))",
                 b"a SELECT x (QRESYNC (1 0))", b"a SELECT x (QRESYNC (1))", b"a SELECT x ()",
                 b"a SELECT x (FOO)", b"a SELECT x (QRESYNC (1 2 3 (1)))", b"a SELECT x y",
                 b"a SELECT x (CONDSTORE) y", b"a SELECT x (QRESYNC (1 2 $))"]:
        bad(parse_select, line)


def test_copy_move_login() -> None:
    assert parse_copy(args(b"A003 COPY 2:4 MEETING")) == (SequenceSet(((2, 4),)), "MEETING")
    assert parse_copy(args(b"a UID MOVE 42:69 foo"))[1] == "foo"
    assert parse_login(args(b"a001 login mrc secret")) == ("mrc", "secret")
    assert parse_login(args(b'a LOGIN "m r" {4+}\r\np w\x01')) == ("m r", "p w\x01")
    bad(parse_login, b"a LOGIN onlyuser")
    bad(parse_copy, b"a COPY 1:2")


# --------------------------------------------------------------------------- APPEND


def test_append_rfc3501_and_multiappend() -> None:
    message = (b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar "
               b"<foobar@Blurdybloop.COM>\r\nSubject: afternoon meeting\r\n\r\nHello Joe\r\n")
    line = b"A003 APPEND saved-messages (\\Seen) {%d}\r\n" % len(message) + message
    append = parse_append(args(line))
    assert append.mailbox == "saved-messages"
    assert append.messages[0].flags == ("\\Seen",) and append.messages[0].data == message
    assert append.messages[0].internal_date is None and not append.messages[0].binary
    line = (b'A003 APPEND saved-messages (\\Seen) " 7-Feb-1994 22:43:04 -0800" {3+}\r\nabc '
            b'(\\Draft $x) ~{4}\r\nd\x00ef {0}\r\n "17-Jul-1996 02:44:25 -0700" {1}\r\nz')
    append = parse_append(args(line))
    assert [m.data for m in append.messages] == [b"abc", b"d\x00ef", b"", b"z"]
    assert append.messages[0].internal_date == dt.datetime(
        1994, 2, 7, 22, 43, 4, tzinfo=dt.timezone(dt.timedelta(hours=-8)))
    assert append.messages[1].binary and append.messages[1].flags == ("\\Draft", "$x")
    assert append.messages[3].internal_date is not None
    for line in [b"a APPEND INBOX", b'a APPEND INBOX "text"', b"a APPEND INBOX (\\Seen)",
                 b"a APPEND INBOX {3}\r\nab", b"a APPEND INBOX {1}\r\nab",
                 b"a APPEND INBOX CATENATE ()", b"a APPEND INBOX {1}\r\na junk"]:
        bad(parse_append, line)


def test_append_utf8_form_and_nul_only_in_literal8() -> None:
    """RFC 6855 §4: `UTF8 (literal8)` once UTF8=ACCEPT is enabled (BAD before); RFC 3516: NUL
    octets only in a literal8."""
    line = b"a APPEND INBOX (\\Seen) UTF8 (~{3}\r\nab\xc3) {2}\r\nxy"
    append = parse_append(args(line), utf8_data=True)
    assert [m.data for m in append.messages] == [b"ab\xc3", b"xy"]
    assert append.messages[0].flags == ("\\Seen",) and not append.messages[0].binary
    bad(parse_append, line)
    bad(parse_append, b"a APPEND INBOX UTF8 ({3}\r\nabc)", utf8_data=True)  # literal8 only
    bad(parse_append, b"a APPEND INBOX UTF8 (~{3}\r\nabc", utf8_data=True)
    bad(parse_append, b"a APPEND INBOX UTF9 (~{3}\r\nabc)", utf8_data=True)
    bad(parse_append, b"a APPEND INBOX {3}\r\na\x00c")
    assert parse_append(args(b"a APPEND INBOX ~{3}\r\na\x00c")).messages[0].binary


# --------------------------------------------------------------------------- session commands


def test_enable_id_authenticate() -> None:
    assert parse_enable(args(b"t2 ENABLE CONDSTORE X-GOOD-IDEA condstore")) == [
        "CONDSTORE", "X-GOOD-IDEA"]
    bad(parse_enable, b"a ENABLE")
    assert parse_id(args(b'a023 ID ("name" "sodr" "version" "19.34" "vendor" '
                         b'"Pink Floyd Music Limited")')) == {
        "name": "sodr", "version": "19.34", "vendor": "Pink Floyd Music Limited"}
    assert parse_id(args(b"a ID NIL")) is None
    assert parse_id(args(b'a ID ("os" NIL)')) == {"os": None}
    assert parse_id(args(b"a ID ()")) == {}
    pairs = b" ".join(b'"k%d" "v"' % i for i in range(31))
    for line in [b"a ID", b'a ID ("name")', b"a ID (name x)", b"a ID NIL x", b'a ID ("a" "b"',
                 b"a ID (" + pairs + b")", b"a ID FOO"]:
        bad(parse_id, line)
    assert parse_authenticate(args(b"a01 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=")) == (
        "PLAIN", b"test\x00test\x00test")
    assert parse_authenticate(args(b"a AUTHENTICATE plain =")) == ("PLAIN", b"")
    assert parse_authenticate(args(b"a AUTHENTICATE SCRAM-SHA-256")) == ("SCRAM-SHA-256", None)
    for line in [b"a AUTHENTICATE PLAIN abc", b"a AUTHENTICATE PLAIN a===", b"a AUTHENTICATE",
                 b"a AUTHENTICATE PLAIN d GVz", b"a AUTHENTICATE PLAIN "]:
        bad(parse_authenticate, line)


# --------------------------------------------------------------------------- fuzzing

PARSERS: list[Callable[[Tokenizer], Any]] = [
    parse_fetch, lambda t: parse_fetch(t, uid=True), parse_store, parse_search,
    lambda t: parse_search(t, uid=True), parse_sort, parse_thread, parse_list,
    lambda t: parse_list(t, extended=False), parse_status, parse_select, parse_append,
    parse_enable, parse_id, parse_authenticate, parse_login, parse_copy,
    lambda t: parse_append(t, utf8_data=True),
]
VALID = [
    b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])",
    b"a FETCH 1:* (BODY.PEEK[1.2.MIME] BINARY[3]<0.10> UID) (CHANGEDSINCE 5)",
    b"A160 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)",
    b'a STORE 1 +X-GM-LABELS (foo "bar baz" \\Important)',
    b'A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
    b"a SEARCH CHARSET UTF-8 OR (TEXT {3}\r\nabc UID 1:*) HEADER X-A b MODSEQ 5",
    b"a SORT (SUBJECT REVERSE DATE) UTF-8 ALL",
    b'a THREAD REFERENCES US-ASCII TEXT "gewp"',
    b'A05 LIST (SUBSCRIBED RECURSIVEMATCH) "" ("%" "x/*") RETURN (CHILDREN STATUS (MESSAGES))',
    b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)",
    b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500 15000,22500)))",
    b'A003 APPEND x (\\Seen) " 7-Feb-1994 22:43:04 -0800" {3}\r\nabc ~{2+}\r\nd\x00',
    b"t2 ENABLE CONDSTORE UTF8=ACCEPT",
    b'a ID ("name" "sodr" "version" NIL)',
    b"a AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=",
    b"a001 LOGIN {3}\r\nmrc {6+}\r\nsecret",
    b"a UID MOVE $ &U,BTFw-",
]


def run_all_parsers(data: bytes) -> None:
    """Only ParseError may come out, whatever the input."""
    try:
        cmd = parse_command(data)
    except ParseError:
        return
    for parser in PARSERS:
        for utf8 in (False, True):
            with contextlib.suppress(ParseError):
                parser(cmd.tokenizer(utf8=utf8))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "flip", "literal", "dup"]))
        pos = draw(st.integers(0, len(data)))
        if kind == "insert":
            data[pos:pos] = draw(st.sampled_from(
                [b" ", b"(", b")", b"{", b"}", b'"', b"\\", b"*", b"$", b"\r\n", b"\x00", b"\xff",
                 b"~", b"[", b"]", b"<", b">", b":", b",", b"0", b"NIL", b"&", b"-"]))
        elif kind == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 5))]
        elif kind == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif kind == "literal":
            data[pos:pos] = b"{%d%s}\r\n" % (draw(st.integers(0, 40)),
                                             draw(st.sampled_from([b"", b"+"])))
        else:
            data[pos:pos] = data[max(0, pos - 10):pos]
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_mutated_commands_raise_only_parse_error(data: bytes) -> None:
    run_all_parsers(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_random_bytes_raise_only_parse_error(data: bytes) -> None:
    run_all_parsers(b"a X " + data)
    run_all_parsers(data)


def test_every_valid_example_parses() -> None:
    """The fuzz corpus itself is valid, so the mutations start from meaningful commands."""
    by_name: dict[str, Callable[[Tokenizer], Any]] = {
               "FETCH": parse_fetch, "STORE": parse_store, "SEARCH": parse_search,
               "SORT": parse_sort, "THREAD": parse_thread, "LIST": parse_list,
               "STATUS": parse_status, "SELECT": parse_select, "APPEND": parse_append,
               "ENABLE": parse_enable, "ID": parse_id, "AUTHENTICATE": parse_authenticate,
               "LOGIN": parse_login, "UID MOVE": parse_copy}
    for line in VALID:
        cmd = parse_command(line)
        by_name[cmd.name](cmd.tokenizer())
