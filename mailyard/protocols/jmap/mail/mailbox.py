"""Mailbox/get, /changes, /set, /query and /queryChanges (RFC 8621 §2).

Our mailboxes are labels named by their path with "/" between levels, as IMAP shows them; JMAP
wants a tree, so `name` is the last component and `parentId` the mailbox of the path above.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailyard.core import mailboxrules
from mailyard.core.mailboxrules import MailboxRefused, Refusal
from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.errors import MethodError
from mailyard.protocols.jmap.mail.common import (
    MAIL,
    changes,
    changes_response,
    current_state,
    mailbox_role,
    mailbox_service,
    requested_ids,
    requested_properties,
)
from mailyard.protocols.jmap.mail.querystate import (
    boolean,
    changed_since,
    query_changes_response,
    window,
)
from mailyard.services.subscriptions import imap_name
from mailyard.store.ports import Conflict, Mailbox, NotFound

SEPARATOR = "/"
PROPERTIES = ("id", "name", "parentId", "role", "sortOrder", "totalEmails", "unreadEmails",
              "totalThreads", "unreadThreads", "myRights", "isSubscribed")
RIGHTS = ("mayReadItems", "mayAddItems", "mayRemoveItems", "maySetSeen", "maySetKeywords",
          "mayCreateChild", "mayRename", "mayDelete", "maySubmit")
_ROLE_ORDER = {role: place for place, role in enumerate(mailboxrules.ROLES, 1)}
"""Where clients that honour sortOrder put the special mailboxes; user labels come after."""


@dataclass(frozen=True, slots=True)
class ThreadCounts:
    """A mailbox's threads (RFC 8621 §2 totalThreads: threads with at least one email in
    it) and those of them with an unread email in it."""

    total: int
    unread: int


def to_jmap(box: Mailbox, by_name: dict[str, Mailbox], orders: dict[str, int],
            threads: ThreadCounts | None = None) -> dict[str, Any]:
    """sortOrder is the client's (`orders`) where one was set, else the role's place.
    `threads` is None when the client asked for neither thread count (none is then read)."""
    parent, _, leaf = box.name.rpartition(SEPARATOR)
    parent_box = by_name.get(parent) if parent else None
    return {
        "id": box.id,
        "name": leaf if parent_box is not None else box.name,
        "parentId": parent_box.id if parent_box is not None else None,
        "role": mailbox_role(box),
        "sortOrder": orders.get(box.id, _ROLE_ORDER.get(box.role or "", 10)),
        "totalEmails": box.total,
        "unreadEmails": box.unread,
        "totalThreads": threads.total if threads is not None else None,
        "unreadThreads": threads.unread if threads is not None else None,
        "myRights": dict.fromkeys(RIGHTS, True),
        "isSubscribed": box.subscribed,
    }


_COUNTED: OrderedDict[tuple[str, int], dict[str, ThreadCounts]] = OrderedDict()
"""Thread counts by (account, JMAP state): any change to the account (a move, a flag, a
thread merge, a destroy) advances its state, so an entry is never stale, only unused; a client
that asks again with nothing changed (a reload, a second tab) costs no recount. A recount is
one grouped read of every mailbox's memberships (100,000 emails: ~0.2 s), which maintained
per-mailbox thread counters would remove."""
_COUNTED_MAX = 256
_NONE = ThreadCounts(0, 0)


async def thread_counts(ctx: Context, box: Mailbox, state: int) -> ThreadCounts:
    """`box`'s counts at the account's `state` (read before them), from _COUNTED or counted
    for every mailbox of the account at once."""
    return await threads_in(ctx, box.id, state)


async def threads_in(ctx: Context, mailbox_id: str, state: int) -> ThreadCounts:
    """The counts of the mailbox `mailbox_id` at `state` (see thread_counts): also the
    total of Email/query's {inMailbox, collapseThreads}, which counts the same threads."""
    key = (ctx.account.id, state)
    known = _COUNTED.get(key)
    if known is None:
        known = await _count_threads(ctx)
        _COUNTED[key] = known
        while len(_COUNTED) > _COUNTED_MAX:
            _COUNTED.popitem(last=False)
    _COUNTED.move_to_end(key)
    return known.get(mailbox_id, _NONE)


async def _count_threads(ctx: Context) -> dict[str, ThreadCounts]:
    """Distinct thread ids among each mailbox's emails, and among its unseen ones: what the
    very query a client pages with counts (Email/query, inMailbox, collapseThreads,
    calculateTotal; with notKeyword $seen for unreadThreads), so a list sized from
    totalThreads has exactly that many rows. Emails count, not threads, would over-state it
    by every reply filed beside its thread's first (webmail bench, issue 22)."""
    counts = await mailbox_service(ctx).thread_counts(ctx.account)
    return {box_id: ThreadCounts(total, unread) for box_id, (total, unread) in counts.items()}


async def _mailboxes(ctx: Context) -> list[Mailbox]:
    """The account's mailboxes, `subscribed` read from the subscription list that IMAP
    SUBSCRIBE/LSUB share (services/subscriptions)."""
    service = mailbox_service(ctx)
    return await service.subscriptions.mark(ctx.account, await service.mailboxes(ctx.account))


@method("Mailbox/get", capability=MAIL)
async def mailbox_get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    ids = requested_ids(ctx, args)
    props = requested_properties(args, "properties", PROPERTIES, PROPERTIES)
    if any(p not in PROPERTIES for p in props):  # "header:..." is for Email only
        raise MethodError("invalidArguments", "a Mailbox has no header properties")
    state = await current_state(ctx)
    boxes = await _mailboxes(ctx)
    orders = await mailbox_service(ctx).sort_orders(ctx.account)
    by_name = {b.name: b for b in boxes}
    by_id = {b.id: b for b in boxes}
    wanted = [b.id for b in boxes] if ids is None else ids
    counted = "totalThreads" in props or "unreadThreads" in props
    found = [to_jmap(by_id[i], by_name, orders,
                     await thread_counts(ctx, by_id[i], state) if counted else None)
             for i in wanted if i in by_id]
    listed = [{p: m[p] for p in ("id", *props)} for m in found]
    return {"accountId": account_id, "state": str(state), "list": listed,
            "notFound": [i for i in wanted if i not in by_id]}


@method("Mailbox/changes", capability=MAIL)
async def mailbox_changes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    result = await changes(ctx, args, "Mailbox")
    return {**changes_response(ctx, account_id, args["sinceState"], result),
            "updatedProperties": None}


# --------------------------------------------------------------------------- Mailbox/set

SERVER_SET = ("id", "totalEmails", "unreadEmails", "totalThreads", "unreadThreads", "myRights")


class SetError(Exception):
    """One object of a /set refused (RFC 8620 §5.3 SetError); the others go on."""

    def __init__(self, type_: str, description: str, properties: list[str] | None = None
                 ) -> None:
        super().__init__(description)
        self.body: dict[str, Any] = {"type": type_, "description": description}
        if properties is not None:
            self.body["properties"] = properties


def _object_map(args: dict[str, Any], key: str) -> dict[str, Any]:
    value = args.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MethodError("invalidArguments", f"{key} must be null or an object")
    return value


def _leaf_name(value: object) -> str:
    """A mailbox `name`: one level of our "/"-separated paths, so "/" cannot be in it. What
    else a name may be is the mailbox rules' (core/mailboxrules), checked by the service."""
    if not isinstance(value, str) or not value.strip():
        raise SetError("invalidProperties", "name must be a non-empty string", ["name"])
    if SEPARATOR in value:
        raise SetError("invalidProperties", f"name cannot contain {SEPARATOR!r}: it separates"
                                            " the levels of the mailbox tree", ["name"])
    return value


_PROPERTY_OF_REFUSAL = {Refusal.UNKNOWN_ROLE: "role", Refusal.ROLE_TAKEN: "role",
                        Refusal.BELOW_ITSELF: "parentId"}


def _refused(e: MailboxRefused, tree: _Tree, parent: Mailbox | None, name: str,
             path: str) -> SetError:
    """The SetError for what the mailbox rules refused. §2: no two mailboxes with the same
    parent may have the same name; that description says which name clashes and where, so a
    client can show it."""
    if e.reason is Refusal.FIXED:
        return SetError("forbidden", str(e))
    where = "at the top level" if parent is None else f"in {parent.name!r}"
    if e.reason is Refusal.EXISTS and path in tree.by_name:
        return SetError("invalidProperties", f"a mailbox named {name!r} already exists {where}"
                                             f" (id {tree.by_name[path].id})", ["name"])
    if e.reason is Refusal.INBOX_NAME:
        return SetError("invalidProperties", f"{name!r} is the name of the inbox {where}"
                                             " (IMAP: INBOX in any case)", ["name"])
    return SetError("invalidProperties", str(e), [_PROPERTY_OF_REFUSAL.get(e.reason, "name")])


class _Tree:
    """The account's mailboxes as the /set sees them, re-read after each change it makes."""

    def __init__(self, boxes: list[Mailbox]) -> None:
        self.boxes = boxes
        self.by_id = {b.id: b for b in boxes}
        self.by_name = {b.name: b for b in boxes}

    def children(self, box: Mailbox) -> list[Mailbox]:
        prefix = box.name + SEPARATOR
        return [b for b in self.boxes if b.name.startswith(prefix)]

    def parent(self, ctx: Context, value: object) -> Mailbox | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise SetError("invalidProperties", "parentId must be null or an id", ["parentId"])
        parent_id = ctx.resolve_id(value)
        box = self.by_id.get(parent_id or "")
        if box is None:
            raise SetError("invalidProperties", "parentId names no mailbox", ["parentId"])
        return box


def _check_properties(value: object, *, creating: bool) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SetError("invalidProperties", "the object must be a JSON object")
    unknown = [k for k in value if k not in PROPERTIES]
    if unknown:
        raise SetError("invalidProperties", "unknown or unsupported properties", unknown)
    if creating:
        server_set = [k for k in value if k in SERVER_SET]
        if server_set:
            raise SetError("invalidProperties", "these properties are set by the server",
                           server_set)
    order = value.get("sortOrder")
    if "sortOrder" in value and (isinstance(order, bool) or not isinstance(order, int)
                                 or not 0 <= order < 2**31):
        raise SetError("invalidProperties", "sortOrder must be an integer from 0 to 2^31-1",
                       ["sortOrder"])
    subscribed = value.get("isSubscribed")
    if "isSubscribed" in value and not isinstance(subscribed, bool):
        raise SetError("invalidProperties", "isSubscribed must be a boolean", ["isSubscribed"])
    return value


def _same_or_refuse(value: dict[str, Any], current: dict[str, Any], keys: tuple[str, ...],
                    why: str) -> None:
    """Properties we cannot change may still be sent with the value they have (§5.3)."""
    different = [k for k in keys if k in value and value[k] != current[k]]
    if different:
        raise SetError("invalidProperties", why, different)


async def _create(ctx: Context, value: object) -> dict[str, Any]:
    service = mailbox_service(ctx)
    props = _check_properties(value, creating=True)
    tree = _Tree(await service.mailboxes(ctx.account))
    name = _leaf_name(props.get("name"))
    parent = tree.parent(ctx, props.get("parentId"))
    role = props.get("role")
    if role is not None and not isinstance(role, str):
        raise SetError("invalidProperties", "role must be null or a string", ["role"])
    path = name if parent is None else parent.name + SEPARATOR + name
    try:
        box = await service.create_mailbox(ctx.account, path, role)
    except MailboxRefused as e:
        raise _refused(e, tree, parent, name, path) from None
    except Conflict as e:  # another session made the same name first
        raise SetError("invalidProperties", str(e), ["name"]) from None
    # §2: isSubscribed "SHOULD default to ... true for any new Mailboxes created by the user
    # themself"; the list may still hold the name from a mailbox deleted earlier.
    box.subscribed = props.get("isSubscribed", True)
    await service.subscriptions.subscribe(ctx.account, imap_name(box), box.subscribed)
    # §2: sortOrder "(default: 0)" for a mailbox a client creates; the role's place is only
    # for the mailboxes the server made.
    order = props.get("sortOrder", 0)
    await service.set_sort_order(ctx.account, box, order, created=True)
    full = to_jmap(box, {**tree.by_name, box.name: box}, {box.id: order}, ThreadCounts(0, 0))
    return {k: v for k, v in full.items() if k not in props}


async def _update(ctx: Context, mailbox_id: str, value: object) -> None:
    service = mailbox_service(ctx)
    tree = _Tree(await _mailboxes(ctx))
    box = tree.by_id.get(mailbox_id)
    if box is None:
        raise SetError("notFound", "no such mailbox")
    props = _check_properties(value, creating=False)
    counted = "totalThreads" in props or "unreadThreads" in props  # to compare, if sent
    current = to_jmap(box, tree.by_name, await service.sort_orders(ctx.account),
                      await thread_counts(ctx, box, await current_state(ctx))
                      if counted else None)
    _same_or_refuse(props, current, (*SERVER_SET, "role"),
                    "these properties cannot be changed")
    # An orphan (its parent deleted over IMAP) shows its whole path as name: sending that
    # back unchanged is no rename.
    name = (_leaf_name(props["name"]) if props.get("name", current["name"]) != current["name"]
            else current["name"])
    parent = (tree.parent(ctx, props["parentId"]) if "parentId" in props
              else tree.by_id.get(current["parentId"] or ""))
    path = name if parent is None else parent.name + SEPARATOR + name
    if path != box.name:
        try:
            await service.rename_mailbox(ctx.account, box, path)
        except MailboxRefused as e:
            raise _refused(e, tree, parent, name, path) from None
        except Conflict as e:  # another session took the name first
            raise SetError("invalidProperties", str(e), ["name"]) from None
        except NotFound:  # another session destroyed it since it was read
            raise SetError("notFound", "no such mailbox") from None
        # isSubscribed belongs to the mailbox here: it (and its children's) moves along.
        await service.subscriptions.renamed(ctx.account, box.name, path)
    if "sortOrder" in props and props["sortOrder"] != current["sortOrder"]:
        await service.set_sort_order(ctx.account, box, props["sortOrder"])
    if "isSubscribed" in props and props["isSubscribed"] != box.subscribed:
        await service.subscriptions.subscribe(ctx.account, imap_name(box, path),
                                              props["isSubscribed"])


async def _destroy(ctx: Context, mailbox_id: str, remove_emails: bool) -> None:
    service = mailbox_service(ctx)
    tree = _Tree(await service.mailboxes(ctx.account))
    box = tree.by_id.get(mailbox_id)
    if box is None:
        raise SetError("notFound", "no such mailbox")
    try:  # before the checks on its content: the inbox is never destroyable, full or empty
        mailboxrules.check_destroy(box)
    except MailboxRefused as e:
        raise SetError("forbidden", str(e)) from None
    if tree.children(box):
        raise SetError("mailboxHasChild", "the mailbox has child mailboxes")
    email_ids = [e.email_id for e in (await service.snapshot(ctx.account, box)).entries]
    if email_ids and not remove_emails:
        raise SetError("mailboxHasEmail", "the mailbox has emails; onDestroyRemoveEmails"
                                          " removes them")
    try:  # §2.5: the emails in no other mailbox (All Mail aside) are destroyed with it
        await service.delete_mailbox(ctx.account, box, remove_emails=remove_emails)
    except NotFound:  # another session destroyed it first
        raise SetError("notFound", "no such mailbox") from None


@method("Mailbox/set", capability=MAIL)
async def mailbox_set(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """§2.5 (and RFC 8620 §5.3): creates, then updates, then destroys, each object on its
    own; a create whose parentId is "#id" of another create in this call waits for it."""
    account_id = ctx.account_id(args)
    if_in_state = args.get("ifInState")
    if if_in_state is not None and not isinstance(if_in_state, str):
        raise MethodError("invalidArguments", "ifInState must be null or a state")
    create = _object_map(args, "create")
    update = _object_map(args, "update")
    destroy = args.get("destroy")
    if destroy is None:
        destroy = []
    if not isinstance(destroy, list) or not all(isinstance(i, str) for i in destroy):
        raise MethodError("invalidArguments", "destroy must be null or an array of ids")
    remove_emails = args.get("onDestroyRemoveEmails", False)
    if not isinstance(remove_emails, bool):
        raise MethodError("invalidArguments", "onDestroyRemoveEmails must be a boolean")
    limit: int = ctx.services.policy.limits.max_objects_in_set
    if len(create) + len(update) + len(destroy) > limit:
        raise MethodError("requestTooLarge", f"at most {limit} objects in a /set")
    old_state = await current_state(ctx)
    if if_in_state is not None and if_in_state != str(old_state):
        raise MethodError("stateMismatch")

    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    pending = dict(create)
    while pending:
        ready = [cid for cid, v in pending.items() if not _waits(v, pending)]
        if not ready:  # parentIds that point at each other
            for cid in pending:
                not_created[cid] = SetError("invalidProperties", "parentId refers to a"
                                            " mailbox that cannot be created",
                                            ["parentId"]).body
            break
        for cid in ready:
            try:
                created[cid] = await _create(ctx, pending.pop(cid))
                ctx.created(cid, created[cid]["id"])
            except SetError as e:
                not_created[cid] = e.body

    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for key, value in update.items():
        target = ctx.resolve_id(key)
        try:
            if target is None:
                raise SetError("notFound", "no mailbox was created with that creation id")
            await _update(ctx, target, value)
            updated[key] = None
        except SetError as e:
            not_updated[key] = e.body

    destroyed: list[str] = []
    not_destroyed: dict[str, Any] = {}
    resolved = [(key, ctx.resolve_id(key)) for key in dict.fromkeys(destroy)]
    depth = {b.id: b.name.count(SEPARATOR) for b in await mailbox_service(ctx).mailboxes(
        ctx.account)}
    # Children first, so destroying a parent and its children in one call succeeds.
    for key, target in sorted(resolved, key=lambda kt: -depth.get(kt[1] or "", 0)):
        try:
            if target is None:
                raise SetError("notFound", "no mailbox was created with that creation id")
            await _destroy(ctx, target, remove_emails)
            destroyed.append(target)
        except SetError as e:
            not_destroyed[key] = e.body

    return {"accountId": account_id, "oldState": str(old_state),
            "newState": str(await current_state(ctx)),
            "created": created or None, "updated": updated or None,
            "destroyed": destroyed or None, "notCreated": not_created or None,
            "notUpdated": not_updated or None, "notDestroyed": not_destroyed or None}


def _waits(value: object, pending: dict[str, Any]) -> bool:
    """Whether a create names as its parent another create of this call not yet made."""
    parent = value.get("parentId") if isinstance(value, dict) else None
    return isinstance(parent, str) and parent.startswith("#") and parent[1:] in pending


# --------------------------------------------------------------------------- Mailbox/query

FILTER_CONDITIONS = ("parentId", "name", "role", "hasAnyRole", "isSubscribed")
SORTS = ("name", "sortOrder")
MAX_QUERY = 10_000
MAX_FILTER_DEPTH = 16
"""FilterOperators inside each other at most: bounds the recursion of the predicate."""
Filter = Callable[[dict[str, Any]], bool]


def _filter(value: object, depth: int = 0) -> Filter:
    """A FilterOperator or FilterCondition (RFC 8620 §5.5, RFC 8621 §2.3) as a predicate
    over Mailbox objects."""
    if value is None:
        return lambda _: True
    if depth > MAX_FILTER_DEPTH:
        raise MethodError("invalidArguments", f"the filter nests FilterOperators deeper than"
                                              f" {MAX_FILTER_DEPTH} levels")
    if not isinstance(value, dict):
        raise MethodError("invalidArguments", "a filter must be a FilterOperator or a"
                                              " FilterCondition object")
    if "operator" in value:
        operator, conditions = value.get("operator"), value.get("conditions")
        if operator not in ("AND", "OR", "NOT") or not isinstance(conditions, list) or set(
                value) - {"operator", "conditions"}:
            raise MethodError("invalidArguments", "a FilterOperator is {operator: AND|OR|NOT,"
                                                  " conditions: [...]}")
        parts = [_filter(c, depth + 1) for c in conditions]
        if operator == "AND":
            return lambda m: all(p(m) for p in parts)
        if operator == "OR":
            return lambda m: any(p(m) for p in parts)
        return lambda m: not any(p(m) for p in parts)
    unknown = [k for k in value if k not in FILTER_CONDITIONS]
    if unknown:
        raise MethodError("unsupportedFilter", "unknown conditions: " + ", ".join(
            str(k)[:50] for k in unknown[:10]))
    tests: list[Filter] = []
    if "parentId" in value:
        parent = value["parentId"]
        if parent is not None and not isinstance(parent, str):
            raise MethodError("invalidArguments", "parentId must be null or an id")
        tests.append(lambda m: m["parentId"] == parent)
    if "name" in value:
        name = value["name"]
        if not isinstance(name, str):
            raise MethodError("invalidArguments", "name must be a string")
        tests.append(lambda m: name.casefold() in m["name"].casefold())
    if "role" in value:
        role = value["role"]
        if role is not None and not isinstance(role, str):
            raise MethodError("invalidArguments", "role must be null or a string")
        tests.append(lambda m: m["role"] == role)
    for key in ("hasAnyRole", "isSubscribed"):
        if key in value:
            wanted = value[key]
            if not isinstance(wanted, bool):
                raise MethodError("invalidArguments", f"{key} must be a boolean")
            tests.append(_role_test(wanted) if key == "hasAnyRole" else _subscribed_test(wanted))
    return lambda m: all(t(m) for t in tests)


def _role_test(wanted: bool) -> Filter:
    return lambda m: (m["role"] is not None) == wanted


def _subscribed_test(wanted: bool) -> Filter:
    return lambda m: bool(m["isSubscribed"] == wanted)


def _sort_key(sort: object) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """Comparators on name and sortOrder, then the id so the order is total (and the same in
    every call, which queryChanges relies on)."""
    if sort is None:
        sort = [{"property": "sortOrder"}, {"property": "name"}]
    if not isinstance(sort, list) or not all(isinstance(c, dict) for c in sort):
        raise MethodError("invalidArguments", "sort must be an array of Comparators")
    keys: list[tuple[str, bool]] = []
    for comparator in sort:
        prop = comparator.get("property")
        ascending = comparator.get("isAscending", True)
        if prop not in SORTS:
            raise MethodError("unsupportedSort", "Mailbox/query sorts on name or sortOrder")
        if not isinstance(ascending, bool):
            raise MethodError("invalidArguments", "isAscending must be a boolean")
        collation = comparator.get("collation")
        if collation is not None and not isinstance(collation, str):
            raise MethodError("invalidArguments", "collation must be a string")
        keys.append((str(prop), ascending))

    def key(m: dict[str, Any]) -> tuple[Any, ...]:
        out: list[Any] = []
        for prop, ascending in keys:
            v = m[prop].casefold() if prop == "name" else m[prop]
            out.append(_Desc(v) if not ascending else v)
        return (*out, m["id"])
    return key


class _Desc:
    """Reverses the order of one sort key."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.v < self.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and bool(self.v == other.v)

    __hash__ = None  # type: ignore[assignment]


def _results(boxes: list[Mailbox], orders: dict[str, int], args: dict[str, Any]
             ) -> list[str]:
    """Every id of the query's result, in order."""
    matches = _filter(args.get("filter"))
    key = _sort_key(args.get("sort"))
    as_tree = boolean(args, "sortAsTree")
    filter_as_tree = boolean(args, "filterAsTree")
    by_name = {b.name: b for b in boxes}
    objects = {b.id: to_jmap(b, by_name, orders) for b in boxes}
    keep = {i for i, m in objects.items() if matches(m)}
    if filter_as_tree:  # §2.3: a mailbox is in only if every ancestor is
        def rooted(i: str) -> bool:
            seen: set[str] = set()
            while i is not None and i not in seen:
                if i not in keep:
                    return False
                seen.add(i)
                i = objects[i]["parentId"]
            return True
        keep = {i for i in keep if rooted(i)}
    if not as_tree:
        return [m["id"] for m in sorted((objects[i] for i in keep), key=key)]
    children: dict[str | None, list[dict[str, Any]]] = {}
    for m in objects.values():
        children.setdefault(m["parentId"], []).append(m)
    ordered: list[str] = []

    def walk(parent: str | None) -> None:  # a tree over "/" paths: no cycles possible
        for m in sorted(children.get(parent, []), key=key):
            if m["id"] in keep:
                ordered.append(m["id"])
            walk(m["id"])
    walk(None)
    return ordered


@method("Mailbox/query", capability=MAIL)
async def mailbox_query(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    state = await current_state(ctx)
    results = _results(await _mailboxes(ctx),
                       await mailbox_service(ctx).sort_orders(ctx.account), args)
    want_total = boolean(args, "calculateTotal")
    position, ids = window(results, args, MAX_QUERY)
    out: dict[str, Any] = {"accountId": account_id, "queryState": str(state),
                           "canCalculateChanges": True, "position": position, "ids": ids}
    if want_total:
        out["total"] = len(results)
    return out


@method("Mailbox/queryChanges", capability=MAIL)
async def mailbox_query_changes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """From the change log (see querystate). A rename logs the children it moves; a mailbox
    that lost its parent to an IMAP DELETE shows its whole path as name and is counted as
    changed, as are all descendants of a changed mailbox when the query works on the tree."""
    account_id = ctx.account_id(args)
    state, changed = await changed_since(ctx, args, "Mailbox")
    boxes = await _mailboxes(ctx)
    results = _results(boxes, await mailbox_service(ctx).sort_orders(ctx.account), args)
    if changed:
        by_name = {b.name: b for b in boxes}
        changed |= {b.id for b in boxes if SEPARATOR in b.name
                    and b.name.rpartition(SEPARATOR)[0] not in by_name}
        if args.get("sortAsTree") or args.get("filterAsTree"):
            names = [b.name for b in boxes if b.id in changed]
            changed |= {b.id for b in boxes
                        if any(b.name.startswith(n + SEPARATOR) for n in names)}
    return query_changes_response(ctx, args, account_id, state, changed, results)
