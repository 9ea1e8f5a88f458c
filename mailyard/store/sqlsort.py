"""JMAP Email/query sorts (core.emailsort) as SQL, for the SQLite and PostgreSQL mail stores.

Numbers and keyword tests are ordered by the engine (ORDER BY, with ROW_NUMBER per thread for
collapsed threads); a string property (the subject, the first From or To address's name or
email, which the engine reads) is collated by core.emailsort in Python, so both engines order
strings alike (see `in_python`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mailyard.core import emailsort
from mailyard.core.emailsort import SortKey

Dialect = Literal["sqlite", "postgres"]
TIE_BREAK = ("e.received_at", False), ("e.id", False)
"""The order of an unsorted query (newest first) breaks every tie."""


@dataclass(frozen=True, slots=True)
class SortColumns:
    """One SELECT expression per SortKey (k0, k1, ...) over `emails e`."""

    exprs: list[str]
    in_python: bool
    """A string property is sorted: the rows are read and ordered by `order_rows`."""


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
    return SortColumns(exprs, any(k.property in emailsort.STRING_PROPERTIES for k in sort))


def order_by(sort: Sequence[SortKey], names: Sequence[str], tie: Sequence[str],
             dialect: Dialect) -> str:
    """ORDER BY terms: each key by its column name, then the tie-break columns (newest
    first)."""
    terms = []
    for key, name in zip(sort, names, strict=True):
        term = f"{name} {'ASC' if key.ascending else 'DESC'}"
        if key.property == "sentAt" and dialect == "postgres":
            term += " NULLS FIRST" if key.ascending else " NULLS LAST"
        terms.append(term)
    return ", ".join([*terms, *(f"{t} DESC" for t in tie)])


def select(sort: Sequence[SortKey], cols: SortColumns, body: str, collapse: bool,
           dialect: Dialect) -> str:
    """SELECT id ... ordered by the sort, `body` being `FROM emails e WHERE ...`; with
    `collapse`, the first email of each thread in that order."""
    names = [f"k{n}" for n in range(len(sort))]
    keyed = ", ".join(f"{x} AS {n}" for x, n in zip(cols.exprs, names, strict=True))
    inner = (f"SELECT e.id AS id, e.thread_id AS thread_id, e.received_at AS received_at"
             f"{', ' + keyed if keyed else ''} {body}")
    order = order_by(sort, names, ("received_at", "id"), dialect)
    if not collapse:
        return f"SELECT id FROM ({inner}) s ORDER BY {order}"
    ranked = (f"SELECT s.*, row_number() OVER (PARTITION BY thread_id ORDER BY {order}) AS rn"
              f" FROM ({inner}) s")
    return f"SELECT id FROM ({ranked}) r WHERE rn = 1 ORDER BY {order}"


def newest_first(sort: Sequence[SortKey]) -> bool:
    """Whether `sort` orders as arrival, newest first (no key, or receivedAt descending
    only): the order of the arrival index, read from its newest end."""
    return all(k.property == "receivedAt" and not k.ascending for k in sort)


def first_of_threads(rows: Iterable[Sequence[Any]], position: int, limit: int) -> list[str]:
    """Ids of the first email of each thread among `rows` (id, thread id), in their order,
    from `position` on, at most `limit`: the rows are read only until the page is full, so a
    cursor over the arrival index stops after a few hundred rows instead of ranking every
    email of a mailbox (the webmail's first page of 100,000 messages: 869 ms)."""
    seen: set[str] = set()
    ids: list[str] = []
    for email_id, thread_id in rows:
        if thread_id in seen:
            continue
        seen.add(thread_id)
        ids.append(email_id)
        if len(ids) >= position + limit:
            break
    return ids[position:]


def rows_select(cols: SortColumns, body: str) -> str:
    """The rows `order_rows` sorts: id, thread id, arrival, then one column per key; newest
    first already (the arrival index gives them so) when `body` is the whole WHERE."""
    keyed = "".join(f", {x}" for x in cols.exprs)
    return (f"SELECT e.id, e.thread_id, e.received_at{keyed} {body}"
            " ORDER BY e.received_at DESC, e.id DESC")


def order_rows(rows: Sequence[Sequence[Any]], sort: Sequence[SortKey], collapse: bool,
               newest_first: bool = False) -> list[str]:
    """Ids of rows from `rows_select`, sorted: string columns become their collated keys.
    `newest_first`: the rows came in that order (one query, not chunks)."""
    newest = rows if newest_first else sorted(rows, key=lambda r: (r[2], r[0]), reverse=True)
    keyed = []
    for row in newest:
        keys: list[Any] = []
        for n, key in enumerate(sort):
            value = row[3 + n]
            if key.property == "subject":
                value = emailsort.string_key(key, value or "", {})
            elif key.property in ("from", "to"):
                value = emailsort.COLLATIONS[key.collation](value or "")
            elif key.property == "sentAt" and value is None:
                value = emailsort.NO_DATE
            elif isinstance(value, bool):
                value = int(value)
            keys.append(value)
        keyed.append((row[0], row[1], tuple(keys)))
    return emailsort.order_rows(keyed, sort, collapse)
