"""PushSubscription/get and /set (RFC 8620 §7.2): a device asks to be told of changes by POST.

A subscription belongs to the credentials that made it (§7.2), so these methods take no
`accountId` and have no state; here the credentials' account is the owner, and every id of
another account is simply not found. A new subscription is told its verification code by a
PushVerification POST to its url and gets StateChanges only once the client has set
`verificationCode` to that code (§7.2.2), which proves the client reads what reaches the url.
`url` and `keys` are secrets of the device: never returned (§7.2.1), and immutable.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from mailyard.core.ids import new_id
from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.errors import MethodError
from mailyard.protocols.jmap.services import DataServices
from mailyard.protocols.jmap.webpush import check_keys
from mailyard.services.pushsubs import (
    BadSubscription,
    PushSubscriptionService,
    TooManySubscriptions,
)
from mailyard.store.ports import NotFound, PushSubscriptionRecord

PROPERTIES: tuple[str, ...] = ("id", "deviceClientId", "verificationCode", "expires", "types")
SECRET = ("url", "keys")
MUTABLE = ("verificationCode", "expires", "types")


class Invalid(Exception):
    """A SetError (§5.3) for one object."""

    def __init__(self, type_: str, description: str, properties: list[str] | None = None
                 ) -> None:
        super().__init__(description)
        self.body: dict[str, Any] = {"type": type_, "description": description}
        if properties is not None:
            self.body["properties"] = properties


# --------------------------------------------------------------------------- values


def utc_date(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc_date(value: Any) -> float:
    """A UTCDate (§1.4: "Z", upper case) as seconds since the epoch."""
    if not isinstance(value, str) or not value.endswith("Z") or "T" not in value:
        raise Invalid("invalidProperties", "expires must be a UTCDate", ["expires"])
    try:
        return datetime.fromisoformat(value[:-1] + "+00:00").timestamp()
    except ValueError:
        raise Invalid("invalidProperties", "expires must be a UTCDate", ["expires"]) from None


def clamp_expires(value: Any, now: float) -> float:
    """The expiry the server gives for a requested UTCDate (or null)."""
    requested = None if value is None else parse_utc_date(value)
    try:
        return PushSubscriptionService.expires(requested, now)
    except BadSubscription as e:
        raise _invalid(e) from None


def _invalid(e: BadSubscription) -> Invalid:
    return Invalid("invalidProperties", str(e), [e.prop])


def check_types(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise Invalid("invalidProperties", "types must be null or an array of strings",
                      ["types"])
    return tuple(value)


def check_keys_value(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    bad = Invalid("invalidProperties", "keys must be {p256dh, auth}: a P-256 public key and a"
                  " 16-octet secret, base64url", ["keys"])
    if not isinstance(value, dict) or set(value) != {"p256dh", "auth"} or not all(
            isinstance(v, str) for v in value.values()):
        raise bad
    try:
        check_keys(value)
    except (ValueError, TypeError):
        raise bad from None
    return {"p256dh": value["p256dh"], "auth": value["auth"]}


def to_json(record: PushSubscriptionRecord, properties: tuple[str, ...]) -> dict[str, Any]:
    full = {"id": record.id, "deviceClientId": record.device_client_id,
            "verificationCode": record.verification_code if record.verified else None,
            "expires": utc_date(record.expires),
            "types": list(record.types) if record.types is not None else None}
    return {p: full[p] for p in properties}


# --------------------------------------------------------------------------- /get


@method("PushSubscription/get")
async def get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """§7.2.1: the standard /get without accountId and state; url and keys never."""
    ids = args.get("ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str)
                                                                  for i in ids)):
        raise MethodError("invalidArguments", "ids must be null or an array of ids")
    if ids is not None and len(ids) > ctx.services.policy.limits.max_objects_in_get:
        raise MethodError("requestTooLarge")
    wanted = args.get("properties")
    if wanted is None:
        properties = PROPERTIES
    else:
        if not isinstance(wanted, list) or not all(isinstance(p, str) for p in wanted):
            raise MethodError("invalidArguments", "properties must be null or an array")
        if any(p in SECRET for p in wanted):
            raise MethodError("forbidden", "url and keys are never returned")
        unknown = [p for p in wanted if p not in PROPERTIES]
        if unknown:
            raise MethodError("invalidArguments", "unknown properties: " + ", ".join(
                u[:50] for u in unknown[:10]))
        properties = ("id", *(p for p in PROPERTIES if p in wanted and p != "id"))
    resolved = None if ids is None else [ctx.resolve_id(i) or i for i in ids]
    records = await ctx.services.need_data().push.get(ctx.account.id, resolved)
    found = {r.id for r in records}
    return {"list": [to_json(r, properties) for r in records],
            "notFound": [] if resolved is None else [i for i in resolved if i not in found]}


# --------------------------------------------------------------------------- /set


@method("PushSubscription/set")
async def set_(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """§7.2.2: the standard /set without accountId, ifInState and states."""
    create, update, destroy = args.get("create"), args.get("update"), args.get("destroy")
    if create is not None and not isinstance(create, dict):
        raise MethodError("invalidArguments", "create must be null or an object")
    if update is not None and not isinstance(update, dict):
        raise MethodError("invalidArguments", "update must be null or an object")
    if destroy is not None and not (isinstance(destroy, list)
                                    and all(isinstance(i, str) for i in destroy)):
        raise MethodError("invalidArguments", "destroy must be null or an array of ids")
    total = len(create or {}) + len(update or {}) + len(destroy or [])
    if total > ctx.services.policy.limits.max_objects_in_set:
        raise MethodError("requestTooLarge")
    service = ctx.services.need_data()
    out: dict[str, Any] = {"created": None, "updated": None, "destroyed": None,
                           "notCreated": None, "notUpdated": None, "notDestroyed": None}
    for creation_id, props in (create or {}).items():
        try:
            record = await _create(ctx, service, props)
        except Invalid as e:
            out["notCreated"] = (out["notCreated"] or {}) | {creation_id: e.body}
            continue
        ctx.created(creation_id, record.id)
        out["created"] = (out["created"] or {}) | {creation_id: {
            "id": record.id, "expires": utc_date(record.expires)}}
    for raw_id, patch in (update or {}).items():
        sub_id = ctx.resolve_id(raw_id) or raw_id
        try:
            changed = await _update(ctx, service, sub_id, patch)
        except Invalid as e:
            out["notUpdated"] = (out["notUpdated"] or {}) | {raw_id: e.body}
            continue
        out["updated"] = (out["updated"] or {}) | {raw_id: changed}
    for raw_id in destroy or []:
        sub_id = ctx.resolve_id(raw_id) or raw_id
        try:
            record = await service.push.delete(ctx.account.id, sub_id)
        except NotFound:
            out["notDestroyed"] = (out["notDestroyed"] or {}) | {raw_id: {"type": "notFound"}}
            continue
        await service.push_delivery.forget(record)
        out["destroyed"] = [*(out["destroyed"] or []), raw_id]
    return out


async def _create(ctx: Context, service: DataServices, props: Any) -> PushSubscriptionRecord:
    if not isinstance(props, dict):
        raise Invalid("invalidProperties", "a PushSubscription is an object")
    unknown = [p for p in props if p not in (*PROPERTIES, *SECRET) or p == "id"]
    if unknown:
        raise Invalid("invalidProperties", "these cannot be set", unknown[:10])
    if props.get("verificationCode") is not None:
        raise Invalid("invalidProperties", "verificationCode is null until the server has"
                                           " sent it", ["verificationCode"])
    device = props.get("deviceClientId")
    if not isinstance(device, str) or not 0 < len(device) <= 255:
        raise Invalid("invalidProperties", "deviceClientId must be a string",
                      ["deviceClientId"])
    now = time.time()
    try:
        url = service.push.check_url(props.get("url"))
    except BadSubscription as e:
        raise _invalid(e) from None
    record = PushSubscriptionRecord(
        id=new_id("P"), account_id=ctx.account.id, device_client_id=device, url=url,
        keys=check_keys_value(props.get("keys")), verification_code=secrets.token_urlsafe(24),
        verified=False, expires=clamp_expires(props.get("expires"), now),
        types=check_types(props.get("types")))
    try:
        await service.push.create(record)
    except TooManySubscriptions as e:
        raise Invalid("overQuota", str(e)) from None
    service.push_delivery.verify(record)
    return record


async def _update(ctx: Context, service: DataServices, sub_id: str, patch: Any
                  ) -> dict[str, Any] | None:
    if not isinstance(patch, dict):
        raise Invalid("invalidPatch", "a patch is an object")
    records = await service.push.get(ctx.account.id, [sub_id])
    if not records:
        raise Invalid("notFound", "no such push subscription")
    record = records[0]
    bad = [p for p in patch if p not in MUTABLE]
    if bad:
        raise Invalid("invalidProperties", "only verificationCode, expires and types can"
                                           " change", bad[:10])
    changed: dict[str, Any] = {}
    if "verificationCode" in patch:
        code = patch["verificationCode"]
        if not isinstance(code, str) or not hmac.compare_digest(
                code.encode(), record.verification_code.encode()):
            raise Invalid("invalidProperties", "that is not the verification code sent to"
                                               " the url", ["verificationCode"])
        record = replace(record, verified=True)
    if "expires" in patch:
        expires = clamp_expires(patch["expires"], time.time())
        if patch["expires"] is None or utc_date(expires) != patch["expires"]:
            changed["expires"] = utc_date(expires)
        record = replace(record, expires=expires)
    if "types" in patch:
        record = replace(record, types=check_types(patch["types"]))
    await service.push.update(record)
    if record.verified:
        service.push_delivery.watch(record)
    return changed or None
