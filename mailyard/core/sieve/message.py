"""The message as a Sieve script sees it: header fields (editable, RFC 5293), the envelope,
the body (RFC 5173) and the size.

Built from the raw octets: fields are split from the header block here, decoded (RFC 2047)
and unfolded when a test reads them; the MIME parse for `body` is made only if a script
tests the body (`parsed` may be given, the pipeline's one parse).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from mailyard.core.mime import (
    ParsedMessage,
    decode_bytes,
    decoded_content,
    header_text,
    iter_parts,
    parse_addresses,
    parse_message,
)

_FIELD_START = re.compile(rb"(?m)^(?=[^ \t\r\n])")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
BODY_LIMIT = 1_000_000
"""Characters of body text a `body` test reads per part (the rest is not searched)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    mail_from: str
    """The reverse-path, "" for the null sender."""
    to: str
    """The recipient as the client gave it (with its +detail)."""


@dataclass(slots=True)
class HeaderField:
    name: str
    raw: bytes
    """The whole field as it is on the wire, with its line end."""

    @property
    def value(self) -> str:
        text = header_text(self.raw.partition(b":")[2])
        return _FOLD.sub("", text).strip()


def split_head(raw: bytes) -> tuple[list[HeaderField], int]:
    """The header fields, and where the body starts (after the empty line)."""
    m = re.search(rb"\r?\n\r?\n", raw)
    if raw.startswith((b"\r\n", b"\n")):
        return [], raw.index(b"\n") + 1
    end = len(raw) if m is None else m.start() + (2 if raw[m.start()] == 13 else 1)
    body_start = len(raw) if m is None else m.end()
    block = raw[:end]
    fields: list[HeaderField] = []
    starts = [m.start() for m in _FIELD_START.finditer(block)]
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else len(block)
        chunk = block[start:stop]
        name = chunk.partition(b":")[0].strip().decode("ascii", "replace")
        if b":" in chunk:
            fields.append(HeaderField(name, chunk))
    return fields, body_start


@dataclass(slots=True)
class SieveMessage:
    raw: bytes
    fields: list[HeaderField] = field(default_factory=list)
    body_start: int = 0
    parsed: ParsedMessage | None = None
    edited: bool = False
    """editheader changed the fields: the stored copy takes `head()`."""

    @classmethod
    def from_bytes(cls, raw: bytes, parsed: ParsedMessage | None = None) -> SieveMessage:
        fields, body_start = split_head(raw)
        return cls(raw, fields, body_start, parsed)

    @property
    def size(self) -> int:
        return len(self.raw)

    def header_values(self, name: str) -> list[str]:
        lower = name.lower()
        return [f.value for f in self.fields if f.name.lower() == lower]

    def addresses(self, name: str) -> list[list[str]]:
        """Per field occurrence, its addr-specs (a group's members; "" for an empty one)."""
        return [[a.email for a in parse_addresses(value)] for value in self.header_values(name)]

    def body(self, transform: str, types: tuple[str, ...]) -> list[str]:
        """The texts a `body` test reads: :raw the undecoded body, :text the text/* parts
        decoded, :content the parts of the given types (RFC 5173 §5)."""
        if transform == "raw":
            return [self.raw[self.body_start:self.body_start + BODY_LIMIT]
                    .decode("utf-8", "replace")]
        if self.parsed is None:
            self.parsed = parse_message(self.raw)
        wanted = ("text",) if transform == "text" else types
        out: list[str] = []
        for _, part in iter_parts(self.parsed.root):
            if part.is_multipart and transform == "text":
                continue
            if not _type_fits(part.content_type, wanted):
                continue
            if part.is_multipart:
                out.append(self.raw[part.body_start:part.body_end].decode("utf-8", "replace"))
                continue
            data = decoded_content(self.raw, part)[:BODY_LIMIT * 4]
            out.append(decode_bytes(data, part.params.get("charset"))[:BODY_LIMIT])
        return out

    def add_field(self, name: str, value: str, *, last: bool) -> None:
        new = HeaderField(name, _encode_field(name, value))
        if last:
            self.fields.append(new)
        else:
            self.fields.insert(0, new)
        self.edited = True

    def delete_fields(self, name: str, keep: Callable[[int, int, HeaderField], bool]) -> None:
        """Remove the fields called `name` for which `keep(position, count, field)` is
        False (positions 1-based among that name's fields)."""
        lower = name.lower()
        same = [f for f in self.fields if f.name.lower() == lower]
        gone = {id(f) for i, f in enumerate(same, 1) if not keep(i, len(same), f)}
        if gone:
            self.fields = [f for f in self.fields if id(f) not in gone]
            self.edited = True

    def head(self) -> bytes:
        return b"".join(f.raw for f in self.fields)

    def rebuilt(self) -> bytes:
        """The message with the edited header block and the original body."""
        return self.head() + b"\r\n" + self.raw[self.body_start:]


def _type_fits(content_type: str, wanted: tuple[str, ...]) -> bool:
    ctype = content_type.lower()
    for w in wanted:
        w = w.lower()
        if w == "" or ctype == w or ("/" not in w and ctype.split("/")[0] == w):
            return True
    return False


def _encode_field(name: str, value: str) -> bytes:
    """A field as addheader adds it: RFC 2047 encoded when not ASCII, folded at 78."""
    if not value.isascii():
        from email.header import Header

        value = Header(value, "utf-8").encode(maxlinelen=76)
    return f"{name}: {value}\r\n".encode("ascii", "replace")
