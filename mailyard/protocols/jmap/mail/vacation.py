"""VacationResponse/get and /set (RFC 8621 §8): one object per account, id "singleton".

The pipeline's vacation responder (services/vacation.py) does the answering; this module only
shows and changes its settings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.mail import headertext
from mailyard.protocols.jmap.mail.common import (
    SetError,
    SetRequest,
    current_state,
    requested_ids,
    requested_properties,
    set_response,
)
from mailyard.protocols.jmap.session import capability
from mailyard.services.vacation import SINGLETON, VacationResponder

VACATION = "urn:ietf:params:jmap:vacationresponse"
PROPERTIES = ("id", "isEnabled", "fromDate", "toDate", "subject", "textBody", "htmlBody")
_TEXT_LIMIT = 100_000

capability(VACATION, account=lambda services, account: {})


def responder(ctx: Context) -> VacationResponder:
    return ctx.services.need_data().vacation


def _check(key: str, value: Any) -> Any:
    if key == "isEnabled":
        if not isinstance(value, bool):
            raise SetError("invalidProperties", "isEnabled is a boolean", [key])
    elif key in ("fromDate", "toDate"):
        if value is not None:
            try:
                when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                when = None
            if not isinstance(value, str) or when is None or when.tzinfo is None:
                raise SetError("invalidProperties", f"{key} is a UTCDate or null", [key])
    elif key in ("subject", "textBody", "htmlBody"):
        if value is not None and (not isinstance(value, str) or len(value) > _TEXT_LIMIT):
            raise SetError("invalidProperties", f"{key} is a string or null", [key])
        if key == "subject" and value is not None:  # the Subject of every automatic reply
            headertext.text(value, key, key)
    else:
        raise SetError("invalidProperties", f"{key} cannot be set", [key])
    return value


@method("VacationResponse/get", capability=VACATION)
async def vacation_get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    ids = requested_ids(ctx, args)
    props = requested_properties(args, "properties", PROPERTIES, PROPERTIES)
    settings = {"id": SINGLETON, **await responder(ctx).get(ctx.account)}
    wanted = [SINGLETON] if ids is None else ids
    return {"accountId": account_id, "state": str(await current_state(ctx)),
            "list": [{p: settings[p] for p in ("id", *props)} for i in wanted
                     if i == SINGLETON],
            "notFound": [i for i in wanted if i != SINGLETON]}


@method("VacationResponse/set", capability=VACATION)
async def vacation_set(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    request = await SetRequest.read(ctx, args)
    create, update, destroy = request.create, request.update, request.destroy
    singleton = "the VacationResponse is a singleton"
    not_created = {c: {"type": "singleton", "description": singleton} for c in create}
    not_destroyed = {d: {"type": "singleton", "description": singleton} for d in destroy}
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for object_id, patch in update.items():
        try:
            if object_id != SINGLETON:
                raise SetError("notFound", "the only VacationResponse is \"singleton\"")
            if not isinstance(patch, dict):
                raise SetError("invalidPatch", "a patch is an object")
            values = {k: _check(k, v) for k, v in patch.items() if k != "id"}
            if patch.get("id", SINGLETON) != SINGLETON:
                raise SetError("invalidProperties", "id cannot change", ["id"])
            await responder(ctx).set(ctx.account, values)
            updated[object_id] = None
        except SetError as e:
            not_updated[object_id] = e.body
    return await set_response(ctx, account_id, request, created={},
                              not_created=not_created, updated=updated,
                              not_updated=not_updated, destroyed=[],
                              not_destroyed=not_destroyed)
