"""JMAP for Sieve Scripts (RFC 9661): SieveScript/get, /set, /query and /validate, over the
same scripts as ManageSieve and `mailyard sieve` (services/sieve.py).

A script's content travels as a blob: /set takes the blobId of an upload, /get uploads the
stored text (content-addressed, so the same text is the same blob) and answers its blobId.

Differences from the RFC, said here: a script's id is its name (encoded as "S" + base64url),
so `name` cannot be changed by /set update (create a new script instead); the state is a
digest of the account's scripts, and SieveScript/changes answers cannotCalculateChanges.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
from typing import Any

from mailyard.core.sieve import EXTENSIONS, SieveSyntaxError
from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.errors import MethodError
from mailyard.protocols.jmap.mail.common import SetError, requested_ids, requested_properties
from mailyard.protocols.jmap.session import capability
from mailyard.services.sieve import MAX_NAME, ScriptRefused, SieveService
from mailyard.store.ports import NotFound, SieveScriptRecord

SIEVE = "urn:ietf:params:jmap:sieve"
PROPERTIES = ("id", "name", "blobId", "isActive")
MEDIA_TYPE = "application/sieve"


def _service(ctx: Context) -> SieveService:
    service = ctx.services.need_data().sieve
    if service is None:
        raise MethodError("unknownMethod", "Sieve is not available on this listener")
    return service


def _account_capability(services: Any, account: Any) -> dict[str, Any]:
    limits = services.data.sieve.limits if services.data and services.data.sieve else None
    return {"implementation": "Mailyard", "maxSizeScriptName": MAX_NAME,
            "maxSizeScript": limits.max_script_bytes if limits else None,
            "maxNumberScripts": limits.max_scripts if limits else None,
            "maxNumberRedirects": 5, "sieveExtensions": list(EXTENSIONS),
            "notificationMethods": None, "externalLists": None}


capability(SIEVE, account=_account_capability)


def script_id(name: str) -> str:
    return "S" + base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def script_name(object_id: str) -> str | None:
    if not object_id.startswith("S"):
        return None
    body = object_id[1:]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _state(scripts: list[SieveScriptRecord]) -> str:
    digest = hashlib.sha256()
    for s in scripts:
        digest.update(f"{s.name}\0{s.updated_at}\0{s.active}\0".encode())
    return digest.hexdigest()[:16]


async def _json(ctx: Context, script: SieveScriptRecord) -> dict[str, Any]:
    blob = await ctx.services.need_data().blobs.upload(ctx.account, script.content.encode(),
                                                       MEDIA_TYPE)
    return {"id": script_id(script.name), "name": script.name, "blobId": blob.blob_id,
            "isActive": script.active}


@method("SieveScript/get", capability=SIEVE)
async def sieve_get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    ids = requested_ids(ctx, args)  # checked, bounded and creation ids resolved as every /get
    # Checked as every /get checks it: a list of names we know (`[[]]` was a serverFail)
    props = requested_properties(args, "properties", PROPERTIES, PROPERTIES)
    scripts = await _service(ctx).list(ctx.account)
    by_id = {script_id(s.name): s for s in scripts}
    wanted = list(by_id) if ids is None else ids
    found = []
    for object_id in wanted:
        if object_id in by_id:
            full = await _json(ctx, by_id[object_id])
            found.append({p: full[p] for p in ("id", *props)})
    return {"accountId": account_id, "state": _state(scripts), "list": found,
            "notFound": [i for i in wanted if i not in by_id]}


@method("SieveScript/changes", capability=SIEVE)
async def sieve_changes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    ctx.account_id(args)
    raise MethodError("cannotCalculateChanges", "SieveScript/get gives the current list")


@method("SieveScript/query", capability=SIEVE)
async def sieve_query(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    flt = args.get("filter") or {}
    if not isinstance(flt, dict) or not set(flt) <= {"name", "isActive"}:
        raise MethodError("unsupportedFilter", "filter by name and isActive")
    scripts = await _service(ctx).list(ctx.account)
    if "name" in flt:
        scripts = [s for s in scripts if str(flt["name"]).lower() in s.name.lower()]
    if "isActive" in flt:
        scripts = [s for s in scripts if s.active == bool(flt["isActive"])]
    return {"accountId": account_id, "queryState": _state(await _service(ctx).list(ctx.account)),
            "canCalculateChanges": False, "position": 0, "total": len(scripts),
            "ids": [script_id(s.name) for s in scripts]}


async def _content(ctx: Context, blob_id: Any) -> str:
    if not isinstance(blob_id, str):
        raise SetError("invalidProperties", "blobId is required", ["blobId"])
    try:
        data = await ctx.services.need_data().blobs.read(ctx.account, blob_id)
    except (NotFound, ValueError):
        raise SetError("blobNotFound", f"no blob {blob_id}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SetError("invalidSieve", "a Sieve script is UTF-8 text") from None


async def _store(ctx: Context, name: str, blob_id: Any) -> None:
    service = _service(ctx)
    content = await _content(ctx, blob_id)
    try:
        await service.put(ctx.account, name, content)
    except SieveSyntaxError as e:
        raise SetError("invalidSieve", str(e)) from None
    except ScriptRefused as e:
        kind = "overQuota" if e.code.startswith("QUOTA") else "invalidProperties"
        raise SetError(kind, str(e), None if kind == "overQuota" else ["name"]) from None


@method("SieveScript/set", capability=SIEVE)
async def sieve_set(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    service = _service(ctx)
    create = args.get("create") or {}
    update = args.get("update") or {}
    destroy = args.get("destroy") or []
    if not isinstance(create, dict) or not isinstance(update, dict) \
            or not isinstance(destroy, list) or not all(isinstance(i, str) for i in destroy):
        raise MethodError("invalidArguments", "create and update are maps, destroy a list of"
                                              " ids")
    old = _state(await service.list(ctx.account))
    if args.get("ifInState") not in (None, old):
        raise MethodError("stateMismatch")
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for cid, obj in create.items():
        try:
            if not isinstance(obj, dict) or not set(obj) <= {"name", "blobId"}:
                raise SetError("invalidProperties", "a SieveScript is created from name and"
                                                    " blobId")
            name = obj.get("name") or f"script-{cid}"
            if not isinstance(name, str):
                raise SetError("invalidProperties", "name is a string", ["name"])
            if name in {s.name for s in await service.list(ctx.account)}:
                raise SetError("alreadyExists", f"a script {name!r} exists")
            await _store(ctx, name, obj.get("blobId"))
            ctx.created(cid, script_id(name))
            created[cid] = {"id": script_id(name), "isActive": False}
        except SetError as e:
            not_created[cid] = e.body
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for object_id, patch in update.items():
        try:
            name = script_name(ctx.resolve_id(object_id) or "")
            if name is None or name not in {s.name for s in await service.list(ctx.account)}:
                raise SetError("notFound", f"no script {object_id}")
            if not isinstance(patch, dict) or not set(patch) <= {"name", "blobId"}:
                raise SetError("invalidProperties", "only blobId can be changed")
            if "name" in patch and patch["name"] != name:
                raise SetError("invalidProperties", "a script's name cannot change here:"
                                                    " create a new one", ["name"])
            if "blobId" in patch:
                await _store(ctx, name, patch["blobId"])
            updated[object_id] = None
        except SetError as e:
            not_updated[object_id] = e.body
    destroyed: list[str] = []
    not_destroyed: dict[str, Any] = {}
    for object_id in destroy:
        name = script_name(ctx.resolve_id(object_id) or object_id)
        try:
            if name is None:
                raise NotFound(str(object_id))
            await service.delete(ctx.account, name)
            destroyed.append(object_id)
        except NotFound:
            not_destroyed[object_id] = {"type": "notFound"}
        except ScriptRefused as e:
            not_destroyed[object_id] = {"type": "scriptIsActive", "description": str(e)}
    activate = args.get("onSuccessActivateScript")
    if isinstance(activate, str):
        name = script_name(ctx.resolve_id(activate) or "")
        if name is not None:
            with contextlib.suppress(NotFound):
                await service.activate(ctx.account, name)
    elif args.get("onSuccessDeactivateScript") is True:
        await service.activate(ctx.account, None)
    return {"accountId": account_id, "oldState": old,
            "newState": _state(await service.list(ctx.account)),
            "created": created or None, "notCreated": not_created or None,
            "updated": updated or None, "notUpdated": not_updated or None,
            "destroyed": destroyed or None, "notDestroyed": not_destroyed or None}


@method("SieveScript/validate", capability=SIEVE)
async def sieve_validate(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    error: dict[str, Any] | None = None
    try:
        await _service(ctx).validate(await _content(ctx, args.get("blobId")))
    except SetError as e:
        error = e.body
    except SieveSyntaxError as e:
        error = {"type": "invalidSieve", "description": str(e)}
    except ScriptRefused as e:
        error = {"type": "tooLarge", "description": str(e)}
    return {"accountId": account_id, "error": error}
