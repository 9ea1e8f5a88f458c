"""What a SEARCH returns beyond the list of numbers: ESEARCH result data (RFC 4731), PARTIAL
windows (RFC 9394), the MODSEQ of the result (RFC 7162 §3.1.5), and the search contexts that
CONTEXT=SEARCH keeps up to date (RFC 5267 §4).

The functions over a result (`partial_window`, `returned`, `esearch_data`) are generic: SORT's
ESORT/CONTEXT=SORT can use them on its sorted list as they are.

Search contexts: `SEARCH RETURN (UPDATE)` keeps the search's key and the UIDs it matched.
Whenever the session tells its client about changes to the mailbox (`report_context_updates`,
which Session.report_updates calls once it has sent EXPUNGE/EXISTS/FETCH, so that an ADDTO
never names a message the client has not heard of), each context is searched again and the
difference goes out as `* ESEARCH (TAG "t") [UID] REMOVETO (0 set)` / `ADDTO (0 set)`.
Position 0 because SEARCH results have no order of their own to place a message in (RFC 5267
§4.3); messages that were expunged leave every context without a REMOVETO, as the EXPUNGE
already said so. A context ends with CANCELUPDATE or when the mailbox is deselected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from mailyard.protocols.imap.grammar import PartialRange, SearchKey
from mailyard.protocols.imap.selected import Selected, compact

if TYPE_CHECKING:
    from mailyard.protocols.imap.session import Session

T = TypeVar("T")

MAX_CONTEXTS = 16
"""Search contexts one session may keep updated; past that, NOUPDATE (RFC 5267 §4.2)."""


# --------------------------------------------------------------------------- result data


def partial_window(items: Sequence[T], rng: PartialRange) -> list[T]:
    """The items at the 1-based positions of `rng` (RFC 9394 §3.1): from the first item, or,
    for a negative range, from the last one (-1 is the last); a range past the end is cut."""
    n = len(items)
    if rng.from_end:
        start, stop = max(n - rng.high, 0), max(n - rng.low + 1, 0)
    else:
        start, stop = min(rng.low - 1, n), min(rng.high, n)
    return list(items[start:stop])


def returned(items: Sequence[T], options: Iterable[str],
             partial: PartialRange | None) -> list[T]:
    """The part of a result that the return options hand back: all of it with ALL or COUNT
    (or no option that picks), else only MIN, MAX and the PARTIAL window. It is what SAVE
    keeps (RFC 5182 §2.1: "SAVE with MIN/MAX saves only those") and what the MODSEQ of the
    result is taken over (RFC 7162 §3.1.5)."""
    wanted = set(options)
    if not items or wanted & {"ALL", "COUNT"} or not wanted & {"MIN", "MAX", "PARTIAL"}:
        return list(items)
    picked: dict[int, T] = {}
    if "MIN" in wanted:
        picked[0] = items[0]
    if "MAX" in wanted:
        picked[len(items) - 1] = items[-1]
    if partial is not None:
        n = len(items)
        first = max(n - partial.high, 0) if partial.from_end else partial.low - 1
        for offset, item in enumerate(partial_window(items, partial)):
            picked[first + offset] = item
    return [picked[i] for i in sorted(picked)]


def esearch_data(numbers: Sequence[int], options: Iterable[str],
                 partial: PartialRange | None, modseq: int | None = None, *,
                 set_text: Callable[[Sequence[int]], str] = compact) -> list[str]:
    """The search-return-data items of a result (RFC 4731 §3.1, RFC 9394 §3.1, RFC 7162
    §3.1.5): MIN and MAX are the first and last, ALL and PARTIAL as `set_text` writes them
    (ascending ranges for SEARCH; SORT passes one that keeps its order), MIN, MAX and ALL only
    when something matched, COUNT always, PARTIAL with NIL for an empty window, MODSEQ when
    given."""
    wanted = set(options)
    out: list[str] = []
    if "MIN" in wanted and numbers:
        out.append(f"MIN {numbers[0]}")
    if "MAX" in wanted and numbers:
        out.append(f"MAX {numbers[-1]}")
    if "COUNT" in wanted:
        out.append(f"COUNT {len(numbers)}")
    if "ALL" in wanted and numbers:
        out.append(f"ALL {set_text(numbers)}")
    if partial is not None:
        window = partial_window(numbers, partial)
        out.append(f"PARTIAL ({partial} {set_text(window) if window else 'NIL'})")
    if modseq is not None:
        out.append(f"MODSEQ {modseq}")
    return out


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- contexts


@dataclass(eq=False)
class SearchContext:
    """One `SEARCH RETURN (UPDATE)` kept up to date (RFC 5267 §4.1)."""

    tag: str
    uid: bool
    key: SearchKey
    matched: set[int]
    """UIDs that match, as the client was last told."""
    seen: tuple[object, ...] = ()
    """The view's state when `matched` was computed: unchanged, nothing to search again."""


@dataclass(eq=False)
class _Contexts:
    session: Session
    selected: Selected
    by_tag: dict[str, SearchContext] = field(default_factory=dict)


_LIVE: dict[int, _Contexts] = {}
"""Session (by id) -> its contexts. Session has fixed slots, so the contexts live here; an
entry is dropped as soon as its session has deselected the mailbox (a closed session
deselects), checked on every use and whenever a context is added."""


def _state(sel: Selected) -> tuple[object, ...]:
    own = tuple(sorted(sel.own.items())) if sel.own else ()
    return (sel.version, own)


def _entry(s: Session) -> _Contexts | None:
    entry = _LIVE.get(id(s))
    if entry is None:
        return None
    if entry.session is not s or s.selected is not entry.selected:
        del _LIVE[id(s)]  # deselected (or another session that reused the id): contexts end
        return None
    return entry


def add_context(s: Session, tag: str, uid: bool, key: SearchKey, uids: Iterable[int]) -> bool:
    """Keep the search updated; False (NOUPDATE) when the session keeps too many already."""
    for sid, other in list(_LIVE.items()):  # forget sessions that have moved on or closed
        if other.session.selected is not other.selected:
            del _LIVE[sid]
    sel = s.sel
    entry = _entry(s)
    if entry is None:
        entry = _LIVE[id(s)] = _Contexts(s, sel)
    if tag not in entry.by_tag and len(entry.by_tag) >= MAX_CONTEXTS:
        return False
    entry.by_tag[tag] = SearchContext(tag, uid, key, set(uids), _state(sel))
    return True


def cancel_contexts(s: Session, tags: Iterable[str]) -> None:
    """CANCELUPDATE (RFC 5267 §4.3): stop updating these searches."""
    entry = _entry(s)
    if entry is None:
        return
    for tag in tags:
        entry.by_tag.pop(tag, None)
    if not entry.by_tag:
        _LIVE.pop(id(s), None)


def has_contexts(s: Session) -> bool:
    return _entry(s) is not None


async def context_updates(s: Session) -> list[bytes]:
    """The ADDTO/REMOVETO responses that bring each of the session's search contexts to the
    view its client has now been told about (after EXPUNGE/EXISTS/FETCH went out)."""
    entry = _entry(s)
    if entry is None:
        return []
    from mailyard.protocols.imap.cmd_message import records_of
    from mailyard.protocols.imap.search import evaluate

    sel = entry.selected
    out: list[bytes] = []
    for context in list(entry.by_tag.values()):
        state = _state(sel)
        if context.seen == state:
            continue
        matches, _ = await evaluate(s, context.key,
                                    lambda ix: records_of(s, ix, brief=True))
        if s.selected is not sel:
            return []
        now = {sel.uids[i] for i in matches}
        gone = sorted(u for u in context.matched - now if sel.version.index_of(u) is not None)
        added = sorted(now - context.matched)
        context.matched, context.seen = now, state
        prefix = f"* ESEARCH (TAG {quote(context.tag)}){' UID' if context.uid else ''}"
        for name, uids in (("REMOVETO", gone), ("ADDTO", added)):
            if not uids:
                continue
            numbers = uids if context.uid else [(sel.seq_of_uid(u) or 0) for u in uids]
            out.append(f"{prefix} {name} (0 {compact(numbers)})\r\n".encode())
    return out


async def report_context_updates(s: Session) -> None:
    """The hook for Session.report_updates: queue the context updates after its own lines."""
    for line in await context_updates(s):
        s.raw(line)
