"""The IMAP command reader and argument parser, with examples from RFC 3501 / 9051 / 7162."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.protocols.imap.parser import (
    And,
    CommandReader,
    CommandTooLong,
    Flag,
    Header,
    LiteralTooBig,
    Not,
    Or,
    ParseError,
    Size,
    Tokenizer,
    list_pattern_to_regex,
    parse_append,
    parse_command,
    parse_fetch_items,
    parse_list,
    parse_search,
    parse_status_items,
    parse_store,
)


async def read_all(data: bytes, *, max_line: int = 1000, max_literal: int = 100
                   ) -> tuple[list[bytes | None], list[bytes]]:
    reader = asyncio.StreamReader(limit=max_line + 16)
    reader.feed_data(data)
    reader.feed_eof()
    continuations: list[bytes] = []

    async def cont(line: bytes) -> None:
        continuations.append(line)

    cr = CommandReader(reader, max_line=max_line, max_literal=max_literal, continuation=cont)
    commands: list[bytes | None] = []
    while True:
        cmd = await cr.read_command()
        commands.append(cmd)
        if cmd is None:
            return commands, continuations


async def test_reader_literals_of_every_kind() -> None:
    data = (b"a1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n"
            b"a2 APPEND INBOX ~{3}\r\nx\0y\r\n"
            b"a3 NOOP\n")
    commands, continuations = await read_all(data)
    assert commands == [b"a1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n",
                        b"a2 APPEND INBOX ~{3}\r\nx\0y\r\n", b"a3 NOOP\n", None]
    assert continuations == [b"+ Ready for literal data\r\n", b"+ Ready for literal data\r\n"]


async def test_reader_refuses_big_literals_without_continuation() -> None:
    with pytest.raises(LiteralTooBig) as e:
        await read_all(b"t1 APPEND INBOX {101}\r\n")
    assert e.value.tag == "t1"
    with pytest.raises(LiteralTooBig):
        await read_all(b"t2 APPEND INBOX {5000-}\r\n" + b"x" * 5000 + b"\r\n")
    with pytest.raises(CommandTooLong):
        await read_all(b"t3 NOOP " + b"x" * 5000 + b"\r\n")


async def test_reader_truncated_literal_is_eof() -> None:
    commands, _ = await read_all(b"a APPEND INBOX {50}\r\nonly a bit")
    assert commands == [None]


def test_command_and_uid_folding() -> None:
    cmd = parse_command(b"A003 uid fetch 1:* (FLAGS)\r\n")
    assert (cmd.tag, cmd.name, cmd.args) == ("A003", "UID FETCH", b" 1:* (FLAGS)")
    for bad in (b"\r\n", b"*\r\n", b"a+b NOOP\r\n", b"tag\r\n"):
        with pytest.raises(ParseError):
            parse_command(bad)


def test_fetch_items() -> None:
    tok = Tokenizer(b"(FLAGS BODY.PEEK[HEADER.FIELDS (DATE FROM)] BODY[1.2.MIME]<0.100>"
                    b" BINARY[2] RFC822.SIZE) (CHANGEDSINCE 12345)")
    items, changed, vanished = parse_fetch_items(tok)
    assert not vanished
    assert changed == 12345
    names = [i.response_name() for i in items]
    assert names == ["FLAGS", "BODY[HEADER.FIELDS (DATE FROM)]", "BODY[1.2.MIME]<0>",
                     "BINARY[2]", "RFC822.SIZE", "MODSEQ"]
    assert items[1].peek and not items[2].peek and items[2].partial == (0, 100)
    assert [i.name for i in parse_fetch_items(Tokenizer(b"FAST"))[0]] == [
        "FLAGS", "INTERNALDATE", "RFC822.SIZE"]
    for bad in (b"(FLAGS", b"BODY[FOO]", b"BODY[MIME]", b"BINARY[TEXT]", b"BOGUS", b"BODY[0]"):
        with pytest.raises(ParseError):
            parse_fetch_items(Tokenizer(bad))


def test_search_programs() -> None:
    program = parse_search(Tokenizer(
        b' RETURN (MIN COUNT) CHARSET UTF-8 FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"'
        b" OR LARGER 10 (UNSEEN SUBJECT {3}\r\nabc)"), uid=False)
    assert program.returns == ["MIN", "COUNT"]
    assert isinstance(program.key, And)
    flagged, since, not_from, either = program.key.keys
    assert flagged == Flag("FLAGGED", True)
    assert since.date == date(1994, 2, 1) and since.op == "since"
    assert isinstance(not_from, Not) and not_from.key == Header("FROM", "Smith")
    assert isinstance(either, Or) and either.left == Size("larger", 10)
    with pytest.raises(ParseError, match="BADCHARSET"):
        parse_search(Tokenizer(b" CHARSET KOI8-R ALL"), uid=False)
    with pytest.raises(ParseError):
        parse_search(Tokenizer(b" (" * 100 + b"ALL" + b")" * 100), uid=False)


def test_store_list_status_append() -> None:
    req = parse_store(Tokenizer(b"1:3,5 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)"))
    assert req.unchanged_since == 320162338 and req.mode == "+" and req.silent
    assert req.flags == ["\\Deleted"] and req.sequence_set.resolve(9) == [(1, 3), (5, 5)]
    lst = parse_list(Tokenizer(b' (SUBSCRIBED) "" ("INBOX" "Lists/%") RETURN (CHILDREN'
                               b" STATUS (MESSAGES UNSEEN))"))
    assert lst.selection == {"SUBSCRIBED"} and lst.patterns == ["INBOX", "Lists/%"]
    assert lst.status_items == ["MESSAGES", "UNSEEN"]
    assert list_pattern_to_regex("", "Lists/%").fullmatch("Lists/Python")
    assert not list_pattern_to_regex("", "Lists/%").fullmatch("Lists/Python/3")
    assert list_pattern_to_regex("", "*").fullmatch("a/b/c")
    assert list_pattern_to_regex("", "inbox").fullmatch("INBOX")
    assert parse_status_items(Tokenizer(b"(UIDNEXT MESSAGES)")) == ["UIDNEXT", "MESSAGES"]
    [msg] = parse_append(Tokenizer(b' (\\Seen) "05-Jan-2024 10:00:00 +0100" {5}\r\nhello'))
    assert msg.flags == ["\\Seen"] and msg.data == b"hello" and msg.date is not None
    assert Tokenizer(b"&ZeVnLIqe-").mailbox() == "日本語"


COMMANDS = [b"a FETCH 1:* (FLAGS BODY.PEEK[HEADER])", b"b SEARCH OR FROM x NOT SEEN",
            b"c STORE 1 +FLAGS (\\Seen)", b'd LIST "" "*"', b"e APPEND INBOX {3}\r\nabc",
            b"f UID MOVE 1:5 Trash", b"g SELECT INBOX (CONDSTORE)", b"h LOGIN a b"]


def _parse_everything(data: bytes) -> None:
    try:
        cmd = parse_command(data)
    except ParseError:
        return
    parsers = [lambda t: parse_fetch_items(t), lambda t: parse_search(t, uid=True),
               parse_store, parse_list, parse_status_items, parse_append,
               lambda t: t.sequence_set(), lambda t: t.mailbox(), lambda t: t.date_time()]
    for parse in parsers:
        with contextlib.suppress(ParseError):
            parse(Tokenizer(cmd.args.lstrip(b" ")))


@settings(max_examples=400, deadline=2000)
@given(st.sampled_from(COMMANDS), st.lists(st.tuples(st.integers(0, 80), st.binary(max_size=4)),
                                           max_size=6))
def test_fuzz_mutated_commands_only_raise_parse_errors(base: bytes,
                                                       edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(base)
    for pos, junk in edits:
        pos = min(pos, len(data))
        data[pos:pos + len(junk) % 3] = junk
    _parse_everything(bytes(data) + b"\r\n")


@settings(max_examples=300, deadline=2000)
@given(st.binary(max_size=300))
def test_fuzz_reader_and_parser_never_hang_or_crash(data: bytes) -> None:
    async def go() -> None:
        try:
            commands, _ = await asyncio.wait_for(read_all(data, max_line=200, max_literal=50), 2)
        except (CommandTooLong, LiteralTooBig):
            return
        for cmd in commands:
            if cmd is not None:
                _parse_everything(cmd)

    asyncio.run(go())
