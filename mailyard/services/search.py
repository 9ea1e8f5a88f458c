"""Search: one query language (core.query) over two engines, for IMAP, JMAP, the web and the CLI.

A query names text (words, phrases, from:, subject: ...) and metadata (labels, flags, dates,
sizes, attachments). The text half goes to the SearchIndex, the rest to the mail store's own
indexed columns — so flags and labels are exact the moment they change, while the text index
may lag delivery by a batch. The planner combines them:

- only one half present: that engine answers alone, already in date order with a LIMIT;
- both, AND-ed at the top (the usual case, "from:alice has:attachment"): if the metadata half
  is selective (fewer than PROBE emails), the index is asked only about those; if the words
  are (fewer than PROBE hits), the store checks all of them at once; otherwise text hits are
  streamed newest first in growing pages and checked against the store until the page is
  full — the first page of a common word costs a few hundred rows, not the whole mailbox;
- text and metadata mixed under OR / NOT: each leaf becomes a set of ids and the sets are
  combined (correct for any tree; slower, and rare in real queries).

Gmail's defaults are kept: Spam and Trash are searched only when the query names them (or says
in:anywhere); `label:my-label` finds "My Label".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mailyard.core import query as q
from mailyard.core.emailsort import SortKey
from mailyard.core.indextext import message_body_text
from mailyard.services.mailbox import MailboxService
from mailyard.store.ports import (
    Account,
    EmailRecord,
    Hits,
    Mailbox,
    MailStore,
    NotFound,
    Order,
    SearchIndex,
    Snippet,
)

log = logging.getLogger(__name__)

PROBE = 2000
"""A metadata condition matching fewer emails than this is answered first."""
FIRST_PAGE = 500
"""Text hits read in the first streamed page; each next page is four times larger."""
HIDDEN_SET = 5000
"""Spam and Trash holding fewer emails than this together are left out of a Gmail-scoped
search by subtracting their matching ids; more: as a NOT condition of the query."""
HELD_BOXES = 256
"""Hidden mailboxes whose email ids a SearchService keeps, each for the state it was read in
(SearchService._held): at most HIDDEN_SET ids each."""

_NOTHING = q.Or(())


def _is_text(node: q.Node) -> bool:
    """A tree the text index can answer alone."""
    if isinstance(node, q.Text):
        return not node.substring
    if isinstance(node, q.And | q.Or):
        return all(_is_text(n) for n in node.items)
    if isinstance(node, q.Not):
        return _is_text(node.item)
    return False


def _is_meta(node: q.Node) -> bool:
    """A tree the mail store can answer alone."""
    if isinstance(node, q.Text):
        return False
    if isinstance(node, q.And | q.Or):
        return all(_is_meta(n) for n in node.items)
    if isinstance(node, q.Not):
        return _is_meta(node.item)
    return True


def _conjuncts(node: q.Node) -> list[q.Node]:
    return list(node.items) if isinstance(node, q.And) else [node]


def _or(items: Sequence[q.Node]) -> q.Node:
    return items[0] if len(items) == 1 else q.Or(tuple(items))


def _and(items: Sequence[q.Node]) -> q.Node:
    return items[0] if len(items) == 1 else q.And(tuple(items))


@dataclass
class _Scope:
    boxes: list[Mailbox]
    wants_hidden: bool = False
    """The query names Spam or Trash (or in:anywhere): Gmail then searches them."""


class SearchService:
    def __init__(self, store: MailStore, index: SearchIndex, *, probe: int = PROBE,
                 first_page: int = FIRST_PAGE, hidden_set: int = HIDDEN_SET,
                 query_seconds: float = 10.0,
                 timer: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext
                 ) -> None:
        self.store = store
        self.index = index
        self.timer = timer
        """Times each search: the server's /metrics histogram (`metrics.SEARCH.time`, given by
        the composition root); nothing for an admin command, which need not load
        prometheus_client for it (15 ms of `mailyard search`'s start-up)."""
        self.query_seconds = query_seconds
        """The budget of a search that reads the messages themselves (an IMAP needle too short
        for the trigram index), as the engines' own queries have ([limits] query_seconds)."""
        self.hidden_set = hidden_set
        self.probe = probe
        self.first_page = first_page
        self.held: OrderedDict[str, tuple[tuple[int, ...], frozenset[str]]] = OrderedDict()
        """Mailbox id -> (its state, its email ids), the Spam and Trash sets last read."""
        self.hidden_matches: OrderedDict[tuple[object, ...], frozenset[str]] = OrderedDict()
        """The hidden emails a metadata query matches, for the states they depend on
        (_hidden_matches)."""

    async def search(self, account: Account, query: str | q.Node, *, limit: int | None = 50,
                     position: int = 0, total: bool = False, order: Order = "newest",
                     gmail_scope: bool = True, now: datetime | None = None) -> Hits:
        """Email ids matching `query` (text in the query language, or an AST from IMAP or
        JMAP). Raises core.query.QueryError for a malformed query text."""
        with self.timer():
            node = q.gmail_meaning(q.parse(query)) if isinstance(query, str) else query
            scope = _Scope(await self.store.list_mailboxes(account.id))
            node = self._resolve(node, scope, now or datetime.now(UTC))
            hidden = [] if not gmail_scope or scope.wants_hidden else \
                [b for b in scope.boxes if b.role in ("trash", "junk") and b.total]
            counted = _mailbox_count(node, scope)
            few = sum(b.total for b in hidden) <= self.hidden_set
            if total and counted is not None and few:
                return await self._mailbox_hits(account.id, node, counted, hidden, order,
                                                limit, position)
            if not hidden:
                return await self._run(account.id, node, order, limit, position, total)
            if not few:
                return await self._run(account.id, _and([*_conjuncts(node), *(
                    q.Not(q.Mailbox(b.id, by_id=True)) for b in hidden)]), order, limit,
                    position, total)
            if total and (text := _index_alone(node)) is not None:
                # The index leaves the hidden emails out of the page and the count: one
                # read of the words' matches (asking it about them read those again).
                return await self.index.query(
                    account.id, text, order=order, limit=limit, position=position,
                    total=True, received=_received_bounds(_conjuncts(node)),
                    outside=await self._held(account.id, hidden))
            return await self._without(account.id, node, hidden, order, limit, position,
                                       total)

    async def sorted_search(self, account: Account, node: q.Node, sort: Sequence[SortKey],
                            *, collapse_threads: bool = False, limit: int | None = None,
                            position: int = 0, total: bool = False) -> Hits:
        """JMAP Email/query with a sort other than arrival, or collapsed threads: the store
        orders (core.emailsort), over the matches of the words when there are words. No
        Gmail scope (JMAP names its mailboxes)."""
        with self.timer():
            scope = _Scope(await self.store.list_mailboxes(account.id))
            node = self._resolve(node, scope, datetime.now(UTC))
            parts = _conjuncts(node)
            if all(_is_meta(n) for n in parts):
                return await self.store.query_emails(
                    account.id, _and(parts), sort=sort, collapse_threads=collapse_threads,
                    limit=limit, position=position, total=total)
            ids = (await self._run(account.id, node, "newest", None, 0, False)).ids
            return await self.store.query_emails(
                account.id, q.And(()), among=ids, sort=sort, collapse_threads=collapse_threads,
                limit=limit, position=position, total=total)

    async def _without(self, account_id: str, node: q.Node, hidden: list[Mailbox],
                       order: Order, limit: int | None, position: int, total: bool) -> Hits:
        """`node`'s hits outside the `hidden` mailboxes (Gmail's Spam and Trash), when those
        hold few emails: the query runs as asked and the few hidden ones it matches are
        taken out, instead of every word query becoming a text + metadata plan (5-30 ms for
        a first page, against 0.1-1.5 ms for the words alone).

        A page is the query's hits less those the store finds in the hidden mailboxes (a
        look-up of the page's ids), read a little further when some were hidden. A count is
        the query's count less its matches among the hidden emails: when it has fewer matches
        than they are, those matches are looked up; otherwise the hidden emails are read by
        mailbox and the query asked about them. Neither lists every match of a common word."""
        hidden_node = _or([q.Mailbox(b.id, by_id=True) for b in hidden])
        held = await self._held(account_id, hidden) if limit is None else \
            self._held_already(hidden)
        wanted = None if limit is None else position + limit
        count: int | None = None
        while True:
            hits = await self._run(account_id, node, order, wanted, 0, total and count is None)
            count = hits.total if count is None else count
            shown = held if held is not None else await self._meta_among(
                account_id, hidden_node, set(hits.ids))
            kept = [e for e in hits.ids if e not in shown]
            if limit is None or wanted is None or len(hits.ids) < wanted \
                    or len(kept) >= position + limit:
                break
            wanted += 2 * (len(hits.ids) - len(kept))  # the hidden ones, and as many again
        page = kept[position:] if limit is None else kept[position:position + limit]
        if count is None or limit is None:
            return Hits(page, None if count is None else len(kept))
        if not count:
            return Hits(page, 0)
        if count <= sum(b.total for b in hidden) and not _is_meta(node):
            # Few text matches: listed (the store's metadata alone, `larger:1M`, may have to
            # read every email to list them, as it did to count them; the few hidden
            # emails are looked up instead, below).
            every = await self._run(account_id, node, order, None, 0, False)
            shown = await self._meta_among(account_id, hidden_node, set(every.ids))
            return Hits(page, len(every.ids) - len(shown))
        return Hits(page, count - len(await self._hidden_matches(account_id, node, hidden)))

    async def _mailbox_hits(self, account_id: str, node: q.Node, counted: int,
                            hidden: list[Mailbox], order: Order, limit: int | None,
                            position: int) -> Hits:
        """`in:inbox`, `label:work`, `label:work is:unread`: the page as any query reads it,
        and the count from the mailbox's own counters (`counted`: its total or unread, kept
        by every write, as IMAP's EXISTS and JMAP's unreadEmails are) less its matches that
        are also in the hidden mailboxes, looked up among those few. Counting the mailbox's
        rows took 50-60 ms at 100,000 emails; notmuch answers such a count in 1-3."""
        page = await self._page(account_id, node, hidden, order, limit, position)
        also_hidden = await self._hidden_matches(account_id, node, hidden) if hidden else set()
        return Hits(page.ids, counted - len(also_hidden))

    async def _hidden_matches(self, account_id: str, node: q.Node,
                              hidden: list[Mailbox]) -> set[str]:
        """The emails of the `hidden` mailboxes that `node` matches: what a Gmail-scoped
        count takes off. Those of a metadata query are kept for the states of the hidden
        mailboxes as _held read them: looking 1,412 Spam and Trash emails up in the store
        (their wide rows) took 20-50 ms of every count of `in:inbox`, `is:starred` or
        `has:attachment` at 100,000 emails on a loaded machine, and those mailboxes change
        far less often than they are searched. Such an answer depends on the hidden emails
        alone, and every change of one (a keyword, a mailbox joined or left: model.labels and
        model.keywords `touch` it) gives every mailbox holding it a new HIGHESTMODSEQ; sizes,
        dates and headers never change. A delivery to the Inbox changes no hidden mailbox:
        `in:inbox`'s count after it reads nothing but counters. A condition on other emails
        of the thread (ThreadKeyword) can change with no hidden mailbox's state: not kept."""
        held = await self._held(account_id, hidden)
        key = self._hidden_key(node, hidden)
        if key is None:
            return await self._among(account_id, node, held)
        known = self.hidden_matches.get(key)
        if known is not None:
            self.hidden_matches.move_to_end(key)
            return set(known)
        found = await self._among(account_id, node, held)
        self.hidden_matches[key] = frozenset(found)
        while len(self.hidden_matches) > HELD_BOXES:
            self.hidden_matches.popitem(last=False)
        return found

    def _hidden_key(self, node: q.Node, hidden: list[Mailbox]) -> tuple[object, ...] | None:
        """What _hidden_matches' answer for `node` depends on, or None when it cannot be
        kept: the hidden mailboxes' states as their ids were read (self.held)."""
        read = [self.held.get(b.id) for b in hidden]
        if not _keepable(node) or any(r is None for r in read):
            return None
        return (node, tuple((b.id, r[0]) for b, r in zip(hidden, read, strict=True) if r))

    async def _page(self, account_id: str, node: q.Node, hidden: list[Mailbox],
                          order: Order, limit: int | None, position: int) -> Hits:
        """A page of `node`'s hits outside `hidden`, without a count."""
        if not hidden:
            return await self._run(account_id, node, order, limit, position, False)
        return await self._without(account_id, node, hidden, order, limit, position, False)

    async def _held(self, account_id: str, hidden: list[Mailbox]) -> set[str]:
        """The emails of the hidden mailboxes, read by mailbox (its own index) as IMAP SELECT
        reads it: a query_emails condition on the mailboxes walked the account's every email
        (200-600 ms at 100k). Each mailbox's set is kept for the state it was read in (UIDNEXT
        rises with every email added, the total falls with every one removed, HIGHESTMODSEQ
        rises with both), which `hidden` (read by this search) gives: Spam and Trash change
        far less often than they are searched, and reading the two cost 10-40 ms at 100k
        messages on a loaded machine."""
        out: set[str] = set()
        for box in hidden:
            known = self.held.get(box.id)
            if known is None or known[0] != _state(box):
                snapshot = await self.store.snapshot(account_id, box.id)
                # The state of the snapshot's own read: a write between list_mailboxes and
                # it leaves a state no later search will ask for, never a wrong set.
                known = (_state(snapshot.mailbox),
                         frozenset(e.email_id for e in snapshot.entries))
                self.held[box.id] = known
                while len(self.held) > HELD_BOXES:
                    self.held.popitem(last=False)
            self.held.move_to_end(box.id)
            out |= known[1]
        return out

    def _held_already(self, hidden: list[Mailbox]) -> set[str] | None:
        """The hidden mailboxes' emails when this service already holds them for the states
        this search listed (no read), else None: a page then drops the hidden ones among
        its hits without asking the store about them (a read of the page's ids per page,
        ~0.3-1 ms of a first page that takes 1-2)."""
        out: set[str] = set()
        for box in hidden:
            known = self.held.get(box.id)
            if known is None or known[0] != _state(box):
                return None
            out |= known[1]
        return out

    async def snippets(self, account: Account, query: str | q.Node,
                       email_ids: Sequence[str]) -> list[Snippet]:
        """The matched terms of `query` marked in each email's subject and text."""
        node = q.gmail_meaning(q.parse(query)) if isinstance(query, str) else query
        text = _text_part(node)
        if text is None:
            return [Snippet(e, None, None) for e in email_ids]
        return await self.index.snippets(account.id, text, email_ids)

    # ------------------------------------------------------------------ resolving names

    async def resolve(self, account: Account, node: q.Node, *, gmail_scope: bool = True,
                      now: datetime | None = None) -> q.Node:
        """Mailbox names to ids, relative ages to instants, and Gmail's hidden mailboxes."""
        scope = _Scope(await self.store.list_mailboxes(account.id))
        resolved = self._resolve(node, scope, now or datetime.now(UTC))
        if not gmail_scope or scope.wants_hidden:
            return resolved
        hidden = [q.Not(q.Mailbox(b.id, by_id=True)) for b in scope.boxes
                  if b.role in ("trash", "junk")]
        return _and([*_conjuncts(resolved), *hidden]) if hidden else resolved

    def _resolve(self, node: q.Node, scope: _Scope, now: datetime) -> q.Node:
        if isinstance(node, q.And):
            return q.And(tuple(self._resolve(n, scope, now) for n in node.items))
        if isinstance(node, q.Or):
            return q.Or(tuple(self._resolve(n, scope, now) for n in node.items))
        if isinstance(node, q.Not):
            return q.Not(self._resolve(node.item, scope, now))
        if isinstance(node, q.Anywhere):
            scope.wants_hidden = True
            return node
        if isinstance(node, q.Age):
            days = node.amount * {"d": 1, "m": 30, "y": 365}[node.unit]
            return q.Received("before" if node.op == "older" else "after",
                              now - timedelta(days=days))
        if isinstance(node, q.Mailbox) and not node.by_id:
            return self._mailbox(node.name, scope)
        return node

    def _mailbox(self, name: str, scope: _Scope) -> q.Node:
        keyword = q.keyword_label(name)
        if keyword is not None:
            return keyword
        if q.LABEL_ROLES.get(name.lower()) in ("trash", "junk"):
            scope.wants_hidden = True
        box = q.named_mailbox(name, scope.boxes)
        if box is not None:
            if box.role in ("trash", "junk"):
                scope.wants_hidden = True
            return q.Mailbox(box.id, by_id=True)
        return _NOTHING  # no such label: Gmail finds nothing, not an error

    # ------------------------------------------------------------------ planning

    async def _run(self, account_id: str, node: q.Node, order: Order, limit: int | None,
                   position: int, total: bool) -> Hits:
        parts = _conjuncts(node)
        text = [n for n in parts if _is_text(n)]
        meta = [n for n in parts if _is_meta(n)]
        if len(text) + len(meta) < len(parts):
            ids = await self._ids(account_id, node)
            return await self.store.query_emails(account_id, q.And(()), among=list(ids),
                                                 order=order, limit=limit, position=position,
                                                 total=total)
        if not text:
            return await self.store.query_emails(account_id, _and(meta), order=order,
                                                 limit=limit, position=position, total=total)
        if not meta or all(_is_arrival_bound(n) for n in meta):
            # Arrival-time bounds are the index's own rowid ranges, exact: no store check.
            return await self.index.query(account_id, _and(text), order=order, limit=limit,
                                          position=position, total=total,
                                          received=_received_bounds(meta))
        probe = await self.store.query_emails(account_id, _and(meta), limit=self.probe)
        if len(probe.ids) < self.probe:
            return await self.index.query(account_id, _and(text), among=probe.ids, order=order,
                                          limit=limit, position=position, total=total)
        received = _received_bounds(meta)
        hits = await self.index.query(account_id, _and(text), order=order, limit=self.probe,
                                      received=received)
        if len(hits.ids) < self.probe:  # the words are the selective half: check them all
            agree = set((await self.store.query_emails(account_id, _and(meta),
                                                       among=hits.ids)).ids)
            kept = [e for e in hits.ids if e in agree]
            page = kept[position:] if limit is None else kept[position:position + limit]
            return Hits(page, len(kept) if total else None)
        return await self._stream(account_id, _and(text), _and(meta), order, limit, position,
                                  total)

    async def _stream(self, account_id: str, text: q.Node, meta: q.Node, order: Order,
                      limit: int | None, position: int, total: bool) -> Hits:
        """Text hits in order, a growing page at a time, kept when the store agrees."""
        wanted = None if limit is None or total else position + limit
        kept: list[str] = []
        offset, page = 0, self.first_page
        while wanted is None or len(kept) < wanted:
            hits = await self.index.query(account_id, text, order=order, limit=page,
                                          position=offset, received=_received_bounds(
                                              _conjuncts(meta)))
            if not hits.ids:
                break
            agree = set((await self.store.query_emails(account_id, meta,
                                                       among=hits.ids)).ids)
            kept += [e for e in hits.ids if e in agree]
            if len(hits.ids) < page:
                break
            offset += page
            page *= 4
        ids = kept[position:] if limit is None else kept[position:position + limit]
        return Hits(ids, len(kept) if total else None)

    async def _ids(self, account_id: str, node: q.Node) -> set[str]:
        """Every email matching `node`, by set algebra over the two engines."""
        if _is_meta(node):
            return set((await self.store.query_emails(account_id, node)).ids)
        if _is_text(node):
            return set((await self.index.query(account_id, node)).ids)
        if isinstance(node, q.And):
            out: set[str] | None = None
            for item in node.items:
                found = await self._ids(account_id, item)
                out = found if out is None else out & found
            return out or set()
        if isinstance(node, q.Or):
            union: set[str] = set()
            for item in node.items:
                union |= await self._ids(account_id, item)
            return union
        if isinstance(node, q.Not):
            everything = set((await self.store.query_emails(account_id, q.And(()))).ids)
            return everything - await self._ids(account_id, node.item)
        assert isinstance(node, q.Text)  # a substring term (IMAP semantics)
        field = {"subject": "subject", "body": "body", None: None}.get(node.field, "addresses")
        found_sub = await self.index.substring(account_id, field, node.value)
        if found_sub is None:
            raise ValueError(f"substring {node.value!r} is too short for the index")
        return found_sub

    # ------------------------------------------------------------------ among given emails

    async def among(self, account: Account, node: q.Node, email_ids: Collection[str]
                    ) -> set[str]:
        """The emails of `email_ids` that match `node`, exactly: IMAP SEARCH, where the
        selected mailbox's view fixes the candidates and no order or page is wanted.

        Each engine sees only candidates still in play: an AND narrows item by item (index
        terms first, then the metadata half in one store query over what is left), an OR asks
        each item only about what earlier items did not match, a NOT about what its parent
        still holds. A Header condition (IMAP FROM/SUBJECT/HEADER ... substrings) is first
        narrowed by the index's trigram table, then checked on the stored header by the store.
        Raises ValueError when a substring is too short for the index to answer: the caller
        then has to look at the messages itself."""
        node = await self.resolve(account, node, gmail_scope=False)
        return await self._among(account.id, node, set(email_ids))

    async def _among(self, account_id: str, node: q.Node, ids: set[str]) -> set[str]:
        if not ids:
            return ids
        if _is_text(node) and not isinstance(node, q.Text):
            # One MATCH for a tree of words ("ciku -brix"): item by item, the NOT's words were
            # asked about the candidates left, one FTS5 lookup each (67 ms for 428 at 100k).
            return ids & set((await self.index.query(account_id, node, among=list(ids))).ids)
        if isinstance(node, q.And):
            meta = [n for n in node.items if _is_meta(n) and not _narrowable(n)]
            for item in sorted((n for n in node.items if not _is_meta(n) or _narrowable(n)),
                               key=lambda n: not isinstance(n, q.Text)):
                ids = await self._among(account_id, item, ids)
            if meta and ids:
                ids = await self._meta_among(account_id, _and(meta), ids)
            return ids
        if isinstance(node, q.Or) and not _is_meta(node):
            found: set[str] = set()
            for item in node.items:
                found |= await self._among(account_id, item, ids - found)
            return found
        if isinstance(node, q.Not) and not _is_meta(node):
            return ids - await self._among(account_id, node.item, ids)
        if isinstance(node, q.Text):
            if not node.substring:
                return ids & set((await self.index.query(account_id, node,
                                                         among=list(ids))).ids)
            field = {"subject": "subject", "body": "body", None: None}.get(node.field,
                                                                            "addresses")
            found_sub = await self.index.substring(account_id, field, node.value)
            if found_sub is None:
                raise ValueError(f"substring {node.value!r} is too short for the index")
            return ids & found_sub
        if isinstance(node, q.Header) and (field := _narrowable(node)):
            hits = await self.index.substring(account_id, field, node.value)
            if hits is not None:
                ids = ids & hits
        return await self._meta_among(account_id, node, ids)

    async def _meta_among(self, account_id: str, node: q.Node, ids: set[str]) -> set[str]:
        if not ids:
            return ids
        return set((await self.store.query_emails(account_id, node, among=list(ids))).ids)


_INDEXED_HEADERS = {"subject": "subject", "from": "addresses", "to": "addresses",
                    "cc": "addresses"}


_UNREAD = q.Not(q.Keyword("$seen"))


_KEEPABLE = (q.Keyword, q.HasAttachment, q.Size, q.Date, q.Received, q.MessageId, q.Header,
             q.Anywhere)
"""Metadata conditions whose answer for an email changes only with that email's own state
(keywords: its MODSEQ, which every mailbox holding it takes) or never."""


def _keepable(node: q.Node) -> bool:
    """Whether _hidden_matches may keep `node`'s answer (see _KEEPABLE): no text, no
    condition on other emails of the thread, mailboxes by id only."""
    if isinstance(node, q.And | q.Or):
        return all(_keepable(n) for n in node.items)
    if isinstance(node, q.Not):
        return _keepable(node.item)
    if isinstance(node, q.Mailbox):
        return node.by_id
    return isinstance(node, _KEEPABLE)


def _state(box: Mailbox) -> tuple[int, ...]:
    """What changes whenever the set of a mailbox's emails does (see SearchService._held)."""
    return (box.uidvalidity, box.uidnext, box.total, box.highest_modseq)


def _index_alone(node: q.Node) -> q.Node | None:
    """The text half of a query the index answers alone (words, and arrival-time bounds
    which are its own rowid ranges), or None."""
    parts = _conjuncts(node)
    text = [n for n in parts if _is_text(n)]
    if not text or not all(_is_text(n) or _is_arrival_bound(n) for n in parts):
        return None
    return _and(text)


def _mailbox_count(node: q.Node, scope: _Scope) -> int | None:
    """The count a mailbox's own counters give for `node`: its total for a query that is one
    resolved mailbox condition, its unread count for that and `is:unread`; None otherwise."""
    unread = False
    if isinstance(node, q.And) and len(node.items) == 2 and _UNREAD in node.items:
        node = next(n for n in node.items if n != _UNREAD)
        unread = True
    if not (isinstance(node, q.Mailbox) and node.by_id):
        return None
    box = next((b for b in scope.boxes if b.id == node.name), None)
    if box is None:
        return None
    return box.unread if unread else box.total


def _narrowable(node: q.Node) -> str | None:
    """The index field whose trigrams hold a Header condition's value, if one does: the index
    keeps subjects and the names and addresses of From/To/Cc (not "name <address>", so a
    value with <, > or quotes may span what it stores and is not narrowed)."""
    if not isinstance(node, q.Header) or not node.value or set('<>"') & set(node.value):
        return None
    return _INDEXED_HEADERS.get(node.name)


def _is_arrival_bound(node: q.Node) -> bool:
    """A condition _received_bounds turns into an arrival-time range exactly."""
    return isinstance(node, q.Received) or (isinstance(node, q.Date)
                                            and node.field == "received")


def _received_bounds(meta: list[q.Node]) -> tuple[int | None, int | None]:
    """Arrival-time bounds (ms, [low, high)) that AND-ed date conditions imply. The index keeps
    documents in arrival order, so it can skip straight to the range ("older_than:1y word"
    would otherwise read a year of newer hits first); the store still checks every hit."""
    low: int | None = None
    high: int | None = None
    for node in meta:
        if isinstance(node, q.Received):
            ms = int(node.at.timestamp() * 1000)
        elif isinstance(node, q.Date) and node.field == "received":
            ms = int(datetime.combine(node.day, datetime.min.time(), UTC).timestamp() * 1000)
        else:
            continue
        if node.op == "on":
            low = ms if low is None else max(low, ms)
            end = ms + 86_400_000
            high = end if high is None else min(high, end)
        elif node.op == "before":
            high = ms if high is None else min(high, ms)
        elif node.op == "after":
            low = ms if low is None else max(low, ms)
    return low, high


def _text_part(node: q.Node) -> q.Node | None:
    """The positive text terms of a query, for marking them in snippets."""
    if _is_text(node):
        return node
    if isinstance(node, q.And):
        kept = [t for n in node.items if (t := _text_part(n)) is not None]
        return _and(kept) if kept else None
    if isinstance(node, q.Or):
        kept = [t for n in node.items if (t := _text_part(n)) is not None]
        return q.Or(tuple(kept)) if kept else None
    return None


async def body_text(mailbox: MailboxService, record: EmailRecord) -> str:
    """What IMAP BODY searches in one stored message (core.indextext.message_body_text, the
    text the trigram index holds), for a needle too short for that index: parsed on a thread
    with the pipeline's own limits, so the event loop serves others meanwhile."""
    raw = await mailbox.raw_of(record)
    _, text = await asyncio.to_thread(mailbox.pipeline.analyse_text, raw)
    return message_body_text(text)


async def reindex(mailbox: MailboxService, account: Account,
                  progress: Callable[[int, int], None] | None = None, *,
                  batch: int = 200) -> int:
    """Rebuild the account's full-text documents from its stored mail (after a change of
    what is indexed, or a lost index file). Delivery goes on meanwhile: a message delivered
    during the rebuild is indexed by the pipeline and again here, and replacing is harmless."""
    # Here, not at the top: `mailyard search` loads this module and need not load the pipeline.
    from mailyard.pipeline.inbound import document
    store, index, pipeline = mailbox.store, mailbox.index, mailbox.pipeline
    todo = (await store.query_emails(account.id, q.And(()), limit=0, total=True)).total or 0
    await index.clear(account.id)
    done, after = 0, ""
    while ids := await store.email_ids(account.id, after=after, limit=batch):
        after = ids[-1]
        documents = []
        for record in await store.get_emails(account.id, ids, brief=True):
            try:
                raw = await mailbox.raw_of(record)
            except NotFound:
                log.warning("reindex: message %s of %s has no blob", record.id, account.address)
                continue
            _, text = await asyncio.to_thread(pipeline.analyse_text, raw)
            documents.append(document(account.id, record.id, record.received_at, text))
        await index.index(documents)
        done += len(ids)
        if progress:
            progress(done, max(todo, done))
    return done
