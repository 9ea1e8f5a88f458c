"""Identity/get|changes|set (RFC 8621 §6): the names and addresses a user sends as.

Every account has its own identity, whose id is the account id: its name, reply-to, bcc and
signatures can change, but it cannot be destroyed. More identities may be made, each with an
address the submission service lets the account send from (today: its own address), so a user
can keep, say, a work signature and a private one.
"""

from __future__ import annotations

from typing import Any

from mailyard.core.ids import new_id
from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.mail import headertext
from mailyard.protocols.jmap.mail.common import (
    SUBMISSION,
    SetError,
    SetRequest,
    changes,
    changes_response,
    current_state,
    object_service,
    requested_ids,
    requested_properties,
    set_response,
)
from mailyard.protocols.jmap.services import JMAPServices
from mailyard.protocols.jmap.session import CAPABILITIES, capability
from mailyard.services.submission import MAX_HOLD
from mailyard.store.ports import Account, NotFound

KIND = "Identity"
PROPERTIES = ("id", "name", "email", "replyTo", "bcc", "textSignature", "htmlSignature",
              "mayDelete")
_SIGNATURE_LIMIT = 64 * 1024


def _submission_account(services: JMAPServices, account: Account) -> dict[str, Any]:
    return {"maxDelayedSend": MAX_HOLD, "submissionExtensions": {
        "FUTURERELEASE": [str(MAX_HOLD)], "SIZE": [], "ENHANCEDSTATUSCODES": []}}


if SUBMISSION not in CAPABILITIES:  # the EmailSubmission module may declare it first
    capability(SUBMISSION, account=_submission_account)


def _default(account: Account) -> dict[str, Any]:
    return {"id": account.id, "name": "", "email": account.address, "replyTo": None,
            "bcc": None, "textSignature": "", "htmlSignature": "", "mayDelete": False}


async def identities(ctx: Context) -> dict[str, dict[str, Any]]:
    """Every identity of the account, the built-in one first."""
    stored = await object_service(ctx).get(ctx.account, KIND)
    out = {ctx.account.id: _default(ctx.account)}
    for obj in stored:
        base = out.get(obj.id, {"mayDelete": True})
        out[obj.id] = {**base, **obj.data, "id": obj.id}
    return out


def _addresses(key: str, value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(a, dict) for a in value):
        raise SetError("invalidProperties", f"{key} is null or an array of EmailAddress", [key])
    # The client writes these into the messages it makes: checked as Email/set checks them.
    return [{"name": None if a.get("name") is None
             else headertext.text(a["name"], key, f"{key}: a name"),
             "email": headertext.address(a.get("email"), key, key)} for a in value]


def _values(patch: dict[str, Any], creating: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in patch.items():
        if key in ("name", "textSignature", "htmlSignature"):
            if not isinstance(value, str) or len(value) > _SIGNATURE_LIMIT:
                raise SetError("invalidProperties", f"{key} must be a string", [key])
            out[key] = headertext.text(value, key, key) if key == "name" else value
        elif key in ("replyTo", "bcc"):
            out[key] = _addresses(key, value)
        elif key == "email" and creating:
            out[key] = headertext.address(value, key, key)
        else:
            raise SetError("invalidProperties", f"{key} cannot be set", [key])
    return out


@method("Identity/get", capability=SUBMISSION)
async def identity_get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    ids = requested_ids(ctx, args)
    props = requested_properties(args, "properties", PROPERTIES, PROPERTIES)
    state = await current_state(ctx)
    every = await identities(ctx)
    wanted = list(every) if ids is None else ids
    return {"accountId": account_id, "state": str(state),
            "list": [{p: every[i][p] for p in ("id", *props)} for i in wanted if i in every],
            "notFound": [i for i in wanted if i not in every]}


@method("Identity/changes", capability=SUBMISSION)
async def identity_changes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    result = await changes(ctx, args, KIND)
    return changes_response(ctx, account_id, args["sinceState"], result)


@method("Identity/set", capability=SUBMISSION)
async def identity_set(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    objects = object_service(ctx)
    submission = ctx.services.need_data().submission
    request = await SetRequest.read(ctx, args)
    create, update, destroy = request.create, request.update, request.destroy
    every = await identities(ctx)
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for creation_id, obj in create.items():
        try:
            if not isinstance(obj, dict):
                raise SetError("invalidProperties", "an Identity is an object")
            values = _values({k: v for k, v in obj.items() if k != "mayDelete"}, True)
            address = values.get("email", "")
            if not submission.may_send_as(ctx.account, address):  # SMTP's rule too
                raise SetError("forbiddenFrom", f"{address} is not an address you may send as")
            identity_id = new_id("i")
            data = {**_default(ctx.account), "mayDelete": True, **values}
            del data["id"]
            await objects.put(ctx.account, KIND, identity_id, data)
            created[creation_id] = {"id": identity_id, "mayDelete": True}
            ctx.created(creation_id, identity_id)
        except SetError as e:
            not_created[creation_id] = e.body
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for identity_id, patch in update.items():
        identity_id = ctx.resolve_id(identity_id) or identity_id
        try:
            current = every.get(identity_id)
            if current is None:
                raise SetError("notFound", f"no identity {identity_id}")
            if not isinstance(patch, dict):
                raise SetError("invalidPatch", "a patch is an object")
            same = {k for k, v in patch.items() if k in ("id", "email", "mayDelete")
                    and current.get(k) == v}
            values = _values({k: v for k, v in patch.items() if k not in same}, False)
            data = {k: v for k, v in {**current, **values}.items() if k != "id"}
            if identity_id == ctx.account.id and not await objects.get(
                    ctx.account, KIND, [identity_id]):
                # The built-in identity existed before it was stored: its first change is an
                # update to clients, not a creation.
                await objects.put(ctx.account, KIND, identity_id, data, log=False)
            await objects.put(ctx.account, KIND, identity_id, data)
            updated[identity_id] = None
        except SetError as e:
            not_updated[identity_id] = e.body
    destroyed: list[str] = []
    not_destroyed: dict[str, Any] = {}
    for identity_id in destroy:
        identity_id = ctx.resolve_id(identity_id) or identity_id
        if identity_id == ctx.account.id:
            not_destroyed[identity_id] = {"type": "forbidden",
                                          "description": "the account's own identity stays"}
            continue
        try:
            await objects.delete(ctx.account, KIND, identity_id)
            destroyed.append(identity_id)
        except NotFound:
            not_destroyed[identity_id] = {"type": "notFound"}
    return await set_response(ctx, account_id, request, created=created,
                              not_created=not_created, updated=updated,
                              not_updated=not_updated, destroyed=destroyed,
                              not_destroyed=not_destroyed)
