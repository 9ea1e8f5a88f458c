"""Which emails a metadata query answers, in what order, and which page of them (JMAP
Email/query and its sorts, the store's half of IMAP SEARCH and of Gmail-style search,
`mail list`), decided once for every engine over the engine's narrow query reads
(store.ports.EmailQuery).

Rules, once for every engine:
- Unsorted, the emails come by arrival: newest first (received time, then id, both
  descending), or with `order="oldest"` oldest first (both ascending).
- A sort (core.emailsort SortKeys, RFC 8621 §4.4.2) replaces the order; ties are broken
  newest first. A string property (the base subject, the first From or To address's name or
  else its email) is compared through its collation (core.emailsort.COLLATIONS) in Python,
  so every engine orders text alike; an email without a Date sorts before every date.
- `collapse_threads` keeps the first email of each thread in that order; the total then
  counts threads.
- `among` restricts the answer to those emails (the matches of a search's words), ordered
  by the same rules (by the engine when it can order them in one statement).
- A page is `limit` ids from `position` (all from there when None); the total counts every
  match, not the page.

How each is read is the plan below, chosen here too (`query`): numbers and keyword tests
are ordered and paged by the engine (ORDER BY ... LIMIT over its indexes); the first page
of collapsed threads in arrival order reads the arrival index only until the page is full
(the webmail's first page of 100,000 messages: 869 ms ranked, a few ms read so); the string
sorts and `among` read one narrow row per match and order them here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

from mailyard.core.query import Node
from mailyard.store.ports.mailtx import EmailQuery, KeyRow
from mailyard.store.ports.search import Hits, Order

if TYPE_CHECKING:
    from mailyard.core.emailsort import SortKey

R = TypeVar("R")


def page(ids: list[str], position: int, limit: int | None, total: bool) -> Hits:
    """`limit` ids of the ordered `ids` from `position` (all from there when None), and how
    many there are in all when `total` is asked for."""
    return Hits(ids[position:] if limit is None else ids[position:position + limit],
                len(ids) if total else None)


def newest_first(sort: Sequence[SortKey]) -> bool:
    """Whether `sort` orders as arrival, newest first (no key, or receivedAt descending
    only): the order of the arrival index, read from its newest end."""
    return all(k.property == "receivedAt" and not k.ascending for k in sort)


def ordered_in_python(sort: Sequence[SortKey], among: Sequence[str] | None,
                      orders_among: bool) -> bool:
    """Whether the matches are ordered here rather than by the engine: a string property
    is sorted (its collation is Python's), or the emails are given (`among`) to an engine
    that looks them up by id in chunks, in no order (`orders_among` False)."""
    if among is not None and not orders_among:
        return True
    if not sort:
        return False
    from mailyard.core.emailsort import STRING_PROPERTIES  # loaded by the first sort only

    return any(k.property in STRING_PROPERTIES for k in sort)


class FirstOfThreads:
    """The first email of each thread among (id, thread id) pairs given in their order, up
    to `wanted` of them: `take` answers whether to go on reading."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.ids: list[str] = []
        self._seen: set[str] = set()

    def take(self, email_id: str, thread_id: str) -> bool:
        if thread_id not in self._seen:
            self._seen.add(thread_id)
            self.ids.append(email_id)
        return len(self.ids) < self.wanted


def sort_value(key: SortKey) -> Callable[[Any], Any]:
    """How one stored value (as EmailQuery.rows reads it) becomes comparable for `key`: a
    subject as its base subject and a first address through the key's collation, no Date
    before every date, a keyword test as 0 or 1, a number as it is."""
    from mailyard.core import emailsort  # the collations: loaded by the first sort only

    if key.property == "subject":
        return lambda value: emailsort.string_key(key, value or "", {})
    if key.property in ("from", "to"):
        collate = emailsort.COLLATIONS[key.collation]
        return lambda value: collate(value or "")
    if key.property == "sentAt":
        return lambda value: emailsort.NO_DATE if value is None else value
    if key.property in emailsort.KEYWORD_PROPERTIES:
        return lambda value: int(bool(value))
    return lambda value: value


def order_rows(rows: list[KeyRow], sort: Sequence[SortKey], collapse: bool, *,
               then: Order = "newest", arrived_in_order: bool = False) -> list[str]:
    """Ids of the rows in the order of `sort`, ties by arrival (`then`); the first of each
    thread when `collapse`. `arrived_in_order`: the rows came newest first already."""
    from mailyard.core import emailsort

    if not arrived_in_order:
        rows = sorted(rows, key=itemgetter(2, 0), reverse=then == "newest")
    if not sort and not collapse:  # given ids in arrival order: nothing more to key
        return [r[0] for r in rows]
    values = [sort_value(key) for key in sort]
    keyed: list[tuple[str, str, tuple[Any, ...]]]
    if not values:
        keyed = [(r[0], r[1], ()) for r in rows]
    elif len(values) == 1:  # the usual sort, one key: no tuple built per key and row
        value = values[0]
        keyed = [(r[0], r[1], (value(r[3]),)) for r in rows]
    else:
        keyed = [(r[0], r[1], tuple([v(x) for v, x in zip(values, r[3:], strict=True)]))
                 for r in rows]
    return emailsort.order_rows(keyed, sort, collapse)


async def query(rd: EmailQuery, *, among: Sequence[str] | None, order: Order,
                limit: int | None, position: int, total: bool, sort: Sequence[SortKey],
                collapse: bool) -> Hits:
    """The page of the matches `rd` reads (one query of one account, at one moment)."""
    then: Order = "newest" if sort or collapse else order
    if ordered_in_python(sort, among, rd.orders_among):
        rows = await rd.rows(sort)
        ids = order_rows(rows, sort, collapse, then=then, arrived_in_order=among is None)
        return page(ids, position, limit, total)
    if collapse and limit is not None and newest_first(sort):
        firsts = FirstOfThreads(position + limit)
        if limit > 0:
            await rd.threads(firsts.take)
        ids = firsts.ids[position:]
    else:
        ids = await rd.page(sort, then=then, collapse=collapse, limit=limit,
                            position=position)
    return Hits(ids, await rd.count(threads=collapse) if total else None)


class EmailQueries(ABC):
    """MailStore.query_emails for an engine that opens one query read (`read_query`)."""

    @abstractmethod
    async def read_query(self, account_id: str, node: Node, among: Sequence[str] | None,
                         step: Callable[[EmailQuery], Coroutine[Any, Any, R]]) -> R:
        """Run `step` on the account's emails matching `node` (and among `among` when
        given), read at one moment, within the store's query time budget."""

    async def query_emails(self, account_id: str, node: Node, *,
                           among: Sequence[str] | None = None, order: Order = "newest",
                           limit: int | None = None, position: int = 0,
                           total: bool = False, sort: Sequence[SortKey] = (),
                           collapse_threads: bool = False) -> Hits:
        return await self.read_query(account_id, node, among, lambda rd: query(
            rd, among=among, order=order, limit=limit, position=position, total=total,
            sort=sort, collapse=collapse_threads))
