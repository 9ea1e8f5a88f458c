"""core.query trees without text, compiled to PostgreSQL over the mail store's own columns.

The same half of a search as store/sqlite/filters.py (flags, labels, dates, sizes, attachments,
Message-ID, headers, thread keywords), read from the rows IMAP and JMAP write, so a flag set a
millisecond ago is already searchable. The condition is a WHERE clause over `emails e`;
parameters are bound ($n), never formatted in.

Header conditions need the header block decoded (RFC 2047 encoded words, folding), which is
Python's job, not SQL's: the caller first finds the emails whose stored header block matches each
Header node (`header_nodes`, `header_matches`) and hands the answers in as id lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from mailyard.core import query as q
from mailyard.core.mime import header_text
from mailyard.core.sections import header_fields

_FIELD_NAME = re.compile(rb"^[^:\s]+\s*:")
_FIELD_BREAK = re.compile(rb"\n(?![ \t])")
"""A line break that ends a header field (the next line is no continuation)."""


def _value(field: bytes) -> bytes:
    """A field's octets after its name and colon."""
    m = _FIELD_NAME.match(field)
    return field if m is None else field[m.end():]

TRUE, FALSE = "TRUE", "FALSE"


def _day_ms(day: date) -> int:
    return int(datetime.combine(day, time(), UTC).timestamp() * 1000)


class Compiler:
    """Turns one tree into SQL, numbering its parameters after those already in `args`."""

    def __init__(self, args: list[Any],
                 headers: Mapping[q.Header, Sequence[str]] | None = None) -> None:
        self.args = args
        self.headers = headers or {}

    def param(self, value: Any, cast: str = "") -> str:
        self.args.append(value)
        return f"${len(self.args)}{cast}"

    def keyword(self, alias: str, keyword: str) -> str:
        # Containment (@>) is what the GIN index on keywords answers.
        return f"{alias}.keywords @> ARRAY[{self.param(keyword.lower(), '::text')}]"

    def where(self, node: q.Node) -> str:
        if isinstance(node, q.And):
            parts = [self.where(n) for n in node.items]
            return "(" + " AND ".join(parts) + ")" if parts else TRUE
        if isinstance(node, q.Or):
            parts = [self.where(n) for n in node.items]
            return "(" + " OR ".join(parts) + ")" if parts else FALSE
        if isinstance(node, q.Not):
            return f"NOT {self.where(node.item)}"
        if isinstance(node, q.Anywhere):
            return TRUE
        if isinstance(node, q.Keyword):
            return self.keyword("e", node.keyword)
        if isinstance(node, q.Mailbox):
            if not node.by_id:
                raise ValueError("mailbox names are resolved to ids before the store sees them")
            return ("EXISTS (SELECT 1 FROM mailbox_emails me WHERE me.account_id = e.account_id"
                    f" AND me.email_id = e.id AND me.mailbox_id = {self.param(node.name)})")
        if isinstance(node, q.HasAttachment):
            return "e.has_attachment"
        if isinstance(node, q.Size):
            return f"e.size {'>' if node.op == 'larger' else '<'} {self.param(node.size)}"
        if isinstance(node, q.Date):
            column = "e.received_at" if node.field == "received" else "e.sent_at"
            start = _day_ms(node.day)
            if node.op == "before":
                return f"{column} < {self.param(start)}"
            if node.op == "after":
                return f"{column} >= {self.param(start)}"
            end = _day_ms(node.day + timedelta(days=1))
            return f"({column} >= {self.param(start)} AND {column} < {self.param(end)})"
        if isinstance(node, q.Received):
            at = self.param(int(node.at.timestamp() * 1000))
            return f"e.received_at < {at}" if node.op == "before" else f"e.received_at >= {at}"
        if isinstance(node, q.MessageId):
            return f"e.message_id = {self.param(node.value.strip().strip('<>'))}"
        if isinstance(node, q.Header):
            if node not in self.headers:
                raise ValueError("header conditions are answered before the query is compiled")
            return f"e.id = ANY({self.param(list(self.headers[node]), '::text[]')})"
        if isinstance(node, q.ThreadKeyword):
            inner = self.keyword("t", node.keyword)
            same = ("SELECT 1 FROM emails t WHERE t.account_id = e.account_id"
                    " AND t.thread_id = e.thread_id")
            if node.mode == "some":
                return f"EXISTS ({same} AND {inner})"
            if node.mode == "none":
                return f"NOT EXISTS ({same} AND {inner})"
            return f"NOT EXISTS ({same} AND NOT {inner})"
        raise ValueError(f"the mail store cannot answer {type(node).__name__}")


def header_nodes(node: q.Node) -> Iterator[q.Header]:
    """Every Header condition in the tree (they are answered before compiling)."""
    if isinstance(node, (q.And, q.Or)):
        for item in node.items:
            yield from header_nodes(item)
    elif isinstance(node, q.Not):
        yield from header_nodes(node.item)
    elif isinstance(node, q.Header):
        yield node


def header_matches(head: bytes | None, name: str, value: str) -> bool:
    """Whether the stored header block has field `name` containing `value` (case-insensitively;
    an empty value asks only that the field be present), as the SQLite engine's SQL function."""
    if not head:
        return False
    block = header_fields(head, [name], exclude=False)
    if block == b"\r\n":
        return False
    if not value:
        return True
    # Each field's octets go to `header_text` as they are: decoding them with "replace"
    # first turned raw 8-bit text inside an encoded word (the octet 0xF6 in
    # =?iso-8859-1?Q?Fr?sche?=) into "?", which no search for "Frösche" finds.
    text = " ".join(header_text(_value(f)) for f in _FIELD_BREAK.split(block))
    return value.lower() in " ".join(text.split()).lower()
