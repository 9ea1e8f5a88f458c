"""`has_long_line` reads a message in steps (so that no one C call holds the GIL over 14 MB)
and must still measure every line as a plain split at CRLF does, whatever the steps cut: a line
across many steps, a CRLF across two, a bare CR or LF inside a line."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailyard.config import ConfigError, parse
from mailyard.protocols.smtp.base import has_long_line, line_too_long, message_problem

pieces = st.lists(st.sampled_from([b"\r\n", b"\r", b"\n", b"a", b"bb", b"ccccc", b"d" * 9]),
                  max_size=30)


def by_split(content: bytes, limit: int) -> bool:
    return any(len(line) > limit for line in content.split(b"\r\n"))


@given(pieces, st.integers(min_value=0, max_value=12), st.integers(min_value=2, max_value=9))
def test_the_stepped_reading_agrees_with_a_plain_split(parts: list[bytes], limit: int,
                                                       chunk: int) -> None:
    content = b"".join(parts)
    assert has_long_line(content, limit, chunk) == by_split(content, limit)


def test_a_line_is_measured_without_its_crlf_and_across_many_steps() -> None:
    at = b"head\r\n" + b"x" * 5000 + b"\r\ntail\r\n"
    assert not has_long_line(at, 5000, chunk=64)
    assert has_long_line(at, 4999, chunk=64)
    assert not has_long_line(b"y" * 998 + b"\r\n", 998)
    assert has_long_line(b"y" * 999 + b"\r\n", 998)


def test_the_refusal_names_the_configured_limit() -> None:
    content = b"Subject: x\r\n\r\n" + b"z" * 2000 + b"\r\n"
    assert message_problem(content, 2000) == ""
    assert message_problem(content, 1999) == line_too_long(1999)
    assert line_too_long(1999).startswith("500 5.5.2 Line too long: at most 1999 octets")


def test_the_limit_is_never_below_rfc_5321s_line() -> None:
    assert parse({"limits": {"smtp_line_octets": 998}}).limits.smtp_line_octets == 998
    try:
        parse({"limits": {"smtp_line_octets": 997}})
    except ConfigError as e:
        assert "limits.smtp_line_octets" in str(e)
    else:
        raise AssertionError("997 was taken")
