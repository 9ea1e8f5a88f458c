"""Content-Transfer-Encoding decoding for FETCH BINARY / BINARY.SIZE (RFC 3516, RFC 2045 §6.7-6.8).

Encoded with Python's own encoders (not ours), decoded with ours: the octets come back, and
BINARY.SIZE is the length of what BINARY sends.
"""

from __future__ import annotations

import base64
import binascii
import quopri

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailyard.core.imapfmt import binary_data, literal
from mailyard.core.mime import parse_message
from mailyard.core.sections import (
    UnknownCTE,
    binary_section,
    decode_base64,
    decode_cte,
    decode_quoted_printable,
)

octets = st.binary(max_size=2000)
text_lines = st.lists(
    st.text(st.characters(min_codepoint=1, max_codepoint=0x2FF,
                          exclude_characters="\r\n"), max_size=120),
    max_size=20)


@given(octets)
def test_qp_of_any_octets_round_trips(data: bytes) -> None:
    assert decode_quoted_printable(binascii.b2a_qp(data, istext=False)) == data


@given(st.binary(max_size=2000).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")))
def test_qp_of_octets_without_line_breaks_round_trips(data: bytes) -> None:
    """quopri writes CR and LF as themselves (text line breaks, which RFC 2045 §6.7 decodes
    as CRLF), so its output is binary-transparent only for data without them; with them the
    binascii form above (=0D=0A) is the binary one."""
    assert decode_quoted_printable(quopri.encodestring(data, quotetabs=True)) == data


@given(text_lines)
def test_qp_text_with_hard_line_breaks_round_trips(lines: list[str]) -> None:
    """Text lines ending in white space: the encoder protects that white space, and the
    decoder must not lose it nor keep the white space that transit adds."""
    data = "\r\n".join(lines).encode("utf-8")
    encoded = binascii.b2a_qp(data, istext=True).replace(b"\n", b"\r\n").replace(b"\r\r", b"\r")
    assert decode_quoted_printable(encoded) == data
    padded = encoded.replace(b"\r\n", b"  \t\r\n") + b" \t "
    assert decode_quoted_printable(padded) == data


@given(octets, st.integers(1, 80))
def test_base64_round_trips_with_any_line_length_and_garbage(data: bytes, width: int) -> None:
    encoded = base64.b64encode(data)
    lines = [encoded[i:i + width] for i in range(0, len(encoded), width)]
    assert decode_base64(b"\r\n".join(lines) + b"\r\n") == data
    assert decode_base64(b" \t!*\r\n".join(lines)) == data
    assert decode_base64(base64.encodebytes(data)) == data


def test_qp_rules_of_rfc_2045() -> None:
    # rule 3: trailing white space is deleted; rule 5: "=" ends a soft line break, also when
    # white space follows it; hex in lower case is accepted; a stray "=" is kept.
    assert decode_quoted_printable(b"a  \t\r\nb") == b"a\r\nb"
    assert decode_quoted_printable(b"soft=\r\nbreak") == b"softbreak"
    assert decode_quoted_printable(b"soft= \t\r\nbreak") == b"softbreak"
    assert decode_quoted_printable(b"=3d=3D=0A") == b"==\n"
    assert decode_quoted_printable(b"=3D41") == b"=41"
    assert decode_quoted_printable(b"a=ZZ b =") == b"a=ZZ b "
    assert decode_quoted_printable(b"x=20\r\n") == b"x \r\n"
    assert decode_quoted_printable(b"end=") == b"end"
    assert decode_quoted_printable(b" " * 100_000 + b"x") == b" " * 100_000 + b"x"


def test_base64_rules_of_rfc_2045() -> None:
    assert decode_base64(b"QUJD\r\nRA==") == b"ABCD"
    assert decode_base64(b"QUJDRA==QUJD") == b"ABCD"  # the first "=" ends the data
    assert decode_base64(b"QUJDR") == b"ABC"  # a lone last character is dropped
    assert decode_base64(b"QU\x00JD") == b"ABC"


def test_unknown_cte() -> None:
    with pytest.raises(UnknownCTE):
        decode_cte(b"data", "x-rot13")
    assert decode_cte(b"\x00raw", "binary") == b"\x00raw"


def message(cte: str, body: bytes) -> bytes:
    return (b"From: a@example.test\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
            b"--b\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n" + body + b"\r\n--b--\r\n")


@given(octets)
def test_binary_size_is_the_length_binary_sends(data: bytes) -> None:
    for cte, encoded in (("base64", base64.encodebytes(data).replace(b"\n", b"\r\n")),
                         ("quoted-printable", quopri.encodestring(data).replace(b"\n", b"\r\n"))):
        raw = message(cte, encoded.rstrip(b"\r\n"))
        root = parse_message(raw).root
        decoded = binary_section(raw, root, (2,))
        assert decoded is not None
        wire = binary_data(decoded)
        head, _, sent = wire.partition(b"}\r\n")
        assert int(head.lstrip(b"~{")) == len(sent) == len(decoded)
        if cte == "base64":
            assert decoded == data
        assert wire.startswith(b"~{") == (b"\x00" in decoded)


def test_multipart_binary_is_its_octets_and_unknown_cte_raises() -> None:
    raw = message("x-unknown", b"????")
    root = parse_message(raw).root
    assert binary_section(raw, root, ()) == raw
    assert binary_section(raw, root, (1,)) == b"hello"
    assert binary_section(raw, root, (9,)) is None
    with pytest.raises(UnknownCTE):
        binary_section(raw, root, (2,))


def test_a_literal_never_carries_nul() -> None:
    assert literal(b"a\x00b") == b"{3}\r\na\x80b"
    assert binary_data(b"a\x00b") == b"~{3}\r\na\x00b"
    assert binary_data(b"a\xffb") == b"{3}\r\na\xffb"
