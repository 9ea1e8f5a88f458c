"""Skeleton split / assemble: byte-exact for every input, and deduplicating real attachments."""

from __future__ import annotations

import base64
import hashlib
import os
import random
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailyard.core import skeleton
from mailyard.core.mime import parse_message

DATA = Path(__file__).parent.parent / "data/corpora/mime"
CORPUS = sorted(p for p in DATA.rglob("*") if p.is_file())


def roundtrip(raw: bytes, min_size: int = 2048) -> skeleton.Split:
    result = skeleton.split(raw, parse_message(raw), min_size=min_size)
    assert skeleton.assemble(result.skeleton, result.blobs.__getitem__) == raw
    assert sorted(skeleton.blob_refs(result.skeleton)) == sorted(result.blobs)
    for digest, content in result.blobs.items():
        assert hashlib.sha256(content).hexdigest() == digest
    return result


def mail(payload: bytes, *, subject: str, boundary: str, linesep: str = "\r\n") -> bytes:
    msg = EmailMessage()
    msg["From"] = "alice@example.com"
    msg["To"] = "bob@example.org"
    msg["Subject"] = subject
    msg.set_content(f"see attached ({subject})")
    msg.add_attachment(payload, maintype="application", subtype="pdf", filename="report.pdf")
    msg.set_boundary(boundary)
    return msg.as_bytes(policy=default_policy.clone(linesep=linesep))


def handmade(b64_body: bytes, eol: bytes) -> bytes:
    """A message whose attachment body is exactly `b64_body`, whatever its layout."""
    return eol.join([
        b"From: a@b.c", b"Content-Type: multipart/mixed; boundary=zz", b"",
        b"--zz", b"Content-Type: text/plain", b"", b"hi",
        b"--zz", b"Content-Type: image/jpeg; name=x.jpg", b"Content-Transfer-Encoding: base64",
        b"", b64_body, b"--zz--", b"",
    ])


def layout(data: bytes, width: int, eol: bytes, final_eol: bool) -> bytes:
    encoded = base64.b64encode(data)
    body = eol.join(encoded[i : i + width] for i in range(0, len(encoded), width))
    return body + (eol if final_eol else b"")


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_roundtrip(path: Path) -> None:
    roundtrip(path.read_bytes())


def test_corpus_large_base64_attachments_are_split_out() -> None:
    raw = (DATA / "spamscope/mail_test_2").read_bytes()
    result = roundtrip(raw)
    parsed = parse_message(raw)
    big = {a.sha256 for a in parsed.attachments if a.size >= 2048}
    assert big and big <= set(result.blobs)
    assert len(result.skeleton) < len(raw) // 10


@pytest.mark.parametrize("linesep", ["\r\n", "\n"])
def test_same_attachment_in_two_mails_is_one_blob(linesep: str) -> None:
    payload = os.urandom(1024 * 1024)
    one = mail(payload, subject="first", boundary="aaaa", linesep=linesep)
    two = mail(payload, subject="second, with a longer subject", boundary="b" * 30,
               linesep=linesep)
    first, second = roundtrip(one), roundtrip(two)
    digest = hashlib.sha256(payload).hexdigest()
    assert list(first.blobs) == list(second.blobs) == [digest]
    assert first.blobs[digest] == payload
    assert len(first.skeleton) < 0.05 * len(one) and len(second.skeleton) < 0.05 * len(two)
    assert len(first.skeleton) < 2000


@pytest.mark.parametrize("width", [76, 72, 64, 60, 4, 100])
@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
@pytest.mark.parametrize("final_eol", [True, False])
def test_common_layouts_are_deduplicated(width: int, eol: bytes, final_eol: bool) -> None:
    data = random.Random(width).randbytes(5000)
    result = roundtrip(handmade(layout(data, width, eol, final_eol), eol))
    assert list(result.blobs) == [hashlib.sha256(data).hexdigest()]


def test_unpadded_and_single_line_base64() -> None:
    data = os.urandom(4000)
    single = roundtrip(handmade(base64.b64encode(data), b"\r\n"))
    assert single.blobs
    unpadded = base64.b64encode(data + b"x").rstrip(b"=")
    assert roundtrip(handmade(unpadded, b"\n")).blobs


def test_irregular_base64_stays_inline() -> None:
    data = os.urandom(6000)
    body = layout(data, 76, b"\r\n", True)
    odd = body[:100] + b"\r\n" + body[100:]  # one short line in the middle
    assert roundtrip(handmade(odd, b"\r\n")).blobs == {}
    spaced = body.replace(b"\r\n", b" \r\n", 3)
    assert roundtrip(handmade(spaced, b"\r\n")).blobs == {}


def test_small_attachments_stay_inline() -> None:
    result = roundtrip(mail(b"tiny", subject="s", boundary="q"))
    assert result.blobs == {} and skeleton.blob_refs(result.skeleton) == []


def test_identity_and_quoted_printable_attachments() -> None:
    text = ("line of text, with = and trailing space \n" * 200).encode()
    for cte in ("7bit", "quoted-printable", "base64"):
        msg = EmailMessage()
        msg["From"] = "a@b.c"
        msg.set_content("body")
        msg.add_attachment(text.decode(), subtype="csv", filename="t.csv", cte=cte)
        msg.set_boundary("==b==")
        raw = msg.as_bytes(policy=default_policy.clone(linesep="\r\n"))
        result = roundtrip(raw)
        if cte != "quoted-printable":
            assert len(result.blobs) == 1, cte


def test_assemble_detects_damage() -> None:
    payload = os.urandom(10_000)
    result = roundtrip(mail(payload, subject="s", boundary="q"))
    [digest] = result.blobs
    with pytest.raises(ValueError):
        skeleton.assemble(result.skeleton, lambda _: payload[:-1] + b"\0")
    with pytest.raises(ValueError):
        skeleton.assemble(b"NOPE" + result.skeleton[4:], result.blobs.__getitem__)
    with pytest.raises(ValueError):
        skeleton.assemble(result.skeleton[:-3], result.blobs.__getitem__)
    assert skeleton.blob_refs(result.skeleton) == [digest]


def test_same_attachment_twice_in_one_mail() -> None:
    payload = os.urandom(3000)
    msg = EmailMessage()
    msg["From"] = "a@b.c"
    msg.set_content("x")
    for name in ("a.bin", "b.bin"):
        msg.add_attachment(payload, maintype="application", subtype="octet-stream",
                           filename=name)
    msg.set_boundary("zz")
    raw = msg.as_bytes()
    result = roundtrip(raw)
    assert len(result.blobs) == 1
    assert len(skeleton.blob_refs(result.skeleton)) == 1


@st.composite
def base64_mails(draw: st.DrawFn) -> bytes:
    data = draw(st.binary(min_size=0, max_size=6000))
    width = draw(st.sampled_from([76, 72, 64, 60, 57, 1, 3, 200])) if draw(st.booleans()) else \
        draw(st.integers(1, 300))
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    body = layout(data, width, eol, draw(st.booleans()))
    corruption = draw(st.sampled_from(["none", "flip", "insert", "delete", "pad", "ws"]))
    if body and corruption != "none":
        at = draw(st.integers(0, len(body) - 1))
        if corruption == "flip":
            body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :]
        elif corruption == "insert":
            body = body[:at] + draw(st.binary(min_size=1, max_size=5)) + body[at:]
        elif corruption == "delete":
            body = body[:at] + body[at + 1 :]
        elif corruption == "pad":
            body = body.rstrip(b"\r\n=") + b"==="
        else:
            body = b"\t " + body + b" \r\n\r\n"
    raw = handmade(body, eol)
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


@given(base64_mails(), st.sampled_from([1, 64, 2048]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_roundtrip(raw: bytes, min_size: int) -> None:
    roundtrip(raw, min_size=min_size)


@given(st.binary(max_size=3000))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes_roundtrip(raw: bytes) -> None:
    roundtrip(raw, min_size=1)
    roundtrip(b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n"
              b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n" + raw,
              min_size=1)
