"""Email/query's sort (RFC 8621 §4.4.2): the Comparators a client may give, checked and made
into the store's typed sort (core.emailsort.SortKey).

receivedAt alone is the store's own paged order (newest or oldest first). Any other sort, and
collapsed threads, are ordered by the store too (store.sqlsort: ORDER BY for numbers and
keywords, collated keys for strings), ties newest first.
"""

from __future__ import annotations

from mailyard.core.emailsort import COLLATIONS, KEYWORD_PROPERTIES, PROPERTIES, SortKey
from mailyard.protocols.jmap.errors import MethodError
from mailyard.protocols.jmap.mail.common import valid_keyword
from mailyard.store.ports import Order

__all__ = ["PROPERTIES", "comparators", "store_order", "thread_dependent"]

THREAD_SORTS = frozenset({"allInThreadHaveKeyword", "someInThreadHaveKeyword"})
NEWEST = (SortKey("receivedAt", ascending=False),)


def comparators(sort: object) -> list[SortKey]:
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
        if prop in KEYWORD_PROPERTIES:
            if not isinstance(keyword, str) or not valid_keyword(keyword):
                raise MethodError("invalidArguments", f"{prop} needs a keyword")
            keyword = keyword.lower()
        else:
            keyword = None
        out.append(SortKey(str(prop), ascending, keyword, name))
    return out


def store_order(sort: list[SortKey]) -> Order | None:
    """The store's own order when the sort is no more than that (none, or receivedAt)."""
    if not sort:
        return "newest"
    if len(sort) == 1 and sort[0].property == "receivedAt":
        return "oldest" if sort[0].ascending else "newest"
    return None


def thread_dependent(sort: list[SortKey]) -> bool:
    """Whether an email's place depends on the other emails of its thread (so a change to
    one moves another, and queryChanges cannot follow it)."""
    return any(c.property in THREAD_SORTS for c in sort)
