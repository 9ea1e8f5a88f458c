"""The octets a FETCH BODY[section] / BINARY[section] names (RFC 3501 §6.4.5, RFC 3516).

Answered from the raw message and the part tree stored at delivery: nothing is re-parsed. A
section that does not exist yields None, which IMAP answers as NIL (or an error for BINARY).
"""

from __future__ import annotations

import binascii
import functools
import re
from collections.abc import Sequence

from mailyard.core.mime import Part, decode_body, find_part

_FIELD = re.compile(rb"\n(([^:\s]+)[^\S\r\n]*:[^\n]*(?:\n[ \t][^\n]*)*)")
"""After a line break: one header field (name in group 2) with its folded continuation lines,
up to but not including its last line break (which the next match starts with)."""


def _header_block(raw: bytes, part: Part) -> bytes:
    return raw[part.header_start:part.body_start]


def _text_target(root: Part, path: Sequence[int]) -> Part | None:
    """The message whose HEADER/TEXT a section names: the root, or an encapsulated message."""
    if not path:
        return root
    part = find_part(root, ".".join(map(str, path)))
    if part is None or not part.content_type.startswith("message/") or not part.children:
        return None
    return part.children[0]


def header_fields(block: bytes, names: Sequence[str], *, exclude: bool) -> bytes:
    """The header fields (with their folded continuations) whose names are (not) in `names`,
    followed by the empty line, as RFC 3501 requires for HEADER.FIELDS.

    A message-list FETCH asks this of every message it lists, and a header SEARCH of every
    candidate, so the wanted names go into one regular expression (cached per name list) that
    finds just those fields, rather than splitting and testing every line in Python. Lines that
    are not fields (no colon), and their continuations, are never returned."""
    text = b"\n" + block[:_end_of_fields(block)]
    if not text.endswith(b"\n"):
        text += b"\r\n"  # a last line without its line break
    if exclude:
        wanted = {n.lower().encode() for n in names}
        found = [m.group(1) for m in _FIELD.finditer(text)
                 if m.group(2).lower() not in wanted]
    else:
        found = _fields_pattern(tuple(names)).findall(text)
    return b"\n".join(found) + b"\n\r\n" if found else b"\r\n"


def _end_of_fields(block: bytes) -> int:
    """Where the fields end: after the line break that precedes the first empty line."""
    if block.startswith((b"\r\n", b"\n")):
        return 0
    end = block.find(b"\n\r\n")
    bare = block.find(b"\n\n", 0, len(block) if end < 0 else end)
    if bare >= 0:
        return bare + 1
    return len(block) if end < 0 else end + 1


@functools.lru_cache(maxsize=256)
def _fields_pattern(names: tuple[str, ...]) -> re.Pattern[bytes]:
    alternatives = b"|".join(re.escape(n.encode()) for n in names) or b"(?!)"
    return re.compile(rb"\n((?:" + alternatives + rb")[^\S\r\n]*:[^\n]*(?:\n[ \t][^\n]*)*)",
                      re.I)


def body_section(raw: bytes, root: Part, path: Sequence[int], text: str | None,
                 fields: Sequence[str] = ()) -> bytes | None:
    """BODY[path.text (fields)]; path () with text None is the whole message."""
    if text in ("HEADER", "TEXT", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        target = _text_target(root, path)
        if target is None:
            return None
        if text == "TEXT":
            return raw[target.body_start:target.body_end]
        block = _header_block(raw, target)
        if text == "HEADER":
            return block
        return header_fields(block, fields, exclude=text == "HEADER.FIELDS.NOT")
    if not path:
        return raw if text is None else None
    part = find_part(root, ".".join(map(str, path)))
    if part is None:
        return None
    if text == "MIME":
        return _header_block(raw, part)
    if part.content_type.startswith("message/") and part.children:
        inner = part.children[0]
        return raw[inner.header_start:inner.body_end]
    return raw[part.body_start:part.body_end]


class UnknownCTE(ValueError):
    """The part's Content-Transfer-Encoding is none this server can undo: FETCH BINARY and
    BINARY.SIZE of it fail with NO [UNKNOWN-CTE] (RFC 3516 §4.3)."""


IDENTITY_CTES = frozenset({"7bit", "8bit", "binary"})
"""The encodings whose decoding is the identity (RFC 2045 §6.2): the only ones a multipart or
message/rfc822 entity may carry (RFC 2045 §6.4)."""

_QP = re.compile(
    rb"(?<![ \t])[ \t]++(?=\r?\n|\Z)"   # white space at the end of a line: added in transit
    rb"|=[ \t]*+(?:\r?\n|\Z)"           # a soft line break, even with white space after "="
    rb"|=([0-9A-Fa-f]{2})")              # an octet
"""One pass over quoted-printable text (RFC 2045 §6.7), so that decoded octets are never
decoded again. The possessive runs and the look-behind keep it linear on long blank runs."""

_HEX = {b"%02X" % n: bytes([n]) for n in range(256)}


def _qp_piece(m: re.Match[bytes]) -> bytes:
    hexa = m.group(1)
    return b"" if hexa is None else _HEX[hexa.upper()]


def decode_quoted_printable(data: bytes) -> bytes:
    """Quoted-printable decoding exactly as RFC 2045 §6.7 says, so BINARY.SIZE is exact:
    trailing white space of each encoded line is deleted (rule 3), `=` at the end of a line —
    also when white space follows it — is a soft line break (rule 5), `=XX` is an octet (the
    lower-case hex that §6.7 tells a robust decoder to accept, too), and an `=` that starts
    none of these is kept as it is (the note's first option). Hard line breaks stay as sent."""
    return _QP.sub(_qp_piece, data)


_B64_ALPHABET = re.compile(rb"[^A-Za-z0-9+/=]+")


def decode_base64(data: bytes) -> bytes:
    """Base64 decoding as RFC 2045 §6.8 says: characters outside the alphabet (line breaks,
    white space, garbage) are ignored, the first `=` ends the data, and a last quantum of
    two or three characters gives one or two octets (a lone sixth bit pattern gives none)."""
    text = _B64_ALPHABET.sub(b"", data)
    pad = text.find(b"=")
    if pad >= 0:
        text = text[:pad]
    cut = len(text) % 4
    if cut == 1:
        text = text[:-1]
    return binascii.a2b_base64(text + b"=" * (-len(text) % 4), strict_mode=False)


def decode_cte(data: bytes, encoding: str) -> bytes:
    """`data` with the Content-Transfer-Encoding `encoding` (lower case) undone; raises
    UnknownCTE for an encoding that is not RFC 2045's, nor the uuencode that mailers use."""
    if encoding in IDENTITY_CTES:
        return data
    if encoding == "quoted-printable":
        return decode_quoted_printable(data)
    if encoding == "base64":
        return decode_base64(data)
    if encoding in ("x-uuencode", "uuencode", "x-uue"):
        return decode_body(data, encoding)
    raise UnknownCTE(encoding)


def binary_section(raw: bytes, root: Part, path: Sequence[int]) -> bytes | None:
    """BINARY[path]: the part's content with its transfer encoding undone (RFC 3516 §4.2); None
    when there is no such part (answered NIL, as BODY[] of it is).

    RFC 9051 §6.4.5 lets a client ask this only of leaf parts. A multipart or message/rfc822
    part (and the whole message, BINARY[]) has an identity encoding by RFC 2045 §6.4, so its
    octets are returned as they are, the same that BINARY.SIZE counts; a leaf with an encoding
    we cannot undo raises UnknownCTE."""
    if not path:
        return raw
    part = find_part(root, ".".join(map(str, path)))
    if part is None:
        return None
    body = raw[part.body_start:part.body_end]
    if (part.is_multipart or part.children) and part.encoding in IDENTITY_CTES:
        return body
    return decode_cte(body, part.encoding)


def partial(data: bytes, origin: int | None, length: int | None) -> bytes:
    """<origin.length>: an origin past the end gives the empty string (RFC 3501 §6.4.5)."""
    if origin is None:
        return data
    chunk = data[origin:]
    return chunk if length is None else chunk[:length]
