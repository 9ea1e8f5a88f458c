"""JMAP for Sieve Scripts (RFC 9661): SieveScript/get, /set, /query and /validate, over the
same scripts as ManageSieve and `mailyard sieve` (services/sieve.py).

A script's content travels as a blob: /set takes the blobId of an upload, /get uploads the
stored text (content-addressed, so the same text is the same blob) and answers its blobId.

A script's id is given by the store when the script is first stored and kept through
replacing its content and renaming it (RFC 8620's ids are immutable), so a rename is a
/set update of `name`. Differences from the RFC, said here: the state is a digest of the
account's scripts, and SieveScript/changes answers cannotCalculateChanges.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from mailyard.core.sieve import EXTENSIONS, SieveSyntaxError
from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.errors import MethodError
from mailyard.protocols.jmap.mail.common import (
    SetError,
    requested_ids,
    requested_properties,
    set_maps,
)
from mailyard.protocols.jmap.session import capability
from mailyard.services.sieve import MAX_NAME, ScriptRefused, SieveService
from mailyard.store.ports import Conflict, NotFound, SieveScriptRecord

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


def script_id(script: SieveScriptRecord) -> str:
    """The store's id; for a script an older engine stored without one, its name encoded
    (stable until renamed)."""
    if script.id:
        return script.id
    return "N" + base64.urlsafe_b64encode(script.name.encode()).decode().rstrip("=")


def _by_id(scripts: list[SieveScriptRecord]) -> dict[str, SieveScriptRecord]:
    return {script_id(s): s for s in scripts}


def _state(scripts: list[SieveScriptRecord]) -> str:
    digest = hashlib.sha256()
    for s in scripts:
        digest.update(f"{script_id(s)}\0{s.name}\0{s.updated_at}\0{s.active}\0".encode())
    return digest.hexdigest()[:16]


async def _json(ctx: Context, script: SieveScriptRecord) -> dict[str, Any]:
    blob = await ctx.services.need_data().blobs.upload(ctx.account, script.content.encode(),
                                                       MEDIA_TYPE)
    return {"id": script_id(script), "name": script.name, "blobId": blob.blob_id,
            "isActive": script.active}


@method("SieveScript/get", capability=SIEVE)
async def sieve_get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    ids = requested_ids(ctx, args)  # checked, bounded and creation ids resolved as every /get
    # Checked as every /get checks it: a list of names we know (`[[]]` was a serverFail)
    props = requested_properties(args, "properties", PROPERTIES, PROPERTIES)
    scripts = await _service(ctx).list(ctx.account)
    by_id = _by_id(scripts)
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
            "ids": [script_id(s) for s in scripts]}


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


async def _checked(ctx: Context, account: Any, name: str, blob_id: Any) -> str:
    """The content of `blob_id`, checked as a script `name` would be stored (size, count,
    syntax), with RFC 9661's SetErrors, so that nothing is changed when it would fail."""
    service = _service(ctx)
    content = await _content(ctx, blob_id)
    try:
        await service.have_space(account, name, len(content.encode()))
        await service.validate(content)
    except SieveSyntaxError as e:
        raise SetError("invalidSieve", str(e)) from None
    except ScriptRefused as e:
        raise SetError("tooLarge" if e.code == "QUOTA/MAXSIZE" else "overQuota",
                       str(e)) from None
    return content


def _name(value: Any, scripts: list[SieveScriptRecord], own: str | None = None) -> str:
    """A name a script may take: a string RFC 5804 §1.6 allows, no other script's
    (alreadyExists with the other's id, RFC 9661 §2.2)."""
    if not isinstance(value, str):
        raise SetError("invalidProperties", "name is a string", ["name"])
    try:
        SieveService.check_name(value)
    except ScriptRefused as e:
        raise SetError("invalidProperties", str(e), ["name"]) from None
    other = next((s for s in scripts if s.name == value and script_id(s) != own), None)
    if other is not None:
        error = SetError("alreadyExists", f"a script {value!r} exists")
        error.body["existingId"] = script_id(other)
        raise error
    return value


def _free_name(scripts: list[SieveScriptRecord], cid: str) -> str:
    """The name the server gives a script created without one (RFC 9661 §2: "If this is null
    or the empty string on creation, the server MUST choose a name")."""
    taken = {s.name for s in scripts}
    base = "script-" + "".join(c for c in cid if c.isalnum())[:40]
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def _server_set(obj: dict[str, Any], script: SieveScriptRecord | None) -> None:
    """isActive and id are server-set: a client may send their current value, no other."""
    if "id" in obj and (script is None or obj["id"] != script_id(script)):
        raise SetError("invalidProperties", "id is set by the server", ["id"])
    if "isActive" in obj and obj["isActive"] != (script.active if script else False):
        raise SetError("invalidProperties", "isActive changes by onSuccessActivateScript"
                                            " and onSuccessDeactivateScript", ["isActive"])


_WRITABLE = {"id", "name", "blobId", "isActive"}


@method("SieveScript/set", capability=SIEVE)
async def sieve_set(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    service = _service(ctx)
    create, update, destroy = set_maps(ctx, args)
    old = _state(await service.list(ctx.account))
    if args.get("ifInState") not in (None, old):
        raise MethodError("stateMismatch")
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for cid, obj in create.items():
        try:
            if not isinstance(obj, dict) or not set(obj) <= _WRITABLE:
                raise SetError("invalidProperties", "a SieveScript is created from name and"
                                                    " blobId")
            _server_set(obj, None)
            scripts = await service.list(ctx.account)
            given = obj.get("name")
            name = _free_name(scripts, cid) if given in (None, "") \
                else _name(given, scripts)
            content = await _checked(ctx, ctx.account, name, obj.get("blobId"))
            await service.put(ctx.account, name, content)
            new = await service.get(ctx.account, name)
            ctx.created(cid, script_id(new))
            created[cid] = {"id": script_id(new), "isActive": False}
            if given in (None, ""):
                created[cid]["name"] = name
        except SetError as e:
            not_created[cid] = e.body
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for object_id, patch in update.items():
        try:
            scripts = await service.list(ctx.account)
            script = _by_id(scripts).get(ctx.resolve_id(object_id) or "")
            if script is None:
                raise SetError("notFound", f"no script {object_id}")
            if not isinstance(patch, dict) or not set(patch) <= _WRITABLE:
                raise SetError("invalidProperties", "name and blobId can be changed")
            _server_set(patch, script)
            name = _name(patch["name"], scripts, script_id(script)) \
                if "name" in patch and patch["name"] != script.name else script.name
            replacing = await _checked(ctx, ctx.account, script.name, patch["blobId"]) \
                if "blobId" in patch else None
            if name != script.name:
                try:
                    await service.rename(ctx.account, script.name, name)
                except Conflict:  # taken meanwhile
                    raise SetError("alreadyExists", f"a script {name!r} exists") from None
                except NotFound:
                    raise SetError("notFound", f"no script {object_id}") from None
            if replacing is not None:
                await service.put(ctx.account, name, replacing)
            updated[object_id] = None
        except SetError as e:
            not_updated[object_id] = e.body
    destroyed: list[str] = []
    not_destroyed: dict[str, Any] = {}
    for object_id in destroy:
        script = _by_id(await service.list(ctx.account)).get(
            ctx.resolve_id(object_id) or object_id)
        try:
            if script is None:
                raise NotFound(str(object_id))
            await service.delete(ctx.account, script.name)
            destroyed.append(object_id)
        except NotFound:
            not_destroyed[object_id] = {"type": "notFound"}
        except ScriptRefused as e:
            not_destroyed[object_id] = {"type": "scriptIsActive", "description": str(e)}
    if not (not_created or not_updated or not_destroyed):
        await _switch(ctx, service, args, created, updated)
    return {"accountId": account_id, "oldState": old,
            "newState": _state(await service.list(ctx.account)),
            "created": created or None, "notCreated": not_created or None,
            "updated": updated or None, "notUpdated": not_updated or None,
            "destroyed": destroyed or None, "notDestroyed": not_destroyed or None}


async def _switch(ctx: Context, service: SieveService, args: dict[str, Any],
                  created: dict[str, Any], updated: dict[str, Any]) -> None:
    """onSuccessActivateScript / onSuccessDeactivateScript, once every change succeeded
    (RFC 9661 §2.2): the script activated is reported with isActive true in created or
    updated, the one deactivated with isActive false in updated. An unknown id is ignored."""
    scripts = _by_id(await service.list(ctx.account))
    before = next((i for i, s in scripts.items() if s.active), None)
    activate = args.get("onSuccessActivateScript")
    after: str | None
    if isinstance(activate, str):
        after = ctx.resolve_id(activate)
        if after not in scripts:
            return
    elif args.get("onSuccessDeactivateScript") is True:
        after = None
    else:
        return
    if after == before:
        return
    await service.activate(ctx.account, scripts[after].name if after else None)
    if before is not None:
        updated[before] = {**(updated.get(before) or {}), "isActive": False}
    if after is not None:
        made = next((c for c, v in created.items() if v["id"] == after), None)
        if made is not None:
            created[made]["isActive"] = True
        else:
            updated[after] = {**(updated.get(after) or {}), "isActive": True}


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
