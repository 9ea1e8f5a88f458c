from __future__ import annotations

from email.message import EmailMessage

from hypothesis import given
from hypothesis import strategies as st

from mailyard.core.mime import parse_message
from mailyard.core.sections import binary_section, body_section, header_fields, partial


def multipart() -> bytes:
    msg = EmailMessage()
    msg["From"] = "a@example.test"
    msg["To"] = "b@example.test"
    msg["Subject"] = "parts"
    msg.set_content("plain body\n")
    msg.add_alternative("<p>html body</p>\n", subtype="html")
    inner = EmailMessage()
    inner["Subject"] = "inner"
    inner.set_content("inner text\n")
    outer = EmailMessage()
    outer["From"] = "a@example.test"
    outer["Subject"] = "outer"
    outer.set_content("see attached\n")
    outer.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream",
                         filename="x.bin")
    outer.add_attachment(inner)  # message/rfc822 as part 3
    return outer.as_bytes().replace(b"\n", b"\r\n")


def test_whole_header_text_and_parts() -> None:
    raw = multipart()
    root = parse_message(raw).root
    assert body_section(raw, root, (), None) == raw
    header = body_section(raw, root, (), "HEADER")
    assert header is not None and header.startswith(b"From:") and header.endswith(b"\r\n\r\n")
    text = body_section(raw, root, (), "TEXT")
    assert text is not None and raw.endswith(text)
    assert body_section(raw, root, (1,), None) == b"see attached\r\n"
    assert binary_section(raw, root, (2,)) == b"\x00\x01binary"
    mime = body_section(raw, root, (2,), "MIME")
    assert mime is not None and b"filename=\"x.bin\"" in mime
    inner_header = body_section(raw, root, (3,), "HEADER")
    assert inner_header is not None and b"Subject: inner" in inner_header
    assert body_section(raw, root, (3,), "TEXT") == b"inner text\r\n"
    assert body_section(raw, root, (3, 1), None) == b"inner text\r\n"
    assert body_section(raw, root, (9,), None) is None
    assert body_section(raw, root, (1,), "HEADER") is None


def test_header_fields_keep_folding_and_end_with_blank_line() -> None:
    block = b"Subject: one\r\n two\r\nFrom: x@y\r\nX-A: 1\r\n\r\n"
    assert header_fields(block, ["subject", "X-A"], exclude=False) == (
        b"Subject: one\r\n two\r\nX-A: 1\r\n\r\n")
    assert header_fields(block, ["SUBJECT"], exclude=True) == b"From: x@y\r\nX-A: 1\r\n\r\n"
    assert header_fields(block, ["nothing"], exclude=False) == b"\r\n"


def _fields_line_by_line(block: bytes, names: list[str], *, exclude: bool) -> bytes:
    """HEADER.FIELDS read one line at a time, straight from RFC 3501 §6.4.5 and RFC 5322
    §2.2: the reference the regular-expression version must agree with."""
    wanted = {n.lower().encode() for n in names}
    out: list[bytes] = []
    keep = False
    for line in block.split(b"\n"):
        if line in (b"\r", b""):
            break
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line + b"\n")
            continue
        name, colon, _ = line.partition(b":")
        name = name.rstrip(b" \t")
        keep = bool(colon and name and not any(c in name for c in b" \t\r")) and (
            (name.lower() in wanted) != exclude)
        if keep:
            out.append(line + b"\n")
    return b"".join(out) + b"\r\n"


_NAMES = ["From", "SUBJECT", "to", "X-Spam", "Received", "date"]
_line = st.one_of(
    st.tuples(st.sampled_from([*_NAMES, "from", "X-SPAM"]), st.sampled_from(["", " ", "\t"]),
              st.text("abc <>@.:;\t ", max_size=12)).map(lambda t: f"{t[0]}{t[1]}:{t[2]}"),
    st.text("abc ", min_size=1, max_size=8).map(lambda v: " " + v),  # a folded continuation
    st.text("abc", min_size=1, max_size=8),                          # not a field: no colon
)


@given(lines=st.lists(_line, max_size=10), crlf=st.booleans(),
       names=st.lists(st.sampled_from(_NAMES), max_size=3), exclude=st.booleans())
def test_header_fields_agree_with_reading_line_by_line(lines: list[str], crlf: bool,
                                                       names: list[str], exclude: bool) -> None:
    eol = "\r\n" if crlf else "\n"
    block = ("".join(line + eol for line in lines) + eol + "Body: not a header" + eol).encode()
    assert header_fields(block, names, exclude=exclude) == _fields_line_by_line(
        block, names, exclude=exclude)


def test_partial() -> None:
    assert partial(b"0123456789", 2, 3) == b"234"
    assert partial(b"0123", 10, 3) == b""
    assert partial(b"0123", None, None) == b"0123"


def test_single_part_message_body_is_section_one() -> None:
    raw = b"Subject: s\r\n\r\nhello\r\n"
    root = parse_message(raw).root
    assert body_section(raw, root, (1,), None) == b"hello\r\n"
    assert body_section(raw, root, (), "TEXT") == b"hello\r\n"
