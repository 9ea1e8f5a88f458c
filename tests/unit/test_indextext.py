"""Index text per field: addresses split for search, bodies and attachments decoded, every cap
held, and nothing an attachment holds (broken, encrypted, a zip bomb) makes indexing fail."""

from __future__ import annotations

import email
import email.policy
import importlib.util
import io
import logging
import re
import time
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailyard.core.indexlimits import Limits
from mailyard.core.indextext import DEFAULT_LIMITS, IndexText, index_text
from mailyard.core.mime import parse_message

CORPUS_DIR = Path(__file__).parent.parent / "data/corpora/mime"
CORPUS = sorted(p for p in CORPUS_DIR.rglob("*") if p.is_file())
HAS_PYPDF = importlib.util.find_spec("pypdf") is not None
needs_pypdf = pytest.mark.skipif(not HAS_PYPDF, reason="pypdf not installed (the `pdf` extra)")
PDF_ON = Limits(pdf=True)

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
ODT = "application/vnd.oasis.opendocument.text"
ODS = "application/vnd.oasis.opendocument.spreadsheet"
W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def run(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> IndexText:
    return index_text(raw, parse_message(raw), limits)


# ---- fixtures built here: a few hundred bytes each, no binary files in the repository ----------


def make_zip(members: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def docx(*paragraphs: str) -> bytes:
    body = "".join(f"<w:p><w:r><w:t xml:space=\"preserve\">{p}</w:t></w:r></w:p>"
                   for p in paragraphs)
    return make_zip({
        "[Content_Types].xml": DECL + "<Types/>",
        "word/document.xml": f"{DECL}<w:document {W}><w:body>{body}"
                             "<w:p><w:r><w:instrText>PAGE</w:instrText></w:r></w:p>"
                             "</w:body></w:document>",
    })


def xlsx(*strings: str) -> bytes:
    items = "".join(f"<si><t>{s}</t></si>" for s in strings)
    return make_zip({
        "xl/workbook.xml": DECL + "<workbook/>",
        "xl/sharedStrings.xml": f'{DECL}<sst xmlns="http://schemas.openxmlformats.org/'
                                f'spreadsheetml/2006/main">{items}</sst>',
    })


def pptx(*slides: str) -> bytes:
    members: dict[str, str | bytes] = {}
    for n, text in enumerate(slides, start=1):
        members[f"ppt/slides/slide{n}.xml"] = (
            f'{DECL}<p:sld xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main" '
            'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"><p:cSld><p:spTree>'
            f"<p:sp><p:txBody><a:p><a:r><a:t>{text}</a:t></a:r></a:p></p:txBody></p:sp>"
            "</p:spTree></p:cSld></p:sld>")
    return make_zip(members)


def odf(body: str, mimetype: str) -> bytes:
    return make_zip({
        "mimetype": mimetype,
        "styles.xml": DECL + "<office:document-styles/>",
        "content.xml": (
            f'{DECL}<office:document-content '
            'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
            'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
            'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0">'
            f"<office:automatic-styles/><office:body>{body}</office:body>"
            "</office:document-content>"),
    })


def pdf(text: str) -> bytes:
    """A one-page PDF with one line of Helvetica text, xref offsets computed."""
    content = b"BT /F1 18 Tf 72 720 Td (" + text.encode("latin-1") + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return out


def message(*attachments: tuple[bytes | str, str, str], body: str = "See attached.",
            **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "alice@example.com"
    msg["To"] = "bob@example.com"
    msg["Subject"] = "files"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    for data, ctype, filename in attachments:
        maintype, _, subtype = ctype.partition("/")
        if isinstance(data, str):
            msg.add_attachment(data, subtype=subtype, filename=filename)
        elif ctype == "message/rfc822":
            inner = email.message_from_bytes(data, policy=email.policy.default)
            msg.add_attachment(inner, filename=filename)
        else:
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=email.policy.SMTP)


def text_attachment(data: bytes, ctype: str, charset: str, filename: str) -> bytes:
    """A text attachment in exactly the given bytes and charset label (base64)."""
    import base64
    encoded = base64.encodebytes(data).decode()
    return crlf(
        "From: a@b.example\nSubject: t\nMIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=BB\n\n"
        "--BB\nContent-Type: text/plain\n\nbody\n"
        f"--BB\nContent-Type: {ctype}; charset={charset}\n"
        f'Content-Disposition: attachment; filename="{filename}"\n'
        f"Content-Transfer-Encoding: base64\n\n{encoded}--BB--\n")


# ---- headers -----------------------------------------------------------------------------------


def test_addresses_with_local_part_and_domain() -> None:
    raw = crlf('From: "Alice Doe" <alice.doe@mail.example.com>\n'
               "To: bob@example.org, Carol <carol@example.net>\n"
               "Cc: team: dan@example.org, erin@example.org;\n"
               "Bcc: <frank@example.com>\nSubject: hi\n\nbody\n")
    result = run(raw)
    assert result.from_ == "Alice Doe alice.doe@mail.example.com alice.doe mail.example.com"
    assert result.to == ("bob@example.org bob example.org "
                         "Carol carol@example.net carol example.net")
    assert result.cc.split() == ["dan@example.org", "dan", "example.org",
                                 "erin@example.org", "erin"]
    assert result.bcc == "frank@example.com frank example.com"


def test_rfc2047_names_and_subject_decoded() -> None:
    raw = crlf("From: =?utf-8?q?Ren=C3=A9e_M=C3=BCller?= <renee@example.de>\n"
               "To: =?iso-8859-1?b?Suly9G1l?= <jerome@example.fr>\n"
               "Subject: =?utf-8?b?w5xiZXJ3ZWlzdW5n?= erhalten\n\nx\n")
    result = run(raw)
    assert result.from_.startswith("Renée Müller renee@example.de renee example.de")
    assert result.to.startswith("Jérôme ")
    assert result.subject == "Überweisung erhalten"


def test_no_addresses_no_text() -> None:
    result = run(b"Subject: only\r\n\r\nbody\r\n")
    assert (result.from_, result.to, result.cc, result.bcc) == ("", "", "", "")
    assert (result.filenames, result.attachment_text, result.list_id) == ("", "", "")


def test_list_id_phrase_and_id() -> None:
    raw = crlf('From: a@b.example\nList-Id: "Dev list" <dev.lists.example.org>\n\nbody\n')
    assert run(raw).list_id == "Dev list dev.lists.example.org"
    raw = crlf("List-ID: =?utf-8?q?Entwickler_=C3=BC?= <dev.example.org>\n\nx\n")
    assert run(raw).list_id == "Entwickler ü dev.example.org"
    assert run(crlf("List-Id: <bare.example.org>\n\nx\n")).list_id == "bare.example.org"
    assert run(crlf("List-Id: plain.example.org\n\nx\n")).list_id == "plain.example.org"
    assert run(crlf("Subject: none\n\nList-Id: <in.body.example>\n")).list_id == ""


def test_list_id_from_corpus_message() -> None:
    raw = (CORPUS_DIR / "spamscope/mail_test_13").read_bytes()
    assert run(raw).list_id == ("3f21937f0f636c8cec1db30bfmc list "
                                "3f21937f0f636c8cec1db30bf.140953.list-id.mcsv.net")


# ---- body --------------------------------------------------------------------------------------


def test_html_body_stripped() -> None:
    html = ("<html><head><style>.x { color: red }</style><title>T</title></head><body>"
            "<script>var hidden = 'secretscript';</script><p>Fish &amp; chips at the "
            "caf&eacute;&nbsp;&#8364;5</p><!-- a comment --></body></html>")
    raw = crlf(f"From: a@b.example\nContent-Type: text/html; charset=utf-8\n\n{html}\n")
    body = run(raw).body
    assert "Fish & chips at the café" in body and "€5" in body
    assert "secretscript" not in body and "color" not in body and "comment" not in body
    assert "<" not in body


def test_body_charsets() -> None:
    def body(charset: str, data: bytes) -> str:
        raw = (b"Content-Type: text/plain; charset=" + charset.encode() + b"\r\n\r\n" + data)
        return run(raw).body

    assert body("iso-8859-1", b"\xe9t\xe9 \xe0 Paris") == "été à Paris"
    assert body("windows-1252", b"\x93quoted\x94 \x80 5") == "\u201cquoted\u201d € 5"
    assert body("x-no-such-charset", "naïve".encode()) == "naïve"
    assert body("x-no-such-charset", b"na\xefve") == "naïve"


def test_body_cap() -> None:
    raw = crlf("Subject: long\n\n" + "word " * 10_000 + "\n")
    assert len(run(raw, Limits(body=100)).body) == 100
    assert len(run(raw).body) == len("word " * 10_000) - 1


# ---- attachments -------------------------------------------------------------------------------


def test_filenames_space_separated_and_decoded() -> None:
    raw = message((b"\x89PNG", "image/png", "photo one.png"),
                  (b"%PDF", "application/pdf", "Überweisung.pdf"))
    assert run(raw).filenames == "photo one.png Überweisung.pdf"


def test_text_attachments_decoded_per_charset() -> None:
    raw = text_attachment("Grüße aus Köln".encode("iso-8859-1"), "text/plain", "iso-8859-1",
                          "notes.txt")
    assert run(raw).attachment_text == "Grüße aus Köln"
    raw = text_attachment(b"\x93smart\x94 quotes", "text/plain", "windows-1252", "q.txt")
    assert run(raw).attachment_text == "\u201csmart\u201d quotes"
    raw = text_attachment("日本語のテキスト".encode("shift_jis"), "text/plain", "shift_jis",
                          "j.txt")
    assert run(raw).attachment_text == "日本語のテキスト"
    raw = text_attachment(b"caf\xe9 bar", "text/csv", "x-unknown-charset", "c.csv")
    assert run(raw).attachment_text == "café bar"


def test_text_attachment_not_in_body_and_html_attachment_stripped() -> None:
    raw = message(("<p>Invoice &amp; terms</p><script>nope()</script>", "text/html",
                   "invoice.html"), ("plain attached words", "text/plain", "a.txt"))
    result = run(raw)
    assert result.body == "See attached."
    assert result.attachment_text == "Invoice & terms\n\nplain attached words"


def test_html_attachment_from_corpus() -> None:
    raw = (CORPUS_DIR / "spamscope/mail_test_7").read_bytes()
    result = run(raw)
    assert "att24916.htm" in result.filenames.split()
    assert "MM Lampadari Srl" in result.attachment_text
    assert not re.search(r"<(?:html|div|p|span|br)\b", result.attachment_text, re.I)


def test_docx() -> None:
    raw = message((docx("Quarterly report", "Second paragraph &amp; more"), DOCX, "q.docx"))
    text = run(raw).attachment_text
    assert text.split("\n") == ["Quarterly report", "Second paragraph & more"]
    assert "PAGE" not in text  # field codes are not text


def test_office_detected_by_extension() -> None:
    raw = message((docx("by extension"), "application/octet-stream", "Report.DOCX"))
    assert run(raw).attachment_text == "by extension"
    raw = message((docx("no hint"), "application/octet-stream", "report.bin"))
    assert run(raw).attachment_text == ""


def test_xlsx_shared_strings() -> None:
    raw = message((xlsx("Revenue", "Net margin"), XLSX, "figures.xlsx"))
    assert run(raw).attachment_text.split("\n") == ["Revenue", "Net margin"]


def test_pptx_slides_in_order() -> None:
    slides = [f"Slide {n} words" for n in range(1, 12)]
    raw = message((pptx(*slides), PPTX, "deck.pptx"))
    assert run(raw).attachment_text.split("\n") == slides


def test_odt_and_ods() -> None:
    odt = odf("<office:text><text:h>Title</text:h><text:p>Hello<text:s/>odt "
              "<text:span>world</text:span></text:p></office:text>", ODT)
    ods = odf("<office:spreadsheet><table:table><table:table-row><table:table-cell>"
              "<text:p>Cell A</text:p></table:table-cell><table:table-cell><text:p>Cell B"
              "</text:p></table:table-cell></table:table-row></table:table>"
              "</office:spreadsheet>", ODS)
    raw = message((odt, ODT, "doc.odt"), (ods, "application/octet-stream", "sheet.ods"))
    text = run(raw).attachment_text
    assert text.split() == ["Title", "Hello", "odt", "world", "Cell", "A", "Cell", "B"]


@needs_pypdf
def test_pdf_when_enabled() -> None:
    raw = message((pdf("Quarterly PDF report"), "application/pdf", "r.pdf"))
    assert run(raw, PDF_ON).attachment_text == "Quarterly PDF report"
    assert run(raw).attachment_text == ""  # off by default
    by_name = message((pdf("Named pdf"), "application/octet-stream", "scan.PDF"))
    assert run(by_name, PDF_ON).attachment_text == "Named pdf"


@needs_pypdf
def test_encrypted_pdf() -> None:
    import pypdf

    def encrypted(user_password: str) -> bytes:
        writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf("Locked text"))))
        writer.encrypt(user_password=user_password, owner_password="owner",
                       algorithm="RC4-128")
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    opens = message((encrypted(""), "application/pdf", "open.pdf"))
    assert run(opens, PDF_ON).attachment_text == "Locked text"
    locked = message((encrypted("secret"), "application/pdf", "locked.pdf"))
    assert run(locked, PDF_ON).attachment_text == ""


def test_attachment_kinds_together_within_cap() -> None:
    raw = message(("a" * 300, "text/plain", "a.txt"), (docx("b" * 300), DOCX, "b.docx"),
                  (xlsx("c" * 300), XLSX, "c.xlsx"))
    text = run(raw, Limits(attachment_text=500)).attachment_text
    assert len(text) == 500
    assert text.startswith("a" * 300 + "\n\n" + "b" * 198)
    assert run(raw, Limits(attachment_text=0)).attachment_text == ""


def test_text_attachment_cut_keeps_utf8() -> None:
    raw = text_attachment(("€" * 5000).encode(), "text/plain", "", "e.txt")
    assert run(raw, Limits(attachment_text=101)).attachment_text == "€" * 101


def test_huge_attachment_not_opened() -> None:
    raw = message(("x" * 2000, "text/plain", "big.txt"), (docx("small"), DOCX, "small.docx"))
    result = run(raw, Limits(attachment_bytes=1000))
    assert result.attachment_text == "small"
    assert result.filenames == "big.txt small.docx"


def bomb(size: int, in_text: bool = True) -> bytes:
    """A docx whose document.xml inflates to over `size` bytes from about size/1000: text
    inside w:t, or (not in_text) whitespace that yields no text and so never fills the cap."""
    block = (b"a" if in_text else b" ") * (1024 * 1024)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive, \
            archive.open("word/document.xml", "w") as member:
        member.write(f"{DECL}<w:document {W}><w:body><w:p><w:r><w:t>".encode())
        for _ in range(size // len(block) + 1):
            member.write(block)
    return buf.getvalue()


def test_zip_bomb_is_read_only_up_to_the_caps() -> None:
    data = bomb(64 * 1024 * 1024)
    assert len(data) < 256 * 1024
    raw = message((data, DOCX, "bomb.docx"))
    start = time.perf_counter()
    text = run(raw).attachment_text
    elapsed = time.perf_counter() - start
    assert text == "a" * Limits().attachment_text
    assert elapsed < 5  # inflating all 256 MiB would take far longer and as much memory
    small = run(raw, Limits(unpacked_bytes=10_000)).attachment_text
    assert 0 < len(small) < 10_000 and set(small) == {"a"}


def test_zip_bomb_without_text_stops_at_unpacked_bytes() -> None:
    raw = message((bomb(64 * 1024 * 1024, in_text=False), DOCX, "blank.docx"),
                  ("after the bomb", "text/plain", "after.txt"))
    start = time.perf_counter()
    assert run(raw).attachment_text == "after the bomb"
    assert time.perf_counter() - start < 5


def test_dtd_and_entities_refused() -> None:
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    doc = (f'{DECL}<!DOCTYPE w:document [<!ENTITY l0 "lol">{lol}]>'
           f"<w:document {W}><w:body><w:p><w:r><w:t>&l9;</w:t></w:r></w:p></w:body>"
           "</w:document>")
    raw = message((make_zip({"word/document.xml": doc}), DOCX, "lol.docx"),
                  ("still indexed", "text/plain", "after.txt"))
    assert run(raw).attachment_text == "still indexed"
    external = (f'{DECL}<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                f"<w:document {W}><w:body><w:p><w:r><w:t>&x;</w:t></w:r></w:p></w:body>"
                "</w:document>")
    raw = message((make_zip({"word/document.xml": external}), DOCX, "ext.docx"))
    assert run(raw).attachment_text == ""
    utf16 = doc.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    raw = message((make_zip({"word/document.xml": utf16}), DOCX, "lol16.docx"))
    assert run(raw).attachment_text == ""
    plain16 = (f'<?xml version="1.0" encoding="UTF-16"?><w:document {W}><w:body><w:p><w:r>'
               "<w:t>wide text</w:t></w:r></w:p></w:body></w:document>").encode("utf-16")
    raw = message((make_zip({"word/document.xml": plain16}), DOCX, "wide.docx"))
    assert run(raw).attachment_text == "wide text"


def test_broken_attachments_do_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    good = docx("fine")
    raw = message((b"PK\x03\x04 not really a zip", DOCX, "broken.docx"),
                  (good[: len(good) // 2], DOCX, "truncated.docx"),
                  (make_zip({"word/document.xml": "<w:document><unclosed"}), DOCX, "bad.docx"),
                  (b"%PDF-1.4\n garbage \x00\xff trailer", "application/pdf", "broken.pdf"),
                  (pdf("x")[:60], "application/pdf", "truncated.pdf"),
                  (b"", "application/pdf", "empty.pdf"),
                  (good, DOCX, "good.docx"))
    with caplog.at_level(logging.DEBUG, logger="mailyard.core.indextext"):
        result = run(raw, PDF_ON)
    assert result.attachment_text == "fine"
    assert any("broken.docx" in r.getMessage() for r in caplog.records)
    assert all(r.levelno == logging.DEBUG for r in caplog.records
               if r.name == "mailyard.core.indextext")


def test_truncated_base64_attachment() -> None:
    raw = text_attachment(b"hello truncated world " * 20, "text/plain", "utf-8", "t.txt")
    cut = raw[: raw.index(b"--BB--") - 7]  # the base64 ends mid-quantum, no close delimiter
    assert run(cut).attachment_text.startswith("hello truncated world")
    docx_raw = message((docx("never mind"), DOCX, "x.docx"))
    assert isinstance(run(docx_raw[:-300], PDF_ON), IndexText)


def test_attachment_inside_forwarded_message_is_body_text() -> None:
    inner = message(body="forwarded body words")
    outer = message((inner, "message/rfc822", "fwd.eml"))
    result = run(outer)
    assert "forwarded body words" in result.body
    assert result.attachment_text == ""


def test_parsed_from_storage_without_decoded_cache() -> None:
    raw = message((docx("from storage"), DOCX, "s.docx"))
    parsed = parse_message(raw)
    parsed.decoded_cache.clear()
    assert index_text(raw, parsed).attachment_text == "from storage"


# ---- never raises ------------------------------------------------------------------------------


@given(st.binary(max_size=4000))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(run(raw, PDF_ON), IndexText)
    framed = (b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n"
              b"Content-Type: application/octet-stream; name=x.docx\r\n\r\n" + raw)
    assert isinstance(run(framed, PDF_ON), IndexText)


SAMPLES = [p.read_bytes() for p in CORPUS] + [
    message((docx("alpha", "beta"), DOCX, "a.docx"), (xlsx("gamma"), XLSX, "b.xlsx"),
            (pptx("delta"), PPTX, "c.pptx"), ("epsilon", "text/html", "d.html"),
            List_Id='"L" <l.example.org>'),
    message((pdf("zeta"), "application/pdf", "e.pdf"),
            (odf("<office:text><text:p>eta</text:p></office:text>", ODT), ODT, "f.odt")),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = draw(st.sampled_from(SAMPLES))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "delete", "insert", "flip", "crlf"]))
        at = draw(st.integers(0, len(raw)))
        if kind == "truncate":
            raw = raw[:at]
        elif kind == "delete":
            raw = raw[:at] + raw[at + draw(st.integers(1, 200)) :]
        elif kind == "insert":
            raw = raw[:at] + draw(st.binary(min_size=1, max_size=40)) + raw[at:]
        elif kind == "flip" and at < len(raw):
            raw = raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
        else:
            raw = raw.replace(b"\r\n", b"\n")
    return raw


@given(mutated())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_messages_never_raise(raw: bytes) -> None:
    assert isinstance(run(raw, PDF_ON), IndexText)


@given(st.binary(max_size=2000), st.sampled_from([DOCX, ODT, "application/pdf", "text/plain"]))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_garbage_attachments_never_raise(data: bytes, ctype: str) -> None:
    for payload in (data, b"PK\x03\x04" + data, b"%PDF-1.7\n" + data):
        assert isinstance(run(message((payload, ctype, "g")), PDF_ON), IndexText)
