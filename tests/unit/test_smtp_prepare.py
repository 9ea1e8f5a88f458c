"""The MX's look at a message at the end of DATA (issue 24): bounded work on the event loop,
the rest in a thread, the same answer either way; and the pipeline's one-hop analysis."""

from __future__ import annotations

import hashlib
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from mailyard.pipeline.inbound import InboundPipeline
from mailyard.protocols.smtp.base import MAX_HEADER_BLOCK, header_safe
from mailyard.protocols.smtp.inbound import INLINE_HEAD, InboundPolicy, _bounded, _prepare

POLICY = InboundPolicy(hostname="mx.example.test", message_size=50_000_000,
                       recipients_per_message=100, connections_per_ip=0,
                       messages_per_ip_per_minute=0)


def message(head: int, body: int) -> bytes:
    field = b"X-Pad: " + b"a" * 70 + b"\r\n"
    fields = field * (head // len(field))
    return b"From: a@remote.test\r\n" + fields + b"\r\n" + b"text\r\n" * (body // 6)


def test_ordinary_mail_is_prepared_on_the_loop() -> None:
    assert _bounded(message(600, 50_000), POLICY)
    assert _bounded(message(INLINE_HEAD - 200, 5_000), POLICY)


def test_long_header_block_goes_to_a_thread() -> None:
    assert not _bounded(message(INLINE_HEAD + 100, 5_000), POLICY)
    # No empty line at all (one header folded over the whole message), or only bare LFs.
    assert not _bounded(b"Subject: x\r\n" + b" y\r\n" * 5_000, POLICY)
    assert not _bounded(b"Subject: x\n\nbody\n", POLICY)


def test_message_over_a_line_or_header_limit_goes_to_a_thread() -> None:
    small_lines = InboundPolicy(**{**POLICY.__dict__, "line_octets": 998})
    assert not _bounded(message(600, 5_000), small_lines)
    assert not _bounded(message(600, MAX_HEADER_BLOCK + 10), POLICY)


@given(st.binary(max_size=3_000), st.integers(0, 3))
def test_the_answer_is_the_same_whichever_path(body: bytes, ours: int) -> None:
    """`_bounded` only decides where `_prepare` runs; the prepared message and its refusals
    are `_prepare`'s alone (forged Authentication-Results of ours removed either way)."""
    forged = b"Authentication-Results: mx.example.test; spf=pass\r\n" * ours
    raw = forged + b"From: a@remote.test\r\nSubject: s\r\n\r\n" + body
    result = _prepare(raw, POLICY, True)
    assert not isinstance(result, str)
    content, parsed = result
    assert b"Authentication-Results" not in content
    assert parsed is not None and parsed.subject == "s"


def test_analysis_hashes_the_clients_octets_after_the_trace_fields() -> None:
    trace = b"Return-Path: <a@remote.test>\r\nReceived: from x by y; now\r\n"
    client = message(300, 3_000)
    pipeline = InboundPipeline(cast(Any, None), cast(Any, None))
    found = pipeline._analyse(trace + client, None, len(trace))
    assert found.content_sha256 == hashlib.sha256(client).hexdigest()
    assert found.skeleton_sha256 == hashlib.sha256(found.split.skeleton).hexdigest()
    assert found.parsed.from_[0].email == "a@remote.test"


@given(st.text(alphabet=st.sampled_from("ab\r\n\t <>@é"), max_size=400))
def test_trace_header_values_lose_line_breaks_and_stop_at_256(value: str) -> None:
    safe = header_safe(value)
    assert "\r" not in safe and "\n" not in safe
    assert safe == "".join(ch for ch in value if ch not in "\r\n")[:256]
