"""IMAP wire serialization of strings, addresses, ENVELOPE and BODYSTRUCTURE (RFC 3501 §7.4.2).

These bytes are computed once at delivery and stored, so FETCH only copies them to the socket;
that is why every function here returns wire-ready bytes rather than an intermediate model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from mailyard.core.mime import Part

NIL = b"NIL"
MAX_QUOTED = 1024
"""Longer strings go as literals: some clients choke on very long quoted strings."""

EnvAddress = tuple[str | bytes | None, str | bytes | None, str | bytes | None, str | bytes | None]
"""(name, adl, mailbox, host) as in RFC 3501; host None marks a group start or end."""

_QUOTABLE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*\Z")
_ATOM = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\\]]+\Z")
_EMPTY_ENVELOPE = b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def quoted(data: bytes) -> bytes:
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(data: bytes) -> bytes:
    """A literal never holds NUL (RFC 9051 §4.3: CHAR8 is %x01-ff): a NUL in stored mail
    (BODY[], RFC822 of a message appended as literal8) goes out as 0x80, as Dovecot sends it,
    so the size stays what RFC822.SIZE and BODYSTRUCTURE said. Only literal8 carries NUL."""
    return b"{%d}\r\n" % len(data) + data.replace(b"\x00", b"\x80")


def literal8(data: bytes) -> bytes:
    """`~{n}` CRLF octets (RFC 3516 §4.3): BINARY data that holds NUL."""
    return b"~{%d}\r\n" % len(data) + data


def binary_data(data: bytes) -> bytes:
    """BINARY[...] data: a literal8 only when it holds NUL, else a literal, which RFC 3516 §4.3
    asks for so a client knows that 8-bit data has no NUL without scanning it."""
    return literal8(data) if b"\x00" in data else literal(data)


def string(value: str | bytes) -> bytes:
    """A quoted string when the grammar allows it, else a literal (CR, LF, NUL, 8-bit, long)."""
    data = _bytes(value)
    if len(data) <= MAX_QUOTED and _QUOTABLE.match(data):
        return quoted(data)
    return literal(data)


def nstring(value: str | bytes | None) -> bytes:
    return NIL if value is None else string(value)


def astring(value: str | bytes) -> bytes:
    data = _bytes(value)
    return data if _ATOM.match(data) and data.upper() != NIL else string(data)


def address(addr: EnvAddress) -> bytes:
    return b"(" + b" ".join(nstring(field) for field in addr) + b")"


def address_list(addresses: Sequence[EnvAddress]) -> bytes:
    if not addresses:
        return NIL
    return b"(" + b"".join(address(a) for a in addresses) + b")"


def envelope(
    *,
    date: str | bytes | None,
    subject: str | bytes | None,
    from_: Sequence[EnvAddress],
    sender: Sequence[EnvAddress],
    reply_to: Sequence[EnvAddress],
    to: Sequence[EnvAddress],
    cc: Sequence[EnvAddress],
    bcc: Sequence[EnvAddress],
    in_reply_to: str | bytes | None,
    message_id: str | bytes | None,
) -> bytes:
    """RFC 3501: an absent or empty Sender / Reply-To is reported as the From value."""
    fields = [
        nstring(date),
        nstring(subject),
        address_list(from_),
        address_list(sender or from_),
        address_list(reply_to or from_),
        address_list(to),
        address_list(cc),
        address_list(bcc),
        nstring(in_reply_to),
        nstring(message_id),
    ]
    return b"(" + b" ".join(fields) + b")"


def params(values: Mapping[str, str]) -> bytes:
    """Non-ASCII values go out in RFC 2231 form (name*=utf-8''...) so they stay 7-bit strings."""
    if not values:
        return NIL
    out: list[bytes] = []
    for name, value in values.items():
        if value.isascii():
            out += [string(name), string(value)]
        else:
            out += [string(name + "*"), string("utf-8''" + quote(value, safe=""))]
    return b"(" + b" ".join(out) + b")"


def _disposition(part: Part) -> bytes:
    if part.disposition is None:
        return NIL
    return b"(" + string(part.disposition) + b" " + params(part.disposition_params) + b")"


def _language(part: Part) -> bytes:
    if not part.language:
        return NIL
    if len(part.language) == 1:
        return string(part.language[0])
    return b"(" + b" ".join(string(lang) for lang in part.language) + b")"


def _multipart(part: Part, extensible: bool, envelopes: Mapping[str, bytes]) -> bytes:
    children = b"".join(_body(child, extensible, envelopes) for child in part.children)
    out = [children + b" " + string(part.content_type.partition("/")[2])]
    if extensible:
        out += [params(part.params), _disposition(part), _language(part), nstring(part.location)]
    return b"(" + b" ".join(out) + b")"


def _single(part: Part, extensible: bool, envelopes: Mapping[str, bytes]) -> bytes:
    media, _, subtype = part.content_type.partition("/")
    out = [
        string(media),
        string(subtype),
        params(part.params),
        nstring(part.content_id),
        nstring(part.description),
        string(part.encoding),
        b"%d" % (part.body_end - part.body_start),
    ]
    if part.content_type == "message/rfc822" and part.children:
        inner = part.children[0]
        out.append(envelopes.get(inner.section, _EMPTY_ENVELOPE))
        out.append(_body(inner, extensible, envelopes))
        out.append(b"%d" % part.lines)
    elif media == "text":
        out.append(b"%d" % part.lines)
    if extensible:
        out += [nstring(part.md5), _disposition(part), _language(part), nstring(part.location)]
    return b"(" + b" ".join(out) + b")"


def _body(part: Part, extensible: bool, envelopes: Mapping[str, bytes]) -> bytes:
    if part.children and part.content_type.startswith("multipart/"):
        return _multipart(part, extensible, envelopes)
    return _single(part, extensible, envelopes)


def bodystructure(
    root: Part, extensible: bool = True, envelopes: Mapping[str, bytes] | None = None
) -> bytes:
    """BODYSTRUCTURE (extensible) or BODY; `envelopes` maps each encapsulated message root's
    section to its serialized ENVELOPE, which only the parser that saw its headers can build."""
    return _body(root, extensible, envelopes or {})
