"""Framing IMAP commands and their literals off a stream, with the limits and the bad inputs."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailyard.protocols.imap.grammar import ParseError, parse_command, parse_login
from mailyard.protocols.imap.reader import (
    CONTINUATION,
    CommandReader,
    CommandTooLong,
    LiteralTooBig,
)

from .test_imap_grammar import PARSERS, VALID, mutated

TIMEOUT = 2.0


class Wire:
    """A StreamReader fed by the test and a recorder of the continuations sent back."""

    def __init__(self, data: bytes = b"", *, eof: bool = True, **limits: Any) -> None:
        self.stream = asyncio.StreamReader()
        self.sent: list[bytes] = []
        if data:
            self.stream.feed_data(data)
        if eof:
            self.stream.feed_eof()
        self.reader = CommandReader(self.stream, continuation=self.continuation, **limits)

    async def continuation(self, data: bytes) -> None:
        self.sent.append(data)

    async def command(self) -> bytes | None:
        return await asyncio.wait_for(self.reader.read_command(), TIMEOUT)

    async def commands(self) -> list[Any]:
        """Every command (or the exception raised in its place) up to EOF."""
        out: list[Any] = []
        while True:
            try:
                cmd = await self.command()
            except (CommandTooLong, LiteralTooBig) as exc:
                out.append(exc)
                if isinstance(exc, LiteralTooBig) and exc.close:
                    return out
                continue
            if cmd is None:
                return out
            out.append(cmd)


async def test_plain_lines_crlf_and_bare_lf() -> None:
    wire = Wire(b"a1 NOOP\r\na2 CAPABILITY\nA3 LOGOUT\r\n")
    assert await wire.commands() == [b"a1 NOOP", b"a2 CAPABILITY", b"A3 LOGOUT"]
    assert wire.sent == []


async def test_synchronising_literal_waits_for_continuation() -> None:
    wire = Wire(eof=False)
    wire.stream.feed_data(b"a001 LOGIN {11}\r\n")
    task = asyncio.create_task(wire.command())
    for _ in range(10):
        await asyncio.sleep(0)
    assert wire.sent == [CONTINUATION] and not task.done()
    wire.stream.feed_data(b"FRED FOOBAR {7}\r\n")
    for _ in range(10):
        await asyncio.sleep(0)
    assert wire.sent == [CONTINUATION, CONTINUATION]
    wire.stream.feed_data(b"fat man\r\n")
    line = await task
    assert line == b"a001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man"
    cmd = parse_command(line)
    assert (cmd.tag, cmd.name) == ("a001", "LOGIN")


async def test_non_synchronising_and_binary_literals() -> None:
    wire = Wire(b"a LOGIN {3+}\r\nbob {4+}\npass\r\n"
                b"b APPEND x ~{5}\r\n\x00\r\n\xff\x01\r\n"
                b"c APPEND x ~{2+}\r\nhi\r\n"
                b"d APPEND x {0}\r\n\r\n")
    assert await wire.commands() == [
        b"a LOGIN {3+}\r\nbob {4+}\npass",
        b"b APPEND x ~{5}\r\n\x00\r\n\xff\x01",
        b"c APPEND x ~{2+}\r\nhi",
        b"d APPEND x {0}\r\n",
    ]
    assert wire.sent == [CONTINUATION, CONTINUATION]  # ~{5} and {0} are synchronising


async def test_literal_data_that_looks_like_commands_is_data() -> None:
    wire = Wire(b"a APPEND x {15+}\r\nb LOGOUT\r\n{3}\r\n\r\nc NOOP\r\n")
    assert await wire.commands() == [b"a APPEND x {15+}\r\nb LOGOUT\r\n{3}\r\n", b"c NOOP"]


async def test_too_big_synchronising_literal_is_refused_without_continuation() -> None:
    wire = Wire(b"A1 APPEND INBOX {1000}\r\nA2 NOOP\r\n", max_literal=100)
    first, second = await wire.commands()
    assert isinstance(first, LiteralTooBig)
    assert (first.tag, first.size, first.limit, first.close) == ("A1", 1000, 100, False)
    assert second == b"A2 NOOP"  # the client never sent the data: the next line is a command
    assert wire.sent == []


async def test_too_big_non_synchronising_literal_is_skipped() -> None:
    data = b"A1 APPEND INBOX {200+}\r\n" + b"x" * 200 + b" {5+}\r\nhello\r\nA2 NOOP\r\n"
    wire = Wire(data, max_literal=100, max_discard=1000)
    first, second = await wire.commands()
    assert isinstance(first, LiteralTooBig) and first.tag == "A1" and not first.close
    assert second == b"A2 NOOP"
    assert wire.sent == []


async def test_skipping_stops_at_a_synchronising_literal() -> None:
    data = b"A1 APPEND INBOX {200+}\r\n" + b"x" * 200 + b" {5}\r\nA2 NOOP\r\n"
    first, second = await Wire(data, max_literal=100).commands()
    assert isinstance(first, LiteralTooBig) and second == b"A2 NOOP"


async def test_non_synchronising_literal_beyond_the_skip_cap_closes() -> None:
    wire = Wire(b"A1 APPEND INBOX {99999999999+}\r\nxxx", max_literal=100)
    (exc,) = await wire.commands()
    assert isinstance(exc, LiteralTooBig) and exc.close and exc.tag == "A1"
    huge = b"A1 APPEND INBOX {%s+}\r\n" % (b"9" * 400)
    (exc,) = await Wire(huge).commands()
    assert isinstance(exc, LiteralTooBig) and exc.close
    (exc,) = await Wire(b"A1 X {%s}\r\n" % (b"9" * 5000)).commands()
    assert isinstance(exc, LiteralTooBig) and not exc.close


async def test_literal_minus_allows_4096_octets_non_synchronising() -> None:
    ok = b"a APPEND x {4096+}\r\n" + b"y" * 4096 + b"\r\n"
    assert await Wire(ok, literal_minus=True).commands() == [ok[:-2]]
    big = b"a APPEND x {4097+}\r\n" + b"y" * 4097 + b"\r\nb NOOP\r\n"
    first, second = await Wire(big, literal_minus=True).commands()
    assert isinstance(first, LiteralTooBig) and first.limit == 4096 and second == b"b NOOP"
    sync = b"a APPEND x {5000}\r\n" + b"y" * 5000 + b"\r\n"
    wire = Wire(sync, literal_minus=True)
    assert await wire.commands() == [sync[:-2]] and wire.sent == [CONTINUATION]


async def test_literal_minus_syntax_is_framed_but_capped() -> None:
    """{n-} is not RFC syntax, but its data must not be taken for a command."""
    data = b"a LOGIN {5-}\r\nb BYE {3-}\r\nxyz\r\nc NOOP\r\n"
    wire = Wire(data)
    first, second = await wire.commands()
    assert first == b"a LOGIN {5-}\r\nb BYE {3-}\r\nxyz" and second == b"c NOOP"
    assert wire.sent == []
    with pytest.raises(ParseError):
        parse_login(parse_command(first).tokenizer())
    big = b"a APPEND x {5000-}\r\n" + b"y" * 5000 + b"\r\nb NOOP\r\n"
    first, second = await Wire(big).commands()
    assert isinstance(first, LiteralTooBig) and first.limit == 4096 and second == b"b NOOP"


async def test_total_command_size_is_capped() -> None:
    part = b" {60+}\r\n" + b"z" * 60
    data = b"a APPEND x" + part * 3 + b"\r\nb NOOP\r\n"
    first, second = await Wire(data, max_literal=100, max_command=150).commands()
    assert isinstance(first, LiteralTooBig) and first.tag == "a"
    assert second == b"b NOOP"
    lines = b"a X {0+}\r\n" * 30 + b"\r\nb NOOP\r\n"
    out = await Wire(lines, max_line=64, max_command=100).commands()
    assert isinstance(out[0], LiteralTooBig) and out[-1] == b"b NOOP"


async def test_long_lines_are_refused_and_skipped() -> None:
    data = b"t1 SEARCH " + b"A" * 500 + b"\r\nt2 NOOP\r\n" + b"B" * 300 + b"\nt3 NOOP\n"
    out = await Wire(data, max_line=100).commands()
    assert isinstance(out[0], CommandTooLong) and out[0].tag == "t1"
    assert out[1] == b"t2 NOOP"
    assert isinstance(out[2], CommandTooLong) and out[2].tag is None
    assert out[3] == b"t3 NOOP"
    # a line longer than the StreamReader's own buffer limit is fine below max_line
    stream = asyncio.StreamReader(limit=16)
    stream.feed_data(b"a SEARCH " + b"C" * 80 + b"\r\n")
    stream.feed_eof()
    reader = CommandReader(stream, continuation=Wire().continuation, max_line=200)
    assert await reader.read_command() == b"a SEARCH " + b"C" * 80
    # and the line after a literal counts on its own
    data = b"a X {2+}\r\nhi " + b"D" * 200 + b"\r\nb NOOP\r\n"
    out = await Wire(data, max_line=100).commands()
    assert isinstance(out[0], CommandTooLong) and out[0].tag == "a" and out[1] == b"b NOOP"


@pytest.mark.parametrize(
    "data",
    [b"a NOOP", b"a LOGIN {5}\r\nab", b"a LOGIN {5+}\r\nabcde", b"a LOGIN {5}\r\n",
     b"a LOGIN {5+}", b"a APPEND x {200+}\r\n" + b"x" * 150, b"", b"\r"],
)
async def test_truncated_input_ends_cleanly(data: bytes) -> None:
    wire = Wire(data, max_literal=100)
    assert await wire.command() is None
    assert await wire.command() is None


async def test_skipping_a_refused_literal_is_bounded() -> None:
    assert await Wire(b"a X {150+}\r\n" + b"x" * 20, max_literal=100).commands() == []
    data = b"a X {150+}\r\n" + b"x" * 150 + b" {100+}\r\n" + b"y" * 100 + b"\r\nb NOOP\r\n"
    (exc,) = await Wire(data, max_literal=100, max_discard=200).commands()
    assert isinstance(exc, LiteralTooBig) and exc.close and exc.tag == "a"
    first, second = await Wire(data, max_literal=100, max_discard=250).commands()
    assert isinstance(first, LiteralTooBig) and not first.close and second == b"b NOOP"


async def test_read_line_for_idle_and_authenticate() -> None:
    wire = Wire(b"DONE\r\ndGVzdA==\n" + b"x" * 300 + b"\r\n*\r\npartial", max_line=100)
    assert await wire.reader.read_line() == b"DONE"
    assert await wire.reader.read_line() == b"dGVzdA=="
    with pytest.raises(CommandTooLong):
        await wire.reader.read_line()
    assert await wire.reader.read_line() == b"*"
    assert await wire.reader.read_line() is None


async def test_empty_lines_are_empty_commands() -> None:
    wire = Wire(b"\r\n\na NOOP\r\n")
    assert await wire.commands() == [b"", b"", b"a NOOP"]
    with pytest.raises(ParseError):
        parse_command(b"")


# --------------------------------------------------------------------------- fuzzing


def exercise(data: bytes, **limits: Any) -> None:
    """Feed `data` whole, read every command, parse each with every parser: only the three
    protocol exceptions may escape, and nothing may hang."""

    async def main() -> None:
        wire = Wire(data, **limits)
        for item in await asyncio.wait_for(wire.commands(), TIMEOUT):
            if isinstance(item, bytes):
                try:
                    cmd = parse_command(item)
                except ParseError:
                    continue
                for parser in PARSERS:
                    with contextlib.suppress(ParseError):
                        parser(cmd.tokenizer())

    asyncio.run(main())


def exercise_chunked(data: bytes, cut: int) -> None:
    """The same bytes arriving in two pieces, the second one later."""

    async def main() -> None:
        wire = Wire(eof=False, max_literal=64, max_line=128)
        wire.stream.feed_data(data[:cut])

        async def feed() -> None:
            await asyncio.sleep(0)
            wire.stream.feed_data(data[cut:])
            wire.stream.feed_eof()

        feeder = asyncio.create_task(feed())
        await asyncio.wait_for(wire.commands(), TIMEOUT)
        await feeder

    asyncio.run(main())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.sampled_from([{}, {"max_line": 32, "max_literal": 16,
                                                      "max_command": 64, "max_discard": 40}]))
def test_fuzz_random_bytes_through_reader(data: bytes, limits: dict[str, int]) -> None:
    exercise(data, **limits)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated() | st.sampled_from(VALID), min_size=1, max_size=4),
       st.sampled_from([b"\r\n", b"\n"]), st.booleans())
def test_fuzz_mutated_commands_through_reader(
    commands: list[bytes], eol: bytes, small: bool
) -> None:
    limits = {"max_line": 48, "max_literal": 24, "max_discard": 64} if small else {}
    exercise(eol.join(commands) + eol, **limits)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.integers(0, 200), st.integers(0, 100))
def test_fuzz_wrong_literal_lengths_and_split_arrival(line: bytes, size: int, cut: int) -> None:
    data = line.replace(b"{3}", b"{%d}" % size).replace(b"{2+}", b"{%d+}" % size) + b"\r\n"
    exercise(data + b"a NOOP\r\n")
    exercise_chunked(data, min(cut, len(data)))
