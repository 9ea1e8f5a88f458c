"""Structural MIME parsing over bytes, with byte offsets, that never raises.

The stdlib parser rebuilds messages and loses where each part lives in the original octets; IMAP
partial FETCH and the attachment skeleton both need exact offsets, and mail from the internet is
often broken, so this parser is small, offset-based and degrades instead of failing.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import html
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote_to_bytes

from mailyard.core import imapfmt
from mailyard.core.addresses import Address

log = logging.getLogger(__name__)

MAX_DEPTH = 50
MAX_PARTS = 10_000
MAX_HEADER_FIELDS = 2_000
"""Fields beyond this are skipped unparsed (only the end of the header block is looked for)."""
MAX_HEADER_VALUE = 65_536
"""Header values beyond this are cut before structured parsing: they are abuse, not mail."""
PREVIEW_CHARS = 200

# --------------------------------------------------------------------------------------------
# Types


@dataclass(slots=True)
class Part:
    """One MIME entity. Offsets index the raw message; the root's section is "" and an
    encapsulated message root carries the section of its message/rfc822 part."""

    section: str
    header_start: int
    body_start: int
    body_end: int
    content_type: str = "text/plain"
    params: dict[str, str] = field(default_factory=dict)
    encoding: str = "7bit"
    disposition: str | None = None
    disposition_params: dict[str, str] = field(default_factory=dict)
    content_id: str | None = None
    description: str | None = None
    language: list[str] | None = None
    location: str | None = None
    md5: str | None = None
    children: list[Part] = field(default_factory=list)
    filename: str | None = None
    lines: int = 0

    @property
    def is_multipart(self) -> bool:
        return bool(self.children) and self.content_type.startswith("multipart/")

    def to_json(self) -> dict[str, Any]:
        """Short keys and omitted defaults: one of these is stored per email."""
        d: dict[str, Any] = {"s": self.section, "o": [self.header_start, self.body_start,
                                                       self.body_end, self.lines]}
        optional = {
            "t": (self.content_type, "text/plain"), "p": (self.params, {}),
            "c": (self.encoding, "7bit"), "d": (self.disposition, None),
            "dp": (self.disposition_params, {}), "i": (self.content_id, None),
            "ds": (self.description, None), "la": (self.language, None),
            "lo": (self.location, None), "m": (self.md5, None), "f": (self.filename, None),
        }
        for key, (value, default) in optional.items():
            if value != default:
                d[key] = value
        if self.children:
            d["k"] = [child.to_json() for child in self.children]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Part:
        header_start, body_start, body_end, lines = d["o"]
        return cls(
            section=d["s"], header_start=header_start, body_start=body_start,
            body_end=body_end, lines=lines, content_type=d.get("t", "text/plain"),
            params=dict(d.get("p", {})), encoding=d.get("c", "7bit"),
            disposition=d.get("d"), disposition_params=dict(d.get("dp", {})),
            content_id=d.get("i"), description=d.get("ds"), language=d.get("la"),
            location=d.get("lo"), md5=d.get("m"), filename=d.get("f"),
            children=[cls.from_json(c) for c in d.get("k", [])],
        )


@dataclass(slots=True)
class Attachment:
    """`section` is the IMAP body section to FETCH; `content_id` has no angle brackets."""

    section: str
    filename: str | None
    content_type: str
    size: int
    sha256: str
    disposition: str | None
    content_id: str | None


@dataclass(slots=True)
class ParsedMessage:
    subject: str
    from_: list[Address]
    sender: list[Address]
    reply_to: list[Address]
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    date: datetime | None
    message_id: str | None
    in_reply_to: list[str]
    references: list[str]
    list_id: str | None
    preview: str
    text: str
    size: int
    has_attachment: bool
    attachments: list[Attachment]
    envelope: bytes
    bodystructure: bytes
    body: bytes
    root: Part
    decoded_cache: dict[tuple[int, int], tuple[bytes, str]] = field(
        default_factory=dict, repr=False, compare=False)
    """Decoded attachment contents and SHA-256 by body range, so that splitting does not
    decode a large attachment a second time; not part of the stored model."""


# --------------------------------------------------------------------------------------------
# Text decoding


_CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030",
    "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "iso-8859-1": "cp1252", "latin1": "cp1252",
    "shift_jis": "cp932", "x-sjis": "cp932", "big5": "big5hkscs", "tis-620": "cp874",
    "windows-874": "cp874", "utf8": "utf-8",
}
"""What mailers label as these is in practice the superset (as browsers assume, WHATWG)."""
_NO_CHARSET = ("", "us-ascii", "ascii", "unknown-8bit", "x-unknown", "8bit", "unknown")


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Charset labels from the wild are often wrong or unknown: fall back, never fail."""
    label = (charset or "").strip().strip('"').lower()
    if label not in _NO_CHARSET:
        try:
            text = data.decode(_CHARSET_ALIASES.get(label, label), "replace")
        except (LookupError, ValueError, TypeError, UnicodeError):
            pass
        else:
            if "\ufffd" not in text:
                return text
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return text
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _header_text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def header_text(value: bytes) -> str:
    """A header field value's octets as text, RFC 2047 words decoded. Decoding with
    "replace" before `decode_words` would lose the raw 8-bit text that mailers put inside
    encoded words; this keeps it readable in the word's charset."""
    return decode_words(_header_text(value))


_ENCODED_WORD = re.compile(r"=\?([^?\x00-\x20]+)\?([QqBb])\?([^?\x00-\x20]*)\?=")
"""Only ASCII controls and space end a word: a raw 8-bit byte read as Latin-1 may be NBSP
(0xA0) or NEL (0x85, cp1252's ellipsis), which `\\s` would count as white space."""
_UTF8_LABELS = ("utf-8", "utf8")


def _b64_lenient(data: bytes) -> bytes:
    try:
        return binascii.a2b_base64(data)
    except (binascii.Error, ValueError):
        clean = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        clean = clean[: len(clean) - (len(clean) % 4 == 1)]
        try:
            return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
        except (binascii.Error, ValueError):
            return b""


_RAW_UTF8 = "utf-8 raw"
"""The charset key of raw octets in a word labelled UTF-8: read as UTF-8 when they are, as
cp1252 (what the mislabelling mailer meant) when they are not."""


def _raw_octets(text: str, charset: str) -> tuple[bytes, str]:
    """The octets of an encoded word's text and the charset to read them in. Mailers put raw
    8-bit text inside Q words (`=?iso-8859-1?Q?Fr\\xf6sche?=`); the header reached us as UTF-8
    or, when it is not, as Latin-1 (one character per octet), so Latin-1 gives back the octets
    the sender wrote, to be read in the named charset. Characters beyond Latin-1 come from a
    UTF-8 header: they are text already, so their UTF-8 octets are read as UTF-8."""
    if text.isascii():
        return text.encode("ascii"), charset
    try:
        octets = text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8"), "utf-8"
    return octets, (_RAW_UTF8 if charset in _UTF8_LABELS else charset)


def _word_bytes(kind: str, text: str, charset: str) -> tuple[bytes, str]:
    if kind in "Bb":
        return _b64_lenient(text.encode("ascii", "replace")), charset
    data, charset = _raw_octets(text, charset)
    return binascii.a2b_qp(data, header=True), charset


def _word_text(charset: str, chunks: list[bytes]) -> str:
    data = b"".join(chunks)
    if charset == _RAW_UTF8:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", "replace")
    return decode_bytes(data, charset)


def decode_words(value: str) -> str:
    """RFC 2047; adjacent words of one charset are joined as bytes first, because mailers
    split multi-byte characters across words (collected in lists and joined once: adding
    each word to the octets so far is quadratic in a run of thousands of words)."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[tuple[str, list[bytes]]] = []
    pos = 0
    for m in _ENCODED_WORD.finditer(value):
        gap = value[pos : m.start()]
        if not pending or gap.strip():
            out.extend(_word_text(cs, chunks) for cs, chunks in pending)
            pending = []
            out.append(gap)
        charset = m.group(1).split("*", 1)[0].lower()
        data, charset = _word_bytes(m.group(2), m.group(3), charset)
        if pending and pending[-1][0] == charset:
            pending[-1][1].append(data)
        else:
            pending.append((charset, [data]))
        pos = m.end()
    out.extend(_word_text(cs, chunks) for cs, chunks in pending)
    out.append(value[pos:])
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Headers


_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
_FIELD_REST = re.compile(rb"[^\n]*(?:\n[ \t][^\n]*)*\n?")
"""The rest of a field from after its colon: its line and every continuation line, in one C
scan (the alternatives cannot overlap, so it never backtracks)."""
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_BLANK_LINE = re.compile(rb"\n\r?\n")


def top_fields(raw: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(lower-cased name, the first line of the value) of each field of the top-level header
    block, which ends at the first empty line or the first line that is no field, as
    `parse_message` reads it; one pass, no decoding, for the callers that only count or
    compare fields (loop detection, a submission's author fields)."""
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end + 1
        line = raw[pos:end].rstrip(b"\r\n")
        pos = end
        if not line:
            return
        if line[:1] in (b" ", b"\t"):
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            return
        yield name.rstrip(b" \t").lower(), value


def _unfold(value: bytes) -> bytes:
    return _FOLD.sub(b"", value).strip()


@dataclass(slots=True)
class _Headers:
    fields: list[tuple[str, bytes]] = field(default_factory=list)
    """Values are already cut at MAX_HEADER_VALUE, still folded, with their last line break."""

    def raw(self, name: str) -> bytes | None:
        """First occurrence, unfolded; later duplicates are usually injected or broken."""
        for key, value in self.fields:
            if key == name:
                return _unfold(value)
        return None

    def text(self, name: str) -> str | None:
        value = self.raw(name)
        return None if value is None else _header_text(value)

    def all_text(self, name: str) -> list[str]:
        return [_header_text(_unfold(v)) for k, v in self.fields if k == name]


def _line_end(raw: bytes, pos: int, end: int) -> int:
    nl = raw.find(b"\n", pos, end)
    return end if nl < 0 else nl + 1


def _is_blank(raw: bytes, pos: int, line_end: int) -> bool:
    return raw[pos:line_end] in (b"\n", b"\r\n")


def _read_headers(raw: bytes, start: int, end: int, is_root: bool) -> tuple[_Headers, int]:
    """Returns the headers and the body start; a line that is no header starts the body.

    Linear in the header block whatever its shape: a field and all its continuation lines are
    found by one regex scan and sliced once, at most MAX_HEADER_VALUE of it, so one field
    folded over a hundred thousand lines costs what reading it costs (appending each
    continuation line to the value so far was quadratic)."""
    headers = _Headers()
    pos = start
    if is_root and raw.startswith(b"From ", pos):
        pos = _line_end(raw, pos, end)
    while pos < end:
        line_end = _line_end(raw, pos, end)
        if _is_blank(raw, pos, line_end):
            return headers, line_end
        if raw[pos : pos + 1] in (b" ", b"\t"):  # continuation of no field: dropped
            pos = line_end
            continue
        m = _FIELD_NAME.match(raw, pos, line_end)
        if not m:
            return headers, pos
        if len(headers.fields) >= MAX_HEADER_FIELDS:
            blank = _BLANK_LINE.search(raw, pos - 1, end)
            return headers, end if blank is None else blank.end()
        rest = _FIELD_REST.match(raw, m.end(), end)
        field_end = rest.end() if rest is not None else line_end
        value_end = min(field_end, m.end() + MAX_HEADER_VALUE)
        headers.fields.append((m.group(1).decode("ascii").lower(), raw[m.end() : value_end]))
        pos = field_end
    return headers, end


# --------------------------------------------------------------------------------------------
# Structured header values


_PARAM = re.compile(r'(?<![^\s;])([^\s=;"]+)\s*=\s*("(?:\\.|[^"\\])*"?|[^;]*)', re.S)
_SECTION_KEY = re.compile(r"^(.*?)\*(\d+)(\*?)$|^(.*?)(\*)$")


def _unquote(value: str) -> str:
    value = value.strip()
    if value.startswith('"'):
        value = value[1:-1] if value.endswith('"') and len(value) > 1 else value[1:]
        value = re.sub(r"\\(.)", r"\1", value)
    return value


def _rfc2231(pieces: list[tuple[int, bool, str]]) -> str:
    pieces.sort(key=lambda p: p[0])
    charset = None
    data = b""
    for index, extended, value in pieces:
        if extended and index == 0 and value.count("'") >= 2:
            charset, _, value = value.split("'", 2)
        data += unquote_to_bytes(value) if extended else value.encode("utf-8", "replace")
    return decode_bytes(data, charset or "utf-8")


def parse_params(text: str) -> dict[str, str]:
    """Parameters after the first ';', RFC 2231 continuations and charsets joined and decoded;
    RFC 2047 words inside quoted values (common, though forbidden) are decoded too."""
    simple: dict[str, str] = {}
    extended: dict[str, list[tuple[int, bool, str]]] = {}
    for m in _PARAM.finditer(text):
        key, value = m.group(1).lower(), _unquote(m.group(2))
        sec = _SECTION_KEY.match(key)
        if sec is None:
            simple.setdefault(key, decode_words(value))
        elif sec.group(1) is not None:
            extended.setdefault(sec.group(1), []).append(
                (int(sec.group(2)[:6]), bool(sec.group(3)), value))
        else:
            extended.setdefault(sec.group(4), []).append((0, True, value))
    for key, pieces in extended.items():
        simple[key] = _rfc2231(pieces)
    return simple


def _split_value(text: str) -> tuple[str, dict[str, str]]:
    value, _, rest = text.partition(";")
    return value.strip().lower(), parse_params(rest)


def _content_type(headers: _Headers, default: str) -> tuple[str, dict[str, str]]:
    text = headers.text("content-type")
    if text is None:
        return default, ({"charset": "us-ascii"} if default == "text/plain" else {})
    value, params = _split_value(text)
    media, slash, subtype = value.partition("/")
    if not slash or not media.strip() or not subtype.strip() or " " in value:
        return "text/plain", {"charset": "us-ascii"}
    return f"{media.strip()}/{subtype.strip()}", params


_MSG_ID = re.compile(r"<([^<>]*)>")


def _ids(value: str | None) -> list[str]:
    if not value:
        return []
    found = [i.strip() for i in _MSG_ID.findall(value) if i.strip()]
    if not found:
        found = [t.strip("<>") for t in value.split() if "@" in t]
    return list(dict.fromkeys(found))


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Address lists (own tokenizer: ENVELOPE needs groups and the undecoded display names)


_ADDR_TOKEN = re.compile(
    r'(?P<ws>\s+)|(?P<qs>"(?:[^"\\]|\\.)*"?)|(?P<open>\()|(?P<dlit>\[[^\]]*\]?)'
    r'|(?P<special>[<>,:;])|(?P<atom>[^\s"(),:;<>\[\]]+)|(?P<other>.)',
    re.S,
)


def _comment(text: str, pos: int) -> tuple[str, int]:
    depth, i = 0, pos
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return text[pos + 1 : i], i + 1
        i += 1
    return text[pos + 1 :], len(text)


@dataclass(slots=True)
class _Mailbox:
    phrase: list[str] = field(default_factory=list)
    spec: list[str] = field(default_factory=list)
    angle: list[str] | None = None
    in_angle: bool = False
    comment: str | None = None

    def add(self, raw_token: str, display: str) -> None:
        if self.in_angle and self.angle is not None:
            self.angle.append(raw_token)
        else:
            self.phrase.append(display)
            self.spec.append(raw_token)

    def result(self) -> tuple[str, str, str | None] | None:
        """(raw display name, addr-spec, source route) or None when empty."""
        if self.angle is not None:
            spec, name = "".join(self.angle), " ".join(self.phrase)
        else:
            spec, name = "".join(self.spec), self.comment or ""
            if not spec:  # a comment alone ("group: (foo) ;") is no address (RFC 5322 §3.4)
                return None
        route = None
        if spec.startswith("@") and ":" in spec:
            route, _, spec = spec.rpartition(":")
        if not spec and not name:
            return None
        return name.strip(), spec, route


# (name, adl, mailbox, host); host None = group marker
_EnvAddr = tuple[str | None, str | None, str | None, str | None]


def _env_addr(name: str, spec: str, route: str | None) -> _EnvAddr:
    mailbox, at, host = spec.rpartition("@")
    if not at:
        mailbox, host = spec, ""
    return (name or None, route, mailbox, host)


def parse_address_list(text: str | None) -> list[_EnvAddr]:
    """RFC 5322 address list to ENVELOPE tuples, tolerant of whatever mailers emit."""
    if not text:
        return []
    out: list[_EnvAddr] = []
    box, in_group, pos = _Mailbox(), False, 0

    def flush() -> None:
        nonlocal box
        res = box.result()
        if res is not None:
            out.append(_env_addr(*res))
        box = _Mailbox()

    while pos < len(text):
        m = _ADDR_TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the pattern matches any character
            break
        kind, tok, pos = m.lastgroup, m.group(), m.end()
        if kind == "open":
            box.comment, pos = _comment(text, m.start())
        elif kind == "ws":
            continue
        elif kind == "qs":
            box.add(tok, re.sub(r"\\(.)", r"\1", _unquote(tok)))
        elif tok == "<" and not box.in_angle:
            box.in_angle, box.angle = True, []
        elif tok == ">" and box.in_angle:
            box.in_angle = False
        elif tok == "," and not box.in_angle:
            flush()
        elif tok == ":" and not box.in_angle and not in_group and box.angle is None:
            out.append((None, None, " ".join(box.phrase) or None, None))
            box, in_group = _Mailbox(), True
        elif tok == ";" and not box.in_angle and in_group:
            flush()
            out.append((None, None, None, None))
            in_group = False
        else:
            box.add(tok, tok)
    flush()
    if in_group:
        out.append((None, None, None, None))
    return out


def parse_addresses(text: str | None) -> list[Address]:
    """An address list as decoded names and addr-specs, groups flattened: the linear,
    never-recursing replacement for email.utils.getaddresses (which recurses once per nested
    comment, so a few thousand "(" raise RecursionError)."""
    return _addresses(parse_address_list(text))


def _addresses(env: list[_EnvAddr]) -> list[Address]:
    result = []
    for name, _adl, mailbox, host in env:
        if host is None:
            continue
        email = f"{mailbox}@{host}" if host else (mailbox or "")
        result.append(Address(decode_words(name or "").strip(), email))
    return result


# --------------------------------------------------------------------------------------------
# Structure


@dataclass(slots=True)
class _Ctx:
    raw: bytes
    parts: int = 0
    envelopes: dict[str, bytes] = field(default_factory=dict)
    root_headers: _Headers = field(default_factory=_Headers)


def _demote(part: Part) -> None:
    """A multipart we cannot split (no boundary, no delimiter, too deep) is shown as text."""
    part.content_type, part.params, part.children = "text/plain", {"charset": "us-ascii"}, []


def _describe(part: Part, headers: _Headers) -> None:
    part.encoding = (headers.text("content-transfer-encoding") or "7bit").strip().lower() or "7bit"
    disposition = headers.text("content-disposition")
    if disposition is not None:
        kind, part.disposition_params = _split_value(disposition)
        part.disposition = kind or None
    part.content_id = headers.text("content-id")
    part.description = headers.text("content-description")
    part.location = headers.text("content-location")
    part.md5 = headers.text("content-md5")
    lang = headers.text("content-language")
    if lang:
        part.language = [x.strip() for x in lang.split(",") if x.strip()] or None
    name = part.disposition_params.get("filename") or part.params.get("name")
    part.filename = name.strip() if name and name.strip() else None


@functools.lru_cache(maxsize=256)
def _delimiter_patterns(boundary: bytes) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    line = re.escape(b"--" + boundary) + rb"(--)?[ \t\r]*(?=\n|\Z)"
    return re.compile(line), re.compile(b"\n" + line)


def _delimiters(
    raw: bytes, boundary: bytes, start: int, end: int
) -> Iterator[tuple[int, int, bool]]:
    """(line start, next line start, is close) of each delimiter line in [start, end).
    A regex with a literal LF + marker prefix keeps the scan in C, also when the marker is
    frequent but never a whole delimiter line."""
    first, following = _delimiter_patterns(boundary)
    m = first.match(raw, start, end)
    at = start
    if m is None:
        m = following.search(raw, start, end)
        at = m.start() + 1 if m else 0
    while m is not None:
        close = m.group(1) is not None
        yield at, _line_end(raw, m.end(), end), close
        if close:
            return
        m = following.search(raw, m.end(), end)
        at = m.start() + 1 if m else 0


def _before_eol(raw: bytes, at: int, floor: int) -> int:
    """The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1)."""
    if at > floor and raw[at - 1] == 0x0A:
        at -= 1
        if at > floor and raw[at - 1] == 0x0D:
            at -= 1
    return at


def _split_multipart(ctx: _Ctx, part: Part, prefix: str, depth: int) -> None:
    boundary = part.params.get("boundary", "").encode("utf-8", "replace")
    if not boundary or depth >= MAX_DEPTH:
        _demote(part)
        return
    raw = ctx.raw
    digest = part.content_type == "multipart/digest"
    default = "message/rfc822" if digest else "text/plain"
    starts: list[int] = []
    ends: list[int] = []
    for at, nxt, close in _delimiters(raw, boundary, part.body_start, part.body_end):
        if starts:
            ends.append(_before_eol(raw, at, starts[-1]))
        if close or ctx.parts >= MAX_PARTS:
            break
        starts.append(nxt)
        ctx.parts += 1
    if not starts:
        _demote(part)
        return
    if len(ends) < len(starts):
        ends.append(part.body_end)
    for index, (s, e) in enumerate(zip(starts, ends, strict=True), start=1):
        section = f"{prefix}.{index}" if prefix else str(index)
        part.children.append(_entity(ctx, s, e, section, depth + 1, default, False))


def _encapsulate(ctx: _Ctx, part: Part, body_section: str, depth: int) -> None:
    if part.encoding not in ("7bit", "8bit", "binary") or depth >= MAX_DEPTH:
        part.content_type = "application/octet-stream"
        return
    inner = _entity(ctx, part.body_start, part.body_end, body_section, depth + 1, "text/plain",
                    True)
    part.children.append(inner)


def _entity(ctx: _Ctx, start: int, end: int, section: str, depth: int, default: str,
            is_message: bool) -> Part:
    raw = ctx.raw
    headers, body_start = _read_headers(raw, start, end, is_root=depth == 0)
    content_type, params = _content_type(headers, default)
    part = Part(section, start, body_start, end, content_type, params)
    _describe(part, headers)
    if is_message:
        ctx.envelopes[section] = _envelope(headers)
        if depth == 0:
            ctx.root_headers = headers
    if content_type.startswith("multipart/"):
        _split_multipart(ctx, part, section, depth)
    elif content_type == "message/rfc822":
        body_section = (f"{section}.1" if section else "1") if is_message else section
        _encapsulate(ctx, part, body_section, depth)
    if content_type.startswith("text/") or content_type == "message/rfc822":
        part.lines = raw.count(b"\n", body_start, end) + (end > body_start
                                                           and raw[end - 1] != 0x0A)
    return part


def iter_parts(root: Part) -> Iterator[tuple[str, Part]]:
    """(IMAP body section, part) in document order, as RFC 3501 §6.4.5 numbers them: a
    non-multipart message's body is "1" (or "N.1" inside message/rfc822 part N); a multipart
    message inside part N is reached as N's children[0] and numbers no section of its own."""
    yield from _walk(root, root.section, is_message=True)


def _walk(part: Part, section: str, is_message: bool) -> Iterator[tuple[str, Part]]:
    if is_message and not part.is_multipart:
        section = f"{section}.1" if section else "1"
    if not (is_message and part.is_multipart and section):
        yield section, part  # an encapsulated multipart has no number of its own
    if part.is_multipart:
        for child in part.children:
            yield from _walk(child, child.section, is_message=False)
    elif part.children:
        inner = part.children[0]
        yield from _walk(inner, inner.section, is_message=True)


def find_part(root: Part, section: str) -> Part | None:
    """The part FETCH BODY[section] names; for a message/rfc822 part, its children[0] is the
    encapsulated message whose header / text BODY[N.HEADER] / BODY[N.TEXT] mean."""
    for sec, part in iter_parts(root):
        if sec == section:
            return part
    return None


# --------------------------------------------------------------------------------------------
# Content


def _uu_line(line: bytes) -> bytes:
    try:
        return binascii.a2b_uu(line)
    except (binascii.Error, ValueError):
        needed = (((line[0] - 32) & 63) * 4 + 2) // 3
        try:
            return binascii.a2b_uu(line[: 1 + needed])
        except (binascii.Error, ValueError):
            return b""


def _uudecode(data: bytes) -> bytes:
    """x-uuencode is still sent by some old and bulk mailers; decode what is decodable."""
    out: list[bytes] = []
    lines = iter(data.splitlines())
    for line in lines:
        if line.startswith(b"begin"):
            break
    else:
        return data
    for line in lines:
        if line.strip() in (b"end", b"`"):
            break
        if line.strip():
            out.append(_uu_line(line))
    return b"".join(out)


def decode_body(data: bytes, encoding: str) -> bytes:
    try:
        if encoding == "base64":
            return _b64_lenient(data)
        if encoding == "quoted-printable":
            return binascii.a2b_qp(data)
        if encoding in ("x-uuencode", "uuencode", "x-uue"):
            return _uudecode(data)
    except (binascii.Error, ValueError):
        return data
    return data


def decoded_content(raw: bytes, part: Part) -> bytes:
    """The part body with its Content-Transfer-Encoding undone (unknown encodings: as is)."""
    return decode_body(raw[part.body_start : part.body_end], part.encoding)


def is_attachment(part: Part) -> bool:
    """What a user would call an attachment, Gmail-style: inline images with a Content-ID too."""
    if part.is_multipart or part.children:
        return False
    if part.disposition == "attachment" or part.filename:
        return True
    return not part.content_type.startswith("text/")


def _attachments(
    raw: bytes, root: Part, cache: dict[tuple[int, int], tuple[bytes, str]]
) -> list[Attachment]:
    found: list[Attachment] = []
    skip: set[int] = set()
    for section, part in iter_parts(root):
        if id(part) in skip:
            continue
        if part.content_type == "message/rfc822" and part.children and (
            part.disposition == "attachment" or part.filename
        ):
            skip.update(id(p) for _, p in _walk(part.children[0], part.children[0].section, True))
            content = raw[part.body_start : part.body_end]
        elif is_attachment(part):
            content = decoded_content(raw, part)
        else:
            continue
        digest = hashlib.sha256(content).hexdigest()
        cache[(part.body_start, part.body_end)] = (content, digest)
        cid = part.content_id.strip().strip("<>").strip() if part.content_id else None
        found.append(Attachment(section, part.filename, part.content_type, len(content),
                                digest, part.disposition, cid or None))
    return found


_HTML_HIDDEN = re.compile(r"<!--|<(script|style|title)\b", re.I)
_HTML_BREAK = re.compile(r"<(?:br|/p|/div|/tr|/li|/h[1-6]|/table|p|div|li|tr)\b[^<>]*>", re.I)
_HTML_TAG = re.compile(r"<[^<>]*>")
_SPACES = re.compile(r"[ \t\r\f\v\xa0]+")
_NEWLINES = re.compile(r"\s*\n\s*\n\s*")


def _drop_hidden(markup: str) -> str:
    """Comments, scripts and styles out, in one linear pass: a lazy regex over an unclosed
    <script> repeated many times would be quadratic. An unclosed one hides the rest, as in a
    browser."""
    lower = markup.lower()
    out: list[str] = []
    pos = 0
    while (m := _HTML_HIDDEN.search(markup, pos)) is not None:
        out.append(markup[pos : m.start()])
        closer = f"</{m.group(1).lower()}" if m.group(1) else "-->"
        close = lower.find(closer, m.end())
        if close < 0:
            return " ".join(out)
        gt = markup.find(">", close) if m.group(1) else close + 2
        pos = len(markup) if gt < 0 else gt + 1
    out.append(markup[pos:])
    return " ".join(out)


def html_to_text(markup: str) -> str:
    """Good enough for indexing and previews; never a renderer."""
    text = _HTML_BREAK.sub("\n", _drop_hidden(markup))
    text = html.unescape(_HTML_TAG.sub(" ", text))
    text = _SPACES.sub(" ", text)
    return _NEWLINES.sub("\n\n", text).strip()


def _leaf_text(raw: bytes, part: Part, limit: int) -> str:
    data = decoded_content(raw, part)[: max(limit, 1) * 8]
    text = decode_bytes(data, part.params.get("charset"))
    if part.content_type == "text/html":
        text = html_to_text(text)
    return text.replace("\r\n", "\n").strip()


def _texts(raw: bytes, part: Part, limit: int) -> Iterator[str]:
    """Body texts in order; of a multipart/alternative only the first non-empty of plain, html,
    nested multipart, so the index does not hold the same words twice."""
    if part.is_multipart and part.content_type == "multipart/alternative":
        for candidate in _alternatives(part.children):
            found = [t for t in _texts(raw, candidate, limit) if t]
            if found:
                yield from found
                return
    elif part.is_multipart:
        for child in part.children:
            yield from _texts(raw, child, limit)
    elif part.children:
        yield from _texts(raw, part.children[0], limit)
    elif part.content_type in ("text/plain", "text/html") and not is_attachment(part):
        yield _leaf_text(raw, part, limit)


def _alternatives(children: list[Part]) -> list[Part]:
    ranked = {"text/plain": 0, "text/html": 1}
    usable = [c for c in children if c.is_multipart or
              (c.content_type in ranked and not is_attachment(c))]
    return sorted(usable, key=lambda c: ranked.get(c.content_type, 2))


def _body_text(raw: bytes, root: Part, limit: int) -> str:
    chunks: list[str] = []
    total = 0
    for text in _texts(raw, root, limit):
        if total >= limit:
            break
        if text:
            chunks.append(text)
            total += len(text) + 2
    return "\n\n".join(chunks)[:limit]


def _preview(text: str) -> str:
    collapsed = " ".join(text[: PREVIEW_CHARS * 8].split())
    return collapsed[:PREVIEW_CHARS]


# --------------------------------------------------------------------------------------------
# Subjects


_SUBJECT_PREFIXES = re.compile(
    r"^(?:\s*(?:(?:re|fwd?|aw|sv|wg|vs|antw|tr|rif|ref|odp|doorst)\s*(?:\[\d+\]|\(\d+\))?"
    r"\s*[:\uff1a]|\[[^\]]*\]))+",
    re.I,
)


def normalize_subject(subject: str) -> str:
    """One anchored pass strips every prefix: a loop of single substitutions is quadratic on
    a subject of ten thousand "Re:"."""
    return " ".join(_SUBJECT_PREFIXES.sub("", subject, count=1).split()).casefold()


# --------------------------------------------------------------------------------------------
# Envelope and the whole message


def _env_field(headers: _Headers, name: str) -> bytes | None:
    value = headers.raw(name)
    return value if value else None


def _envelope(headers: _Headers) -> bytes:
    def addrs(name: str) -> list[_EnvAddr]:
        return parse_address_list(headers.text(name))

    return imapfmt.envelope(
        date=_env_field(headers, "date"), subject=_env_field(headers, "subject"),
        from_=addrs("from"), sender=addrs("sender"), reply_to=addrs("reply-to"),
        to=addrs("to"), cc=addrs("cc"), bcc=addrs("bcc"),
        in_reply_to=_env_field(headers, "in-reply-to"),
        message_id=_env_field(headers, "message-id"),
    )


def _list_id(value: str | None) -> str | None:
    if not value:
        return None
    ids = _MSG_ID.findall(value)
    found = (ids[0] if ids else value).strip()
    return found or None


def _references(headers: _Headers) -> list[str]:
    refs = _ids(" ".join(headers.all_text("references")))
    return list(dict.fromkeys(refs))


def parse_message(raw: bytes, *, text_limit: int = 1_000_000) -> ParsedMessage:
    """Never raises: whatever arrives was accepted over SMTP and must be stored and shown. A
    failure of the parser is a bug of ours: it is logged (with its traceback once a minute
    per kind, since one sender can repeat it) and counted in `PARSE_FAILURES`, exported as
    mailyard_mime_parse_failures, and the message is read by `_fallback`."""
    try:
        return _parse(raw, text_limit)
    except Exception as error:
        PARSE_FAILURES.seen(error, len(raw))
        return _fallback(raw)


class ParseFailures:
    """Messages the parser failed on since start-up, and when each kind was last logged."""

    WINDOW = 60.0

    def __init__(self) -> None:
        self.count = 0
        self._logged: dict[type, float] = {}

    def seen(self, error: Exception, size: int) -> None:
        self.count += 1
        now = time.monotonic()
        first = now - self._logged.get(type(error), -self.WINDOW) >= self.WINDOW
        if first:
            self._logged[type(error)] = now
        log.error("MIME parser failed on a %d-octet message (%s: %s); stored and shown as one"
                  " text body", size, type(error).__name__, str(error)[:200],
                  exc_info=error if first else None)


PARSE_FAILURES = ParseFailures()


def parse_head(raw: bytes) -> ParsedMessage:
    """The top-level header fields alone, the body left unread: what the SMTP-time checks need
    (From for DMARC, where the body starts for DKIM) for a fraction of a full parse. Offsets
    into the header block and `root.body_start` are those of the whole message."""
    blank = _BLANK_LINE.search(raw)
    return parse_message(raw if blank is None else raw[:blank.end()])


def _fallback(raw: bytes) -> ParsedMessage:
    """The last line of defence (a parser bug): the whole message as one opaque text body."""
    root = Part("", 0, 0, len(raw), lines=raw.count(b"\n"))
    return ParsedMessage(
        subject="", from_=[], sender=[], reply_to=[], to=[], cc=[], bcc=[], date=None,
        message_id=None, in_reply_to=[], references=[], list_id=None, preview="", text="",
        size=len(raw), has_attachment=False, attachments=[],
        envelope=imapfmt.envelope(date=None, subject=None, from_=[], sender=[], reply_to=[],
                                  to=[], cc=[], bcc=[], in_reply_to=None, message_id=None),
        bodystructure=imapfmt.bodystructure(root, True), body=imapfmt.bodystructure(root, False),
        root=root,
    )


def _parse(raw: bytes, text_limit: int) -> ParsedMessage:
    ctx = _Ctx(raw)
    root = _entity(ctx, 0, len(raw), "", 0, "text/plain", True)
    headers = ctx.root_headers
    env = ctx.envelopes.pop("")

    def addrs(name: str) -> list[Address]:
        return _addresses(parse_address_list(headers.text(name)))

    text = _body_text(raw, root, text_limit)
    cache: dict[tuple[int, int], tuple[bytes, str]] = {}
    attachments = _attachments(raw, root, cache)
    message_ids = _ids(headers.text("message-id"))
    return ParsedMessage(
        subject=" ".join(decode_words(headers.text("subject") or "").split()),
        from_=addrs("from"), sender=addrs("sender"), reply_to=addrs("reply-to"),
        to=addrs("to"), cc=addrs("cc"), bcc=addrs("bcc"),
        date=_date(headers.text("date")),
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=_ids(headers.text("in-reply-to")),
        references=_references(headers),
        list_id=_list_id(headers.text("list-id")),
        preview=_preview(text), text=text, size=len(raw),
        has_attachment=bool(attachments), attachments=attachments, envelope=env,
        bodystructure=imapfmt.bodystructure(root, True, ctx.envelopes),
        body=imapfmt.bodystructure(root, False, ctx.envelopes),
        root=root, decoded_cache=cache,
    )

