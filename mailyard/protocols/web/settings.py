"""The webmail's settings that JMAP has no method for: the account's API tokens.

GET /web/tokens lists them (webmail sessions included, the caller's own marked), POST creates
one (shown once), DELETE /web/tokens/{id} revokes one. Only a webmail session may call them
(the session cookie, which carries the Origin and CSRF checks of protocols/jmap/auth.py): a
token holder must not mint itself longer-lived tokens through the API.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailyard.protocols.jmap.auth import SESSION_COOKIE, problem_response
from mailyard.protocols.web import headers
from mailyard.protocols.web.services import DAY, WebServices
from mailyard.store.ports import Account

MAX_NAME = 100
MAX_DAYS = 3650


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json",
                    headers={**headers.COMMON, "Cache-Control": "no-store"})


def routes(services: WebServices) -> list[Route]:
    def session_account(request: Request) -> Account | None:
        if "session" not in request.auth.scopes:
            return None
        account: Account = request.user.account
        return account

    async def listed(request: Request) -> Response:
        account = session_account(request)
        if account is None:
            return problem_response(403, "tokens are managed from the webmail")
        own = request.cookies.get(SESSION_COOKIE, "").split(".")
        current = own[2] if len(own) == 4 else ""
        tokens = sorted(await services.tokens.list(account), key=lambda t: t.created)
        return _json([{"id": t.id, "name": t.name, "created": t.created, "expires": t.expires,
                       "current": t.id == current} for t in tokens])

    async def create(request: Request) -> Response:
        account = session_account(request)
        if account is None:
            return problem_response(403, "tokens are managed from the webmail")
        try:
            form = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            form = None
        name = form.get("name") if isinstance(form, dict) else None
        days = form.get("days") if isinstance(form, dict) else None
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or (
                days is not None and (not isinstance(days, int) or isinstance(days, bool)
                                      or not 1 <= days <= MAX_DAYS)):
            return problem_response(400, f"a name of 1 to {MAX_NAME} characters and days "
                                         f"from 1 to {MAX_DAYS} (or none)")
        token, info = await services.tokens.create(account, name.strip(),
                                                   lifetime=days * DAY if days else None)
        return _json({"id": info.id, "name": info.name, "created": info.created,
                      "expires": info.expires, "token": token}, 201)

    async def revoke(request: Request) -> Response:
        account = session_account(request)
        if account is None:
            return problem_response(403, "tokens are managed from the webmail")
        token_id = request.path_params["tokenId"]
        if token_id not in {t.id for t in await services.tokens.list(account)}:
            return problem_response(404, "no such token")
        await services.tokens.revoke(account, token_id)
        return Response(status_code=204, headers=headers.COMMON)

    return [
        Route("/web/tokens", listed, methods=["GET"]),
        Route("/web/tokens", create, methods=["POST"]),
        Route("/web/tokens/{tokenId}", revoke, methods=["DELETE"]),
    ]
