"""The octets a FETCH BODY[section] / BINARY[section] names (RFC 3501 §6.4.5, RFC 3516).

Answered from the raw message and the part tree stored at delivery: nothing is re-parsed. A
section that does not exist yields None, which IMAP answers as NIL (or an error for BINARY).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailyard.core.mime import Part, decode_body, find_part

_FIELD_NAME = re.compile(rb"^([^:\s]+)\s*:", re.MULTILINE)


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
    """The header lines (with their folded continuations) whose names are (not) in `names`,
    followed by the empty line, as RFC 3501 requires for HEADER.FIELDS."""
    wanted = {n.lower().encode() for n in names}
    out: list[bytes] = []
    keep = False
    for line in block.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        m = _FIELD_NAME.match(line)
        name = m.group(1).lower() if m else b""
        keep = bool(m) and ((name in wanted) != exclude)
        if keep:
            out.append(line)
    return b"".join(out) + b"\r\n"


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


def binary_section(raw: bytes, root: Part, path: Sequence[int]) -> bytes | None:
    """BINARY[path]: the part's content with its transfer encoding undone (RFC 3516)."""
    if not path:
        return raw
    part = find_part(root, ".".join(map(str, path)))
    if part is None or part.is_multipart:
        return None
    return decode_body(raw[part.body_start:part.body_end], part.encoding)


def partial(data: bytes, origin: int | None, length: int | None) -> bytes:
    """<origin.length>: an origin past the end gives the empty string (RFC 3501 §6.4.5)."""
    if origin is None:
        return data
    chunk = data[origin:]
    return chunk if length is None else chunk[:length]
