"""The search query language: Gmail's operators, parsed to one tree that every engine reads.

The webmail search box, the CLI, IMAP's X-GM-RAW, IMAP SEARCH and JMAP Email/query all end up as
these nodes, so a search means the same thing whichever door it came through, and the planner
(services.search) and the engines (store.sqlite) are written once.

Choices the grammar makes, each where Gmail is silent or where a server needs more than Gmail:

- Precedence follows Gmail: `OR` (upper-case only) and `|` bind tighter than the implicit AND,
  so `a b OR c` is `a AND (b OR c)`. An explicit upper-case `AND` is only a separator.
  `-term` negates; there is no `NOT` keyword (Gmail has none: `NOT` is a word).
  `( )` groups, `{a b c}` is Gmail's OR-group, and an operator before a group applies to each
  bare word or phrase inside it: `subject:(a OR b)` is `subject:a OR subject:b`. An operator
  written inside such a group keeps its own meaning (`subject:(a from:b)`).
- An unknown operator (`foo:bar`, `category:x`, a pasted `http://...`) is searched as the word it
  is: `Text("foo:bar")` (a phrase if its value was quoted). The text index tokenizes it as the
  words "foo" and "bar" next to each other, which is what a user who typed it most likely wants
  found. An operator with no value (`before:` alone) is such a word too.
- A known operator whose value it cannot read (`before:someday`, `larger:huge`,
  `older_than:xyz`, `is:muted`, `has:drive`) raises QueryError naming the operator and what
  it takes: read as words, these found nothing and answered "0 found" to a query the user
  believed was a filter.
- Malformed structure raises QueryError naming a 1-based position too: unbalanced brackets, an
  unterminated quote, `OR`/`|`/`AND` with nothing on one side, `-` with nothing after it, and
  nesting (groups plus negations) deeper than MAX_DEPTH, which bounds the recursion of every
  tree walker downstream. A `-` standing alone between spaces (`a - b`) is punctuation and is
  ignored, as Gmail ignores it; one with no term after it at all is an error, because the user
  evidently meant to exclude something.
- Sizes take K, M and G (optionally followed by B, any case) as powers of 1024: IMAP clients and
  users think of "10M" as a size of a file, and RFC822.SIZE is bytes.
- Inside quotes only `\\"` and `\\\\` are escapes; any other backslash is kept, so a pasted
  Windows path `"C:\\temp"` means what it says.

Extension operators, so that every node has a text form (`parse(format(n)) == n`; a saved
search or an X-GM-RAW argument can carry anything JMAP or IMAP asked for):

    body:WORD                     Text(field="body")
    words:[FIELD:]"v a l"         Text(phrase=False) whose value is not one bare word
    substring:[FIELD:]"v"         Text(substring=True)      (IMAP SEARCH semantics)
    substring-phrase:[FIELD:]"v"  Text(substring=True, phrase=True)
    on:2026/11/28                 Date("on")
    sent-before: sent-after: sent-on:   Date(field="sent")
    received-before:2026-11-28T10:00:00Z  received-after:   Received (an instant, UTC)
    keyword:$label                Keyword (any IMAP keyword; lower-cased)
    mailbox-id:ID                 Mailbox(by_id=True)
    header:NAME:"value"           Header (an empty value asks only that the field be present)
    thread-keyword:all:$seen      ThreadKeyword (all | some | none)
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from dataclasses import field as _field
from typing import Any, Protocol, TypeAlias, TypeVar

__all__ = [
    "KEYWORD_LABELS",
    "LABEL_ROLES",
    "MAX_DEPTH",
    "ROLE_NAMES",
    "TEXT_FIELDS",
    "Age",
    "And",
    "Anywhere",
    "Date",
    "FilterError",
    "HasAttachment",
    "Header",
    "Keyword",
    "Mailbox",
    "MessageId",
    "Node",
    "Not",
    "Or",
    "QueryError",
    "Received",
    "Size",
    "Text",
    "ThreadKeyword",
    "format",
    "from_jmap",
    "label_key",
    "named_mailbox",
    "normalise",
    "parse",
    "unknown_mailboxes",
]

UTC = datetime.UTC

# ---------------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class Text:
    """Words or an exact phrase, in one field or (field None) anywhere in the message."""

    value: str
    field: str | None = None
    """None | "from" | "to" | "cc" | "bcc" | "subject" | "body" | "filename" | "list"."""
    phrase: bool = False
    substring: bool = False
    """IMAP SEARCH's case-insensitive substring match, which the word index cannot answer."""


@dataclass(frozen=True, slots=True)
class Keyword:
    keyword: str
    """Lower-cased, as JMAP keywords are case-insensitive: "$seen", "$flagged", "work" ..."""


@dataclass(frozen=True, slots=True)
class Mailbox:
    name: str
    """A role name ("inbox", "sent", ...) or a label as the user wrote it; an id if by_id."""
    by_id: bool = False
    written: str = _field(default="", compare=False, repr=False)
    """The operator and value as the query wrote them ("label:Work"), for an error that
    names them; "" when the node was not parsed from text."""


@dataclass(frozen=True, slots=True)
class Anywhere:
    """in:anywhere: Gmail leaves Spam and Trash out of a search unless the query says this."""


@dataclass(frozen=True, slots=True)
class HasAttachment:
    pass


@dataclass(frozen=True, slots=True)
class Date:
    """A calendar day (UTC): "before" is < its start, "after" is >= its start (Gmail's after:
    and IMAP SINCE agree on that), "on" is within it."""

    op: str
    day: datetime.date
    field: str = "received"
    """"received" (arrival, Gmail and IMAP BEFORE/SINCE) or "sent" (the Date: header)."""


@dataclass(frozen=True, slots=True)
class Received:
    """An instant, as JMAP's before/after give one: "before" is receivedAt < at, "after" is
    receivedAt >= at. `at` is timezone-aware."""

    op: str
    at: datetime.datetime


@dataclass(frozen=True, slots=True)
class Age:
    """older_than:/newer_than:, kept relative so a stored query stays "the last week"."""

    op: str
    """"older" | "newer"."""
    amount: int
    unit: str
    """"d" | "m" | "y"."""


@dataclass(frozen=True, slots=True)
class Size:
    op: str
    """"larger" (size > bytes) | "smaller" (size < bytes)."""
    size: int


@dataclass(frozen=True, slots=True)
class MessageId:
    value: str
    """Without the angle brackets."""


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    """Lower-case field name."""
    value: str
    """Contained in the field's decoded value; "" asks only that the field be present."""


@dataclass(frozen=True, slots=True)
class ThreadKeyword:
    mode: str
    """"all" | "some" | "none" of the emails of the thread have `keyword`."""
    keyword: str


@dataclass(frozen=True, slots=True)
class And:
    """Every item matches; And(()) matches everything (the empty query)."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Some item matches; Or(()) matches nothing."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node: TypeAlias = (
    Text | Keyword | Mailbox | Anywhere | HasAttachment | Date | Received | Age | Size
    | MessageId | Header | ThreadKeyword | And | Or | Not
)


class QueryError(ValueError):
    """A query whose structure cannot be read; `position` is 1-based, for the user to find."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.message = message
        self.position = position


class FilterError(ValueError):
    """A JMAP filter this module cannot compile. `unsupported` tells JMAP which error to answer:
    an unknown property is unsupportedFilter, a known one of the wrong type invalidArguments."""

    def __init__(self, prop: str, *, unsupported: bool = False) -> None:
        kind = "unsupported" if unsupported else "invalid"
        super().__init__(f"{kind} filter property {prop!r}")
        self.property = prop
        self.unsupported = unsupported


MAX_DEPTH = 64
"""Nesting (groups and negations) a query may have: a bound on recursion for every tree walker."""

# ---------------------------------------------------------------------------------- building


def _and(items: Iterable[Node]) -> Node:
    flat: list[Node] = []
    for item in items:
        if isinstance(item, And):
            flat.extend(item.items)
        else:
            flat.append(item)
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def _or(items: Iterable[Node]) -> Node:
    flat: list[Node] = []
    for item in items:
        if isinstance(item, Or):
            flat.extend(item.items)
        else:
            flat.append(item)
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def normalise(node: Node) -> Node:
    """The tree parse() would give for the same query: And in And and Or in Or flattened,
    single-item And/Or replaced by their item. Not(Not(x)) is kept: it is what was asked."""
    if isinstance(node, And):
        return _and(normalise(n) for n in node.items)
    if isinstance(node, Or):
        return _or(normalise(n) for n in node.items)
    if isinstance(node, Not):
        return Not(normalise(node.item))
    return node


# ---------------------------------------------------------------------------------- values

TEXT_FIELDS = ("from", "to", "cc", "bcc", "subject", "body", "filename", "list")
ROLE_NAMES = frozenset(
    ("inbox", "sent", "drafts", "trash", "spam", "important", "starred", "all"))
"""Mailbox names compared case-insensitively (and so stored lower-cased); labels keep their case."""

LABEL_ROLES: dict[str, str] = {
    "inbox": "inbox", "sent": "sent", "drafts": "drafts", "draft": "drafts", "trash": "trash",
    "spam": "junk", "junk": "junk", "archive": "archive", "all": "all"}
"""Names a query gives a mailbox by its role (RFC 8621 roles): in:spam is the junk one."""
KEYWORD_LABELS = frozenset(("starred", "important", "unread", "read"))
"""Gmail's labels that are keywords, not mailboxes: in:starred is is:starred."""


def label_key(name: str) -> str:
    """Gmail writes spaces in label names as dashes in queries; compare loosely."""
    return "".join("-" if ch in " _/" else ch for ch in name.lower())


class _Named(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str | None: ...


_Box = TypeVar("_Box", bound=_Named)


def named_mailbox(name: str, boxes: Iterable[_Box]) -> _Box | None:
    """The mailbox that in:NAME / label:NAME means among an account's `boxes`: by role
    name, or by label name compared loosely; None for a label the account does not have."""
    role = LABEL_ROLES.get(name.lower())
    for box in boxes:
        if (role and box.role == role) or label_key(box.name) == label_key(name):
            return box
    return None


def unknown_mailboxes(node: Node, boxes: Sequence[_Named]) -> list[Mailbox]:
    """The terms of `node` that name a mailbox or label by a name none of `boxes` has (a
    typo): Gmail finds nothing for them; an admin's shell says so instead (mailyard search)."""
    if isinstance(node, (And, Or)):
        return [m for item in node.items for m in unknown_mailboxes(item, boxes)]
    if isinstance(node, Not):
        return unknown_mailboxes(node.item, boxes)
    if isinstance(node, Mailbox) and not node.by_id and node.name.lower() not in KEYWORD_LABELS \
            and named_mailbox(node.name, boxes) is None:
        return [node]
    return []


_IS: dict[str, Node] = {
    "unread": Not(Keyword("$seen")),
    "read": Keyword("$seen"),
    "starred": Keyword("$flagged"),
    "important": Keyword("$important"),
}


def keyword_label(name: str) -> Node | None:
    """What in:NAME / label:NAME means when NAME is one of Gmail's keyword labels
    (in:starred is is:starred); None for a mailbox or label name."""
    key = name.lower()
    return _IS[key] if key in KEYWORD_LABELS else None


_IS_NAMES = {"$seen": "read", "$flagged": "starred", "$important": "important"}
_DATE_OPS = {
    "before": ("before", "received"), "after": ("after", "received"), "on": ("on", "received"),
    "sent-before": ("before", "sent"), "sent-after": ("after", "sent"),
    "sent-on": ("on", "sent"),
}
_DATE_NAMES = {v: k for k, v in _DATE_OPS.items()}
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_THREAD_MODES = ("all", "some", "none")

_YMD = re.compile(r"([0-9]{4})([/-])([0-9]{1,2})\2([0-9]{1,2})")
_MDY = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})")
_MD = re.compile(r"([0-9]{1,2})/([0-9]{1,2})")
_EPOCH = re.compile(r"[0-9]{1,12}")
_AGE = re.compile(r"([0-9]{1,9})([dmy])", re.IGNORECASE)
_SIZE = re.compile(r"([0-9]{1,15})(?:([kmg])b?|(b))?", re.IGNORECASE)
_INSTANT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})", re.IGNORECASE)
_EPOCH_MAX = 253402300799  # 9999-12-31T23:59:59Z


def _day(text: str, now: datetime.date | None) -> datetime.date | None:
    """Gmail's date forms: 2026/11/28, 2026-11-28, 11/28/2026 and epoch seconds; 11/28 too,
    but only against a given `now`, because which year it means depends on the caller's clock."""
    try:
        if m := _YMD.fullmatch(text):
            return datetime.date(int(m[1]), int(m[3]), int(m[4]))
        if m := _MDY.fullmatch(text):
            return datetime.date(int(m[3]), int(m[1]), int(m[2]))
        if now is not None and (m := _MD.fullmatch(text)):
            return datetime.date(now.year, int(m[1]), int(m[2]))
        if _EPOCH.fullmatch(text) and int(text) <= _EPOCH_MAX:
            return datetime.date(1970, 1, 1) + datetime.timedelta(seconds=int(text))
    except ValueError:  # 2026/02/30, month 13: not a date, so a word
        return None
    return None


def _instant(text: str) -> datetime.datetime | None:
    m = _INSTANT.fullmatch(text)
    if not m:
        return None
    zone = m[8].upper()
    if zone == "Z":
        tz = UTC
    else:
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            return None
        offset = datetime.timedelta(hours=hours, minutes=minutes)
        tz = datetime.timezone(-offset if zone[0] == "-" else offset)
    micro = int((m[7] or "").ljust(6, "0")[:6])
    try:
        at = datetime.datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]),
                               int(m[6]), micro, tzinfo=tz)
        return at.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _instant_text(at: datetime.datetime) -> str:
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    text = (f"{at.year:04d}-{at.month:02d}-{at.day:02d}"
            f"T{at.hour:02d}:{at.minute:02d}:{at.second:02d}")
    if at.microsecond:
        text += f".{at.microsecond:06d}"
    return text + "Z"


def _mailbox(name: str, written: str = "") -> Mailbox:
    return Mailbox(name.lower() if name.lower() in ROLE_NAMES else name, written=written)


class _Unreadable(Exception):
    """A value operator `name` does not take; the message says what it takes."""


_DATE_FORMS = "a date: 2026/11/28, 2026-11-28, 11/28/2026 or seconds since 1970"


def _apply(name: str, value: str, quoted: bool, now: datetime.date | None) -> Node:
    """The node for operator `name` (lower-case, one of _SINGLE) with `value`; raises
    _Unreadable if the value is not one the operator takes."""
    if name in TEXT_FIELDS:
        return Text(value, name, phrase=quoted)
    key = value.lower()
    if name == "has":
        if key != "attachment":
            raise _Unreadable("only has:attachment")
        return HasAttachment()
    if name == "in" and key == "anywhere":
        return Anywhere()
    if name in ("in", "label"):
        if not value:
            raise _Unreadable("a mailbox name")
        return _mailbox(value, f'{name}:"{value}"' if quoted else f"{name}:{value}")
    if name == "is":
        if key not in _IS:
            raise _Unreadable(f"one of {', '.join(_IS)}")
        return _IS[key]
    if name in _DATE_OPS:
        op, field = _DATE_OPS[name]
        day = _day(value, now)
        if day is None:
            raise _Unreadable(_DATE_FORMS)
        return Date(op, day, field)
    if name in ("older_than", "newer_than"):
        m = _AGE.fullmatch(value)
        if not m:
            raise _Unreadable("a number of days, months or years: 7d, 2m, 1y")
        return Age(name[:5], int(m[1]), m[2].lower())
    if name in ("larger", "smaller", "size"):
        m = _SIZE.fullmatch(value)
        if not m:
            raise _Unreadable("a size in bytes, or with K, M or G: 1000, 500K, 10M, 2G")
        size = int(m[1]) * _SIZE_UNITS[(m[2] or m[3] or "").lower()]
        return Size("smaller" if name == "smaller" else "larger", size)
    if name == "deliveredto":
        # Gmail's operator: the Delivered-To field, which delivery writes for mail that
        # reached the account through a routing rule (plus address, alias, domain alias,
        # catch-all: services/routing_delivery.py).
        if not value:
            raise _Unreadable("an address")
        return Header("delivered-to", value)
    if name == "rfc822msgid":
        value = value[1:] if value.startswith("<") else value
        value = value[:-1] if value.endswith(">") else value
        if not value:
            raise _Unreadable("a Message-ID")
        return MessageId(value)
    if name == "keyword":
        if not value:
            raise _Unreadable("a keyword")
        return Keyword(key)
    if name == "mailbox-id":
        if not value:
            raise _Unreadable("a mailbox id")
        return Mailbox(value, by_id=True)
    if name in ("received-before", "received-after"):
        at = _instant(value)
        if at is None:
            raise _Unreadable("an instant: 2026-11-28T10:00:00Z")
        return Received(name[9:], at)
    raise AssertionError(f"{name} is in _SINGLE but has no value reader")


# ---------------------------------------------------------------------------------- parsing

_SPACE = re.compile(r"\s*")
_WORD = re.compile(r'[^\s(){}"|]+')
_WORD_OR_EMPTY = re.compile(r'[^\s(){}"|]*')
_PART = re.compile(r'[^\s(){}"|:]+')
_OPERATOR = re.compile(r"([A-Za-z][A-Za-z0-9_-]*):")
_FIELD_PREFIX = re.compile(r"(" + "|".join(TEXT_FIELDS) + r"):", re.IGNORECASE)

_SINGLE = frozenset(
    (*TEXT_FIELDS, "has", "in", "label", "is", *_DATE_OPS, "older_than", "newer_than", "larger",
     "smaller", "size", "rfc822msgid", "deliveredto", "keyword", "mailbox-id", "received-before",
     "received-after"))
"""Operators taking one value, which may also be a group: `from:(a OR b)`."""
_TEXT_FLAGS = {"words": (False, False), "substring": (False, True),
               "substring-phrase": (True, True)}
_OPENERS = {")": "(", "}": "{"}

_Context = tuple[str, str] | None
"""The operator (canonical, as written) that bare words inside a group take; None: plain."""


class _Parser:
    def __init__(self, text: str, now: datetime.date | None) -> None:
        self.s = text
        self.n = len(text)
        self.pos = 0
        self.now = now
        self.depth = 0

    def error(self, message: str, at: int) -> QueryError:
        return QueryError(message, at + 1)

    def skip(self) -> None:
        m = _SPACE.match(self.s, self.pos)
        self.pos = m.end() if m else self.pos

    def keyword(self) -> str | None:
        """"OR", "AND" or "|" if one starts at the current position."""
        if self.pos < self.n and self.s[self.pos] == "|":
            return "|"
        m = _WORD.match(self.s, self.pos)
        return m.group() if m and m.group() in ("OR", "AND") else None

    def term_follows(self) -> bool:
        return self.pos < self.n and self.s[self.pos] not in ")}" and self.keyword() is None

    def sequence(self, ctx: _Context, closer: str | None, opened_at: int) -> list[Node]:
        items: list[Node] = []
        while True:
            self.skip()
            if self.pos >= self.n:
                if closer:
                    raise self.error(f'unbalanced "{_OPENERS[closer]}"', opened_at)
                return items
            c = self.s[self.pos]
            if c == closer:
                self.pos += 1
                return items
            if c in ")}":
                raise self.error(f'unbalanced "{c}"', self.pos)
            kw = self.keyword()
            if kw == "AND":
                at = self.pos
                if not items:
                    raise self.error('"AND" with nothing before it', at)
                self.pos += 3
                self.skip()
                if not self.term_follows():
                    raise self.error('"AND" with nothing after it', at)
                continue
            if kw:
                raise self.error(f'"{kw}" with nothing before it', self.pos)
            items.append(self.disjunction(ctx))

    def disjunction(self, ctx: _Context) -> Node:
        items = [self.unary(ctx)]
        while True:
            self.skip()
            kw = self.keyword()
            if kw not in ("OR", "|"):
                return _or(items)
            at = self.pos
            self.pos += len(kw)
            self.skip()
            if not self.term_follows():
                raise self.error(f'"{kw}" with nothing after it', at)
            items.append(self.unary(ctx))

    def unary(self, ctx: _Context) -> Node:
        negations = 0
        while self.pos < self.n and self.s[self.pos] == "-":
            at = self.pos
            self.pos += 1
            if self.pos < self.n and self.s[self.pos].isspace():
                self.skip()  # a dash between spaces: punctuation, ignored
            else:
                negations += 1
                if self.depth + negations > MAX_DEPTH:
                    raise self.error(f"nesting deeper than {MAX_DEPTH}", at)
            if not self.term_follows():
                raise self.error('nothing after "-"', at)
        self.depth += negations
        node = self.primary(ctx)
        self.depth -= negations
        for _ in range(negations):
            node = Not(node)
        return node

    def primary(self, ctx: _Context) -> Node:
        start = self.pos
        c = self.s[start]
        if c in "({":
            return self.group(ctx)
        if c == '"':
            return self.term(ctx, self.quoted(), True, start)
        m = _OPERATOR.match(self.s, start)
        if m:
            node = self.operator(m[1].lower(), m[1], m.end())
            if node is not None:
                return node
            self.pos = start
        w = _WORD.match(self.s, start)
        if not w:  # unreachable: callers stop at brackets, quotes, spaces and keywords
            raise self.error(f'unexpected "{c}"', start)
        self.pos = w.end()
        return self.term(ctx, w.group(), False, start)

    def group(self, ctx: _Context) -> Node:
        opened = self.pos
        closer = ")" if self.s[opened] == "(" else "}"
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nesting deeper than {MAX_DEPTH}", opened)
        self.pos += 1
        items = self.sequence(ctx, closer, opened)
        self.depth -= 1
        return _and(items) if closer == ")" else _or(items)

    def quoted(self) -> str:
        start = self.pos
        out: list[str] = []
        i = start + 1
        s, n = self.s, self.n
        while i < n:
            c = s[i]
            if c == "\\" and i + 1 < n and s[i + 1] in '\\"':
                out.append(s[i + 1])
                i += 2
            elif c == '"':
                self.pos = i + 1
                return "".join(out)
            else:
                out.append(c)
                i += 1
        raise self.error("unterminated quote", start)

    def value(self, at: int, pattern: re.Pattern[str]) -> tuple[str, bool] | None:
        """A quoted or bare value at `at` (moving past it), or None if there is none."""
        if at < self.n and self.s[at] == '"':
            self.pos = at
            return self.quoted(), True
        m = pattern.match(self.s, at)
        if not m or (not m.group() and pattern is not _WORD_OR_EMPTY):
            return None
        self.pos = m.end()
        return m.group(), False

    def term(self, ctx: _Context, value: str, quoted: bool, at: int) -> Node:
        """The node of a value that starts at `at`, for the operator of `ctx` if any."""
        if ctx is None:
            return Text(value, phrase=quoted)
        name, written = ctx
        try:
            return _apply(name, value, quoted, self.now)
        except _Unreadable as e:
            shown = value if len(value) <= 40 else value[:37] + "..."
            raise self.error(f'{written}: cannot read "{shown}", expected {e}', at) from None

    def operator(self, name: str, written: str, after: int) -> Node | None:
        """The operator whose value starts at `after`; None: not an operator, read as a word."""
        if name in _SINGLE:
            if after < self.n and self.s[after] in "({":
                self.pos = after
                return self.group((name, written))
            got = self.value(after, _WORD)
            if got is None:
                return None
            return self.term((name, written), *got, after)
        if name in _TEXT_FLAGS:
            phrase, substring = _TEXT_FLAGS[name]
            field = None
            m = _FIELD_PREFIX.match(self.s, after)
            if m:
                field, after = m[1].lower(), m.end()
            got = self.value(after, _WORD)
            return Text(got[0], field, phrase, substring) if got else None
        if name in ("header", "thread-keyword"):
            first = self.value(after, _PART)
            if first is None or self.pos >= self.n or self.s[self.pos] != ":":
                return None
            second = self.value(self.pos + 1, _WORD if name != "header" else _WORD_OR_EMPTY)
            if second is None or not first[0]:
                return None
            if name == "header":
                return Header(first[0].lower(), second[0])
            mode = first[0].lower()
            if mode not in _THREAD_MODES:
                raise self.error(f'{written}: cannot read "{first[0][:40]}", expected all, some'
                                 " or none", after)
            if not second[0]:
                return None
            return ThreadKeyword(mode, second[0].lower())
        return None


def parse(query: str, *, now: datetime.date | None = None) -> Node:
    """The tree of a Gmail-style query; raises QueryError (only) for malformed structure or an
    operator value that cannot be read.

    `now` is the day a date written without a year (`after:11/28`) belongs to; without it such
    a value is a QueryError. Ages (`older_than:7d`) are not resolved here: they stay
    relative so a stored query keeps meaning "the last week"."""
    parser = _Parser(query, now)
    return _and(parser.sequence(None, None, -1))


def gmail_meaning(node: Node) -> Node:
    """What a parsed Gmail query searches beyond its literal tree: `to:` finds the address in
    To or Cc, as Gmail does (a message where you were copied was sent to you). Applied where
    Gmail's language is read (the CLI, X-GM-RAW); never to a JMAP filter, whose `to` is the To
    header alone (RFC 8621 §4.4.1). Kept out of `parse` so format(parse(q)) reads back."""
    if isinstance(node, And):
        return And(tuple(gmail_meaning(n) for n in node.items))
    if isinstance(node, Or):
        return Or(tuple(gmail_meaning(n) for n in node.items))
    if isinstance(node, Not):
        return Not(gmail_meaning(node.item))
    if isinstance(node, Text) and node.field == "to":
        return Or((node, replace(node, field="cc")))
    return node


# ---------------------------------------------------------------------------------- format

_BARE = re.compile(r'[^\s(){}"|]+')
_BARE_PART = re.compile(r'[^\s(){}"|:]+')


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _atom(value: str, pattern: re.Pattern[str] = _BARE) -> str:
    return value if pattern.fullmatch(value) else _quote(value)


def _parses_to(text: str, node: Node) -> bool:
    try:
        return parse(text) == node
    except QueryError:
        return False


def _text(t: Text) -> str:
    field = f"{t.field}:" if t.field else ""
    if t.substring:
        return f"substring{'-phrase' if t.phrase else ''}:{field}{_quote(t.value)}"
    if t.phrase:
        return field + _quote(t.value)
    if t.value and _parses_to(field + t.value, t):
        return field + t.value
    return f"words:{field}{_quote(t.value)}"


def _leaf(node: Node) -> str:
    if isinstance(node, Text):
        return _text(node)
    if isinstance(node, Keyword):
        named = _IS_NAMES.get(node.keyword)
        return f"is:{named}" if named else "keyword:" + _atom(node.keyword)
    if isinstance(node, Mailbox):
        if node.by_id:
            return "mailbox-id:" + _atom(node.name)
        return f"in:{node.name}" if node.name in ROLE_NAMES else "label:" + _atom(node.name)
    if isinstance(node, Anywhere):
        return "in:anywhere"
    if isinstance(node, HasAttachment):
        return "has:attachment"
    if isinstance(node, Date):
        name = _DATE_NAMES.get((node.op, node.field))
        if name is None:
            raise ValueError(f"no query text for {node!r}")
        d = node.day
        return f"{name}:{d.year:04d}/{d.month:02d}/{d.day:02d}"
    if isinstance(node, Received) and node.op in ("before", "after"):
        return f"received-{node.op}:{_instant_text(node.at)}"
    if isinstance(node, Age) and node.op in ("older", "newer"):
        return f"{node.op}_than:{node.amount}{node.unit}"
    if isinstance(node, Size) and node.op in ("larger", "smaller"):
        return f"{node.op}:{node.size}"
    if isinstance(node, MessageId):
        return "rfc822msgid:" + _atom(f"<{node.value}>")
    if isinstance(node, Header):
        return f"header:{_atom(node.name, _BARE_PART)}:{_quote(node.value)}"
    if isinstance(node, ThreadKeyword):
        return f"thread-keyword:{node.mode}:{_atom(node.keyword)}"
    raise ValueError(f"no query text for {node!r}")


def _format(node: Node, top: bool) -> str:
    if isinstance(node, And):
        if not node.items:
            return "" if top else "()"
        inner = " ".join(_format(n, False) for n in node.items)
        return inner if top else f"({inner})"
    if isinstance(node, Or):
        if not node.items:
            return "{}"
        inner = " OR ".join(_format(n, False) for n in node.items)
        return inner if top else f"({inner})"
    if isinstance(node, Not):
        if node.item == Keyword("$seen"):
            return "is:unread"
        return "-" + _format(node.item, False)
    return _leaf(node)


def format(node: Node) -> str:
    """The canonical text of `node`: parse(format(n)) == normalise(n) for every well-formed
    node (lower-case keywords and header names, known fields and ops, aware instants), so a
    tree can be shown to the user, stored, or sent as X-GM-RAW and read back unchanged."""
    return _format(node, True)


# ---------------------------------------------------------------------------------- JMAP

_JMAP_TEXT: dict[str, str | None] = {
    "text": None, "from": "from", "to": "to", "cc": "cc", "bcc": "bcc", "subject": "subject",
    "body": "body",
}
_JMAP_THREAD = {"allInThreadHaveKeyword": "all", "someInThreadHaveKeyword": "some",
                "noneInThreadHaveKeyword": "none"}
_JMAP_KEYWORD = re.compile(r'[!-~]{1,255}')
_JMAP_KEYWORD_FORBIDDEN = frozenset('(){]%*"\\')
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_UNSIGNED_MAX = 2**53 - 1


def _string(prop: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise FilterError(prop)
    return value


def _keyword(prop: str, value: object) -> str:
    """RFC 8621 §4.1.1 keyword syntax; compared lower-case as JMAP keywords are."""
    if (not isinstance(value, str) or not _JMAP_KEYWORD.fullmatch(value)
            or _JMAP_KEYWORD_FORBIDDEN.intersection(value)):
        raise FilterError(prop)
    return value.lower()


def _unsigned(prop: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UNSIGNED_MAX:
        raise FilterError(prop)
    return value


def _utc_date(prop: str, value: object) -> datetime.datetime:
    at = _instant(value) if isinstance(value, str) and value[-1:] in "Zz" else None
    if at is None:
        raise FilterError(prop)
    return at


def _condition(prop: str, value: object) -> Node:
    if prop == "inMailbox":
        return Mailbox(_string(prop, value), by_id=True)
    if prop == "inMailboxOtherThan":
        if not isinstance(value, list):
            raise FilterError(prop)
        return Not(_or(Mailbox(_string(prop, v), by_id=True) for v in value))
    if prop in ("before", "after"):
        return Received(prop, _utc_date(prop, value))
    if prop == "minSize":  # size >= n is size > n - 1; >= 0 holds for every email
        n = _unsigned(prop, value)
        return Size("larger", n - 1) if n else And(())
    if prop == "maxSize":
        return Size("smaller", _unsigned(prop, value))
    if prop in _JMAP_THREAD:
        return ThreadKeyword(_JMAP_THREAD[prop], _keyword(prop, value))
    if prop == "hasKeyword":
        return Keyword(_keyword(prop, value))
    if prop == "notKeyword":
        return Not(Keyword(_keyword(prop, value)))
    if prop == "hasAttachment":
        if not isinstance(value, bool):
            raise FilterError(prop)
        return HasAttachment() if value else Not(HasAttachment())
    if prop in _JMAP_TEXT:
        if not isinstance(value, str):
            raise FilterError(prop)
        return Text(value, _JMAP_TEXT[prop])
    if prop == "header":
        if (not isinstance(value, list) or not 1 <= len(value) <= 2
                or not all(isinstance(v, str) for v in value)
                or not _HEADER_NAME.fullmatch(value[0])):
            raise FilterError(prop)
        return Header(value[0].lower(), value[1] if len(value) == 2 else "")
    raise FilterError(prop, unsupported=True)


def _filter(f: object, depth: int) -> Node:
    if not isinstance(f, dict):
        raise FilterError("filter")
    if depth > MAX_DEPTH:
        raise FilterError("conditions")
    if "operator" not in f:
        return _and(_condition(str(k), v) for k, v in f.items())
    for key in f:
        if key not in ("operator", "conditions"):
            raise FilterError(str(key))
    op, conditions = f["operator"], f.get("conditions")
    if op not in ("AND", "OR", "NOT"):
        raise FilterError("operator")
    if not isinstance(conditions, list):
        raise FilterError("conditions")
    items = [_filter(c, depth + 1) for c in conditions]
    combine: Callable[[Iterable[Node]], Node] = _and if op == "AND" else _or
    node = combine(items)
    return Not(node) if op == "NOT" else node


def from_jmap(filter: dict[str, Any]) -> Node:
    """An Email/query filter (RFC 8621 §4.4.1 FilterCondition, RFC 8620 §5.5 FilterOperator,
    where NOT means none of its conditions) as the same tree the query language gives, so one
    planner serves both. Raises FilterError naming the offending property."""
    return _filter(filter, 0)
