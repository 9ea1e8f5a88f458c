"""The POP3 command parser and multi-line encoding (protocols/pop3/grammar.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.protocols.pop3.grammar import (
    ParseError,
    crlf,
    multiline,
    number,
    parse_command,
    top,
)


def test_commands_parse_case_insensitively_and_pass_keeps_spaces() -> None:
    cmd = parse_command(b"top 3 10")
    assert (cmd.keyword, cmd.args) == ("TOP", ("3", "10"))
    cmd = parse_command(b"PASS  my secret pass ")
    assert cmd.rest == " my secret pass " and cmd.args == ("my", "secret", "pass")
    assert parse_command(b"STAT").args == ()
    assert parse_command("USER jörg@example.test".encode()).args == ("jörg@example.test",)


@pytest.mark.parametrize("line", [b"", b" STAT", b"ST4T", b"\xff\xfe", b"LIST\x001",
                                  b"LIST 1\r", b"NOOP \x07", b"X" * 41])
def test_bad_lines_raise_parse_error(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse_command(line)


@pytest.mark.parametrize("arg", ["", "-1", "+1", "1.0", "0x1", "\u0661", "99999999999", " 1"])
def test_numbers_are_plain_decimals(arg: str) -> None:
    with pytest.raises(ParseError):
        number(arg)


def test_number_accepts_decimals() -> None:
    assert number("0") == 0 and number("0042") == 42 and number("9999999999") == 9999999999


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_any_line_parses_or_raises_parse_error(line: bytes) -> None:
    try:
        cmd = parse_command(line)
    except ParseError:
        return
    assert cmd.keyword.isalpha() and cmd.keyword == cmd.keyword.upper()


def unstuff(wire: bytes) -> bytes:
    """What a client reads out of a multi-line response (RFC 1939 §3)."""
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    lines = wire[:-3].split(b"\r\n")
    assert lines[-1] == b""
    out = []
    for line in lines[:-1]:
        assert line != b".", "a lone dot inside the data would end it early"
        out.append(line[1:] if line.startswith(b".") else line)
    return b"".join(line + b"\r\n" for line in out)


@given(st.lists(st.sampled_from([b".", b"..", b"a", b"\r\n", b"\n", b"\r", b" ", b"x."]),
                max_size=40).map(b"".join))
@settings(max_examples=500)
def test_multiline_round_trips_through_a_client(data: bytes) -> None:
    expected = crlf(data)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert unstuff(multiline(data)) == expected


def test_multiline_stuffs_leading_dots() -> None:
    assert multiline(b".a\r\nb\r\n..c\r\n.") == b"..a\r\nb\r\n...c\r\n..\r\n.\r\n"
    assert multiline(b"") == b".\r\n"
    assert multiline(b"lf only\nline") == b"lf only\r\nline\r\n.\r\n"


def test_top_takes_the_header_and_n_body_lines() -> None:
    raw = b"Subject: x\r\nFrom: y\r\n\r\nl1\r\nl2\r\nl3\r\n"
    assert top(raw, 0) == b"Subject: x\r\nFrom: y\r\n\r\n"
    assert top(raw, 2) == b"Subject: x\r\nFrom: y\r\n\r\nl1\r\nl2\r\n"
    assert top(raw, 100) == raw
    assert top(b"Subject: only header\r\n", 3) == b"Subject: only header\r\n"
    assert top(b"\r\nbody\r\n", 0) == b"\r\n"
    assert top(b"A: b\n\nx\ny\n", 1) == b"A: b\r\n\r\nx\r\n"


@given(st.binary(max_size=200), st.integers(0, 50))
def test_top_is_a_prefix_of_the_message(raw: bytes, lines: int) -> None:
    whole = crlf(raw)
    part = top(raw, lines)
    assert whole.startswith(part)
    assert top(raw, lines + 1).startswith(part)
