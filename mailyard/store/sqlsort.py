"""JMAP Email/query sorts (core.emailsort) as SQL, for the SQLite and PostgreSQL mail stores'
query reads (store.ports.EmailQuery).

Which read answers a query, and the collation of the string properties, are the model's
(mailyard/model/query.py); here is only how each SortKey's value is read in each dialect, and
the ORDER BY the engine runs for numbers and keyword tests (with ROW_NUMBER per thread for
collapsed threads).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mailyard.core.emailsort import SortKey
    from mailyard.store.ports.search import Order

Dialect = Literal["sqlite", "postgres"]


@dataclass(frozen=True, slots=True)
class SortColumns:
    """One SELECT expression per SortKey (k0, k1, ...) over `emails e`."""

    exprs: list[str]


def _has(dialect: Dialect, alias: str, param: str) -> str:
    if dialect == "postgres":
        return f"({param}::text = ANY({alias}.keywords))"
    return f"EXISTS (SELECT 1 FROM json_each({alias}.keywords) WHERE value = {param})"


def _first_address(dialect: Dialect, prop: str) -> str:
    """The name of the field's first address, else its email (§4.4.2), read from the stored
    JSON of the address fields by the engine: parsing it in Python cost 0.3 s at 100,000."""
    if dialect == "postgres":
        doc = "convert_from(e.headers, 'UTF8')::jsonb"
        return (f"coalesce(nullif({doc} #>> '{{{prop},0,name}}', ''),"
                f" {doc} #>> '{{{prop},0,email}}', '')")
    doc = "CAST(e.headers AS TEXT)"
    return (f"coalesce(nullif(json_extract({doc}, '$.{prop}[0].name'), ''),"
            f" json_extract({doc}, '$.{prop}[0].email'), '')")


def columns(sort: Sequence[SortKey], dialect: Dialect, param: Callable[[Any], str]
            ) -> SortColumns:
    """The expressions; `param(value)` adds a bound value and returns its placeholder (in
    SELECT order: SQLite's `?` are positional)."""
    exprs = []
    for key in sort:
        prop = key.property
        if prop == "receivedAt":
            exprs.append("e.received_at")
        elif prop == "size":
            exprs.append("e.size")
        elif prop == "sentAt":
            # No Date sorts before every date: SQLite's NULL is the smallest value already,
            # PostgreSQL's is told so in order_by (the index on sent_at serves both).
            exprs.append("e.sent_at")
        elif prop == "subject":
            exprs.append("e.subject")
        elif prop in ("from", "to"):
            exprs.append(_first_address(dialect, prop))
        elif prop == "hasKeyword":
            exprs.append(_has(dialect, "e", param(key.keyword or "")))
        else:
            same_thread = ("SELECT 1 FROM emails t WHERE t.account_id = e.account_id"
                           " AND t.thread_id = e.thread_id AND ")
            has = _has(dialect, "t", param(key.keyword or ""))
            exprs.append(f"EXISTS ({same_thread}{has})" if prop == "someInThreadHaveKeyword"
                         else f"NOT EXISTS ({same_thread}NOT {has})")
    return SortColumns(exprs)


def order_by(sort: Sequence[SortKey], names: Sequence[str], tie: Sequence[str],
             dialect: Dialect, then: Order = "newest") -> str:
    """ORDER BY terms: each key by its column name, then the tie-break columns (newest or
    oldest first)."""
    terms = []
    for key, name in zip(sort, names, strict=True):
        term = f"{name} {'ASC' if key.ascending else 'DESC'}"
        if key.property == "sentAt" and dialect == "postgres":
            term += " NULLS FIRST" if key.ascending else " NULLS LAST"
        terms.append(term)
    direction = "DESC" if then == "newest" else "ASC"
    return ", ".join([*terms, *(f"{t} {direction}" for t in tie)])


def select(sort: Sequence[SortKey], cols: SortColumns, body: str, collapse: bool,
           dialect: Dialect, then: Order = "newest") -> str:
    """SELECT id ... ordered by the sort, ties by arrival `then`, `body` being `FROM emails e
    WHERE ...`; with `collapse`, the first email of each thread in that order. No key and no
    collapse: the arrival index's own order, as one plain SELECT."""
    if not sort and not collapse:
        arrival = order_by((), (), ("e.received_at", "e.id"), dialect, then)
        return f"SELECT e.id {body} ORDER BY {arrival}"
    names = [f"k{n}" for n in range(len(sort))]
    keyed = ", ".join(f"{x} AS {n}" for x, n in zip(cols.exprs, names, strict=True))
    inner = (f"SELECT e.id AS id, e.thread_id AS thread_id, e.received_at AS received_at"
             f"{', ' + keyed if keyed else ''} {body}")
    order = order_by(sort, names, ("received_at", "id"), dialect, then)
    if not collapse:
        return f"SELECT id FROM ({inner}) s ORDER BY {order}"
    ranked = (f"SELECT s.*, row_number() OVER (PARTITION BY thread_id ORDER BY {order}) AS rn"
              f" FROM ({inner}) s")
    return f"SELECT id FROM ({ranked}) r WHERE rn = 1 ORDER BY {order}"


def rows_select(cols: SortColumns, body: str, ordered: bool = True) -> str:
    """The rows the model orders (store.ports.KeyRow): id, thread id, arrival, then one
    column per key; newest first when `ordered` (the arrival index gives them so)."""
    keyed = "".join(f", {x}" for x in cols.exprs)
    return (f"SELECT e.id, e.thread_id, e.received_at{keyed} {body}"
            + (" ORDER BY e.received_at DESC, e.id DESC" if ordered else ""))
