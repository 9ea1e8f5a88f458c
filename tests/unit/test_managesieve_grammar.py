"""ManageSieve's command reader (RFC 5804 §4) on any bytes: a Command, None at the end of the
stream, or BadCommand; literals of both forms; never another exception."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.protocols.managesieve.grammar import BadCommand, Command, quote, read_command


def read(data: bytes, max_literal: int = 1000) -> Command | None:
    async def go() -> Command | None:
        reader = asyncio.StreamReader(limit=4096)
        reader.feed_data(data)
        reader.feed_eof()
        return await read_command(reader, max_literal=max_literal)
    return asyncio.run(go())


def test_forms() -> None:
    assert read(b'PUTSCRIPT "a b" {5+}\r\nkeep;\r\n') == Command("PUTSCRIPT", ("a b", "keep;"))
    assert read(b"putscript {1}\r\nx {2}\r\nyz\r\n") == Command("PUTSCRIPT", ("x", "yz"))
    assert read(b'HAVESPACE "s" 123\r\n') == Command("HAVESPACE", ("s", 123))
    assert read(b'GETSCRIPT "q\\"uote\\\\"\r\n') == Command("GETSCRIPT", ('q"uote\\',))
    assert read(b"") is None
    assert read(b'PUTSCRIPT "a" {10+}\r\nshort') is None  # the stream ended inside it
    with pytest.raises(BadCommand):
        read(b'PUTSCRIPT "a" {5000+}\r\n' + b"x" * 5000 + b"\r\n")


def test_quote() -> None:
    assert quote('line 1: "x"') == b'"line 1: \\"x\\""'
    assert quote("two\r\nlines") == b"{10}\r\ntwo\r\nlines"


@settings(max_examples=800, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes(data: bytes) -> None:
    with contextlib.suppress(BadCommand):
        read(data)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"PUTSCRIPT", b" ", b'"a"', b"{3+}\r\n", b"{2}\r\n",
                                 b"abc", b"\r\n", b"12", b'"\\"', b"\\", b"{", b"}", b"+",
                                 b"\x00", b"\xff", b"NOOP"]), max_size=30))
def test_command_shaped_bytes(parts: list[bytes]) -> None:
    with contextlib.suppress(BadCommand):
        read(b"".join(parts))
