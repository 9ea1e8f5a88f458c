"""RFC 2047 encoded words that carry raw 8-bit octets instead of =XX escapes.

Mailers write `=?iso-8859-1?Q?Fr\xf6sche?=` with the 0xF6 octet as is (10 of the subjects of a
public MIME corpus): the octets must be read in the charset the word names, not become "?".
"""

from __future__ import annotations

import pytest

from mailyard.core import mime, spam
from mailyard.core.mime import header_text, parse_message


@pytest.mark.parametrize(("value", "text"), [
    # the corpus case: a Latin-1 octet inside a Latin-1 word, in a header that is not UTF-8
    (b"=?iso-8859-1?Q?Fr\xf6sche?=", "Frösche"),
    (b"=?ISO-8859-1?q?Fr\xf6sche_und_Kr=F6ten?=", "Frösche und Kröten"),
    # another single-byte charset: the octets mean Cyrillic letters, not Latin-1 ones
    (b"=?windows-1251?Q?\xcf\xf0\xe8\xe2\xe5\xf2?= =?windows-1251?Q?_\xec\xe8\xf0?=",
     "Привет мир"),
    # 0x85 is cp1252's ellipsis and NEL in Latin-1: it must not end the word as white space
    (b"=?windows-1252?Q?wait\x85?=", "wait…"),
    # 0xA0 is a no-break space in Latin-1: inside the word, not a word break
    (b"=?iso-8859-1?Q?a\xa0b?=", "a\xa0b"),
    # raw UTF-8 inside a word: the header is UTF-8, the characters are right as they are
    ("=?utf-8?Q?Fr\u00f6sche?=".encode(), "Frösche"),
    ("=?iso-8859-1?Q?Fr\u00f6sche?=".encode(), "Frösche"),
    ("=?koi8-r?Q?\u041f\u0440\u0438?=".encode(), "При"),
    # a Latin-1 octet in a word labelled UTF-8 (a mislabelled mailer): shown, not U+FFFD
    (b"=?utf-8?Q?Fr\xf6sche?=", "Frösche"),
    # what was right stays right
    (b"=?iso-8859-1?q?a=E9b?=", "aéb"),
    (b"=?utf-8?b?Y2Fmw6k=?=", "café"),
    (b"plain \xe9t\xe9", "plain été"),
])
def test_header_text_reads_raw_octets_in_the_words_charset(value: bytes, text: str) -> None:
    assert header_text(value) == text


def test_words_with_raw_octets_are_joined_across_words() -> None:
    """Adjacent words of one charset are joined as octets (a character may span two)."""
    assert header_text(b"=?utf-8?Q?caf\xc3?= =?utf-8?Q?\xa9?=") == "café"
    assert header_text(b"=?iso-8859-1?Q?Fr\xf6?= =?iso-8859-1?Q?sche?=") == "Frösche"


def test_parsed_subject_and_display_name() -> None:
    raw = (b"From: =?iso-8859-1?Q?J\xf6rg_M\xfcller?= <joerg@example.de>\r\n"
           b"To: bob@example.net\r\n"
           b"Subject: =?iso-8859-1?Q?Fr\xf6sche?= und =?iso-8859-1?Q?Kr=F6ten?=\r\n"
           b"\r\nbody\r\n")
    parsed = parse_message(raw)
    assert parsed.subject == "Frösche und Kröten"
    assert parsed.from_[0].name == "Jörg Müller"
    assert "?" not in parsed.subject


def test_spam_headers_keep_the_raw_octets() -> None:
    raw = (b"From: a@example.com\r\nSubject: =?iso-8859-1?Q?Fr\xf6sche?=\r\n\r\nbody\r\n")
    content = spam.content(raw, parse_message(raw))
    assert content.header("subject") == "Frösche"


def test_decode_words_on_text_is_unchanged_for_ascii_words() -> None:
    assert mime.decode_words("=?utf-8?q?a?= =?utf-8?q?b?=") == "ab"
    assert mime.decode_words("x =?bogus?q?a=3F?= y") == "x a? y"
