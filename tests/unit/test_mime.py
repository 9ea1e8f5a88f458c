"""The structural MIME parser: corpus sanity, decoded metadata, and never raising on anything."""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailyard.core import mime
from mailyard.core.addresses import Address
from mailyard.core.mime import (
    Part,
    decoded_content,
    find_part,
    iter_parts,
    normalize_subject,
    parse_head,
    parse_message,
)

DATA = Path(__file__).parent.parent / "data/corpora/mime"
CORPUS = sorted(p for p in DATA.rglob("*") if p.is_file())


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def check_structure(raw: bytes, root: Part) -> None:
    """Offsets nest, stay inside the message, and sections are well formed."""

    def visit(part: Part, lo: int, hi: int, depth: int) -> None:
        assert lo <= part.header_start <= part.body_start <= part.body_end <= hi
        assert part.content_type == part.content_type.lower() and "/" in part.content_type
        assert depth <= mime.MAX_DEPTH + 1
        if part.content_type == "message/rfc822" and part.children:
            assert len(part.children) == 1
        for child in part.children:
            visit(child, part.body_start, part.body_end, depth + 1)

    visit(root, 0, len(raw), 0)
    assert root.section == ""
    sections = [s for s, _ in iter_parts(root)]
    assert all(s and all(x.isdigit() for x in s.split(".")) for s in sections if s)


def strict_parse(raw: bytes) -> mime.ParsedMessage:
    """The parser without its last-resort fallback, so that a bug shows up as a failure."""
    parsed = mime._parse(raw, 1_000_000)
    check_structure(raw, parsed.root)
    return parsed


# ---- corpus ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_parses_sanely(path: Path) -> None:
    raw = path.read_bytes()
    parsed = strict_parse(raw)
    assert parsed.size == len(raw)
    assert len(parsed.preview) <= mime.PREVIEW_CHARS
    assert "  " not in parsed.preview
    assert parsed.has_attachment == bool(parsed.attachments)
    for att in parsed.attachments:
        part = find_part(parsed.root, att.section)
        assert part is not None
        if not part.children:
            content = decoded_content(raw, part)
            assert (len(content), hashlib.sha256(content).hexdigest()) == (att.size, att.sha256)
    assert Part.from_json(parsed.root.to_json()) == parsed.root
    assert parsed.date is None or parsed.date.tzinfo is not None


def test_corpus_filenames_agree_with_stdlib() -> None:
    for path in CORPUS:
        raw = path.read_bytes()
        ours = sorted(a.filename for a in parse_message(raw).attachments if a.filename)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        theirs = {str(p.get_filename()) for p in msg.walk()
                  if p.get_filename() and not p.is_multipart()}
        assert set(ours) >= {t for t in theirs if "\ufffd" not in t}, path.name


def test_russian_zip_attachment() -> None:
    raw = (DATA / "spamscope/mail_test_1").read_bytes()
    parsed = parse_message(raw)
    assert parsed.subject == "письмо уведом-е"  # noqa: RUF001
    [att] = parsed.attachments
    assert att.filename == "ФНС_РФ558.zip" and att.size == 8932  # noqa: RUF001
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    [std] = [p for p in msg.walk() if p.get_filename()]
    payload = std.get_payload(decode=True)
    assert att.sha256 == hashlib.sha256(payload).hexdigest()
    assert parsed.preview.startswith("Налогоплательщик!")
    assert "<" not in parsed.text[:500]


def test_gif_attachment_and_uuencode() -> None:
    parsed = parse_message((DATA / "cpython/msg_07.txt").read_bytes())
    assert [(a.filename, a.content_type, a.size) for a in parsed.attachments] == [
        ("dingusfish.gif", "image/gif", 3512)]
    uu = parse_message((DATA / "spamscope/mail_test_15").read_bytes())
    assert [(a.filename, a.size) for a in uu.attachments] == [("REQUEST FOR QUOTE.zip", 251141)]


def test_gb2312_subject_split_across_words() -> None:
    parsed = parse_message((DATA / "spamscope/mail_test_9").read_bytes())
    assert "\ufffd" not in parsed.subject
    assert parsed.subject.startswith("我把镜头拉近些")


# ---- headers -----------------------------------------------------------------------------------

HEADERS = crlf("""From: =?UTF-8?B?w4lsb2TDrWU=?= <elodie@example.fr>
Sender: list-bounces@example.org
Reply-To: "Doe, Jane" <jane@example.com>, bob@example.com (Bob Smith)
To: team: ann@example.com, Ben <ben@example.com>;, carl@example.com
Cc: <@route.example:dave@example.net>
Subject: =?utf-8?q?=E2=82=AC?= =?utf-8?q?_and_=E2=82=AC?=
  continued
Date: Tue, 1 Oct 2024 10:00:00 +0200
Message-ID: <abc@example.fr>
In-Reply-To: <p1@example.fr>
References: <p0@example.fr>
   <p1@example.fr> <p0@example.fr>
List-Id: Team list <team.example.org>

body
""")


def test_header_fields() -> None:
    parsed = strict_parse(HEADERS)
    assert parsed.subject == "€ and € continued"
    assert parsed.from_ == [Address("Élodíe", "elodie@example.fr")]
    assert parsed.sender == [Address("", "list-bounces@example.org")]
    assert parsed.reply_to == [Address("Doe, Jane", "jane@example.com"),
                               Address("Bob Smith", "bob@example.com")]
    assert [a.email for a in parsed.to] == ["ann@example.com", "ben@example.com",
                                            "carl@example.com"]
    assert parsed.cc == [Address("", "dave@example.net")]
    assert parsed.date == datetime(2024, 10, 1, 8, 0, tzinfo=UTC)
    assert parsed.date.utcoffset() == timedelta(hours=2)
    assert parsed.message_id == "abc@example.fr"
    assert parsed.in_reply_to == ["p1@example.fr"]
    assert parsed.references == ["p0@example.fr", "p1@example.fr"]
    assert parsed.list_id == "team.example.org"
    assert b'(NIL NIL "team" NIL)' in parsed.envelope
    assert b'(NIL "@route.example" "dave" "example.net")' in parsed.envelope


def test_missing_and_broken_headers() -> None:
    parsed = strict_parse(b"Date: not a date\r\nFrom: \r\nTo: nobody\r\n\r\nhi\r\n")
    assert parsed.date is None and parsed.from_ == [] and parsed.message_id is None
    assert parsed.to == [Address("", "nobody")]
    assert parsed.subject == ""
    empty = strict_parse(b"")
    assert empty.text == "" and empty.root.body_end == 0
    naive = strict_parse(b"Date: Tue, 1 Oct 2024 10:00:00 -0000\r\n\r\n")
    assert naive.date == datetime(2024, 10, 1, 10, 0, tzinfo=UTC)


def test_rfc2231_and_rfc2047_filenames() -> None:
    msg = crlf("""Content-Type: multipart/mixed; boundary=x

--x
Content-Type: application/octet-stream
Content-Disposition: attachment;
 filename*0*=utf-8''%E2%82%AC%20;
 filename*1="part two.bin"

data
--x
Content-Type: application/pdf; name="=?iso-8859-1?q?r=E9sum=E9?=.pdf"

pdf
--x--
""")
    parsed = strict_parse(msg)
    assert [a.filename for a in parsed.attachments] == ["€ part two.bin", "résumé.pdf"]
    assert [a.section for a in parsed.attachments] == ["1", "2"]


def test_html_is_stripped() -> None:
    msg = crlf("""Content-Type: text/html; charset=utf-8

<html><head><style>p {color: red}</style><script>var secret = 1;</script></head>
<body><p>Caf&eacute; &amp; <b>bar</b></p><!-- hidden --><div>next&nbsp;line</div></body></html>
""")
    parsed = strict_parse(msg)
    assert "Café & bar" in parsed.text and "next line" in parsed.text
    assert "secret" not in parsed.text and "color" not in parsed.text
    assert "hidden" not in parsed.text and "<" not in parsed.text
    assert parsed.preview == "Café & bar next line"
    assert not parsed.attachments


def test_alternative_indexes_one_version_and_skips_empty_plain() -> None:
    msg = crlf("""Content-Type: multipart/alternative; boundary=a

--a
Content-Type: text/plain

\t
--a
Content-Type: text/html

<p>only html</p>
--a--
""")
    assert strict_parse(msg).text == "only html"


def test_attachment_rules() -> None:
    msg = crlf("""Content-Type: multipart/related; boundary=r

--r
Content-Type: text/html

<img src="cid:logo">
--r
Content-Type: image/png
Content-ID: <logo>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--r
Content-Type: text/plain; name=notes.txt

notes
--r
Content-Type: text/plain
Content-Disposition: attachment

forced
--r--
""")
    parsed = strict_parse(msg)
    kinds = [(a.section, a.content_type, a.content_id, a.filename) for a in parsed.attachments]
    assert kinds == [("2", "image/png", "logo", None), ("3", "text/plain", None, "notes.txt"),
                     ("4", "text/plain", None, None)]
    assert parsed.attachments[0].size == 8
    assert parsed.text == ""  # the html body only has an image tag


def test_sections_for_nested_messages() -> None:
    inner = ("From: x@y.z\nContent-Type: multipart/mixed; boundary=i\n\n"
             "--i\n\none\n--i\n\ntwo\n--i--\n")
    msg = crlf(f"""Content-Type: multipart/mixed; boundary=o

--o

text
--o
Content-Type: message/rfc822

{inner}
--o--
""")
    parsed = strict_parse(msg)
    sections = {s: p.content_type for s, p in iter_parts(parsed.root)}
    assert sections == {"": "multipart/mixed", "1": "text/plain", "2": "message/rfc822",
                        "2.1": "text/plain", "2.2": "text/plain"}
    two = find_part(parsed.root, "2")
    assert two is not None and two.children[0].content_type == "multipart/mixed"
    single = strict_parse(b"Subject: s\r\n\r\nbody\r\n")
    assert find_part(single.root, "1") is single.root


def test_line_endings_and_missing_final_boundary() -> None:
    lf = b"Content-Type: multipart/mixed; boundary=z\n\n--z\n\none\n--z\n\ntwo\n"
    parsed = strict_parse(lf)
    assert [p.body_end - p.body_start for p in parsed.root.children] == [3, 4]
    assert parsed.text == "one\n\ntwo"
    no_boundary = strict_parse(b"Content-Type: multipart/mixed\r\n\r\nstuff\r\n")
    assert no_boundary.root.content_type == "text/plain" and not no_boundary.root.children


def test_deep_nesting_is_capped() -> None:
    depth = 200
    head = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"
                   for i in range(depth))
    tail = "".join(f"\n--b{i}--" for i in reversed(range(depth)))
    raw = (head + "\nleaf" + tail + "\n").encode()
    parsed = strict_parse(raw)
    deepest = max(len(s.split(".")) for s, _ in iter_parts(parsed.root))
    assert deepest <= mime.MAX_DEPTH + 1
    nested_msgs = ("Content-Type: message/rfc822\n\n" * 200 + "x\n").encode()
    strict_parse(nested_msgs)


def test_unknown_charset_and_8bit_garbage() -> None:
    raw = (b"Subject: \xff\xfe =?x-nope?q?abc?=\r\n"
           b"Content-Type: text/plain; charset=x-nope\r\n\r\n\xe9t\xe9\r\n")
    parsed = strict_parse(raw)
    assert parsed.text == "été"
    assert parsed.subject.endswith("abc")


def test_normalize_subject() -> None:
    assert normalize_subject("Re: RE: Fwd:  [list] AW: Hello   World") == "hello world"
    assert normalize_subject("SV: Re[2]: Fw: Budget") == "budget"
    assert normalize_subject("Reunion") == "reunion"
    assert normalize_subject("  ") == ""


# ---- never raises ------------------------------------------------------------------------------


@given(st.binary(max_size=4000))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    strict_parse(raw)
    parse_message(b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n" + raw)


SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=60)


def build_message(draw: st.DrawFn, depth: int = 0) -> EmailMessage:
    msg = EmailMessage()
    kind = draw(st.sampled_from(["text", "html", "binary", "multipart", "rfc822"] if depth < 3
                                else ["text", "binary"]))
    if kind == "text":
        msg.set_content(draw(st.text(max_size=200)), subtype="plain",
                        cte=draw(st.sampled_from(["quoted-printable", "base64", "8bit"])))
    elif kind == "html":
        msg.set_content("<p>" + draw(st.text(max_size=100)) + "</p>", subtype="html")
    elif kind == "binary":
        msg.set_content(draw(st.binary(max_size=300)), maintype="application",
                        subtype="octet-stream", filename=draw(SAFE_TEXT) or "f")
    elif kind == "multipart":
        msg.set_content("intro")
        msg.make_mixed()
        for _ in range(draw(st.integers(1, 3))):
            msg.attach(build_message(draw, depth + 1))
    else:
        msg.set_content(build_message(draw, depth + 1))
    return msg


def set_boundaries(msg: EmailMessage) -> None:
    """Fixed boundaries: the generator would otherwise draw them from `random`."""
    for n, part in enumerate(msg.walk()):
        if part.get_content_maintype() == "multipart":
            part.set_boundary(f"=_b{n}_=")


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    msg = build_message(draw)
    msg["Subject"] = draw(SAFE_TEXT)
    set_boundaries(msg)
    msg["From"] = draw(st.sampled_from(["a@b.c", '"Q, R" <q@r.s>', "grp: x@y.z;", "<>"]))
    raw = msg.as_bytes(policy=email.policy.default.clone(linesep=draw(st.sampled_from(
        ["\r\n", "\n"]))))
    mutation = draw(st.sampled_from(["none", "truncate", "delete", "insert", "crlf"]))
    if mutation == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif mutation == "delete":
        a = draw(st.integers(0, len(raw)))
        raw = raw[:a] + raw[a + draw(st.integers(0, 50)) :]
    elif mutation == "insert":
        a = draw(st.integers(0, len(raw)))
        raw = raw[:a] + draw(st.binary(max_size=40)) + raw[a:]
    elif mutation == "crlf":
        raw = raw.replace(b"\r\n", b"\n")
    return raw


@given(messages())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_mime_trees_never_raise(raw: bytes) -> None:
    parsed = strict_parse(raw)
    assert parsed.envelope.startswith(b"(") and parsed.bodystructure.startswith(b"(")


@given(messages())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_attachments_match_stdlib_content(raw: bytes) -> None:
    parsed = strict_parse(raw)
    for att in parsed.attachments:
        part = find_part(parsed.root, att.section)
        assert part is not None
        if not part.children:
            assert att.size == len(decoded_content(raw, part))


def test_parse_head_reads_only_the_header_block() -> None:
    raw = (b"From: Alice <alice@example.test>\r\nSubject: hi\r\nDKIM-Signature: v=1; a=x\r\n"
           b"\r\nFrom: not-a-header@example.test\r\n" + b"body line\r\n" * 1000)
    head, full = parse_head(raw), parse_message(raw)
    assert head.from_ == full.from_ and head.subject == full.subject == "hi"
    assert head.root.body_start == full.root.body_start
    assert head.root.body_end < full.root.body_end  # the body was not read
    assert parse_head(b"Subject: no body at all\r\n").subject == "no body at all"


def test_a_parser_failure_is_logged_counted_and_exported(
        caplog: pytest.LogCaptureFixture) -> None:
    """core.mime.ParseFailures: the count /metrics exports, an ERROR line per failure, the
    traceback once a minute per kind (one sender can repeat the message that trips it)."""
    import prometheus_client

    from mailyard import metrics
    from mailyard.core import mime as mime_module

    failures = mime_module.PARSE_FAILURES
    before = failures.count
    for _ in range(2):
        try:
            raise LookupError("a bug")
        except LookupError as error:
            with caplog.at_level(logging.ERROR, logger="mailyard.core.mime"):
                failures.seen(error, 1234)
    assert failures.count == before + 2
    lines = [r for r in caplog.records if "MIME parser failed on a 1234-octet" in r.getMessage()]
    assert len(lines) == 2 and lines[0].exc_info and not lines[1].exc_info
    exported = prometheus_client.generate_latest(metrics.REGISTRY).decode()
    assert f"mailyard_mime_parse_failures {float(before + 2)}" in exported
