"""GET /web/attachment/{blobId}/{name}?type=...: an image or PDF attachment shown in the page
(a preview) rather than saved.

JMAP's download answers `Content-Disposition: attachment` under a sandbox policy, which is
right for saving but keeps a PDF viewer from opening it in a frame. This route serves only the
caller's own blobs (another account's id is the same 404 as none), and only as one of PREVIEWED:
the type is ours to choose, never the blob's content, and `nosniff` holds the browser to it, so
a blob that holds HTML or SVG can never be shown as a document here. Images are also served
under a CSP sandbox. A PDF is not, so that the browser's own viewer (Chromium's is an extension
of its own origin) opens it in the frame; no script of ours or the mail's runs in our origin
through it, since the document is a PDF and nothing else.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailyard.protocols.jmap.auth import problem_response
from mailyard.protocols.web import headers
from mailyard.protocols.web.services import WebServices
from mailyard.store.ports import Account, NotFound

IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
PDF = "application/pdf"
PREVIEWED = IMAGES | {PDF}
IMAGE_CSP = "default-src 'none'; img-src 'self'; frame-ancestors 'self'; sandbox"
PDF_CSP = "default-src 'none'; object-src 'self'; frame-ancestors 'self'"


def routes(services: WebServices) -> list[Route]:
    async def preview(request: Request) -> Response:
        account: Account = request.user.account
        kind = request.query_params.get("type", "").lower()
        if kind not in PREVIEWED:
            return problem_response(415, "only PNG, JPEG, GIF, WebP and PDF are previewed")
        try:
            data = await services.blobs.read(account, request.path_params["blobId"])
        except (NotFound, ValueError):
            return problem_response(404, "no such blob")
        return Response(data, media_type=kind, headers={
            **headers.COMMON, "Content-Disposition": "inline",
            "Content-Security-Policy": PDF_CSP if kind == PDF else IMAGE_CSP,
            "Cache-Control": "private, max-age=3600"})

    return [Route("/web/attachment/{blobId}/{name}", preview, methods=["GET"])]
