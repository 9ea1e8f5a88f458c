"""Binary data (RFC 8620 §6): upload, download and Blob/copy.

Upload and download are plain HTTP endpoints beside the API, behind the same authentication;
the account in the URL must be the authenticated one (there is no sharing yet), and a blob of
another account is a 404 like a blob that does not exist.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailyard.core.ratelimit import ConcurrencyLimiter
from mailyard.protocols.jmap.auth import problem_response
from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.errors import ERROR_URN, PROBLEM_JSON, MethodError, problem
from mailyard.protocols.jmap.services import JMAPServices
from mailyard.services.blobs import BlobService
from mailyard.store.ports import Account, NotFound

_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,127}/[A-Za-z0-9!#$&^_.+-]{1,127}$")
DEFAULT_TYPE = "application/octet-stream"


def blob_service(services: JMAPServices) -> BlobService:
    return services.need_data().blobs


def media_type(value: str | None) -> str:
    """A bare type/subtype (parameters dropped): never echo a client's header text back."""
    bare = (value or "").split(";")[0].strip().lower()
    return bare if _MEDIA_TYPE.match(bare) else DEFAULT_TYPE


def content_disposition(name: str) -> str:
    """attachment with an ASCII fallback and the RFC 8187 UTF-8 form of the name (RFC 6266)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f'attachment; filename="{fallback}"; filename*=UTF-8\'\'{quote(name, safe="")}'


class Blobs:
    def __init__(self, services: JMAPServices) -> None:
        self.services = services
        self.limits = services.policy.limits
        self.uploading = ConcurrencyLimiter(self.limits.max_concurrent_upload)

    def _account(self, request: Request) -> Account | None:
        account: Account = request.user.account
        return account if request.path_params["accountId"] == account.id else None

    async def upload(self, request: Request) -> Response:
        account = self._account(request)
        if account is None:
            return problem_response(404, "no such account")
        limit = self.limits.max_size_upload
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return _too_large(limit, "maxSizeUpload")
        if not self.uploading.acquire(account.id):
            return _too_large(self.limits.max_concurrent_upload, "maxConcurrentUpload",
                              status=429)
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return _too_large(limit, "maxSizeUpload")
                chunks.append(chunk)
            uploaded = await blob_service(self.services).upload(
                account, b"".join(chunks), media_type(request.headers.get("content-type")))
        finally:
            self.uploading.release(account.id)
        body = {"accountId": account.id, "blobId": uploaded.blob_id, "type": uploaded.type,
                "size": uploaded.size}
        return Response(orjson.dumps(body), 201, media_type="application/json")

    async def download(self, request: Request) -> Response:
        account = self._account(request)
        if account is None:
            return problem_response(404, "no such account")
        try:
            data = await blob_service(self.services).read(account, request.path_params["blobId"])
        except (NotFound, ValueError):
            return problem_response(404, "no such blob")
        name = request.path_params["name"]
        return Response(data, media_type=media_type(request.query_params.get("type")), headers={
            "Content-Disposition": content_disposition(name),
            # Blobs are immutable, so a client may keep them; they are not for shared caches.
            "Cache-Control": "private, immutable, max-age=31536000",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        })


def _too_large(limit: int, name: str, status: int = 413) -> Response:
    body = problem(ERROR_URN + "limit", status, f"{name} is {limit}", limit=name)
    return Response(orjson.dumps(body), status, media_type=PROBLEM_JSON)


def routes(services: JMAPServices) -> list[Route]:
    blobs = Blobs(services)
    return [
        Route("/jmap/upload/{accountId}/", blobs.upload, methods=["POST"]),
        Route("/jmap/download/{accountId}/{blobId}/{name}", blobs.download, methods=["GET"]),
    ]


@method("Blob/copy")
async def blob_copy(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """§6.3. Every account reachable here is the caller's own, so a copy is a check that the
    blob exists; another account's id is fromAccountNotFound, as the RFC asks."""
    from_account = args.get("fromAccountId")
    if not isinstance(from_account, str):
        raise MethodError("invalidArguments", "fromAccountId must be a string")
    account_id = ctx.account_id(args)
    if from_account != ctx.account.id:
        raise MethodError("fromAccountNotFound")
    blob_ids = args.get("blobIds")
    if not isinstance(blob_ids, list) or not all(isinstance(b, str) for b in blob_ids):
        raise MethodError("invalidArguments", "blobIds must be an array of ids")
    service = blob_service(ctx.services)
    copied: dict[str, str] = {}
    not_copied: dict[str, Any] = {}
    for blob_id in dict.fromkeys(blob_ids):
        if await service.exists(ctx.account, blob_id):
            copied[blob_id] = blob_id
        else:
            not_copied[blob_id] = {"type": "notFound"}
    return {"fromAccountId": from_account, "accountId": account_id,
            "copied": copied or None, "notCopied": not_copied or None}
