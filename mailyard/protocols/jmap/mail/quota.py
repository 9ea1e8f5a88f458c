"""JMAP Quotas (RFC 9425): the account's storage quota as one Quota object.

An account has one limit, on the octets of its emails (every email counted once, whatever its
labels), so there is one Quota per account: scope "account", resourceType "octets", types
["Email"]. Its id names the account, so another account's quota id is simply notFound.

The Quota state is "<modseq>.<hardLimit>": usage changes only with an email created or
destroyed, which the change log records, but an administrator's `mailyard user quota` does not
go through that log, so the limit itself is part of the state and a change of it is seen.
"""

from __future__ import annotations

from typing import Any

from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.errors import MethodError
from mailyard.protocols.jmap.mail.common import (
    changes_after,
    requested_ids,
    requested_properties,
)
from mailyard.protocols.jmap.mail.querystate import boolean, integer, window
from mailyard.protocols.jmap.services import JMAPServices
from mailyard.protocols.jmap.session import capability
from mailyard.store.ports import Account

QUOTA = "urn:ietf:params:jmap:quota"
PROPERTIES = ("id", "resourceType", "used", "hardLimit", "scope", "name", "types",
              "warnLimit", "softLimit", "description")
# softLimit is optional (§3.1) and left out: the one limit we enforce is hard.
WARN_AT = 0.9
"""warnLimit: the share of the limit at which clients should start telling the user."""


def _account_capability(services: JMAPServices, account: Account) -> dict[str, Any]:
    return {}


capability(QUOTA, account=_account_capability)


def quota_id(account: Account) -> str:
    return f"q-{account.id}"


def to_jmap(account: Account) -> dict[str, Any]:
    return {
        "id": quota_id(account),
        "resourceType": "octets",
        "used": account.used,
        "hardLimit": account.quota,
        "warnLimit": int(account.quota * WARN_AT),
        "scope": "account",
        "name": f"Mail storage of {account.address}",
        "types": ["Email"],
        "description": "Octets of every email of the account; mail beyond the limit is"
                       " refused.",
    }


async def _fresh(ctx: Context) -> Account:
    return await ctx.services.accounts.fresh(ctx.account)


def state_of(account: Account) -> str:
    return f"{account.modseq}.{account.quota}"


def _parse_state(args: dict[str, Any], key: str) -> tuple[int, int]:
    value = args.get(key)
    if not isinstance(value, str) or len(value) > 40 or not value.isascii():
        value = ""
    modseq, dot, limit = value.partition(".")
    if not (dot and modseq.isdigit() and limit.isdigit()):
        raise MethodError("invalidArguments", f"{key} must be a Quota state this server gave")
    return int(modseq), int(limit)


@method("Quota/get", capability=QUOTA)
async def quota_get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    ids = requested_ids(ctx, args)
    props = requested_properties(args, "properties", PROPERTIES, PROPERTIES)
    if any(p not in PROPERTIES for p in props):  # "header:..." is for Email only
        raise MethodError("invalidArguments", "a Quota has no header properties")
    account = await _fresh(ctx)
    quota = to_jmap(account)
    wanted = [quota["id"]] if ids is None else ids
    return {"accountId": account_id, "state": state_of(account),
            "list": [{p: quota[p] for p in ("id", *props) if p in quota}
                     for i in wanted if i == quota["id"]],
            "notFound": [i for i in wanted if i != quota["id"]]}


@method("Quota/changes", capability=QUOTA)
async def quota_changes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """RFC 9425 §4.2: the one quota is updated when emails came or went, or the limit moved."""
    account_id = ctx.account_id(args)
    since, old_limit = _parse_state(args, "sinceState")
    integer(args, "maxChanges", 1, 1)
    account = await _fresh(ctx)
    if since > account.modseq:
        raise MethodError("cannotCalculateChanges", "that state is newer than the account's")
    # Only the log up to the state read above counts; a later change is the next call's.
    page = await changes_after(ctx, since, ("Email",))
    properties = []
    if any(c.op in ("created", "destroyed") for c in page.changes if c.modseq <= account.modseq):
        properties.append("used")
    if old_limit != account.quota:
        properties += ["hardLimit", "warnLimit"]
    return {"accountId": account_id, "oldState": args["sinceState"],
            "newState": state_of(account), "hasMoreChanges": False, "created": [],
            "updated": [quota_id(account)] if properties else [], "destroyed": [],
            "updatedProperties": properties or None}


def _strings(value: object, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MethodError("invalidArguments", f"{key} must be an array of strings")
    return value


def _matches(quota: dict[str, Any], value: object, depth: int = 0) -> bool:
    """RFC 9425 §4.3.1 FilterCondition (name, scope, resourceType, type) or an operator."""
    if value is None:
        return True
    if not isinstance(value, dict) or depth > 16:
        raise MethodError("invalidArguments", "filter must be an object (at most 16 deep)")
    if "operator" in value:
        operator, conditions = value.get("operator"), value.get("conditions")
        if operator not in ("AND", "OR", "NOT") or not isinstance(conditions, list):
            raise MethodError("invalidArguments", "a FilterOperator is {operator, conditions}")
        results = [_matches(quota, c, depth + 1) for c in conditions]
        return all(results) if operator == "AND" else (
            any(results) if operator == "OR" else not any(results))
    unknown = [k for k in value if k not in ("name", "scope", "resourceType", "type")]
    if unknown:
        raise MethodError("unsupportedFilter", "unknown conditions: " + ", ".join(
            str(k)[:50] for k in unknown[:10]))
    ok = True
    if "name" in value:
        if not isinstance(value["name"], str):
            raise MethodError("invalidArguments", "name must be a string")
        ok = ok and value["name"].casefold() in quota["name"].casefold()
    for key, prop in (("scope", "scope"), ("resourceType", "resourceType")):
        if key in value:
            ok = ok and quota[prop] in _strings(value[key], key)
    if "type" in value:
        ok = ok and bool(set(_strings(value["type"], "type")) & set(quota["types"]))
    return ok


def _check_sort(sort: object) -> None:
    if sort is None:
        return
    if not isinstance(sort, list) or not all(isinstance(c, dict) for c in sort):
        raise MethodError("invalidArguments", "sort must be an array of Comparators")
    for comparator in sort:
        if comparator.get("property") not in ("name", "used"):
            raise MethodError("unsupportedSort", "Quota/query sorts on name or used")
        if not isinstance(comparator.get("isAscending", True), bool):
            raise MethodError("invalidArguments", "isAscending must be a boolean")


async def _results(ctx: Context, args: dict[str, Any]) -> tuple[Account, list[str]]:
    _check_sort(args.get("sort"))  # one quota: any order is the same order
    account = await _fresh(ctx)
    quota = to_jmap(account)
    return account, [quota["id"]] if _matches(quota, args.get("filter")) else []


@method("Quota/query", capability=QUOTA)
async def quota_query(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    account, results = await _results(ctx, args)
    position, ids = window(results, args, 100)
    out: dict[str, Any] = {"accountId": account_id, "queryState": state_of(account),
                           "canCalculateChanges": True, "position": position, "ids": ids}
    if boolean(args, "calculateTotal"):
        out["total"] = len(results)
    return out


@method("Quota/queryChanges", capability=QUOTA)
async def quota_query_changes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """The filters read only properties that never change (name, scope, types), so the
    results never change: nothing is removed or added."""
    account_id = ctx.account_id(args)
    _parse_state(args, "sinceQueryState")
    integer(args, "maxChanges", 1, 1)
    account, results = await _results(ctx, args)
    out: dict[str, Any] = {"accountId": account_id, "oldQueryState": args["sinceQueryState"],
                           "newQueryState": state_of(account), "removed": [], "added": []}
    if boolean(args, "calculateTotal"):
        out["total"] = len(results)
    return out
