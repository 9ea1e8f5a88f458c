"""ENVELOPE / BODYSTRUCTURE bytes against hand-checked expectations (RFC 3501 examples and
Dovecot-style output), plus a syntax check of every corpus message's wire form."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailyard.core import imapfmt
from mailyard.core.mime import parse_message

CORPUS = sorted(p for p in (Path(__file__).parent.parent / "data/corpora/mime").rglob("*")
                if p.is_file())


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


# ---- a minimal IMAP s-expression reader, to prove the output parses -------------------------


def read_sexp(data: bytes, pos: int = 0) -> tuple[object, int]:
    if data[pos : pos + 1] == b"(":
        items: list[object] = []
        pos += 1
        while data[pos : pos + 1] != b")":
            if data[pos : pos + 1] == b" ":
                pos += 1
                continue
            item, pos = read_sexp(data, pos)
            items.append(item)
        return items, pos + 1
    if data[pos : pos + 1] == b'"':
        out = bytearray()
        pos += 1
        while data[pos : pos + 1] != b'"':
            if data[pos : pos + 1] == b"\\":
                pos += 1
            assert data[pos : pos + 1] not in (b"\r", b"\n", b"")
            out += data[pos : pos + 1]
            pos += 1
        return bytes(out), pos + 1
    if data[pos : pos + 1] == b"{":
        close = data.index(b"}\r\n", pos)
        n = int(data[pos + 1 : close])
        start = close + 3
        return data[start : start + n], start + n
    end = pos
    while end < len(data) and data[end : end + 1] not in b" ()":
        end += 1
    token = data[pos:end]
    assert token, f"empty token at {pos}: {data[pos - 20 : pos + 20]!r}"
    return (None if token == b"NIL" else int(token)), end


def parse_whole(data: bytes) -> object:
    value, end = read_sexp(data)
    assert end == len(data), data[end:]
    return value


# ---- strings ----------------------------------------------------------------------------------


def test_strings() -> None:
    assert imapfmt.string("plain") == b'"plain"'
    assert imapfmt.string('a "q" \\ b') == b'"a \\"q\\" \\\\ b"'
    assert imapfmt.string("two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert imapfmt.string("caf\u00e9") == b"{5}\r\ncaf\xc3\xa9"
    assert imapfmt.string("x" * 2000).startswith(b"{2000}\r\n")
    assert imapfmt.nstring(None) == b"NIL"
    assert imapfmt.nstring("") == b'""'
    assert imapfmt.astring("INBOX") == b"INBOX"
    assert imapfmt.astring("NIL") == b'"NIL"'
    assert imapfmt.astring("with space") == b'"with space"'
    assert imapfmt.astring("") == b'""'


def test_address_list_and_groups() -> None:
    assert imapfmt.address_list([]) == b"NIL"
    group = [(None, None, "undisclosed-recipients", None), (None, None, None, None)]
    expected = b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))'
    assert imapfmt.address_list(group) == expected


# ---- RFC 3501 §8 example ----------------------------------------------------------------------

RFC3501_HEADERS = """Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)
From: Terry Gray <gray@cac.washington.edu>
Subject: IMAP4rev1 WG mtg summary and minutes
To: imap@cac.washington.edu
cc: minutes@CNRI.Reston.VA.US,
   John Klensin <KLENSIN@MIT.EDU>
Message-Id: <B27397-0100000@cac.washington.edu>
MIME-Version: 1.0
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII

"""

RFC3501_ENVELOPE = (
    b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'((NIL NIL "imap" "cac.washington.edu")) '
    b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
    b'NIL NIL "<B27397-0100000@cac.washington.edu>")'
)


def rfc3501_message() -> bytes:
    body = "".join(("x" * 31 + "\n") for _ in range(91)) + "y" * 23 + "\n"
    return crlf(RFC3501_HEADERS + body)


def test_rfc3501_envelope_and_body() -> None:
    parsed = parse_message(rfc3501_message())
    assert parsed.envelope == RFC3501_ENVELOPE
    expected = b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)'
    assert parsed.body.lower() == expected.lower()
    assert parsed.bodystructure.lower() == expected[:-1].lower() + b" nil nil nil nil)"


def test_rfc3501_multipart_body() -> None:
    """RFC 3501 §7.4.2's multipart BODY example, rebuilt with parts of the same sizes."""
    text = "".join("t" * 48 + "\n" for _ in range(23))  # 23 lines, 1150 octets with CRLF
    text = text[:-1] + "tt\n"  # 1152 octets
    b64 = "".join("Q" * 60 + "\n" for _ in range(72)) + "Q" * 88 + "\n"  # 73 lines, 4554
    msg = crlf(
        "From: a@b.c\nMIME-Version: 1.0\nContent-Type: MULTIPART/MIXED; BOUNDARY=\"xx\"\n\n"
        "--xx\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\n\n" + text +
        "\n--xx\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\n"
        "Content-ID: <960723163407.20117h@cac.washington.edu>\n"
        "Content-Description: Compiler diff\nContent-Transfer-Encoding: BASE64\n\n" + b64 +
        "\n--xx--\n"
    )
    expected = (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")'
    )
    assert parse_message(msg).body.lower() == expected.lower()


# ---- Dovecot-style outputs --------------------------------------------------------------------

ATTACHMENT_MAIL = crlf("""From: =?utf-8?q?Andr=C3=A9?= <andre@example.com>
To: "Smith, John" <john@example.org>, undisclosed-recipients:;
Subject: =?utf-8?q?caf=C3=A9?= report
Date: Tue, 1 Oct 2024 10:00:00 +0200
Message-ID: <m1@example.com>
In-Reply-To: <m0@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

Hello
--b1
Content-Type: application/pdf; name="r.pdf"
Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf
Content-Transfer-Encoding: base64

AAAA
--b1--
""")


def test_dovecot_style_multipart() -> None:
    parsed = parse_message(ATTACHMENT_MAIL)
    assert parsed.bodystructure == (
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 5 1 NIL NIL NIL NIL)'
        b'("application" "pdf" ("name" "r.pdf") NIL NIL "base64" 4 NIL '
        b"(\"attachment\" (\"filename*\" \"utf-8''r%C3%A9sum%C3%A9.pdf\")) NIL NIL) "
        b'"mixed" ("boundary" "b1") NIL NIL NIL)'
    )
    assert parsed.body == (
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 5 1)'
        b'("application" "pdf" ("name" "r.pdf") NIL NIL "base64" 4) "mixed")'
    )
    assert parsed.envelope == (
        b'("Tue, 1 Oct 2024 10:00:00 +0200" "=?utf-8?q?caf=C3=A9?= report" '
        b'(("=?utf-8?q?Andr=C3=A9?=" NIL "andre" "example.com")) '
        b'(("=?utf-8?q?Andr=C3=A9?=" NIL "andre" "example.com")) '
        b'(("=?utf-8?q?Andr=C3=A9?=" NIL "andre" "example.com")) '
        b'(("Smith, John" NIL "john" "example.org")(NIL NIL "undisclosed-recipients" NIL)'
        b"(NIL NIL NIL NIL)) NIL NIL \"<m0@example.com>\" \"<m1@example.com>\")"
    )


def test_message_rfc822_part() -> None:
    msg = crlf("""From: a@b.c
Subject: fwd
Content-Type: multipart/mixed; boundary=o

--o
Content-Type: text/plain

see below
--o
Content-Type: message/rfc822
Content-Disposition: inline

From: x@y.z
Subject: inner
Message-ID: <in@y.z>

inner body
two
--o--
""")
    parsed = parse_message(msg)
    inner_env = (b'(NIL "inner" ((NIL NIL "x" "y.z")) ((NIL NIL "x" "y.z")) ((NIL NIL "x" "y.z")) '
                 b'NIL NIL NIL NIL "<in@y.z>")')
    assert parsed.body == (
        b'(("text" "plain" NIL NIL NIL "7bit" 9 1)'
        b'("message" "rfc822" NIL NIL NIL "7bit" 68 ' + inner_env +
        b' ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 15 2) 6) "mixed")'
    )


def test_eight_bit_subject_goes_as_literal() -> None:
    parsed = parse_message("Subject: caf\u00e9\r\nFrom: a@b.c\r\n\r\nx\r\n".encode())
    assert parsed.envelope.startswith(b"(NIL {5}\r\ncaf\xc3\xa9 ")
    assert parsed.subject == "caf\u00e9"


def test_non_ascii_param_goes_out_in_rfc2231_form() -> None:
    expected = b"(\"name*\" \"utf-8''%C3%A9t%C3%A9.txt\")"
    assert imapfmt.params({"name": "\u00e9t\u00e9.txt"}) == expected


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_wire_forms_parse(path: Path) -> None:
    parsed = parse_message(path.read_bytes())
    envelope = parse_whole(parsed.envelope)
    assert isinstance(envelope, list) and len(envelope) == 10
    assert isinstance(parse_whole(parsed.bodystructure), list)
    assert isinstance(parse_whole(parsed.body), list)
