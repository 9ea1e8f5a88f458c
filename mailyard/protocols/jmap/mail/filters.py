"""Filters/get and Filters/set: the webmail's Gmail-style filters (issue 25), a capability of
our own ("urn:mailyard:params:jmap:filters"), compiled here to Sieve (core/sieve/
gmailfilters.py) and stored as the account's script "mailyard-filters" through the same
SieveService as ManageSieve and JMAP Sieve, so the one engine runs them.

Filters/set recompiles the whole list and stores and activates that script on every change
(Sieve has one active script per account: a script activated elsewhere before is then no
longer active; ManageSieve and SieveScript/get show the compiled one). Filters/get reads the
list back from the JSON comment the script carries; a "mailyard-filters" script edited by
hand into something without that comment reads as no filters.

A filter's properties: from, to, subject, hasWords, doesntHave (criteria), label, archive,
star, markRead, forwardTo, neverSpam (actions); id is the server's. The state is a digest
of the script text.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace
from typing import Any

from mailyard.core.sieve import SieveSyntaxError
from mailyard.core.sieve.gmailfilters import (
    Filter,
    FilterError,
    compile_filters,
    parse_filters,
)
from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.errors import MethodError
from mailyard.protocols.jmap.mail.common import SetError, requested_ids, set_maps
from mailyard.protocols.jmap.session import capability
from mailyard.services.sieve import ScriptRefused, SieveService
from mailyard.store.ports import NotFound

FILTERS = "urn:mailyard:params:jmap:filters"
SCRIPT = "mailyard-filters"
_WIRE = {"from": "from", "to": "to", "subject": "subject", "hasWords": "has_words",
         "doesntHave": "doesnt_have", "label": "label", "archive": "archive", "star": "star",
         "markRead": "mark_read", "forwardTo": "forward_to", "neverSpam": "never_spam"}
_FROM_WIRE = {v: k for k, v in _WIRE.items()}

capability(FILTERS, account=lambda services, account: {"scriptName": SCRIPT})


def _service(ctx: Context) -> SieveService:
    service = ctx.services.need_data().sieve
    if service is None:
        raise MethodError("unknownMethod", "Sieve is not available on this listener")
    return service


def to_wire(f: Filter) -> dict[str, Any]:
    data = f.to_json()
    return {"id": f.id, **{wire: data[name] for wire, name in _WIRE.items()}}


def from_wire(obj: Any, base: Filter | None = None) -> Filter:
    """A Filter from a create object or an update patch (onto `base`); raises SetError."""
    if not isinstance(obj, dict):
        raise SetError("invalidProperties", "a filter is an object")
    unknown = [k for k in obj if k not in _WIRE and k != "id"]
    if unknown:
        raise SetError("invalidProperties", f"unknown properties {unknown}", unknown)
    if "id" in obj and (base is None or obj["id"] != base.id):
        raise SetError("invalidProperties", "id is the server's", ["id"])
    data = (base or Filter()).to_json()
    data.update({_WIRE[k]: v for k, v in obj.items() if k != "id"})
    try:
        return Filter.from_json(data)
    except FilterError as e:
        raise SetError("invalidProperties", str(e), [_FROM_WIRE.get(e.field, e.field)]) \
            from None


async def _current(ctx: Context) -> tuple[list[Filter], str]:
    try:
        script = await _service(ctx).get(ctx.account, SCRIPT)
    except NotFound:
        return [], _state("")
    try:
        return parse_filters(script.content), _state(script.content)
    except FilterError:
        return [], _state(script.content)


def _state(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()[:16]


@method("Filters/get", capability=FILTERS)
async def filters_get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    ids = requested_ids(ctx, args)  # checked, bounded and creation ids resolved as every /get
    filters, state = await _current(ctx)
    by_id = {f.id: f for f in filters}
    wanted = [f.id for f in filters] if ids is None else ids
    return {"accountId": account_id, "state": state,
            "list": [to_wire(by_id[i]) for i in wanted if i in by_id],
            "notFound": [i for i in wanted if i not in by_id]}


def _check(f: Filter) -> None:
    try:
        compile_filters([f])
    except FilterError as e:
        raise SetError("invalidProperties", str(e), [_FROM_WIRE.get(e.field, e.field)]) \
            from None


@method("Filters/set", capability=FILTERS)
async def filters_set(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """create, update and destroy as in RFC 8620 §5.3; one compiled script for the result."""
    account_id = ctx.account_id(args)
    create, update, destroy = set_maps(ctx, args)
    filters, old = await _current(ctx)
    if args.get("ifInState") not in (None, old):
        raise MethodError("stateMismatch")
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for cid, obj in create.items():
        try:
            f = replace(from_wire(obj), id="F" + secrets.token_hex(6))
            _check(f)
            filters.append(f)
            created[cid] = {"id": f.id}
        except SetError as e:
            not_created[cid] = e.body
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for fid, patch in update.items():
        at = next((n for n, f in enumerate(filters) if f.id == fid), None)
        try:
            if at is None:
                raise SetError("notFound", f"no filter {fid}")
            f = from_wire(patch, filters[at])
            _check(f)
            filters[at] = f
            updated[fid] = None
        except SetError as e:
            not_updated[fid] = e.body
    destroyed: list[str] = []
    not_destroyed: dict[str, Any] = {}
    for fid in destroy:
        if any(f.id == fid for f in filters):
            filters = [f for f in filters if f.id != fid]
            destroyed.append(fid)
        else:
            not_destroyed[str(fid)] = {"type": "notFound"}
    new = old
    if created or updated or destroyed:
        content = compile_filters(filters)
        service = _service(ctx)
        try:
            await service.put(ctx.account, SCRIPT, content)
        except (SieveSyntaxError, ScriptRefused) as e:  # over the size or count limits
            raise MethodError("serverFail", f"filters not stored: {e}") from None
        await service.activate(ctx.account, SCRIPT)
        for cid, body in created.items():
            ctx.created(cid, body["id"])
        new = _state(content)
    return {"accountId": account_id, "oldState": old, "newState": new,
            "created": created or None, "notCreated": not_created or None,
            "updated": updated or None, "notUpdated": not_updated or None,
            "destroyed": destroyed or None, "notDestroyed": not_destroyed or None}
