"""IMAP SEARCH keys evaluated over the selected mailbox (RFC 3501 §6.4.4, RFC 9051 §6.4.4).

Flag, date, size, UID and sequence keys read the stored metadata; header and text keys read the
message itself with IMAP's case-insensitive substring semantics. The query language and the
full-text index of the search issue replace the text half; the metadata half stays here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from mailyard.core.mime import decode_words
from mailyard.core.query import QueryError
from mailyard.protocols.imap.session import Bad
from mailyard.store.ports import EmailRecord

if TYPE_CHECKING:
    from mailyard.protocols.imap.session import Session

_FLAG_KEYWORD = {"\\answered": "$answered", "\\deleted": "$deleted", "\\draft": "$draft",
                 "\\flagged": "$flagged", "\\seen": "$seen"}
_ADDRESS_FIELDS = {"FROM": "from_", "TO": "to", "CC": "cc"}


_NO_RECORD: Any = object()
"""Stands in for the record when only view keys are evaluated (they never read it)."""


class _Context:
    """Per-SEARCH lazy state: raw messages are read only if a text key needs them."""

    def __init__(self, session: Session, records: dict[str, EmailRecord]) -> None:
        self.session = session
        self.records = records
        self.raw: dict[str, bytes] = {}
        self.hits: dict[int, set[str] | None] = {}
        """Per text key (by id): the emails the search index says contain its value."""

    def candidates(self, key: Any) -> set[str] | None:
        """A superset of the emails `key` can match, from the index answers; None: any."""
        kind = type(key).__name__
        if self.hits.get(id(key)) is not None:
            return self.hits[id(key)]
        if kind == "And":
            known = [c for k in key.keys if (c := self.candidates(k)) is not None]
            return set.intersection(*known) if known else None
        if kind == "Or":
            a, b = self.candidates(key.a), self.candidates(key.b)
            return None if a is None or b is None else a | b
        return None

    async def prepare(self, key: Any) -> None:
        """Ask the index once per text key, before the per-message walk."""
        kind = type(key).__name__
        field = {"Text": None, "Body": "body"}.get(kind, "")
        if kind == "Header" and key.name.upper() == "SUBJECT":
            field = "subject"
        elif kind == "Header" and key.name.upper() in _ADDRESS_FIELDS and not set("<>") & set(
                key.value):  # the index holds names and addresses, not "name <address>"
            field = "addresses"
        if field != "" and key.value:
            self.hits[id(key)] = await self.session.mailbox.substring(
                self.session.user, field, key.value)
        if kind == "GmRaw":
            # The query language itself (the search issue): every email of the account that
            # matches, Spam and Trash included, since the client chose the mailbox to search.
            try:
                hits = await self.session.search.search(self.session.user, key.query,
                                                        limit=None, gmail_scope=False)
            except QueryError as e:
                raise Bad(f"X-GM-RAW: {e}") from None
            self.hits[id(key)] = set(hits.ids)
        for child in getattr(key, "keys", None) or [getattr(key, n) for n in ("a", "b", "key")
                                                      if hasattr(key, n)]:
            await self.prepare(child)

    async def raw_of(self, record: EmailRecord) -> bytes:
        if record.id not in self.raw:
            self.raw[record.id] = await self.session.mailbox.raw_of(record)
        return self.raw[record.id]


def _day(ms: int | None) -> date | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).date()


def _compare(value: date | None, op: str, target: date) -> bool:
    if value is None:
        return False
    return {"before": value < target, "on": value == target, "since": value >= target}[op]


def _header_value(raw: bytes, name: str) -> str:
    end = raw.find(b"\r\n\r\n")
    block = raw[: end if end >= 0 else len(raw)].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    wanted = name.lower().encode() + b":"
    values = [line[len(wanted):].strip() for line in block.split(b"\r\n")
              if line.lower().startswith(wanted)]
    return " ".join(decode_words(v.decode("utf-8", "replace")) for v in values)


async def _matches(ctx: _Context, key: Any, index: int, record: EmailRecord) -> bool:
    s = ctx.session
    sel = s.sel
    kind = type(key).__name__
    if kind == "All":
        return True
    if kind == "And":
        for k in key.keys:
            if not await _matches(ctx, k, index, record):
                return False
        return True
    if kind == "Or":
        return (await _matches(ctx, key.a, index, record)
                or await _matches(ctx, key.b, index, record))
    if kind == "Not":
        return not await _matches(ctx, key.key, index, record)
    if kind in ("SeqSet", "Uid") and key.set.is_saved:
        return sel.uids[index] in s.saved_uids
    if kind == "SeqSet":
        return bool(key.set.contains(index + 1, len(sel.uids)))
    if kind == "Uid":
        return bool(key.set.contains(sel.uids[index], sel.uids[-1]))
    if kind == "Flag":
        # \\Recent has no keyword: no message is recent here (IMAP4rev2 removed the flag).
        has = _FLAG_KEYWORD.get(key.name.lower(), "") in sel.keywords[index]
        return bool(has == key.present)
    if kind == "Keyword":
        return bool((key.name.lower() in sel.keywords[index]) == key.present)
    if kind == "Within":
        age_s = (datetime.now(UTC).timestamp() * 1000 - record.received_at) / 1000
        return bool(age_s > key.seconds if key.op == "older" else age_s < key.seconds)
    if kind == "Date":
        ms = record.received_at if key.field == "internal" else record.sent_at
        return _compare(_day(ms), key.op, key.date)
    if kind == "Size":
        return bool(record.size > key.n if key.op == "larger" else record.size < key.n)
    if kind == "ModSeq":
        return bool(record.modseq >= key.n)
    if kind == "EmailId":
        return bool(record.id == key.id)
    if kind == "ThreadId":
        return bool(record.thread_id == key.id)
    hits = ctx.hits.get(id(key))
    if hits is not None and record.id not in hits:
        return False  # the index knows it is not there; a hit is still checked below
    if kind in ("Text", "Body") and hits is not None:
        return True  # the index holds the decoded text, which is what TEXT/BODY search
    if kind == "Header":
        needle = key.value.lower()
        name = key.name.upper()
        if name == "SUBJECT":
            return needle in record.subject.lower()
        if name in _ADDRESS_FIELDS:
            for a in getattr(record, _ADDRESS_FIELDS[name]):
                if needle in f"{a['name']} <{a['email']}>".lower():
                    return True
            return False
        raw = await ctx.raw_of(record)
        value = _header_value(raw, key.name)
        return (needle in value.lower()) if needle else bool(value) or (
            key.name.lower().encode() + b":" in raw[:raw.find(b"\r\n\r\n")].lower())
    if kind in ("Text", "Body"):
        raw = await ctx.raw_of(record)
        end = raw.find(b"\r\n\r\n")
        scope = raw if kind == "Text" else raw[end + 4:] if end >= 0 else b""
        return key.value.lower().encode() in scope.lower()
    if kind == "GmLabel":
        label = key.label
        if label.lower() == "\\inbox":
            label = "INBOX"
        return label in record.mailboxes
    if kind == "GmRaw":
        return hits is not None  # the query language answered for the whole key
    return False


_VIEW_KEYS = frozenset({"All", "And", "Or", "Not", "SeqSet", "Uid", "Flag", "Keyword"})


def needs_records(key: Any) -> bool:
    """Whether `key` reads anything beyond the session's view (UIDs, sequence, flags): the
    common client searches (UNSEEN, FLAGGED, UID ranges) then cost no store query at all."""
    kind = type(key).__name__
    if kind not in _VIEW_KEYS:
        return True
    children = getattr(key, "keys", None) or [getattr(key, n) for n in ("a", "b", "key")
                                              if hasattr(key, n)]
    return any(needs_records(k) for k in children)


Loader = Callable[[list[int]], Awaitable[dict[str, EmailRecord]]]


async def evaluate(session: Session, key: Any, load: Loader) -> tuple[list[int],
                                                                       dict[str, EmailRecord]]:
    """The 0-based indexes of the selected view's messages that match `key`, and the records it
    read. The index narrows the messages first, so only candidates' records are loaded (none at
    all when the key reads only flags, UIDs and sequence numbers)."""
    ctx = _Context(session, {})
    await ctx.prepare(key)
    sel = session.sel
    allowed = ctx.candidates(key)
    indexes = [i for i, e in enumerate(sel.email_ids) if allowed is None or e in allowed]
    records = await load(indexes) if needs_records(key) else None
    ctx.records = records or {}
    out = []
    for index in indexes:
        email_id = sel.email_ids[index]
        record = records.get(email_id) if records is not None else _NO_RECORD
        if record is not None and await _matches(ctx, key, index, record):
            out.append(index)
    return out, ctx.records
