"""core.query trees without text, compiled to SQL over the mail store's own columns.

This is the half of a search that must not wait for the asynchronous text index (flags, labels,
dates, sizes, attachments, Message-ID): it reads the same rows IMAP and JMAP write, so a flag
set a millisecond ago is already searchable. The compiled condition is a WHERE clause over
`emails e`; parameters are bound, never formatted in.
"""

from __future__ import annotations

import re
import sqlite3
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

TRUE, FALSE = "1", "0"
RARE_SIZE, RARE_SHARE = 1 << 20, 0.01
"""`larger:` a size from RARE_SIZE up is told to SQLite's planner to hold about RARE_SHARE of
the emails (likelihood()): without STAT4 it guesses a quarter for any range, and with the
account's statistics it read `larger:1M`'s first page by walking the account's emails newest
first, reading each one's size (100 ms at 100,000 emails, 197 matches), instead of the
matches' range of emails_sort_size and a sort of those few (0.05 ms). Smaller thresholds
keep the guess: `larger:10K` holds most mail, whose first page the newest-first walk ends
early."""


def _day_ms(day: date) -> int:
    return int(datetime.combine(day, time(), UTC).timestamp() * 1000)


def _like(keyword: str) -> str:
    """LIKE pattern for a keyword inside the JSON list column, with LIKE's wildcards escaped."""
    quoted = '"' + keyword.lower().replace('\\', '\\\\').replace('"', '\\"') + '"'
    return "%" + quoted.replace("^", "^^").replace("%", "^%").replace("_", "^_") + "%"


FLAGGED = "$flagged"
FLAGGED_WHERE = f"keywords LIKE '{_like(FLAGGED)}' ESCAPE '^'"
"""The condition of mail.db's partial index `emails_flagged` (schema.py): the starred emails
(Gmail's is:starred, IMAP FLAGGED, JMAP hasKeyword $flagged), ~3 % of a mailbox. A count of
them walked every email's keywords in emails_narrow (40 ms at 100,000 emails); through the
index, its ~3,000 entries (0.3 ms). SQLite uses a partial index only for a query whose WHERE
holds the index's own condition, written out: the same LIKE with the pattern bound as a
parameter is not recognised, so _has_keyword writes this one in (a constant of this module,
never user text)."""
assert "'" not in _like(FLAGGED)


def _has_keyword(alias: str, keyword: str, args: list[Any]) -> str:
    if keyword.lower() == FLAGGED:
        return f"{alias}.{FLAGGED_WHERE}"
    args.append(_like(keyword))
    return f"{alias}.keywords LIKE ? ESCAPE '^'"


def compile_where(node: q.Node, args: list[Any]) -> str:
    """SQL for `node` over `emails e`, appending its parameters to `args`."""
    if isinstance(node, q.And):
        parts = [compile_where(n, args) for n in node.items]
        return "(" + " AND ".join(parts) + ")" if parts else TRUE
    if isinstance(node, q.Or):
        parts = [compile_where(n, args) for n in node.items]
        return "(" + " OR ".join(parts) + ")" if parts else FALSE
    if isinstance(node, q.Not):
        return f"NOT {compile_where(node.item, args)}"
    if isinstance(node, q.Anywhere):
        return TRUE
    if isinstance(node, q.Keyword):
        return _has_keyword("e", node.keyword, args)
    if isinstance(node, q.Mailbox):
        if not node.by_id:
            raise ValueError("mailbox names are resolved to ids before the store sees them")
        args.append(node.name)
        return ("EXISTS (SELECT 1 FROM mailbox_emails me WHERE me.email_id = e.id"
                " AND me.mailbox_id = ?)")
    if isinstance(node, q.HasAttachment):
        return "e.has_attachment = 1"
    if isinstance(node, q.Size):
        args.append(node.size)
        if node.op == "larger" and node.size >= RARE_SIZE:
            return f"likelihood(e.size > ?, {RARE_SHARE})"
        return "e.size > ?" if node.op == "larger" else "e.size < ?"
    if isinstance(node, q.Date):
        column = "e.received_at" if node.field == "received" else "e.sent_at"
        start = _day_ms(node.day)
        if node.op == "before":
            args.append(start)
            return f"{column} < ?"
        if node.op == "after":
            args.append(start)
            return f"{column} >= ?"
        args += [start, _day_ms(node.day + timedelta(days=1))]
        return f"({column} >= ? AND {column} < ?)"
    if isinstance(node, q.Received):
        args.append(int(node.at.timestamp() * 1000))
        return "e.received_at < ?" if node.op == "before" else "e.received_at >= ?"
    if isinstance(node, q.MessageId):
        args.append(node.value.strip().strip("<>"))
        return "e.message_id = ?"
    if isinstance(node, q.Header):
        args += [node.name, node.value]
        return "header_contains(e.head, ?, ?)"
    if isinstance(node, q.ThreadKeyword):
        inner = _has_keyword("t", node.keyword, args)
        same = ("SELECT 1 FROM emails t WHERE t.account_id = e.account_id"
                " AND t.thread_id = e.thread_id")
        if node.mode == "some":
            return f"EXISTS ({same} AND {inner})"
        if node.mode == "none":
            return f"NOT EXISTS ({same} AND {inner})"
        return f"NOT EXISTS ({same} AND NOT {inner})"
    raise ValueError(f"the mail store cannot answer {type(node).__name__}")


def header_contains(head: bytes | None, name: str, value: str) -> int:
    """SQL function: whether the stored header block has field `name` containing `value`
    (case-insensitively; an empty value asks only that the field be present)."""
    if not head:
        return 0
    block = header_fields(head, [name], exclude=False)
    if block == b"\r\n":
        return 0
    if not value:
        return 1
    # Each field's octets go to `header_text` as they are: decoding them with "replace"
    # first turned raw 8-bit text inside an encoded word (the octet 0xF6 in
    # =?iso-8859-1?Q?Fr?sche?=) into "?", which no search for "Frösche" finds.
    text = " ".join(header_text(_value(f)) for f in _FIELD_BREAK.split(block))
    return int(value.lower() in " ".join(text.split()).lower())


def register(conn: sqlite3.Connection) -> None:
    conn.create_function("header_contains", 3, header_contains, deterministic=True)
