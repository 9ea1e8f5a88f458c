"""Header fields added to a message that is already parsed, without parsing it again.

The pipeline scores a message's spam on the spooled copy, and stores that copy with the
X-Spam-* fields the score gave inserted after the trace fields. Parsing the stored copy again
would cost a second full parse per message; the fields change nothing a parse reads but the
offsets after them, so the first parse is moved by their length instead.
"""

from __future__ import annotations

from dataclasses import replace

from mailyard.core.mime import MAX_HEADER_FIELDS, ParsedMessage, Part


def insert(raw: bytes, parsed: ParsedMessage | None, at: int, added: bytes
           ) -> tuple[bytes, ParsedMessage | None]:
    """`raw` with the complete header fields `added` (each ending in CRLF) inserted at offset
    `at`, and the parse of the result: `parsed` moved, when that is exactly what a parse of
    the result would give (`movable`), else None (the caller parses the result)."""
    out = raw[:at] + added + raw[at:]
    if parsed is None or not added or not movable(raw, parsed, at, added):
        return out, None
    return out, moved(parsed, len(added))


def movable(raw: bytes, parsed: ParsedMessage, at: int, added: bytes) -> bool:
    """Whether inserting `added` at `at` leaves every field of the parse but the offsets as it
    is: `at` starts a line of the top-level header block (so the fields join that block and
    no later line changes meaning), is not before an mbox "From " line (which only the first
    line may be), and the block stays under the parser's field limit (so no field after them
    is cut off)."""
    root = parsed.root
    if not (0 <= at < root.body_start and (at == 0 or raw[at - 1:at] == b"\n")):
        return False
    if at == 0 and raw.startswith(b"From "):
        return False
    if not added.endswith(b"\n") or added[:1] in (b" ", b"\t", b"\r", b"\n"):
        return False
    lines = raw.count(b"\n", 0, root.body_start) + added.count(b"\n")
    return lines < MAX_HEADER_FIELDS


def moved(parsed: ParsedMessage, by: int) -> ParsedMessage:
    """`parsed` with every offset after the start of the top-level header moved by `by`."""
    root = _moved(parsed.root, by)
    root.header_start = parsed.root.header_start
    cache = {(start + by, end + by): value
             for (start, end), value in parsed.decoded_cache.items()}
    return replace(parsed, root=root, size=parsed.size + by, decoded_cache=cache)


def _moved(part: Part, by: int) -> Part:
    """A copy of `part` and its children, offsets moved; iterative, as deep as the parse."""
    top = replace(part, header_start=part.header_start + by, body_start=part.body_start + by,
                  body_end=part.body_end + by, children=list(part.children))
    todo = [top]
    while todo:
        node = todo.pop()
        node.children = [replace(c, header_start=c.header_start + by,
                                 body_start=c.body_start + by, body_end=c.body_end + by,
                                 children=list(c.children)) for c in node.children]
        todo.extend(node.children)
    return top
