"""The webmail's public side: the app shell, its static files, login and logout.

These paths need no credentials (the login page is for those who have none), so `WebRouter`
sends them to this app ahead of the JMAP app's authentication, as `OpsRouter` does for the ops
paths; everything the page does once logged in goes through JMAP with the session cookie.

Login and logout change state, so they take the same proof of coming from our own page as a
cookie-authenticated JMAP request: an Origin that is ours and the CSRF header, which a form on
another site cannot send. A login made by another site's page would log the victim into the
attacker's account (login CSRF); SameSite=Strict does not stop that, the Origin check does.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mailyard.protocols.jmap.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    RequireTLS,
    from_own_page,
    problem_response,
)
from mailyard.protocols.jmap.origin import CheckOrigin
from mailyard.protocols.web import attachment, headers, message, settings
from mailyard.protocols.web.services import WebServices
from mailyard.services.accounts import LoginRefused
from mailyard.services.loginguard import Refusal
from mailyard.store.ports import Account

SESSION_NAME = "webmail session"
STATIC = "/web/static/"
PUBLIC = frozenset({"/", "/login", "/logout", "/web/session"})
MAX_LOGIN_BODY = 8192
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".svg": "image/svg+xml", ".png": "image/png", ".md": "text/plain; charset=utf-8",
         ".ico": "image/x-icon"}


class WebRouter:
    """ASGI: the webmail's public paths to `web`, everything else to `app`."""

    def __init__(self, web: ASGIApp, app: ASGIApp) -> None:
        self.web = web
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path in PUBLIC or path.startswith(STATIC)):
            await self.web(scope, receive, send)
        else:
            await self.app(scope, receive, send)


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    etag: str


def load_static() -> dict[str, StaticFile]:
    """Every file under static/, read once at start-up (they are small and never change
    while the server runs), by its path below static/."""
    files: dict[str, StaticFile] = {}
    root = resources.files("mailyard.protocols.web") / "static"

    def walk(node: object, prefix: str) -> None:
        for child in node.iterdir():  # type: ignore[attr-defined]
            name = prefix + child.name
            if child.is_dir():
                walk(child, name + "/")
                continue
            kind = TYPES.get(PurePosixPath(child.name).suffix)
            if kind is None:
                kind = "text/plain; charset=utf-8" if child.name.startswith("LICENSE") else ""
            if kind:
                body = child.read_bytes()
                files[name] = StaticFile(body, kind,
                                         '"' + hashlib.sha256(body).hexdigest()[:32] + '"')

    walk(root, "")
    return files


class Pages:
    def __init__(self, services: WebServices) -> None:
        self.services = services
        self.files = load_static()
        self.allowed = services.policy.allowed_origins

    def _file(self, request: Request, name: str) -> Response:
        found = self.files.get(name)
        if found is None:
            return problem_response(404, "no such file")
        extra = {"ETag": found.etag, "Cache-Control": "no-cache"}
        response_headers = {**headers.PAGE, **extra}
        if request.headers.get("if-none-match") == found.etag:
            return Response(status_code=304, headers=response_headers)
        return Response(found.body, media_type=found.media_type, headers=response_headers)

    async def shell(self, request: Request) -> Response:
        response = self._file(request, "index.html")
        response.headers["Cache-Control"] = "no-store"
        return response

    async def static(self, request: Request) -> Response:
        return self._file(request, request.path_params["path"])

    def _from_page(self, request: Request) -> bool:
        return from_own_page(request.scope, self.allowed) and CSRF_HEADER in request.headers

    async def session(self, request: Request) -> Response:
        """Who the cookie logs in, or null: the page asks before any JMAP call, which would
        otherwise answer a first visit with a Basic challenge and the browser's own dialog."""
        account = await self._cookie_account(request)
        body = {"username": account.address, "accountId": account.id,
                "authservId": self.services.authserv_id} if account else {"username": None}
        return Response(orjson.dumps(body), media_type="application/json",
                        headers={**headers.COMMON, "Cache-Control": "no-store"})

    async def login(self, request: Request) -> Response:
        if not self._from_page(request):
            return problem_response(403, "log in from the webmail's own page")
        body = await request.body()
        if len(body) > MAX_LOGIN_BODY:
            return problem_response(413, "the login is too large")
        try:
            form = orjson.loads(body)
        except orjson.JSONDecodeError:
            form = None
        if not isinstance(form, dict) or not all(isinstance(v, str) for v in form.values()):
            return problem_response(400, "send a JSON object of strings")
        ip = request.client.host if request.client else "unknown"
        accounts = self.services.accounts
        try:
            if form.get("token"):
                if await accounts.refused(ip):
                    raise LoginRefused(Refusal.NETWORK)
                account = await self.services.tokens.check(form["token"])
                if account is None:
                    await accounts.failed(ip, "", "web")
            else:
                username, password = form.get("username", ""), form.get("password", "")
                # An empty field is a failed login too, logged and counted like the others
                # (docs/fail2ban.md), as IMAP's LOGIN with an empty password is.
                account = await accounts.login(username, password, ip=ip, protocol="web")
        except LoginRefused:
            return problem_response(429, "too many failed logins; try later",
                                    {"Retry-After": "600"})
        if account is None:
            return problem_response(401, "wrong address, password or token",
                                    {"WWW-Authenticate": 'Bearer realm="Mailyard"'})
        session, _ = await self.services.tokens.create(
            account, SESSION_NAME, lifetime=self.services.session_seconds)
        await self._forget_ended_sessions(account)
        response = Response(orjson.dumps({"username": account.address,
                                          "accountId": account.id}),
                            media_type="application/json",
                            headers={**headers.COMMON, "Cache-Control": "no-store"})
        response.set_cookie(SESSION_COOKIE, session, path="/", secure=True, httponly=True,
                            samesite="strict")
        return response

    async def logout(self, request: Request) -> Response:
        """Ends the session for good: its token is revoked, not only the cookie dropped."""
        if not self._from_page(request):
            return problem_response(403, "log out from the webmail's own page")
        account = await self._cookie_account(request)
        if account is not None:
            token_id = request.cookies[SESSION_COOKIE].split(".")[2]
            await self.services.tokens.revoke(account, token_id)
        response = Response(status_code=204, headers={**headers.COMMON,
                                                      "Cache-Control": "no-store"})
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True,
                               samesite="strict")
        return response

    async def _forget_ended_sessions(self, account: Account) -> None:
        """Each login leaves a token behind that no logout revoked when the browser was just
        closed; the expired ones go at the account's next login, so the token list stays
        short."""
        now = time.time()
        for token in await self.services.tokens.list(account):
            if token.name == SESSION_NAME and token.expires is not None and token.expires <= now:
                await self.services.tokens.revoke(account, token.id)

    async def _cookie_account(self, request: Request) -> Account | None:
        session = request.cookies.get(SESSION_COOKIE)
        return await self.services.tokens.check(session) if session else None


def behind_auth(services: WebServices) -> list[Route]:
    """The webmail's routes that need a logged-in caller: given to the JMAP app, whose
    authentication (the session cookie included) runs before them."""
    return [*message.routes(services), *settings.routes(services),
            *attachment.routes(services)]


def build_web_app(services: WebServices) -> Starlette:
    pages = Pages(services)
    return Starlette(
        routes=[
            Route("/", pages.shell, methods=["GET"]),
            Route("/web/session", pages.session, methods=["GET"]),
            Route("/login", pages.login, methods=["POST"]),
            Route("/logout", pages.logout, methods=["POST"]),
            Route(STATIC + "{path:path}", pages.static, methods=["GET"]),
        ],
        middleware=[
            Middleware(RequireTLS, policy=services.policy),
            Middleware(CheckOrigin, allowed=services.policy.allowed_origins),
        ],
    )
