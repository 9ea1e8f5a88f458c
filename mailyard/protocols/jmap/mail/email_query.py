"""Email/query (RFC 8621 §4.4): the JMAP filter becomes the same query tree as the search box,
so IMAP SEARCH, Gmail-style queries and JMAP are answered by one planner.

Email/queryChanges (RFC 8620 §5.6) reads the change log (see querystate): every email changed
since the query state is removed and, if it matches now, added at its index. Two kinds of query
cannot be answered that way and say so with canCalculateChanges false: collapsed threads (an
email that did not change can become or stop being its thread's first) and the thread keyword
filters (a flag on one email changes whether its thread's other emails match).

JMAP filters say exactly which mailboxes they want, so Gmail's habit of leaving Spam and Trash
out of a search is switched off (gmail_scope=False).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mailyard.core import query as q
from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.errors import MethodError
from mailyard.protocols.jmap.mail import email_sort
from mailyard.protocols.jmap.mail.common import (
    MAIL,
    current_state,
    search_service,
)
from mailyard.protocols.jmap.mail.mailbox import threads_in
from mailyard.protocols.jmap.mail.querystate import (
    changed_since,
    query_changes_response,
)

MAX_LIMIT = 1000
"""Ids in one answer at most (the client pages with position or anchor beyond that)."""


def _int(args: dict[str, Any], key: str, default: int, minimum: int | None) -> int:
    value = args.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or (
            minimum is not None and value < minimum):
        raise MethodError("invalidArguments", f"{key} must be an integer"
                          + ("" if minimum is None else f" >= {minimum}"))
    return value


def _only_mailbox(value: object) -> str | None:
    """The mailbox id of a filter that is exactly {"inMailbox": id}, else None."""
    if isinstance(value, dict) and value.keys() == {"inMailbox"}:
        box = value["inMailbox"]
        return box if isinstance(box, str) else None
    return None


def filter_node(args: dict[str, Any]) -> q.Node:
    """The `filter` argument as a query tree; no filter matches every email."""
    value = args.get("filter")
    if value is None:
        return q.And(())
    if _too_deep(value, 0):
        raise MethodError("invalidArguments", f"the filter nests FilterOperators deeper than"
                                              f" {q.MAX_DEPTH} levels")
    try:
        return q.from_jmap(value)
    except q.FilterError as e:
        raise MethodError("unsupportedFilter" if e.unsupported else "invalidArguments",
                          str(e)) from None


def _too_deep(value: object, depth: int) -> bool:
    """Whether FilterOperators nest past the query tree's MAX_DEPTH (the walk stops there,
    so a hostile filter costs no more than a legal one)."""
    if not isinstance(value, dict) or "operator" not in value:
        return False
    if depth >= q.MAX_DEPTH:
        return True
    conditions = value.get("conditions")
    return isinstance(conditions, list) and any(_too_deep(c, depth + 1) for c in conditions)


@method("Email/query", capability=MAIL)
async def email_query(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    node = filter_node(args)
    sort = email_sort.comparators(args.get("sort"))
    order = email_sort.store_order(sort)
    position = _int(args, "position", 0, None)
    limit = min(_int(args, "limit", MAX_LIMIT, 0), MAX_LIMIT)
    anchor = args.get("anchor")
    if anchor is not None and not isinstance(anchor, str):
        raise MethodError("invalidArguments", "anchor must be an id")
    anchor_offset = _int(args, "anchorOffset", 0, None)
    collapse = args.get("collapseThreads", False)
    want_total = args.get("calculateTotal", False)
    if not isinstance(collapse, bool) or not isinstance(want_total, bool):
        raise MethodError("invalidArguments", "collapseThreads and calculateTotal are booleans")
    state = await current_state(ctx)
    search = search_service(ctx)
    total: int | None
    paged = anchor is None and position >= 0
    if order is not None and not collapse:
        # The store's own order; anchors and negative positions need the whole result.
        hits = await search.search(ctx.account, node, limit=limit if paged else None,
                                   position=position if paged else 0, total=want_total,
                                   order=order, gmail_scope=False)
    else:
        # A page of one mailbox's threads (a mail client's list, sized from the total): the
        # total is the mailbox's totalThreads, counted once per account state for Mailbox/get
        # and this alike, instead of a count of every thread of the mailbox per page.
        box_id = _only_mailbox(args.get("filter")) if collapse and paged else None
        hits = await search.sorted_search(ctx.account, node, sort or email_sort.NEWEST,
                                          collapse_threads=collapse,
                                          limit=limit if paged else None,
                                          position=position if paged else 0,
                                          total=(want_total and box_id is None) or not paged)
        if want_total and box_id is not None:
            hits = replace(hits, total=(await threads_in(ctx, box_id, state)).total)
    total = hits.total
    ids = hits.ids
    if not paged:
        every = ids
        total = len(every)
        if anchor is not None:
            if anchor not in every:
                raise MethodError("anchorNotFound")
            position = max(every.index(anchor) + anchor_offset, 0)
        elif position < 0:
            position = max(total + position, 0)
        ids = every[position : position + limit]
    tracked = (not collapse and not _thread_dependent(args.get("filter"))
               and not email_sort.thread_dependent(sort))
    out: dict[str, Any] = {"accountId": account_id, "queryState": str(state),
                           "canCalculateChanges": tracked, "position": position, "ids": ids}
    if want_total:
        out["total"] = total
    if "limit" in args and args["limit"] is not None and args["limit"] > MAX_LIMIT:
        out["limit"] = MAX_LIMIT
    return out


_THREAD_CONDITIONS = ("allInThreadHaveKeyword", "someInThreadHaveKeyword",
                      "noneInThreadHaveKeyword")


def _thread_dependent(value: object, depth: int = 0) -> bool:
    """Whether the filter asks about other emails of the thread (depth-bounded: the query
    parser refuses deeper trees anyway)."""
    if not isinstance(value, dict) or depth > 64:
        return False
    if any(k in value for k in _THREAD_CONDITIONS):
        return True
    conditions = value.get("conditions")
    return isinstance(conditions, list) and any(
        _thread_dependent(c, depth + 1) for c in conditions)


@method("Email/queryChanges", capability=MAIL)
async def email_query_changes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    node = filter_node(args)
    sort = email_sort.comparators(args.get("sort"))
    order = email_sort.store_order(sort)
    collapse = args.get("collapseThreads", False)
    if collapse not in (None, False, True):
        raise MethodError("invalidArguments", "collapseThreads is a boolean")
    if collapse or _thread_dependent(args.get("filter")) or email_sort.thread_dependent(sort):
        raise MethodError("cannotCalculateChanges", "collapsed threads and thread keyword"
                                                    " filters and sorts are not tracked")
    state, changed = await changed_since(ctx, args, "Email")
    search = search_service(ctx)
    if changed:
        if order is None:
            results = (await search.sorted_search(ctx.account, node, sort, limit=None)).ids
        else:
            results = (await search.search(ctx.account, node, limit=None, order=order,
                                           gmail_scope=False)).ids
    else:
        # Nothing moved: only the total, if asked, needs the query run.
        results = []
        if args.get("calculateTotal") is True:
            hits = await search.search(ctx.account, node, limit=0, total=True,
                                       order=order or "newest", gmail_scope=False)
            answer = query_changes_response(ctx, args, account_id, state, changed, [])
            answer["total"] = hits.total
            return answer
    return query_changes_response(ctx, args, account_id, state, changed, results)
