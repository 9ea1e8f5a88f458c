"""What the /query and /queryChanges methods of every type share (RFC 8620 §5.5, §5.6).

A query state is the account's modification sequence, like every other state here. A
/queryChanges is then answered from the change log alone: every object of the type changed
since the client's query state may have moved in or out of the results, so it is reported as
removed and, when it is in the new results, added again at its new index. §5.6 allows exactly
this ("the server MAY include ids in removed that were not in the old results" and an object
removed and re-added), and because unchanged objects keep their sort keys, their relative order
is the same in the old and new results; a client that applies the answer gets the new results.
"""

from __future__ import annotations

from typing import Any

from mailyard.protocols.jmap.core import Context
from mailyard.protocols.jmap.errors import MethodError
from mailyard.protocols.jmap.mail.common import changes_after


def integer(args: dict[str, Any], key: str, default: int, minimum: int | None) -> int:
    """An optional UnsignedInt/Int argument; null means the default (§5.5)."""
    value = args.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or (
            minimum is not None and value < minimum):
        raise MethodError("invalidArguments", f"{key} must be an integer"
                          + ("" if minimum is None else f" >= {minimum}"))
    return value


def boolean(args: dict[str, Any], key: str, default: bool = False) -> bool:
    value = args.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise MethodError("invalidArguments", f"{key} must be a boolean")
    return value


def window(ids: list[str], args: dict[str, Any], max_limit: int) -> tuple[int, list[str]]:
    """The page of the whole, ordered result `ids` that position or anchor asks for (§5.5):
    (position of the first id returned, the ids)."""
    position = integer(args, "position", 0, None)
    limit = min(integer(args, "limit", max_limit, 0), max_limit)
    anchor = args.get("anchor")
    if anchor is not None and not isinstance(anchor, str):
        raise MethodError("invalidArguments", "anchor must be an id")
    anchor_offset = integer(args, "anchorOffset", 0, None)
    if anchor is not None:
        if anchor not in ids:
            raise MethodError("anchorNotFound")
        position = max(ids.index(anchor) + anchor_offset, 0)
    elif position < 0:
        position = max(len(ids) + position, 0)
    return position, ids[position : position + limit]


async def changed_since(ctx: Context, args: dict[str, Any], kind: str) -> tuple[int, set[str]]:
    """(current state, ids of `kind` changed after sinceQueryState), or
    cannotCalculateChanges for a state this server never gave."""
    value = args.get("sinceQueryState")
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19):
        raise MethodError("invalidArguments", "sinceQueryState must be a state this server"
                                              " gave")
    page = await changes_after(ctx, int(value), (kind,))
    return page.state, {c.object_id for c in page.changes}


def query_changes_response(ctx: Context, args: dict[str, Any], account_id: str, state: int,
                           changed: set[str], results: list[str]) -> dict[str, Any]:
    """The §5.6 response once the new results (`results`, in order) are known."""
    max_changes = args.get("maxChanges")
    if max_changes is not None and (isinstance(max_changes, bool)
                                    or not isinstance(max_changes, int) or max_changes < 1):
        raise MethodError("invalidArguments", "maxChanges must be a positive integer")
    up_to = args.get("upToId")
    if up_to is not None and not isinstance(up_to, str):
        raise MethodError("invalidArguments", "upToId must be an id")
    want_total = boolean(args, "calculateTotal")
    added = ([{"id": object_id, "index": n} for n, object_id in enumerate(results)
              if object_id in changed] if changed else [])
    removed = sorted(changed)
    if max_changes is not None and len(removed) + len(added) > max_changes:
        raise MethodError("tooManyChanges", f"{len(removed) + len(added)} changes, more than"
                                            f" maxChanges {max_changes}")
    out: dict[str, Any] = {"accountId": account_id, "oldQueryState": args["sinceQueryState"],
                           "newQueryState": str(state), "removed": removed, "added": added}
    if want_total:
        out["total"] = len(results)
    return out
