"""GET /web/message/{emailId}/html: a message's HTML body, sanitised here, for the page's
sandboxed frame.

Behind the JMAP app's authentication (Basic, Bearer or the session cookie), and the email is
looked up in the caller's own account only: another account's id is the same 404 as an id that
never existed. `?images=1` lets the message's remote images through for this one view; the
answer says in X-Mailyard-Remote-Images how many it left out otherwise, so the page can offer
to show them (a HEAD asks without the body).
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailyard.core import mime
from mailyard.protocols.jmap.auth import problem_response
from mailyard.protocols.jmap.mail.bodyparts import Body
from mailyard.protocols.web import headers
from mailyard.protocols.web.sanitize import (
    Sanitized,
    document,
    inline_images,
    plain_text,
    sanitize,
)
from mailyard.protocols.web.services import WebServices
from mailyard.store.ports import Account, NotFound


def render(email_id: str, raw: bytes, allow_remote: bool) -> Sanitized:
    """The HTML body parts of a message (RFC 8621's htmlBody: text parts that stand in for a
    missing HTML alternative are shown as text) as one sanitised fragment."""
    body = Body(email_id, raw)
    inline = inline_images([(part.content_id, part.content_type, body.content(part))
                            for _, part in mime.iter_parts(body.root)
                            if part.content_id and not part.is_multipart])
    pieces: list[str] = []
    blocked = 0
    for part in body.html_body:
        text = mime.decode_bytes(body.content(part), part.params.get("charset"))
        if part.content_type.lower() == "text/html":
            cleaned = sanitize(text, allow_remote=allow_remote, inline=inline)
            pieces.append(cleaned.html)
            blocked += cleaned.remote_images
        elif part.content_type.lower().startswith("text/"):
            pieces.append(plain_text(text))
    return Sanitized("".join(pieces), blocked)


def routes(services: WebServices) -> list[Route]:
    async def message_html(request: Request) -> Response:
        account: Account = request.user.account
        email_id = request.path_params["emailId"]
        try:
            record = await services.mailbox.email(account, email_id)
        except (NotFound, ValueError):
            return problem_response(404, "no such email")
        allow = request.query_params.get("images") == "1"
        raw = await services.mailbox.raw_of(record)
        result = await asyncio.to_thread(render, record.id, raw, allow)
        csp = headers.MESSAGE_CSP_REMOTE_IMAGES if allow else headers.MESSAGE_CSP
        return Response(document(result.html), media_type="text/html; charset=utf-8", headers={
            **headers.COMMON, "Content-Security-Policy": csp,
            "Cache-Control": "private, no-cache",
            "X-Mailyard-Remote-Images": str(result.remote_images)})

    return [Route("/web/message/{emailId}/html", message_html, methods=["GET"])]
