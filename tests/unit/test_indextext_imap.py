"""core.indextext as the one definition of what IMAP BODY and TEXT search (issue 18): part
headers decoded, inline text parts that are neither body nor attachment, and the BODY text the
index and the short-needle reading share."""

from __future__ import annotations

import base64

from mailyard.core.indextext import (
    PART_HEADER_CHARS,
    body_substring_text,
    header_block_text,
    index_text,
    message_body_text,
)
from mailyard.core.mime import parse_message


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


NOTES = crlf(
    "From: b@x.test\nTo: alice@example.test\nSubject: two\nMIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=BB\n\n"
    "--BB\nContent-Type: text/plain\nContent-Description: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n"
    "  quokkalike\n\nnotes inside\n"
    "--BB\nContent-Type: text/calendar\n\nBEGIN:VCALENDAR\nSUMMARY:axolotl\n"
    "--BB\nContent-Type: text/plain; charset=utf-8\n"
    "Content-Disposition: attachment; filename=notes.txt\nContent-Transfer-Encoding: base64\n\n"
    + base64.encodebytes(b"the secret word is Zyxwvutonic").decode()
    + "--BB--\n")


def test_part_headers_are_decoded_unfolded_and_leave_out_the_top_level_header() -> None:
    text = index_text(NOTES, parse_message(NOTES))
    assert text.part_headers.split("\n") == [
        "Content-Type: text/plain Content-Description: Grüße quokkalike",
        "Content-Type: text/calendar",
        "Content-Type: text/plain; charset=utf-8 Content-Disposition: attachment;"
        " filename=notes.txt Content-Transfer-Encoding: base64",
    ]
    assert "Subject" not in text.part_headers


def test_inline_text_parts_are_attachment_text_and_body_text_holds_everything() -> None:
    text = index_text(NOTES, parse_message(NOTES))
    assert text.body == "notes inside"
    assert text.attachment_text == ("the secret word is Zyxwvutonic\n\n"
                                    "BEGIN:VCALENDAR\nSUMMARY:axolotl")
    body = message_body_text(text)
    for piece in ("notes inside", "quokkalike", "notes.txt", "Zyxwvutonic", "axolotl"):
        assert piece in body, piece
    assert body == body_substring_text(text.body, text.filenames, text.attachment_text,
                                       text.part_headers)


def test_a_single_part_message_has_no_part_headers() -> None:
    raw = crlf("Subject: s\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable"
               "\n\nextraordi=\nnarily\n")
    text = index_text(raw, parse_message(raw))
    assert (text.part_headers, text.body) == ("", "extraordinarily")
    assert message_body_text(text) == "extraordinarily"


def test_encapsulated_message_headers_are_part_headers() -> None:
    raw = crlf("Subject: fwd\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=BB\n\n"
               "--BB\nContent-Type: text/plain\n\nsee below\n"
               "--BB\nContent-Type: message/rfc822\n\n"
               "Subject: inner wombat\nMessage-ID: <inner@x.test>\nContent-Type: multipart/"
               "alternative; boundary=CC\n\n--CC\nContent-Type: text/plain\n\ninner body\n"
               "--CC--\n--BB--\n")
    text = index_text(raw, parse_message(raw))
    assert "Subject: inner wombat Message-ID: <inner@x.test>" in text.part_headers


def test_part_headers_are_capped() -> None:
    parts = "".join(f"--BB\nContent-Type: text/plain\nContent-Description: {'x' * 500}\n\nb\n"
                    for _ in range(400))
    raw = crlf(f"Subject: many\nContent-Type: multipart/mixed; boundary=BB\n\n{parts}--BB--\n")
    text = index_text(raw, parse_message(raw))
    assert PART_HEADER_CHARS <= len(text.part_headers) < PART_HEADER_CHARS + 1000


def test_header_block_text_reads_each_fields_octets_on_its_own() -> None:
    block = (b"Subject: =?iso-8859-1?Q?Fr\xf6sche?=\r\nX-A: caf\xc3\xa9\r\n"
             b"Received: from a\r\n\tby b\r\n")
    assert header_block_text(block) == ("Subject: Frösche X-A: café Received: from a by b")
