"""EmailSubmission (RFC 8621 §7): sending an email of the account, with delayed and undo send.

A creation hands the email's octets to the submission service, the path SMTP submission takes:
the Sent copy is filed, the message is queued per destination, and the queue items are held
until `sendAt` — FUTURERELEASE's HOLDFOR/HOLDUNTIL on the envelope, or the configured undo
window. While an item is held, setting undoStatus to "canceled" takes it back. What the client
sees of a submission is a small stored object; its undoStatus and deliveryStatus are read from
the queue, so they are never out of date.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from mailyard.core.mime import parse_message
from mailyard.core.workitems import try_decode
from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.errors import MethodError
from mailyard.protocols.jmap.mail import headertext
from mailyard.protocols.jmap.mail.common import (
    SUBMISSION,
    SetError,
    SetRequest,
    changes,
    changes_response,
    current_state,
    mailbox_service,
    object_service,
    requested_ids,
    requested_properties,
    set_response,
)
from mailyard.protocols.jmap.mail.email_set import email_set
from mailyard.protocols.jmap.mail.identity import identities
from mailyard.services.submission import (
    MAX_HOLD,
    Refusal,
    SubmissionRefused,
    SubmissionService,
    release_time,
)
from mailyard.store.ports import NotFound, StoredObject

KIND = "EmailSubmission"
PROPERTIES = ("id", "identityId", "emailId", "threadId", "envelope", "sendAt", "undoStatus",
              "deliveryStatus", "dsnBlobIds", "mdnBlobIds")


def submission_service(ctx: Context) -> SubmissionService:
    return ctx.services.need_data().submission


def utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_SET_ERRORS = {
    Refusal.SENDER_NOT_YOURS: "forbiddenFrom",
    Refusal.NO_FROM: "forbiddenFrom",
    Refusal.TOO_MANY_RECIPIENTS: "tooManyRecipients",
    Refusal.BAD_RECIPIENT: "invalidRecipients",
    Refusal.NO_SUCH_USER: "invalidRecipients",
    Refusal.RATE_LIMITED: "forbiddenToSend",
    Refusal.MAILBOX_FULL: "forbiddenToSend",
    Refusal.AUTHOR_FIELDS: "invalidEmail",
}
"""The submission service's typed refusals as the SetErrors of RFC 8621 §7.5. Author fields
that break RFC 5322 §3.6 (two From, a Sender naming no single mailbox) make the email itself
invalid (`invalidEmail`), whoever sends it."""


def _refusal(e: SubmissionRefused) -> SetError:
    """The submission service's refusal as the SetError RFC 8621 §7.5 names; the SMTP reply's
    text (its code stripped) is the description."""
    return SetError(_SET_ERRORS[e.refusal], e.reply[4:])


def _address(value: Any, what: str) -> tuple[str, dict[str, Any] | None]:
    if not isinstance(value, dict) or not isinstance(value.get("email"), str):
        raise SetError("invalidProperties", f"{what} must be an Address", ["envelope"])
    params = value.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise SetError("invalidProperties", f"{what} parameters must be an object",
                       ["envelope"])
    if what == "mailFrom" and value["email"] == "":
        return "", params  # the null reverse-path
    # Each address becomes an SMTP command: one with a CR or LF would add commands.
    return headertext.address(value["email"], "envelope", what), params


def _envelope(value: Any, identity_email: str, raw: bytes) -> tuple[str, list[str], float | None,
                                                                   dict[str, Any]]:
    """(MAIL FROM, RCPT TOs, send time, the envelope as stored) — from the client's envelope
    or, when it gives none, the identity and the message's To/Cc/Bcc (§7 `envelope`)."""
    send_at: float | None = None
    if value is None:
        parsed = parse_message(raw)
        found = list(dict.fromkeys(a.email for a in (*parsed.to, *parsed.cc, *parsed.bcc)
                                   if a.email))
        if not found:
            raise SetError("noRecipients", "the email has no To, Cc or Bcc address")
        rcpts, bad = [], []
        for address in found:
            try:
                rcpts.append(headertext.address(address, "envelope", "a recipient"))
            except SetError:
                bad.append(address)
        if bad:  # §7.5: listed in the error's invalidRecipients
            error = SetError("invalidRecipients", "these are no addresses to send to")
            error.body["invalidRecipients"] = bad
            raise error
        envelope = {"mailFrom": {"email": identity_email, "parameters": None},
                    "rcptTo": [{"email": r, "parameters": None} for r in rcpts]}
        return identity_email, rcpts, None, envelope
    if not isinstance(value, dict) or not isinstance(value.get("rcptTo"), list):
        raise SetError("invalidProperties", "envelope needs mailFrom and rcptTo", ["envelope"])
    mail_from, params = _address(value.get("mailFrom"), "mailFrom")
    for key, param in (params or {}).items():
        if key.upper() in ("HOLDFOR", "HOLDUNTIL"):
            send_at = release_time(key.upper(), str(param))
            if send_at is None:
                raise SetError("invalidProperties",
                               f"{key} must be a time at most {MAX_HOLD} seconds ahead",
                               ["envelope"])
        else:
            raise SetError("invalidProperties", f"unsupported MAIL FROM parameter {key}",
                           ["envelope"])
    rcpts = [_address(r, "rcptTo")[0] for r in value["rcptTo"]]
    if not rcpts:
        raise SetError("noRecipients", "rcptTo is empty")
    return mail_from, rcpts, send_at, value


async def _view(ctx: Context, obj: StoredObject) -> dict[str, Any]:
    data = obj.data
    queued = [] if data.get("undoStatus") == "canceled" else \
        await submission_service(ctx).queued(ctx.account, obj.id)
    now = time.time()
    if data.get("undoStatus") == "canceled":
        undo = "canceled"
    elif any(not q.leased and q.attempts == 0 and q.available_at > now for q in queued):
        undo = "pending"
    else:
        undo = "final"
    waiting = {r for q in queued if (item := try_decode(q.kind, q.payload))
               for r in item.recipients}
    status = {}
    for rcpt in data["envelope"]["rcptTo"]:
        address = rcpt["email"]
        if undo == "canceled":
            delivered, reply = "no", "550 5.0.0 Canceled by the sender"
        elif address in waiting:
            delivered, reply = "queued", "250 2.0.0 Queued"
        else:
            delivered, reply = "unknown", "250 2.0.0 Accepted"
        status[address] = {"smtpReply": reply, "delivered": delivered, "displayed": "unknown"}
    return {"id": obj.id, "identityId": data["identityId"], "emailId": data["emailId"],
            "threadId": data["threadId"], "envelope": data["envelope"],
            "sendAt": data["sendAt"], "undoStatus": undo, "deliveryStatus": status,
            "dsnBlobIds": [], "mdnBlobIds": []}


@method("EmailSubmission/get", capability=SUBMISSION)
async def submission_get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    ids = requested_ids(ctx, args)
    props = requested_properties(args, "properties", PROPERTIES, PROPERTIES)
    state = await current_state(ctx)
    objects = await object_service(ctx).get(ctx.account, KIND, ids)
    found = {o.id for o in objects}
    listed = []
    for obj in objects:
        view = await _view(ctx, obj)
        listed.append({p: view[p] for p in ("id", *props)})
    return {"accountId": account_id, "state": str(state), "list": listed,
            "notFound": [i for i in (ids or []) if i not in found]}


@method("EmailSubmission/changes", capability=SUBMISSION)
async def submission_changes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    result = await changes(ctx, args, KIND)
    return changes_response(ctx, account_id, args["sinceState"], result)


def _matches(view: dict[str, Any], condition: dict[str, Any]) -> bool:
    for key, value in condition.items():
        if key in ("identityIds", "emailIds", "threadIds"):
            if not isinstance(value, list):
                raise MethodError("invalidArguments", f"{key} must be an array")
            if view[key[:-1]] not in value:
                return False
        elif key == "undoStatus":
            if view["undoStatus"] != value:
                return False
        elif key in ("before", "after"):
            if not isinstance(value, str):
                raise MethodError("invalidArguments", f"{key} must be a UTCDate")
            if (view["sendAt"] >= value) if key == "before" else (view["sendAt"] < value):
                return False
        else:
            raise MethodError("unsupportedFilter", f"unknown filter {key}")
    return True


@method("EmailSubmission/query", capability=SUBMISSION)
async def submission_query(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    condition = args.get("filter") or {}
    if not isinstance(condition, dict) or "operator" in condition:
        raise MethodError("unsupportedFilter", "a FilterCondition object is supported")
    sort = args.get("sort") or [{"property": "sentAt", "isAscending": True}]
    if (not isinstance(sort, list) or len(sort) != 1 or not isinstance(sort[0], dict)
            or sort[0].get("property") not in ("emailId", "threadId", "sentAt")):
        raise MethodError("unsupportedSort", "sort by one of emailId, threadId, sentAt")
    key = str({"sentAt": "sendAt"}.get(sort[0]["property"], sort[0]["property"]))
    position = args.get("position", 0)
    limit = args.get("limit")
    if not isinstance(position, int) or position < 0 or (
            limit is not None and (not isinstance(limit, int) or limit < 0)):
        raise MethodError("invalidArguments", "position and limit are non-negative integers")
    state = await current_state(ctx)
    views = [await _view(ctx, o) for o in
             await object_service(ctx).get(ctx.account, KIND)]
    hits = sorted((v for v in views if _matches(v, condition)), key=lambda v: (v[key], v["id"]),
                  reverse=sort[0].get("isAscending", True) is False)
    ids = [v["id"] for v in hits]
    window = ids[position:] if limit is None else ids[position : position + limit]
    out = {"accountId": account_id, "queryState": str(state), "canCalculateChanges": False,
           "position": position, "ids": window}
    if args.get("calculateTotal"):
        out["total"] = len(ids)
    return out


async def _create(ctx: Context, spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise SetError("invalidProperties", "an EmailSubmission is an object")
    identity = spec.get("identityId")
    identity_id = ctx.resolve_id(identity) if isinstance(identity, str) else None
    known = await identities(ctx)
    if identity_id not in known:
        raise SetError("invalidProperties", "no such identity", ["identityId"])
    email_id = spec.get("emailId")
    if not isinstance(email_id, str):
        raise SetError("invalidProperties", "emailId is required", ["emailId"])
    email_id = ctx.resolve_id(email_id) or email_id
    mailbox = mailbox_service(ctx)
    try:
        record = await mailbox.email(ctx.account, email_id)
        raw = await mailbox.raw_of(record)
    except NotFound:
        raise SetError("invalidProperties", f"no email {email_id}", ["emailId"]) from None
    mail_from, rcpts, send_at, envelope = _envelope(spec.get("envelope"),
                                                    known[identity_id]["email"], raw)
    service = submission_service(ctx)
    try:
        await service.allow_message(ctx.account)
        for n, rcpt in enumerate(rcpts):
            await service.check_recipient(n, rcpt)
        submitted = await service.submit(ctx.account, mail_from, rcpts, raw, send_at=send_at,
                                         peer="", helo="", protocol="HTTPS")
    except SubmissionRefused as e:
        raise _refusal(e) from None
    data = {"identityId": identity_id, "emailId": email_id, "threadId": record.thread_id,
            "envelope": envelope, "sendAt": utc(submitted.send_at), "undoStatus": "pending"}
    modseq = await object_service(ctx).put(ctx.account, KIND, submitted.id, data)
    # RFC 8620 §5.3: `created` holds every property the server set or changed: the id,
    # threadId, sendAt, undoStatus, deliveryStatus, dsnBlobIds, mdnBlobIds, the envelope when
    # the client left it out, and identityId/emailId when given as "#creationId" references.
    view = await _view(ctx, StoredObject(KIND, submitted.id, data, modseq))
    return {k: v for k, v in view.items() if k == "id" or k not in spec or spec[k] != v}


@method("EmailSubmission/set", capability=SUBMISSION)
async def submission_set(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    objects = object_service(ctx)
    request = await SetRequest.read(ctx, args)
    create, update, destroy = request.create, request.update, request.destroy
    on_update = args.get("onSuccessUpdateEmail") or {}
    on_destroy = args.get("onSuccessDestroyEmail") or []
    if not isinstance(on_update, dict) or not isinstance(on_destroy, list):
        raise MethodError("invalidArguments", "onSuccessUpdateEmail is an object and"
                          " onSuccessDestroyEmail an array")
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for creation_id, spec in create.items():
        try:
            created[creation_id] = await _create(ctx, spec)
            ctx.created(creation_id, created[creation_id]["id"])
        except SetError as e:
            not_created[creation_id] = e.body
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for sub_id, patch in update.items():
        sub_id = ctx.resolve_id(sub_id) or sub_id
        try:
            found = await objects.get(ctx.account, KIND, [sub_id])
            if not found:
                raise SetError("notFound", f"no submission {sub_id}")
            obj = found[0]
            if not isinstance(patch, dict) or set(patch) != {"undoStatus"} \
                    or patch["undoStatus"] != "canceled":
                raise SetError("invalidProperties", "only undoStatus can change, to canceled",
                               list(patch) if isinstance(patch, dict) else None)
            if (await _view(ctx, obj))["undoStatus"] != "pending":
                raise SetError("cannotUnsend", "the message has already been sent")
            try:
                if not await submission_service(ctx).cancel(ctx.account, sub_id):
                    raise NotFound(sub_id)
            except NotFound:
                raise SetError("cannotUnsend", "the message has already been sent") from None
            await objects.put(ctx.account, KIND, sub_id,
                              {**obj.data, "undoStatus": "canceled"})
            updated[sub_id] = None
        except SetError as e:
            not_updated[sub_id] = e.body
    destroyed: list[str] = []
    not_destroyed: dict[str, Any] = {}
    for sub_id in destroy:
        sub_id = ctx.resolve_id(sub_id) or sub_id
        try:
            await objects.delete(ctx.account, KIND, sub_id)
            destroyed.append(sub_id)
        except NotFound:
            not_destroyed[sub_id] = {"type": "notFound"}
    result = await set_response(ctx, account_id, request, created=created,
                                not_created=not_created, updated=updated,
                                not_updated=not_updated, destroyed=destroyed,
                                not_destroyed=not_destroyed)
    # §7.5: on success, the implicit Email/set for the submitted emails (e.g. Drafts -> Sent).
    email_update: dict[str, Any] = {}
    for ref, patch in on_update.items():
        target = _succeeded(ref, created, updated, ctx)
        if target is not None:
            email_update[target] = patch
    email_destroy = [t for t in (_succeeded(r, created, updated, ctx) for r in on_destroy
                                 if isinstance(r, str)) if t is not None]
    if email_update or email_destroy:
        email_ids = await _email_ids(ctx, [*email_update, *email_destroy])
        implicit = await email_set(ctx, {
            "accountId": account_id,
            "update": {email_ids[s]: p for s, p in email_update.items() if s in email_ids},
            "destroy": [email_ids[s] for s in email_destroy if s in email_ids]})
        ctx.respond("Email/set", implicit)
    return result


def _succeeded(ref: str, created: dict[str, Any], updated: dict[str, Any], ctx: Context
               ) -> str | None:
    """The submission id `ref` names ("#creationId" or an id), if that create or update
    succeeded in this call."""
    if ref.startswith("#"):
        made = created.get(ref[1:])
        return made["id"] if made is not None else None
    return ref if ref in updated else None


async def _email_ids(ctx: Context, submission_ids: list[str]) -> dict[str, str]:
    objects = await object_service(ctx).get(ctx.account, KIND, submission_ids)
    return {o.id: o.data["emailId"] for o in objects}
