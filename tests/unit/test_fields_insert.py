"""pipeline.fields.insert: the parse of a message moved past inserted header fields is exactly
the parse of the message with them, or none at all (then the pipeline parses again).

Over the MIME corpus and over the shapes where inserting fields could change what a parse
reads (an mbox From line, a message without header, one at the parser's field limit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailyard.core.mime import MAX_HEADER_FIELDS, ParsedMessage, parse_message
from mailyard.pipeline.fields import insert

CORPUS = sorted(p for p in (Path(__file__).parent.parent / "data/corpora/mime").rglob("*")
                if p.is_file())
TRACE = b"Received: from mx.remote.test by mx.example.test; Mon, 1 Jan 2029 00:00:00 +0000\r\n"
ADDED = b"X-Spam-Score: 4.20\r\nX-Spam-Status: No, score=4.20 required=5.0 tests=none\r\n"


def same(moved: ParsedMessage, parsed: ParsedMessage) -> None:
    assert moved == parsed  # every field and every Part offset, all the way down
    assert moved.decoded_cache == parsed.decoded_cache


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_moving_the_parse_is_parsing_again(path: Path) -> None:
    raw = TRACE + path.read_bytes()
    parsed = parse_message(raw)
    out, moved = insert(raw, parsed, len(TRACE), ADDED)
    assert out == TRACE + ADDED + path.read_bytes()
    if moved is None:  # its first line is no field (an mbox From line, binary): no header
        assert parsed.root.body_start == len(TRACE)
    else:
        same(moved, parse_message(out))


def test_the_corpus_is_there_and_moves() -> None:
    assert len(CORPUS) > 50
    assert sum(b"multipart/" in p.read_bytes() for p in CORPUS) > 20
    raws = [TRACE + p.read_bytes() for p in CORPUS]
    moved = [insert(r, parse_message(r), len(TRACE), ADDED)[1] is not None for r in raws]
    assert sum(moved) > len(CORPUS) - 5


SHAPES = {
    "plain": b"Subject: hi\r\n\r\nbody\r\n",
    "no header": b"\r\nbody only\r\n",
    "no blank line": b"Subject: hi\r\n",
    "first line no field": b"not a field line\r\nSubject: x\r\n\r\nbody\r\n",
    "continuation first": b" folded\r\nSubject: x\r\n\r\nbody\r\n",
    "mbox from": b"From someone@remote.test Mon Jan  1 00:00:00 2029\r\nSubject: x\r\n\r\nb\r\n",
    "bare LF": b"Subject: hi\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n",
    "at the field limit": b"".join(b"X-N: %d\r\n" % n for n in range(MAX_HEADER_FIELDS - 1))
    + b"Subject: the last field\r\n\r\nbody\r\n",
    "empty": b"",
}


@pytest.mark.parametrize("trace", [TRACE, b""], ids=["after trace", "at 0"])
@pytest.mark.parametrize("name", SHAPES)
def test_a_parse_that_would_change_is_not_moved(name: str, trace: bytes) -> None:
    raw = trace + SHAPES[name]
    out, moved = insert(raw, parse_message(raw), len(trace), ADDED)
    assert out == trace + ADDED + SHAPES[name]
    if moved is not None:
        same(moved, parse_message(out))


def test_the_shapes_that_cannot_move_are_refused() -> None:
    """The checks above pass with None; these must be None, or the test above proves nothing
    about moving them (and the one message that moves, moves)."""
    for name in ("at the field limit", "empty", "first line no field"):
        raw = SHAPES[name]
        assert insert(raw, parse_message(raw), 0, ADDED)[1] is None, name
    mbox = SHAPES["mbox from"]
    assert insert(mbox, parse_message(mbox), 0, ADDED)[1] is None
    assert insert(TRACE + mbox, parse_message(TRACE + mbox), len(TRACE), ADDED)[1] is None
    for raw, at in ((SHAPES["plain"], 0), (TRACE + SHAPES["plain"], len(TRACE)),
                    (SHAPES["no header"], 0), (SHAPES["no blank line"], 0)):
        assert insert(raw, parse_message(raw), at, ADDED)[1] is not None, raw
    raw = SHAPES["plain"]
    assert insert(raw, None, 0, ADDED)[1] is None


def test_the_field_limit_is_what_a_parse_would_cut() -> None:
    """Why the limit matters: at it, the inserted fields push Subject out of the parse."""
    raw = SHAPES["at the field limit"]
    assert parse_message(raw).subject == "the last field"
    assert parse_message(ADDED + raw).subject == ""
