"""IMAP SEARCH keys over the selected mailbox (RFC 3501 §6.4.4, RFC 9051 §6.4.4), through the
one query language (core.query) wherever it can say the same thing.

`to_query` compiles a search key to a core.query tree: flags and keywords, dates (internal
and sent), sizes, OLDER/YOUNGER, FROM/TO/CC/BCC/SUBJECT/HEADER as Header substrings, TEXT and
BODY as Text substrings, X-GM-LABELS as a mailbox, X-GM-RAW parsed by the query language itself.
The search service answers such a tree among the selected mailbox's emails (index trigrams
narrow, the store checks), so IMAP, JMAP and the web share the rules of each condition.

What only this session knows stays here: sequence numbers, UIDs, \\Recent and `$` (SEARCHRES)
belong to the session's view, and a key made only of those and flags is answered from the view
with no query at all (UNSEEN, UID ranges: what clients send most). MODSEQ, EMAILID, THREADID and
X-GM-MSGID/THRID read the stored record. A substring too short for the index to answer falls
back to reading the messages here, within the search's time budget (QueryTimeout: NO [LIMIT]).

BODY and TEXT search the text core.indextext defines once for the index and for that reading:
BODY the decoded text parts, text attachments, attachments' file names and the MIME headers of
the parts (as Dovecot: `BODY ".pdf"` finds a report.pdf attachment); TEXT that and every
top-level header field (Message-ID, Received ...).

Some keys mean more than the index and the stored columns hold, and are read from each
candidate's stored header block (one `get_heads` for all of them) instead:
- FROM/TO/CC/BCC are substrings of the field's decoded value (RFC 2047 words decoded, folding
  undone), display names, comments and group names included: `To: friends: a@x, b@y;` is found
  by `TO friends` (as Dovecot matches them; the index keeps only names and addresses).
- TEXT is header + body (RFC 3501 §6.4.4): the index answers the body (and subject and
  addresses), the decoded header block what appears only in a header.
- SENTBEFORE/SENTON/SENTSINCE compare the calendar day the Date: field itself names, in its own
  zone ("disregarding time and timezone"): `Date: Mon, 1 Jan 2024 23:30 -0500` is SENTON
  1-Jan-2024 although it is 2 January in UTC. BEFORE/ON/SINCE compare the internal date's day
  as FETCH INTERNALDATE shows it, which is in UTC (+0000), so a client that reads
  INTERNALDATE and searches by its day agrees with us (Dovecot does the same in its own
  server zone, the zone its INTERNALDATE is shown in).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_tz
from typing import TYPE_CHECKING, Any

from mailyard.core import query as q
from mailyard.core.ids import id_u64
from mailyard.core.indextext import header_block_text
from mailyard.core.mime import header_text
from mailyard.core.query import QueryError
from mailyard.core.sections import header_fields
from mailyard.protocols.imap import grammar as g
from mailyard.protocols.imap.session import Bad
from mailyard.services.search import body_text
from mailyard.store.ports import EmailRecord, QueryTimeout

if TYPE_CHECKING:
    from mailyard.protocols.imap.session import Session

_FLAG_KEYWORD = {"\\answered": "$answered", "\\deleted": "$deleted", "\\draft": "$draft",
                 "\\flagged": "$flagged", "\\seen": "$seen"}
_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "bcc"})
_FIELD_NAME = re.compile(r"^[^:\s]+\s*:", re.MULTILINE)
_FIELD_NAME_BYTES = re.compile(rb"^[^:\s]+\s*:")
_FIELD_BREAK = re.compile(rb"\n(?![ \t])")
"""A line break that ends a header field (the next line is no continuation)."""
_DATE_OPS = {"before": "before", "on": "on", "since": "after"}
_EVERYTHING = q.And(())
_NOTHING = q.Or(())


def _value(field: bytes) -> bytes:
    """A field's octets after its name and colon."""
    m = _FIELD_NAME_BYTES.match(field)
    return field if m is None else field[m.end():]


_NO_RECORD: Any = object()
"""Stands in for the record when only view keys are evaluated (they never read it)."""


def _children(key: Any) -> list[Any]:
    keys = getattr(key, "keys", None)
    if keys is not None:
        return list(keys)
    return [getattr(key, n) for n in ("a", "b", "key") if hasattr(key, n)]


def to_query(key: g.SearchKey, labels: dict[str, str], now: datetime) -> q.Node | None:
    """The core.query tree that means what `key` means, or None when some part of it is about
    this session's view or record fields the query language has no word for. `labels` maps
    mailbox names to ids (for X-GM-LABELS). Raises Bad for an X-GM-RAW that does not parse."""
    if isinstance(key, g.All):
        return _EVERYTHING
    if isinstance(key, g.And | g.Or):
        items = [to_query(k, labels, now) for k in _children(key)]
        if any(i is None for i in items):
            return None
        kept = tuple(i for i in items if i is not None)
        return q.And(kept) if isinstance(key, g.And) else q.Or(kept)
    if isinstance(key, g.Not):
        inner = to_query(key.key, labels, now)
        return None if inner is None else q.Not(inner)
    if isinstance(key, g.Flag | g.Keyword):
        if isinstance(key, g.Flag):
            keyword = _FLAG_KEYWORD.get(key.name.lower())
            if keyword is None:
                if key.name.lower() == "\\recent":
                    return None  # the session's own state (Selected.recent)
                return _NOTHING if key.present else _EVERYTHING
        else:
            keyword = key.name.lower()
        node: q.Node = q.Keyword(keyword)
        return node if key.present else q.Not(node)
    if isinstance(key, g.Date):
        if key.field == "sent":
            return None  # the Date: field's own day, read from the header block
        return q.Date(_DATE_OPS[key.op], key.date, "received")
    if isinstance(key, g.Within):
        at = now - timedelta(seconds=key.seconds)
        return q.Received("before" if key.op == "older" else "after", at)
    if isinstance(key, g.Size):
        return q.Size(key.op, key.n)
    if isinstance(key, g.Header):
        if key.name.lower() in _ADDRESS_HEADERS:
            return None  # group names and comments too: read from the header block
        return q.Header(key.name.lower(), key.value)
    if isinstance(key, g.Text | g.Body):
        if not key.value:
            return _EVERYTHING
        if isinstance(key, g.Text):
            return None  # header + body: the index's answer and the header block, joined
        return q.Text(key.value, field="body", substring=True)
    if isinstance(key, g.GmLabel):
        name = "INBOX" if key.label.lower() == "\\inbox" else key.label
        box = labels.get(name)
        return _NOTHING if box is None else q.Mailbox(box, by_id=True)
    if isinstance(key, g.GmRaw):
        try:
            return q.gmail_meaning(q.parse(key.query))
        except QueryError as e:
            raise Bad(f"X-GM-RAW: {e}") from None
    return None  # sequence numbers, UIDs, MODSEQ, EMAILID, THREADID, X-GM-MSGID/THRID


def _has(key: Any, kind: type) -> bool:
    return isinstance(key, kind) or any(_has(k, kind) for k in _children(key))


class _Context:
    """Per-SEARCH state: the subtrees the search service answered, and raw messages read
    lazily for the few keys that need them."""

    def __init__(self, session: Session, records: dict[str, EmailRecord]) -> None:
        self.session = session
        self.records = records
        self.bodies: dict[str, str] = {}
        """What BODY searches in each message read so far (core.indextext)."""
        self.deadline: float | None = None
        """When reading messages must stop: set by the first one read."""
        self.exact: dict[int, set[str]] = {}
        """Per key (by id): exactly the view's emails that match it."""
        self.text_hits: dict[int, set[str]] = {}
        """Per TEXT key (by id): the emails whose indexed text (body...) holds it."""
        self.labels: dict[str, str] | None = None
        self.heads: dict[str, bytes] | None = None
        """Header blocks of the candidates, read in one go when a key first needs one."""
        self.candidates_ids: Sequence[str] = ()

    def candidates(self, key: Any) -> set[str] | None:
        """A superset of the emails `key` can match; None: any."""
        if id(key) in self.exact:
            return self.exact[id(key)]
        if isinstance(key, g.And):
            known = [c for k in key.keys if (c := self.candidates(k)) is not None]
            return set.intersection(*known) if known else None
        if isinstance(key, g.Or):
            a, b = self.candidates(key.a), self.candidates(key.b)
            return None if a is None or b is None else a | b
        return None

    async def prepare(self, key: Any) -> None:
        """Hand the largest subtrees the query language can express to the search service,
        once each, before the per-message walk. A subtree of flags, sequence numbers and
        UIDs only is left to the view, which answers it without a query."""
        if _view_only(key):
            return
        s = self.session
        if self.labels is None and _has(key, g.GmLabel):
            self.labels = {b.name: b.id for b in await s.mailbox.mailboxes(s.user)}
        node = to_query(key, self.labels or {}, datetime.now(UTC))
        if node is None and isinstance(key, g.Text):
            node = q.Text(key.value, substring=True)
            with contextlib.suppress(ValueError):  # too short: the leaf reads the messages
                self.text_hits[id(key)] = await s.search.among(s.user, node, s.sel.email_ids)
            return
        if node is not None:
            try:
                self.exact[id(key)] = await s.search.among(s.user, node, s.sel.email_ids)
                return
            except ValueError:
                pass  # a substring too short for the index: its leaf reads the messages
        for child in _children(key):
            await self.prepare(child)

    async def body_of(self, record: EmailRecord) -> str:
        """BODY's text of one message, lower-cased, for a needle the index cannot answer;
        raises QueryTimeout once reading them has taken the search's whole budget."""
        if record.id not in self.bodies:
            s = self.session
            now = time.monotonic()
            if self.deadline is None:
                self.deadline = now + s.search.query_seconds
            elif now > self.deadline:
                raise QueryTimeout("reading the messages for a short needle ran past the"
                                   f" search's time budget ({s.search.query_seconds:g} s)")
            self.bodies[record.id] = (await body_text(s.mailbox, record)).lower()
        return self.bodies[record.id]

    async def head_of(self, email_id: str) -> bytes:
        """The stored header block; the first call reads those of every candidate at once."""
        if self.heads is None:
            self.heads = {}
            ids = list(self.candidates_ids)
            s = self.session
            for start in range(0, len(ids), 2000):
                for head in await s.mailbox.get_heads(s.user, ids[start:start + 2000]):
                    self.heads[head.id] = head.head
        if email_id not in self.heads:  # not a candidate after all (never expected)
            s = self.session
            found = await s.mailbox.get_heads(s.user, [email_id])
            self.heads[email_id] = found[0].head if found else b""
        return self.heads[email_id]


def _day(ms: int | None) -> date | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).date()


def _compare(value: date | None, op: str, target: date) -> bool:
    if value is None:
        return False
    return {"before": value < target, "on": value == target, "since": value >= target}[op]


def field_text(head: bytes, name: str) -> str | None:
    """The decoded values of the header fields called `name` (all of them, unfolded, RFC 2047
    words decoded, runs of white space as one space, lower-cased); None without such a field."""
    block = header_fields(head, [name], exclude=False)
    if block == b"\r\n":
        return None
    text = " ".join(header_text(_value(f)) for f in _FIELD_BREAK.split(block))
    return " ".join(text.split()).lower()


def head_text(head: bytes) -> str:
    """The whole header block decoded as `field_text` decodes one field (names included),
    lower-cased: core.indextext.header_block_text, which decodes part headers for BODY too.

    Each field's octets are read on their own (`mime.header_text`: UTF-8 when they are, else
    one character per octet, so that raw 8-bit text inside an encoded word is decoded in the
    word's charset): decoding the block with "replace" first turned the raw octet 0xF6 in
    `=?iso-8859-1?Q?Fr?sche?=` into "?", not "ö"; and a Latin-1 field must not change how
    a UTF-8 field next to it reads."""
    return header_block_text(head).lower()


def sent_day(head: bytes) -> date | None:
    """The calendar day the Date: field names, in its own zone (RFC 3501 §6.4.4 SENTON:
    "disregarding time and timezone"); None when there is no Date: field that parses."""
    block = header_fields(head, ["date"], exclude=False)
    if block == b"\r\n":
        return None
    value = _FIELD_NAME.sub(" ", block.decode("utf-8", "replace").split("\n")[0]).strip()
    parsed = parsedate_tz(value)
    if parsed is None:
        return None
    try:
        return date(parsed[0], parsed[1], parsed[2])
    except ValueError:
        return None


def _needle(value: str) -> str:
    return " ".join(value.split()).lower() if value.strip() else value.lower()


async def _matches(ctx: _Context, key: Any, index: int, record: EmailRecord) -> bool:
    s = ctx.session
    sel = s.sel
    exact = ctx.exact.get(id(key))
    if exact is not None:
        return sel.email_ids[index] in exact
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
        name = key.name.lower()
        if name == "\\recent":  # RFC 3501 §2.3.2: this session's own \\Recent state
            return bool(sel.is_recent(sel.uids[index]) == key.present)
        has = _FLAG_KEYWORD.get(name, "") in sel.keywords_at(index)
        return bool(has == key.present)
    if kind == "Keyword":
        return bool((key.name.lower() in sel.keywords_at(index)) == key.present)
    if kind == "Within":
        age_s = (datetime.now(UTC).timestamp() * 1000 - record.received_at) / 1000
        return bool(age_s > key.seconds if key.op == "older" else age_s < key.seconds)
    if kind == "Date":
        if key.field == "sent":
            day = sent_day(await ctx.head_of(sel.email_ids[index]))
            return _compare(day, key.op, key.date)
        return _compare(_day(record.received_at), key.op, key.date)
    if kind == "Size":
        return bool(record.size > key.n if key.op == "larger" else record.size < key.n)
    if kind == "ModSeq":
        return bool(record.modseq >= key.n)
    if kind == "EmailId":
        return bool(record.id == key.id)
    if kind == "ThreadId":
        return bool(record.thread_id == key.id)
    if kind == "GmMsgId":
        return bool(id_u64(record.id) == key.id)
    if kind == "GmThrId":
        return bool(id_u64(record.thread_id) == key.id)
    if kind == "Header":
        value = field_text(await ctx.head_of(sel.email_ids[index]), key.name)
        return value is not None and _needle(key.value) in value
    if kind == "Text":
        hits = ctx.text_hits.get(id(key))
        if hits is not None and sel.email_ids[index] in hits:
            return True
        if _needle(key.value) in head_text(await ctx.head_of(sel.email_ids[index])):
            return True
        if hits is not None:
            return False
    if kind in ("Text", "Body"):  # a needle too short for the index: read the message
        return key.value.lower() in await ctx.body_of(record)
    if kind == "GmLabel":
        label = key.label
        if label.lower() == "\\inbox":
            label = "INBOX"
        return label in record.mailboxes
    if kind == "GmRaw":
        raise Bad("X-GM-RAW: a substring in it is too short to search for")
    return False


_VIEW_KEYS = frozenset({"All", "And", "Or", "Not", "SeqSet", "Uid", "Flag", "Keyword"})


def _view_only(key: Any) -> bool:
    """Made of the session's view alone (UIDs, sequence numbers, flags): nothing to ask."""
    return type(key).__name__ in _VIEW_KEYS and all(_view_only(k) for k in _children(key))


def needs_records(key: Any, exact: dict[int, set[str]],
                  text_hits: dict[int, set[str]] | None = None) -> bool:
    """Whether `key` reads anything beyond the session's view (UIDs, sequence, flags), the
    header blocks (FROM/TO/CC/BCC/HEADER, SENT*, TEXT once the index answered its body part)
    and the subtrees the search service answered: the common client searches (UNSEEN,
    FLAGGED, UID ranges, FROM, TEXT ...) then load no record at all."""
    if id(key) in exact:
        return False
    kind = type(key).__name__
    if kind == "Header" or (kind == "Date" and key.field == "sent"):
        return False
    if kind == "Text" and text_hits is not None and id(key) in text_hits:
        return False
    if kind not in _VIEW_KEYS:
        return True
    return any(needs_records(k, exact, text_hits) for k in _children(key))


Loader = Callable[[list[int]], Awaitable[dict[str, EmailRecord]]]


async def evaluate(session: Session, key: Any, load: Loader) -> tuple[list[int],
                                                                       dict[str, EmailRecord]]:
    """The 0-based indexes of the selected view's messages that match `key`, and the records it
    read. The search service answers what the query language can say first, so records are
    loaded only for the keys it cannot (MODSEQ, EMAILID ...) and only for its candidates."""
    ctx = _Context(session, {})
    await ctx.prepare(key)
    sel = session.sel
    allowed = ctx.candidates(key)
    indexes = [i for i, e in enumerate(sel.email_ids) if allowed is None or e in allowed]
    records = await load(indexes) if needs_records(key, ctx.exact, ctx.text_hits) else None
    ctx.records = records or {}
    ctx.candidates_ids = [sel.email_ids[i] for i in indexes]
    out = []
    for index in indexes:
        email_id = sel.email_ids[index]
        record = records.get(email_id) if records is not None else _NO_RECORD
        if record is not None and await _matches(ctx, key, index, record):
            out.append(index)
    return out, ctx.records
