"""Every client string that becomes part of a header field is checked here, in one place.

RFC 8621 §4.6 asks the server to reject an Email it cannot make with `invalidProperties`;
an Identity, an EmailSubmission envelope and a VacationResponse subject end up in header
fields or SMTP commands too. A header field value that holds CR or LF ends the field early:
the rest of the string becomes header fields of the client's choosing (a Bcc, a second
From), or SMTP commands in an envelope. Other control characters are no text either, and
U+2028/U+2029 or NEL are line breaks to `str.splitlines`, which Python's email package uses.

Checking the string is not enough on its own: the email package reads any value it is given
as a raw header field, so an RFC 2047 encoded word in the client's text is decoded before
the field is written, and "=?utf-8?q?x=0D=0ABcc:_eve@example.org?=" in a subject became a
real Bcc field. An encoded word in client text must therefore decode to text that passes the
same check, and one that cannot be decoded at all is refused, since the email package would
turn its bytes into ASCII with the CR and LF among them.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from mailyard.protocols.jmap.mail.common import SetError

MAX_TEXT = 10_000
"""Characters of one free-text value (a subject, a name); folding keeps the lines short."""
MAX_ADDRESS = 254
"""RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its angle brackets."""

_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
"""C0 controls but TAB (a space to RFC 5322), DEL, C1 controls (NEL among them), and the
Unicode line and paragraph separators."""
_ENCODED_WORD = re.compile(r"=\?([^?]*)\?([bBqQ])\?(.*?)\?=", re.DOTALL)
"""As the email package finds them (email.header.ecre): non-greedy up to the next "?="."""
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`{|}~0-9A-Za-z]{1,127}")
"""RFC 2045 token: a media type's type and subtype, a charset name (RFC 6838 §4.2: ≤ 127)."""
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
"""RFC 5321 Dot-string: what an SMTP command and an address field both take unquoted."""
_DOMAIN = re.compile(r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                     r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_MESSAGE_ID = re.compile(rf"{_ATEXT}(\.{_ATEXT})*@({_ATEXT}(\.{_ATEXT})*|\[[!-Z^-~]*\])")
"""RFC 5322 §3.6.4 msg-id between its angle brackets: dot-atom-text "@" (dot-atom-text or
no-fold-literal)."""
_LANGUAGE = re.compile(r"[A-Za-z0-9]{1,8}(-[A-Za-z0-9]{1,8})*")
"""RFC 5646 Language-Tag, in its general shape."""


class InvalidProperty(SetError):
    """The invalidProperties SetError, naming the property at fault (the top-level one: a
    bad attachment name is `attachments`); the description says which part of it."""

    def __init__(self, description: str, properties: list[str]) -> None:
        super().__init__("invalidProperties", description, properties)
        self.properties = properties


def _decoded_words(text: str) -> list[str] | None:
    """The text of every encoded word in `text` as the email package would decode it;
    None when one of them cannot be decoded."""
    out = []
    for charset, encoding, encoded in _ENCODED_WORD.findall(text):
        try:
            if encoding in "bB":
                data = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
            else:
                data = re.sub(r"=([0-9A-Fa-f]{2})", lambda m: chr(int(m[1], 16)),
                              encoded.replace("_", " ")).encode("latin-1")
            out.append(data.decode(charset.partition("*")[0]))
        except (binascii.Error, LookupError, ValueError):  # UnicodeError is a ValueError
            return None
    return out


def text(value: Any, prop: str, what: str, *, limit: int = MAX_TEXT) -> str:
    """Free text for a header field: a subject, a display name, a file name, a header value."""
    if not isinstance(value, str):
        raise InvalidProperty(f"{what} must be a string", [prop])
    if len(value) > limit:
        raise InvalidProperty(f"{what} is longer than {limit} characters", [prop])
    if _CONTROL.search(value):
        raise InvalidProperty(f"{what} holds a line break or another control character",
                              [prop])
    if "=?" in value:
        words = _decoded_words(value)
        if words is None or any(_CONTROL.search(w) for w in words):
            raise InvalidProperty(f"{what} holds an encoded word (RFC 2047) that is not "
                                  "text", [prop])
    return value


def single_word(value: Any, prop: str, what: str, *, limit: int = 998) -> str:
    """Text without white space, `<` or `>`: a message id, a Content-ID, a URI."""
    checked = text(value, prop, what, limit=limit)
    if not checked or any(c in checked for c in " \t<>"):
        raise InvalidProperty(f"{what} must be one word without <, > or spaces", [prop])
    return checked


def message_id(value: Any, prop: str) -> str:
    if not isinstance(value, str) or len(value) > 250 or not _MESSAGE_ID.fullmatch(value):
        raise InvalidProperty(f"{prop}: {str(value)[:100]!r} is not a message id (without"
                              " <>)", [prop])
    return value


def encode_words(value: str) -> str:
    """`value` as RFC 2047 encoded words ("B", UTF-8) of at most 72 characters each,
    separated by spaces (which a reader drops between two encoded words): any text, even
    one that looks like an encoded word itself, reads back as it was given."""
    words, chunk = [], b""
    for char in value:
        octets = char.encode()
        if len(chunk) + len(octets) > 45:
            words.append(chunk)
            chunk = b""
        chunk += octets
    words.append(chunk)
    return " ".join(f"=?UTF-8?B?{base64.b64encode(w).decode()}?=" for w in words)


def unstructured(value: str) -> str:
    """Checked text as an unstructured field body (RFC 5322 §3.2.5): itself when it is
    printable ASCII that holds no encoded word, else encoded words."""
    if value.isascii() and "=?" not in value and value == value.strip():
        return value
    return encode_words(value)


_ATOM_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+( [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def display_name(value: str) -> str:
    """Checked text as an RFC 5322 phrase: atoms as they are, other ASCII as a quoted
    string, anything else (non-ASCII, or what a reader would take for an encoded word) as
    encoded words."""
    if not value.isascii() or "=?" in value:
        return encode_words(value)
    if _ATOM_PHRASE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fold(name: str, value: str, prop: str) -> bytes:
    """`Name: value` CRLF, folded before white space to lines of 78 characters where the
    words allow; a word longer than RFC 5322's 998-octet line limit is refused."""
    lines: list[str] = []
    line = f"{name}:"
    for n, word in enumerate(re.findall(r"[ \t]*[^ \t]+", value)):
        if n == 0:
            line += " " + word.lstrip(" \t")  # the first word stays on the name's line
        elif len(line) + len(word) > 78:
            lines.append(line)
            line = word
        else:
            line += word
    lines.append(line)
    if any(len(x.encode()) > 998 for x in lines):
        raise InvalidProperty(f"{prop} holds a word longer than a header line may be", [prop])
    return ("\r\n".join(lines) + "\r\n").encode()


def address(value: Any, prop: str, what: str) -> str:
    """An addr-spec that an address field and an SMTP command can both carry: a dot-string
    local part and a host name (an internationalized one in its xn-- form, as IDNA 2003
    gives it). Quoted local parts and address literals are refused: no client needs them
    to write mail, and either would need quoting rules the envelope does not share."""
    if not isinstance(value, str) or len(value) > MAX_ADDRESS:
        raise InvalidProperty(f"{what} must be an email address", [prop])
    local, at, domain = value.rpartition("@")
    if at and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            domain = ""
    if not (at and _LOCAL_PART.fullmatch(local) and len(local) <= 64
            and _DOMAIN.fullmatch(domain)):
        raise InvalidProperty(f"{what}: {value[:100]!r} is not an email address", [prop])
    return f"{local}@{domain}"


def media_type(value: Any, prop: str) -> str:
    """type/subtype, both RFC 2045 tokens (no parameters: JMAP has `charset` for that)."""
    kind, slash, subtype = value.partition("/") if isinstance(value, str) else ("", "", "")
    if not (slash and _TOKEN.fullmatch(kind) and _TOKEN.fullmatch(subtype)):
        raise InvalidProperty(f"{str(value)[:100]!r} is not a media type (type/subtype)",
                              [prop])
    return f"{kind.lower()}/{subtype.lower()}"


def charset(value: Any, prop: str) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise InvalidProperty(f"{str(value)[:100]!r} is not a charset name", [prop])
    return value


def languages(value: Any, prop: str) -> list[str]:
    """EmailBodyPart `language`: String[] of language tags (RFC 3282 Content-Language)."""
    if not isinstance(value, list) or not all(
            isinstance(v, str) and _LANGUAGE.fullmatch(v) for v in value):
        raise InvalidProperty("language must be an array of language tags", [prop])
    return value
