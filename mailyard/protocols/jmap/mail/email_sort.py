"""Email/query's sort (RFC 8621 §4.4.2): the Comparators a client may give, and the order
they put a query's result in.

receivedAt alone is the store's own order (newest or oldest first, paged by the store). Any
other sort takes the whole result in that order and sorts it here from the emails' brief
records (size, sentAt, From, To, subject, keywords), one comparator after another from the
last, each sort stable, so ties keep the order of the comparators after them and, last of
all, newest first. The thread keyword sorts also read the keywords of the other emails of
each thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mailyard.core.imapthread import base_subject, casemap
from mailyard.protocols.jmap.core import Context
from mailyard.protocols.jmap.errors import MethodError
from mailyard.protocols.jmap.mail.common import mailbox_service, valid_keyword
from mailyard.store.ports import EmailRecord, Order

PROPERTIES = ("receivedAt", "size", "from", "to", "subject", "sentAt", "hasKeyword",
              "allInThreadHaveKeyword", "someInThreadHaveKeyword")
"""What emailQuerySortOptions advertises: every property §4.4.2 lists."""
KEYWORD_SORTS = frozenset({"hasKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword"})
THREAD_SORTS = frozenset({"allInThreadHaveKeyword", "someInThreadHaveKeyword"})
COLLATIONS: dict[str, Callable[[str], str]] = {
    "i;unicode-casemap": casemap,
    "i;ascii-casemap": lambda s: s.upper() if s.isascii() else "".join(
        c.upper() if c.isascii() else c for c in s),
    "i;octet": lambda s: s,
}
"""The collations a string sort may name (RFC 4790); i;unicode-casemap is the default."""
CHUNK = 1000
"""Records read per call while sorting."""


@dataclass(frozen=True, slots=True)
class Comparator:
    property: str
    ascending: bool
    keyword: str | None
    collation: Callable[[str], str]


def comparators(sort: object) -> list[Comparator]:
    """The `sort` argument checked: unsupportedSort for a property or collation we do not
    sort by, invalidArguments for a malformed Comparator."""
    if sort is None:
        return []
    if not isinstance(sort, list) or not all(isinstance(c, dict) for c in sort):
        raise MethodError("invalidArguments", "sort must be an array of Comparators")
    out = []
    for c in sort:
        prop = c.get("property")
        if prop not in PROPERTIES:
            raise MethodError("unsupportedSort", f"cannot sort on {str(prop)[:100]!r}; the"
                              " properties are " + ", ".join(PROPERTIES))
        ascending = c.get("isAscending", True)
        if not isinstance(ascending, bool):
            raise MethodError("invalidArguments", "isAscending must be a boolean")
        name = c.get("collation") or "i;unicode-casemap"
        if not isinstance(name, str) or name not in COLLATIONS:
            raise MethodError("unsupportedSort", f"collation {str(name)[:100]!r} is not one"
                              " of " + ", ".join(COLLATIONS))
        keyword = c.get("keyword")
        if prop in KEYWORD_SORTS:
            if not isinstance(keyword, str) or not valid_keyword(keyword):
                raise MethodError("invalidArguments", f"{prop} needs a keyword")
            keyword = keyword.lower()
        out.append(Comparator(str(prop), ascending, keyword, COLLATIONS[name]))
    return out


def store_order(sort: list[Comparator]) -> Order | None:
    """The store's own order when the sort is no more than that (none, or receivedAt)."""
    if not sort:
        return "newest"
    if len(sort) == 1 and sort[0].property == "receivedAt":
        return "oldest" if sort[0].ascending else "newest"
    return None


def thread_dependent(sort: list[Comparator]) -> bool:
    """Whether an email's place depends on the other emails of its thread (so a change to
    one moves another, and queryChanges cannot follow it)."""
    return any(c.property in THREAD_SORTS for c in sort)


def _first_address(addresses: list[dict[str, str]]) -> str:
    """§4.4.2 from/to: the first address's name, or its email when it has none."""
    if not addresses:
        return ""
    first = addresses[0]
    return first.get("name") or first.get("email") or ""


def _key(c: Comparator, threads: dict[str, tuple[set[str], set[str]]]
         ) -> Callable[[EmailRecord], Any]:
    prop = c.property
    if prop == "receivedAt":
        return lambda r: r.received_at
    if prop == "size":
        return lambda r: r.size
    if prop == "sentAt":  # no Date: before every date
        return lambda r: (r.sent_at is not None, r.sent_at or 0)
    if prop in ("from", "to"):
        return lambda r: c.collation(_first_address(r.from_ if prop == "from" else r.to))
    if prop == "subject":  # the base subject (RFC 5256 §2.1), as §4.4.2 says
        return lambda r: c.collation(base_subject(r.subject or "").text)
    keyword = c.keyword or ""
    if prop == "hasKeyword":
        return lambda r: keyword in r.keywords
    index = 0 if prop == "allInThreadHaveKeyword" else 1
    return lambda r: keyword in threads.get(r.thread_id, (set(), set()))[index]


async def _records(ctx: Context, ids: Sequence[str]) -> dict[str, EmailRecord]:
    service = mailbox_service(ctx)
    out: dict[str, EmailRecord] = {}
    for start in range(0, len(ids), CHUNK):
        for r in await service.get_emails(ctx.account, ids[start:start + CHUNK], brief=True):
            out[r.id] = r
    return out


async def _thread_keywords(ctx: Context, records: dict[str, EmailRecord]
                           ) -> dict[str, tuple[set[str], set[str]]]:
    """Each thread's (keywords all its emails have, keywords some of them have)."""
    service = mailbox_service(ctx)
    thread_ids = list(dict.fromkeys(r.thread_id for r in records.values()))
    members: dict[str, list[str]] = {}
    for start in range(0, len(thread_ids), CHUNK):
        members.update(await service.threads(ctx.account, thread_ids[start:start + CHUNK]))
    others = [e for ids in members.values() for e in ids if e not in records]
    every = {**records, **await _records(ctx, others)}
    out: dict[str, tuple[set[str], set[str]]] = {}
    for thread_id, ids in members.items():
        sets = [set(every[e].keywords) for e in ids if e in every]
        out[thread_id] = (set.intersection(*sets) if sets else set(),
                          set.union(*sets) if sets else set())
    return out


async def sort_ids(ctx: Context, ids: list[str], sort: list[Comparator]) -> list[str]:
    """`ids` (newest first) in the order of `sort`; ties stay newest first."""
    records = await _records(ctx, ids)
    threads = await _thread_keywords(ctx, records) if thread_dependent(sort) else {}
    ordered = [records[i] for i in ids if i in records]
    for c in reversed(sort):
        ordered.sort(key=_key(c, threads), reverse=not c.ascending)
    return [r.id for r in ordered]
