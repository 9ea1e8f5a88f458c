"""An email's MIME tree as JMAP body parts (RFC 8621 §4.1.4), computed from the raw message.

The stored part tree has byte offsets into the raw message, but JMAP wants decoded sizes,
header lists and the textBody/htmlBody/attachments split, which only the raw octets give; so
Email/get parses the message again when (and only when) a body property is asked for.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from email.utils import getaddresses
from typing import Any

from mailyard.core import mime
from mailyard.core.mime import Part

BODY_PROPERTIES = ("partId", "blobId", "size", "headers", "name", "type", "charset",
                   "disposition", "cid", "language", "location", "subParts")
DEFAULT_BODY_PROPERTIES = ("partId", "blobId", "size", "name", "type", "charset",
                           "disposition", "cid", "language", "location")
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*)$", re.S)


def header_fields(block: bytes) -> list[tuple[str, str]]:
    """(name, raw value) of each field in order, folding kept as the RFC's `headers` wants."""
    fields: list[tuple[str, str]] = []
    for line in re.split(rb"\r?\n(?![ \t])", block):
        m = _FIELD.match(line)
        if m:
            fields.append((m.group(1).decode("ascii"),
                           m.group(2).decode("utf-8", "replace")))
    return fields


class Body:
    """The parsed message of one email, and its body parts as JMAP numbers them."""

    def __init__(self, email_id: str, raw: bytes) -> None:
        self.email_id = email_id
        self.raw = raw
        self.parsed = mime.parse_message(raw)
        self.root = self.parsed.root
        self.ids: dict[int, str | None] = {}
        for section, part in mime.iter_parts(self.root):
            self.ids.setdefault(id(part), None if part.is_multipart else section)
        self.text_body: list[Part] = []
        self.html_body: list[Part] = []
        self.attachments: list[Part] = []
        _split([self.root], "mixed", False, self.html_body, self.text_body, self.attachments)
        self._fields: dict[int, list[tuple[str, str]]] = {}

    def headers(self, part: Part | None = None) -> list[tuple[str, str]]:
        """A part's fields, split once per Body: an Email/get asking for several header:
        properties read the whole header block again for each (a 14 MB folded header three
        times over)."""
        part = part or self.root
        found = self._fields.get(id(part))
        if found is None:
            found = header_fields(self.raw[part.header_start : part.body_start])
            self._fields[id(part)] = found
        return found

    def part_id(self, part: Part) -> str | None:
        return self.ids.get(id(part))

    def content(self, part: Part) -> bytes:
        return mime.decoded_content(self.raw, part)

    def to_json(self, part: Part, props: list[str],
                header: Callable[[Part, str], Any] | None = None) -> dict[str, Any]:
        """The EmailBodyPart; `header` answers its header: properties."""
        part_id = self.part_id(part)
        multipart = part.is_multipart
        out: dict[str, Any] = {}
        for p in props:
            if p == "partId":
                out[p] = part_id
            elif p == "blobId":
                out[p] = None if multipart else f"{self.email_id}_{(part_id or '1')}"
            elif p == "size":
                out[p] = 0 if multipart else len(self.content(part))
            elif p == "headers":
                out[p] = [{"name": n, "value": v} for n, v in self.headers(part)]
            elif p == "name":
                out[p] = part.filename
            elif p == "type":
                out[p] = part.content_type
            elif p == "charset":
                charset = part.params.get("charset")
                out[p] = charset or ("us-ascii" if part.content_type.startswith("text/")
                                     else None)
            elif p == "disposition":
                out[p] = part.disposition
            elif p == "cid":
                cid = (part.content_id or "").strip().strip("<>").strip()
                out[p] = cid or None
            elif p == "language":
                out[p] = part.language
            elif p == "location":
                out[p] = part.location
            elif p == "subParts":
                out[p] = ([self.to_json(c, props, header) for c in part.children]
                          if multipart else None)
            elif p.startswith("header:") and header is not None:
                out[p] = header(part, p)
        return out

    def value(self, part: Part, max_bytes: int) -> dict[str, Any]:
        """An EmailBodyValue: decoded text with LF line ends (§4.1.4 asks CRLF be replaced),
        cut at a character boundary when too long."""
        text = mime.decode_bytes(self.content(part), part.params.get("charset"))
        text = text.replace("\r\n", "\n")
        truncated = False
        if max_bytes and len(text.encode("utf-8")) > max_bytes:
            text = text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
            truncated = True
        return {"value": text, "isEncodingProblem": "\ufffd" in text,
                "isTruncated": truncated}


def address_list(value: str | None) -> list[dict[str, str | None]] | None:
    if value is None:
        return None
    out: list[dict[str, str | None]] = []
    for name, email in getaddresses([value]):
        if name or email:
            out.append({"name": mime.decode_words(name) or None, "email": email})
    return out


def _inline_type(part: Part) -> bool:
    return part.content_type.split("/")[0] in ("image", "audio", "video")


def _split(parts: list[Part], multipart_type: str, in_alternative: bool,
           html_body: list[Part] | None, text_body: list[Part] | None,
           attachments: list[Part]) -> None:
    """The algorithm of RFC 8621 §4.1.4: which leaves a client shows as the text and HTML
    bodies, and which it lists as attachments."""
    text_length = len(text_body) if text_body is not None else -1
    html_length = len(html_body) if html_body is not None else -1
    for i, part in enumerate(parts):
        kind = part.content_type
        textual = kind in ("text/plain", "text/html")
        inline = (part.disposition != "attachment"
                  and (textual or _inline_type(part))
                  and (i == 0 or (multipart_type != "related"
                                  and (_inline_type(part) or part.filename is None))))
        if part.is_multipart:
            sub = kind.split("/", 1)[1]
            _split(part.children, sub, in_alternative or sub == "alternative",
                   html_body, text_body, attachments)
        elif inline:
            if multipart_type == "alternative":
                if kind == "text/plain" and text_body is not None:
                    text_body.append(part)
                elif kind == "text/html" and html_body is not None:
                    html_body.append(part)
                else:
                    attachments.append(part)
                continue
            if in_alternative:
                if kind == "text/plain":
                    html_body = None
                if kind == "text/html":
                    text_body = None
            if text_body is not None:
                text_body.append(part)
            if html_body is not None:
                html_body.append(part)
            if (text_body is None or html_body is None) and not textual:
                attachments.append(part)
        else:
            attachments.append(part)
    if multipart_type == "alternative" and text_body is not None and html_body is not None:
        if text_length == len(text_body) and html_length != len(html_body):
            text_body.extend(html_body[html_length:])
        if html_length == len(html_body) and text_length != len(text_body):
            html_body.extend(text_body[text_length:])
