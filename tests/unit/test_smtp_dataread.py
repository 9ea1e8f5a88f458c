"""protocols.smtp.dataread against RFC 5321's line rules, read the slow way as a reference:
any message, any split of the wire into reads, with pipelined commands behind the final dot."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.protocols.smtp.dataread import (
    CHUNK,
    ClientGone,
    DataProblem,
    MailData,
    read_mail_data,
    unstuff,
)


def stuff(message: bytes) -> bytes:
    """A sender's transparency (RFC 5321 §4.5.2): a dot before every line that begins with
    one; then the terminating line."""
    lines = message.split(b"\r\n")
    return b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines) + b".\r\n"


def reference(wire: bytes) -> tuple[bytes, bytes]:
    """The message and what follows, line by line as §4.5.2 says."""
    out: list[bytes] = []
    pos = 0
    while True:
        eol = wire.index(b"\r\n", pos) + 2
        line = wire[pos:eol]
        pos = eol
        if line == b".\r\n":
            return b"".join(out), wire[pos:]
        out.append(line[1:] if line.startswith(b".") else line)


def feed_and_read(parts: list[bytes], size_limit: int | None = None
                  ) -> tuple[MailData, bytes]:
    async def run() -> tuple[MailData, bytes]:
        reader = asyncio.StreamReader(limit=1 << 20)

        async def feeder() -> None:
            for part in parts:
                reader.feed_data(part)
                await asyncio.sleep(0)
            reader.feed_eof()

        task = asyncio.create_task(feeder())
        try:
            got = await read_mail_data(reader, size_limit)
            await task
            return got, await reader.read()
        finally:
            task.cancel()

    return asyncio.run(run())


lines = st.lists(st.one_of(
    st.sampled_from([b"", b".", b"..", b".x", b"x.", b"a\nb", b"\r", b"x\r", b". "]),
    st.binary(max_size=40).map(lambda b: b.replace(b"\r\n", b""))), max_size=30)


@settings(max_examples=300, deadline=None)
@given(lines, st.lists(st.integers(1, 50), max_size=20), st.binary(max_size=30))
def test_same_message_as_reading_line_by_line(body: list[bytes], cuts: list[int],
                                              after: bytes) -> None:
    message = b"".join(ln + b"\r\n" for ln in body)
    wire = stuff(message) + after
    parts, pos = [], 0
    for n in cuts:
        parts.append(wire[pos:pos + n])
        pos += n
    parts.append(wire[pos:])
    got, rest = feed_and_read([p for p in parts if p])
    assert (got.content, rest) == reference(wire)
    assert got.content == message and got.problem is None and rest == after


def test_an_empty_message_and_pipelined_commands() -> None:
    got, rest = feed_and_read([b".\r\nQUIT\r\n"])
    assert got.content == b"" and rest == b"QUIT\r\n"
    got, rest = feed_and_read([b"\r\n", b".", b"\r", b"\nRSET\r\n"])
    assert got.content == b"\r\n" and rest == b"RSET\r\n"


def test_a_terminator_split_over_every_boundary() -> None:
    wire = b"Subject: x\r\n\r\nbody\r\n.\r\nNOOP\r\n"
    for cut in range(1, len(wire)):
        got, rest = feed_and_read([wire[:cut], wire[cut:]])
        assert (got.content, rest) == (b"Subject: x\r\n\r\nbody\r\n", b"NOOP\r\n"), cut


def test_a_stuffed_dot_split_over_every_boundary() -> None:
    wire = b"a\r\n..b\r\n.c\r\n...\r\n.\r\n"
    for cut in range(1, len(wire)):
        for second in range(cut + 1, len(wire)):
            got, rest = feed_and_read([wire[:cut], wire[cut:second], wire[second:]])
            assert got.content == b"a\r\n.b\r\nc\r\n..\r\n" and rest == b"", (cut, second)


def test_millions_of_short_lines_are_read_in_chunks() -> None:
    """4,000,000 lines of one octet: the reader hands back the loop once per chunk, not per
    line (counted by a task that runs whenever the reader yields)."""
    wire = b"Subject: x\r\n" + b"a\r\n" * 4_000_000 + b".\r\n"

    async def run() -> tuple[int, int]:
        reader = asyncio.StreamReader(limit=1 << 20)
        reader.feed_data(wire)
        reader.feed_eof()
        turns = 0
        done = asyncio.Event()

        async def count() -> None:
            nonlocal turns
            while not done.is_set():
                turns += 1
                await asyncio.sleep(0)

        counter = asyncio.create_task(count())
        got = await read_mail_data(reader, None)
        done.set()
        await counter
        return len(got.content), turns

    size, turns = asyncio.run(run())
    assert size == len(wire) - 3
    assert turns >= len(wire) // CHUNK - 1  # the loop ran between chunks


def test_over_the_size_limit_is_drained_then_refused() -> None:
    got, rest = feed_and_read([b"x" * 100 + b"\r\n" * 50, b".\r\nQUIT\r\n"], size_limit=120)
    assert got.problem is DataProblem.TOO_MUCH and got.content == b"" and rest == b"QUIT\r\n"


def test_a_connection_that_ends_mid_data() -> None:
    with pytest.raises(ClientGone):
        feed_and_read([b"Subject: x\r\n\r\nno end"])


def test_unstuff() -> None:
    assert unstuff(b"..a\r\n.b\r\nc.\r\n") == b".a\r\nb\r\nc.\r\n"
