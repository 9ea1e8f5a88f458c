"""The side blob that keeps a message's octets as imported (bare LFs): its id follows from its
body's, is a flat id every blob store takes, and names nothing for a body that names no hash."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailyard.core import blobkeys

SHA = "ab" * 32


def test_the_side_id_follows_from_the_body_id_and_back() -> None:
    dated = blobkeys.body_id(SHA, 1_700_000_000_000)
    for body in (dated, SHA):  # a dated body, and a body of a store older than that layout
        side = blobkeys.original_id(body)
        assert side == "original-" + SHA
        assert blobkeys.check(side) == side and blobkeys.is_flat(side)
        assert blobkeys.original_of(side) == SHA
        assert blobkeys.content_sha256(side) is None  # its octets do not hash to its name
    assert blobkeys.original_id("s0123456789spool") is None  # a spool names no content
    assert blobkeys.original_of(SHA) is None
    assert blobkeys.original_of("original-" + SHA[:-1]) is None


@given(st.lists(st.sampled_from([b"\r\n", b"\n", b"\r", b"x", b"yz"]), max_size=20))
def test_the_served_form_has_crlf_for_every_lf_and_keeps_everything_else(
        parts: list[bytes]) -> None:
    raw = b"".join(parts)
    served = blobkeys.served_form(raw)
    assert b"\n" not in served.replace(b"\r\n", b"")  # no bare LF left
    # One CR added before each bare LF and nothing else changed (CRLFs and lone CRs stay).
    assert served == raw.replace(b"\r\n", b"\0").replace(b"\n", b"\r\n").replace(b"\0", b"\r\n")
    assert blobkeys.served_form(served) == served
    assert (served == raw) == (b"\n" not in raw.replace(b"\r\n", b""))
