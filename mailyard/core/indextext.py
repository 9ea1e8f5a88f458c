"""The text of each searchable field of a message, as the full-text index stores it.

Runs once per delivered message, after `parse_message`: everything the parser already decoded
(subject, addresses, body text, the attachment list and its decoded contents) is reused, so the
common case, a message without attachments, costs a few string joins. Only attachments are opened
here, and each one that fails is skipped: whatever arrived was accepted and must be indexed as far
as it can be, never rejected.

This module is also the one definition of what IMAP's substring keys search (RFC 3501 §6.4.4,
RFC 9051 §6.4.4), so that the trigram index, the reading of a message for a needle too short for
it, and the word index of X-GM-RAW and JMAP all see the same text:
- BODY is `body_substring_text`: the decoded text parts (quoted-printable and base64 undone,
  charsets decoded), the MIME headers of every part below the top-level header, the attachments'
  file names and the text of text attachments (text/plain, text/csv, text/html as text ...)
  and Office documents. Dovecot searches the same: the message's body with its parts' headers.
- TEXT is BODY and every top-level header field (`header_block_text`): Message-ID, Received ...
"""

from __future__ import annotations

import functools
import importlib
import io
import logging
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from xml.etree.ElementTree import XMLParser

from mailyard.core.addresses import Address
from mailyard.core.indexlimits import Limits
from mailyard.core.mime import (
    Attachment,
    ParsedMessage,
    Part,
    _read_headers,
    decode_bytes,
    decode_words,
    decoded_content,
    header_text,
    html_to_text,
    is_attachment,
    iter_parts,
    parse_address_list,
)

log = logging.getLogger(__name__)


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class IndexText:
    """One string per searchable field; words are separated by whitespace, nothing else is
    promised (the index tokenizes)."""

    subject: str
    from_: str
    """Display names and addresses, each address also as its local part and its domain, so that
    `from:alice.doe` and `from:example.com` match without substring search."""
    to: str
    cc: str
    bcc: str
    body: str
    filenames: str
    attachment_text: str
    """The text of the attachments, and of text parts that are neither the body nor an
    attachment (an inline text/calendar or text/csv part): what a user reads in them."""
    list_id: str
    part_headers: str = ""
    """The header fields of every MIME part below the top-level header (Content-Type with its
    name=, Content-Disposition with its filename=, Content-Description ...) and those of
    encapsulated messages, decoded as `header_block_text` decodes: for IMAP BODY and TEXT,
    which search the body with its parts' headers (the word index leaves them out: "base64"
    or "charset" would find every multipart message)."""


PART_HEADER_CHARS = 64 * 1024
"""Characters of part headers kept per message: a message of a thousand parts is abuse."""

_FIELD_BREAK = re.compile(rb"\n(?![ \t])")
"""A line break that ends a header field (the next line is no continuation)."""


def header_block_text(block: bytes) -> str:
    """A header block as one line of text: each field's octets decoded on their own
    (`mime.header_text`: RFC 2047 words, UTF-8 when they are, else one character per octet),
    folding undone, runs of white space as one space. Field names are kept: TEXT "Message-ID"
    finds every message with one, as Dovecot's does."""
    return " ".join(" ".join(header_text(f) for f in _FIELD_BREAK.split(block)).split())


def body_substring_text(body: str, filenames: str, attachment_text: str,
                        part_headers: str = "") -> str:
    """What IMAP BODY searches, from the fields the index keeps: one string, the pieces on
    lines of their own (a needle never spans two of them unless it holds a line break)."""
    return "\n".join(t for t in (body, part_headers, filenames, attachment_text) if t)


def message_body_text(text: IndexText) -> str:
    """`body_substring_text` of a message's IndexText."""
    return body_substring_text(text.body, text.filenames, text.attachment_text,
                               text.part_headers)


def index_text(raw: bytes, parsed: ParsedMessage, limits: Limits = DEFAULT_LIMITS) -> IndexText:
    """Never raises: an attachment that cannot be read is left out and logged at debug level.

    `parsed` must come from `parse_message(raw)` with a text_limit of at least `limits.body`.
    """
    return IndexText(
        subject=parsed.subject,
        from_=_address_text(parsed.from_),
        to=_address_text(parsed.to),
        cc=_address_text(parsed.cc),
        bcc=_address_text(parsed.bcc),
        body=parsed.text[: max(limits.body, 0)],
        filenames=_words(a.filename for a in parsed.attachments if a.filename),
        attachment_text=_attachment_text(raw, parsed, limits),
        list_id=_list_id_text(raw, parsed),
        part_headers=_part_headers(raw, parsed),
    )


def _words(items: Iterable[str]) -> str:
    """Header-derived text may hold folded whitespace and control characters: one space each."""
    return " ".join(" ".join(items).split())


def _address_text(addresses: list[Address]) -> str:
    words: list[str] = []
    for address in addresses:
        words += (address.name, address.email, address.local_part, address.domain)
    return _words(dict.fromkeys(w for w in words if w))


def _list_id_text(raw: bytes, parsed: ParsedMessage) -> str:
    """The parser keeps only the id; `list:` should also match the list's display name, so the
    header is read again (only when there is one) with the parser's own header and address
    readers: List-Id is a phrase and an angle-bracketed id, the shape of a name-addr."""
    if parsed.list_id is None:
        return ""
    try:
        root = parsed.root
        headers, _ = _read_headers(raw, root.header_start, root.body_start, is_root=True)
        value = headers.text("list-id")
        words: list[str] = []
        for name, _route, mailbox, host in parse_address_list(value):
            if name:
                words.append(decode_words(name))
            if mailbox:
                words.append(f"{mailbox}@{host}" if host else mailbox)
        return _words(words) or parsed.list_id
    except Exception:
        log.debug("List-Id not re-read; indexing the parsed id only", exc_info=True)
        return parsed.list_id


def _parts(part: Part) -> Iterable[Part]:
    """Every part below `part`, encapsulated messages' roots included (iter_parts leaves out
    an encapsulated multipart message, whose header block is still a part header)."""
    for child in part.children:
        yield child
        yield from _parts(child)


def _part_headers(raw: bytes, parsed: ParsedMessage) -> str:
    try:
        chunks: list[str] = []
        left = PART_HEADER_CHARS
        for part in _parts(parsed.root):
            if left <= 0:
                break
            text = header_block_text(raw[part.header_start:part.body_start])
            if text:
                chunks.append(text[:left])
                left -= len(text) + 1
        return "\n".join(chunks)
    except Exception:
        log.debug("part headers not indexed", exc_info=True)
        return ""


# --------------------------------------------------------------------------------------------
# Attachments

_BYTES_PER_CHAR = 8
"""Bytes of a text attachment decoded per character still wanted: as in mime's body text, enough
for multi-byte charsets and markup that HTML stripping removes, without decoding megabytes."""

_Extractor = Callable[[bytes, Part, int, Limits], str]


def _attachment_text(raw: bytes, parsed: ParsedMessage, limits: Limits) -> str:
    budget = limits.attachment_text
    wanted = [(a.section, kind) for a in parsed.attachments
              if a.size <= limits.attachment_bytes and (kind := _kind(a, limits)) is not None]
    inline = _inline_texts(parsed.root, limits)
    if (not wanted and not inline) or budget <= 0:
        return ""
    parts = dict(iter_parts(parsed.root))
    found = [(section, parts.get(section), kind) for section, kind in wanted]
    found += [(part.section, part, "text") for part in inline]
    chunks: list[str] = []
    left = budget
    for section, part, kind in found:
        if part is None or left <= 0:
            continue
        try:
            text = _EXTRACTORS[kind](_content(raw, part, parsed), part, left, limits)
        except Exception:
            log.debug("attachment %s (%s, %r) not indexed", section, part.content_type,
                      part.filename, exc_info=True)
            continue
        text = text.strip()[:left]
        if text:
            chunks.append(text)
            left -= len(text) + 2
    return "\n\n".join(chunks)[:budget]


def _inline_texts(root: Part, limits: Limits) -> list[Part]:
    """Text parts that are neither the body (text/plain, text/html: mime's body text) nor an
    attachment: an inline text/calendar invitation, text/csv, text/x-diff. A user reads them
    as part of the message, and IMAP BODY finds their words (RFC 3501: the body's text)."""
    return [p for p in _parts(root) if not p.children and p.content_type.startswith("text/")
            and p.content_type not in ("text/plain", "text/html") and not is_attachment(p)
            and p.body_end - p.body_start <= limits.attachment_bytes]


def _content(raw: bytes, part: Part, parsed: ParsedMessage) -> bytes:
    """The parser has usually decoded every attachment already (for its digest): reuse that."""
    cached = parsed.decoded_cache.get((part.body_start, part.body_end))
    return cached[0] if cached is not None else decoded_content(raw, part)


_OFFICE_TYPES = frozenset({
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.ms-word.document.macroenabled.12",
    "application/vnd.ms-excel.sheet.macroenabled.12",
    "application/vnd.ms-powerpoint.presentation.macroenabled.12",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
})
_OFFICE_EXTENSIONS = frozenset({"docx", "docm", "xlsx", "xlsm", "pptx", "pptm",
                                "odt", "ods", "odp"})
_PDF_TYPES = frozenset({"application/pdf", "application/x-pdf", "application/acrobat"})


def _kind(attachment: Attachment, limits: Limits) -> str | None:
    """The declared type first; the file name next, because many mailers label everything
    application/octet-stream."""
    ctype = attachment.content_type
    ext = (attachment.filename or "").rpartition(".")[2].strip().lower()
    if ctype.startswith("text/"):
        return "text"
    if ctype in _OFFICE_TYPES:
        return "office"
    if ctype in _PDF_TYPES:
        return "pdf" if limits.pdf else None
    if ext in _OFFICE_EXTENSIONS:
        return "office"
    if ext == "pdf" and limits.pdf:
        return "pdf"
    return None


def _cut(data: bytes, size: int) -> bytes:
    """A cut inside a UTF-8 sequence would make mime's decoder judge the whole text not UTF-8
    and fall back to cp1252 mojibake: cut before the sequence instead."""
    if len(data) <= size:
        return data
    end = size
    while end > size - 3 and end > 0 and 0x80 <= data[end] < 0xC0:
        end -= 1
    return data[:end]


def _text_attachment(data: bytes, part: Part, budget: int, limits: Limits) -> str:
    text = decode_bytes(_cut(data, budget * _BYTES_PER_CHAR), part.params.get("charset"))
    if part.content_type == "text/html":
        text = html_to_text(text)
    return text.replace("\r\n", "\n")


# ---- Office Open XML and OpenDocument ----------------------------------------------------------

_SLIDE = re.compile(r"ppt/slides/slide(\d{1,9})\.xml")
_CHUNK = 64 * 1024
_DTD = re.compile(b"|".join(re.escape(word.encode(codec)) for word in ("<!DOCTYPE", "<!ENTITY")
                            for codec in ("utf-8", "utf-16-le", "utf-16-be")))
"""Looked for in the bytes before they reach the parser, in every encoding expat reads: its
doctype callback alone comes too late, as expat finishes the buffer it was given first."""
_PARAGRAPH_ENDS = frozenset({"p", "h", "si", "table-cell", "tr"})
_SPACE_ELEMENTS = frozenset({"tab", "br", "cr", "s", "line-break"})


class _Refused(Exception):
    """A document type declaration: no Office file needs one, and entities are how XML
    documents expand to gigabytes or reach outside (what defusedxml refuses too)."""


class _Collector:
    """ElementTree parser target that keeps only character data, so no tree is built.

    OOXML parts keep their text in `t` elements (w:t, a:t, shared strings) among much other
    character data; OpenDocument content.xml holds nothing but text in character data."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self.chunks: list[str] = []
        self.all_text = False
        self.in_root = False
        """Past the start of the root element, where no DTD can begin any more."""
        self._in_t = 0

    @property
    def full(self) -> bool:
        return self.size >= self.budget

    def _add(self, text: str) -> None:
        if not self.full:
            self.chunks.append(text)
            self.size += len(text)

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.in_root = True
        local = tag.rpartition("}")[2]
        if local == "t" and not self.all_text:
            self._in_t += 1
        elif local in _SPACE_ELEMENTS:
            self._add(" ")

    def end(self, tag: str) -> None:
        local = tag.rpartition("}")[2]
        if local == "t" and self._in_t:
            self._in_t -= 1
        elif local in _PARAGRAPH_ENDS:
            self._add("\n")

    def data(self, text: str) -> None:
        if self.all_text or self._in_t:
            self._add(text)

    def doctype(self, name: str | None, pubid: str | None, system: str | None) -> None:
        raise _Refused("document type declaration")

    def close(self) -> None:
        return None


def _office_members(names: list[str]) -> list[tuple[str, bool]]:
    """(member, holds only text): .docx, .xlsx, slides of .pptx in slide order, ODF content."""
    present = set(names)
    found: list[tuple[str, bool]] = [
        (n, False) for n in ("word/document.xml", "xl/sharedStrings.xml") if n in present]
    slides = sorted((int(m.group(1)), n) for n in names if (m := _SLIDE.fullmatch(n)))
    found += [(n, False) for _, n in slides]
    if "content.xml" in present:
        found.append(("content.xml", True))
    return found


def _office_text(data: bytes, part: Part, budget: int, limits: Limits) -> str:
    collector = _Collector(budget)
    allowance = limits.unpacked_bytes
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name, all_text in _office_members(archive.namelist()):
            if collector.full or allowance <= 0:
                break
            collector.all_text = all_text
            allowance -= _feed_member(archive, name, collector, allowance)
    return "".join(collector.chunks)


def _feed_member(archive: zipfile.ZipFile, name: str, collector: _Collector,
                 allowance: int) -> int:
    """Streams the member through the parser in bounded reads: the declared size of a zip
    member is not to be trusted, and a truncated document still yields its text so far.
    Returns the decompressed bytes read."""
    parser = XMLParser(target=collector)
    collector.in_root = False
    used = 0
    tail = b""
    with archive.open(name) as member:
        while used < allowance and not collector.full:
            chunk = member.read(min(_CHUNK, allowance - used))
            if not chunk:
                break
            used += len(chunk)
            if not collector.in_root and _DTD.search(tail + chunk):
                raise _Refused(name)
            tail = chunk[-32:]
            parser.feed(chunk)
    return used


# ---- PDF ---------------------------------------------------------------------------------------


@functools.cache
def _pypdf() -> ModuleType | None:
    """Imported on first use: the optional `pdf` extra, and a slow import."""
    try:
        module = importlib.import_module("pypdf")
    except ImportError:
        log.debug("pypdf is not installed; PDF attachments are not indexed")
        return None
    return module


def _pdf_text(data: bytes, part: Part, budget: int, limits: Limits) -> str:
    pypdf = _pypdf()
    if pypdf is None:
        return ""
    reader = pypdf.PdfReader(io.BytesIO(data))
    if reader.is_encrypted and reader.decrypt("") == pypdf.PasswordType.NOT_DECRYPTED:
        return ""
    pages: list[str] = []
    size = 0
    for page in reader.pages:
        text: str = page.extract_text() or ""
        pages.append(text)
        size += len(text)
        if size >= budget:
            break
    return "\n".join(pages)


_EXTRACTORS: dict[str, _Extractor] = {
    "text": _text_attachment,
    "office": _office_text,
    "pdf": _pdf_text,
}
