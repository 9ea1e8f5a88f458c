"""What the Mail methods (RFC 8621) share: the services, states, property selection, /changes.

A JMAP state is the account's modification sequence written as a decimal string: the change
log it numbers is the same one IMAP CONDSTORE reads, so a state never needs a table of its own
and "what changed since state S" is one read of that log.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from mailyard.protocols.jmap.core import Context
from mailyard.protocols.jmap.errors import MethodError
from mailyard.services.changes import ChangePage, ChangeService, FutureState
from mailyard.services.mailbox import MailboxService
from mailyard.services.objects import ObjectService
from mailyard.services.search import SearchService
from mailyard.store.ports import Mailbox

MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"


def mailbox_service(ctx: Context) -> MailboxService:
    return ctx.services.need_data().mailbox


def search_service(ctx: Context) -> SearchService:
    return ctx.services.need_data().search


def change_service(ctx: Context) -> ChangeService:
    return ctx.services.need_data().changes


def object_service(ctx: Context) -> ObjectService:
    return ctx.services.need_data().objects


async def current_state(ctx: Context) -> int:
    """Read fresh: the Account the request was authenticated with may be a cached copy."""
    return await change_service(ctx).state(ctx.account)


async def changes_after(ctx: Context, since: int, kinds: Collection[str],
                        limit: int | None = None) -> ChangePage:
    """The change log after `since` (ChangeService.changes), cannotCalculateChanges for a
    state this server never gave."""
    try:
        return await change_service(ctx).changes(ctx.account, since, kinds, limit)
    except FutureState:
        raise MethodError("cannotCalculateChanges", "that state is newer than the"
                                                    " account's") from None


def max_objects(ctx: Context) -> int:
    limit: int = ctx.services.policy.limits.max_objects_in_get
    return limit


def requested_ids(ctx: Context, args: dict[str, Any]) -> list[str] | None:
    """The `ids` argument of a /get (§5.1): None asks for every object."""
    ids = args.get("ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise MethodError("invalidArguments", "ids must be null or an array of ids")
    if len(ids) > max_objects(ctx):
        raise MethodError("requestTooLarge", f"at most {max_objects(ctx)} ids in a /get")
    resolved = [ctx.resolve_id(i) or i for i in ids]
    return list(dict.fromkeys(resolved))


def requested_properties(args: dict[str, Any], key: str, known: Collection[str],
                         default: Iterable[str], *, headers: bool = False) -> list[str]:
    """A `properties`-style argument, checked against what the type has; "id" is always
    returned by a /get, so it is added when missing (§5.1)."""
    value = args.get(key)
    if value is None:
        return list(default)
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise MethodError("invalidArguments", f"{key} must be null or an array of names")
    unknown = [p for p in value
               if p not in known and not (headers and p.startswith("header:"))]
    if unknown:
        raise MethodError("invalidArguments", f"unknown {key}: {', '.join(unknown[:10])}")
    return list(dict.fromkeys(value))


def mailbox_role(box: Mailbox) -> str | None:
    """Our role names are already the IANA JMAP mailbox roles (RFC 8621 §10.5)."""
    return box.role


def parse_state(args: dict[str, Any], key: str = "sinceState") -> int:
    value = args.get(key)
    if (not isinstance(value, str) or not value.isascii() or not value.isdigit()
            or len(value) > 18):
        raise MethodError("invalidArguments", f"{key} must be a state this server gave")
    return int(value)


@dataclass
class Changes:
    created: list[str]
    updated: list[str]
    destroyed: list[str]
    has_more: bool
    new_state: int


async def changes(ctx: Context, args: dict[str, Any], kind: str) -> Changes:
    """A /changes (§5.2) for objects of `kind`, read from the account's change log.

    The log keeps every change, so any state this server gave can be answered; a state from
    the future (another server's, or a restored backup) cannot. With maxChanges the answer
    stops at a state boundary, so the next call starting from newState misses nothing.
    """
    since = parse_state(args)
    max_changes = args.get("maxChanges")
    if max_changes is not None and (isinstance(max_changes, bool)
                                    or not isinstance(max_changes, int) or max_changes < 1):
        raise MethodError("invalidArguments", "maxChanges must be a positive integer")
    page = await changes_after(ctx, since, (kind,), max_changes)
    ops: dict[str, list[str]] = {}
    for change in page.changes:
        ops.setdefault(change.object_id, []).append(change.op)
    created, updated, destroyed = [], [], []
    for object_id, seen in ops.items():
        if seen[0] == "created":
            if seen[-1] != "destroyed":
                created.append(object_id)
        elif seen[-1] == "destroyed":
            destroyed.append(object_id)
        else:
            updated.append(object_id)
    return Changes(created, updated, destroyed, page.has_more, page.state)


def changes_response(ctx: Context, account_id: str, since: str, result: Changes
                     ) -> dict[str, Any]:
    return {"accountId": account_id, "oldState": since, "newState": str(result.new_state),
            "hasMoreChanges": result.has_more, "created": result.created,
            "updated": result.updated, "destroyed": result.destroyed}


class SetError(Exception):
    def __init__(self, type_: str, description: str, properties: list[str] | None = None
                 ) -> None:
        super().__init__(description)
        self.body: dict[str, Any] = {"type": type_, "description": description}
        if properties is not None:
            self.body["properties"] = properties


def valid_keyword(k: str) -> bool:
    return (0 < len(k) <= 255 and all("!" <= ch <= "~" for ch in k)
            and not set('(){]%*"\\') & set(k))


@dataclass
class SetRequest:
    """The arguments every /set shares (RFC 8620 §5.3), checked: the state they start from
    (ifInState honoured) and the three maps a /set response answers."""

    old_state: int
    create: dict[str, Any]
    update: dict[str, Any]
    destroy: list[str]

    @classmethod
    async def read(cls, ctx: Context, args: dict[str, Any]) -> SetRequest:
        old_state = await current_state(ctx)
        if_in_state = args.get("ifInState")
        if if_in_state is not None and if_in_state != str(old_state):
            raise MethodError("stateMismatch")
        create, update, destroy = set_maps(ctx, args)
        return cls(old_state, create, update, destroy)


def set_maps(ctx: Context, args: dict[str, Any]
             ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """A /set's create, update and destroy (RFC 8620 §5.3), checked: their types, and no more
    objects than maxObjectsInSet; destroy without repeats. Every /set reads them here, also
    those whose state is not the account's (Filters, SieveScript)."""
    create = args.get("create") or {}
    update = args.get("update") or {}
    destroy = args.get("destroy") or []
    if (not isinstance(create, dict) or not isinstance(update, dict)
            or not isinstance(destroy, list) or not all(isinstance(i, str) for i in destroy)):
        raise MethodError("invalidArguments", "create, update and destroy have the wrong type")
    limit: int = ctx.services.policy.limits.max_objects_in_set
    if len(create) + len(update) + len(destroy) > limit:
        raise MethodError("requestTooLarge", f"at most {limit} objects in a /set")
    return create, update, list(dict.fromkeys(destroy))


async def set_response(ctx: Context, account_id: str, request: SetRequest, *,
                       created: dict[str, Any], not_created: dict[str, Any],
                       updated: dict[str, Any], not_updated: dict[str, Any],
                       destroyed: list[str], not_destroyed: dict[str, Any]) -> dict[str, Any]:
    """The /set response; empty maps are null, as §5.3 writes them."""
    return {"accountId": account_id, "oldState": str(request.old_state),
            "newState": str(await current_state(ctx)), "created": created or None,
            "updated": updated or None, "destroyed": destroyed or None,
            "notCreated": not_created or None, "notUpdated": not_updated or None,
            "notDestroyed": not_destroyed or None}
