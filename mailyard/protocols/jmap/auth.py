"""Who is calling (RFC 8620 §8.2), and only over TLS (§8.1).

Every JMAP request carries its credentials: HTTP Basic with the account password, or a Bearer
token checked by a pluggable checker (the token store comes later). Verifying a password costs
an argon2 hash on purpose, which a client sending a few requests a second would pay each time,
so successful Basic logins are remembered for a few minutes; failures never are, and count
against the client's address like IMAP and SMTP login failures do.

The webmail's page authenticates with its session cookie instead (SESSION_COOKIE: an API token
that /login made, HttpOnly, Secure, SameSite=Strict). A cookie is ambient: the browser attaches
it to whatever request any page starts, so a cookie-authenticated request must also prove it
comes from our own page. Every one that is not a plain GET/HEAD must carry an Origin that is
ours (CheckOrigin refuses a foreign one, this refuses none at all) and, over HTTP, the
CSRF_HEADER, which no cross-site form can send and no cross-site script can add without a CORS
preflight we never answer. Explicit credentials (an Authorization header) win over the cookie.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict

import orjson
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mailyard.core.netaddr import is_loopback
from mailyard.protocols.jmap.errors import PROBLEM_JSON, problem
from mailyard.protocols.jmap.services import JMAPPolicy, JMAPServices
from mailyard.services.accounts import LoginRefused
from mailyard.services.loginguard import Refusal
from mailyard.store.ports import Account

REALM = "Mailyard"
MAX_BASIC = 4096
"""Longest base64 user-pass we decode: an address and a password fit many times over, and a
longer one is not worth an argon2 verification."""
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
SESSION_COOKIE = "__Host-mailyard-session"
"""The webmail's session: `__Host-` makes the browser keep it only when set Secure, for
path /, by this host alone (no Domain), so no sibling host can plant or read one."""
CSRF_HEADER = "x-mailyard-csrf"
"""Sent by the webmail's own scripts on every state-changing request made with the cookie."""
_SAFE = frozenset({"GET", "HEAD"})


def problem_response(status: int, detail: str, headers: dict[str, str] | None = None
                     ) -> Response:
    return Response(orjson.dumps(problem("about:blank", status, detail)), status,
                    headers=headers, media_type=PROBLEM_JSON)


class AccountUser(BaseUser):
    def __init__(self, account: Account) -> None:
        self.account = account

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.account.address

    @property
    def identity(self) -> str:
        return self.account.id


class Unauthorized(AuthenticationError):
    def __init__(self, detail: str, bearer_error: str | None = None,
                 cookie: bool = False) -> None:
        super().__init__(detail)
        self.bearer_error = bearer_error
        self.cookie = cookie
        """Refused with the webmail's cookie: no Basic challenge, which a browser would answer
        with its own login dialog over the page."""


class TooManyFailures(AuthenticationError):
    pass


class LoginCache:
    """Recent successful Basic logins, the least recently used dropped first.

    The key holds no password: an HMAC of it under a random key made at start-up, which no
    precomputed table matches and which dies with the process. What it saves is the password
    hash's verification; a hit is still checked against the stored account
    (`AccountService.still_valid`), so a changed password or a removed account stops logging
    in at once, on every node.
    """

    def __init__(self, seconds: float, size: int) -> None:
        self.seconds = seconds
        self.size = size
        self._secret = secrets.token_bytes(32)
        self._entries: OrderedDict[tuple[str, bytes], tuple[Account, float]] = OrderedDict()

    def key(self, username: str, password: str) -> tuple[str, bytes]:
        return username, hmac.digest(self._secret, password.encode(), hashlib.sha256)

    def get(self, key: tuple[str, bytes], now: float) -> Account | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def drop(self, key: tuple[str, bytes]) -> None:
        self._entries.pop(key, None)

    def put(self, key: tuple[str, bytes], account: Account, now: float) -> None:
        if self.size <= 0 or self.seconds <= 0:
            return
        self._entries[key] = (account, now + self.seconds)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


class JMAPAuth(AuthenticationBackend):
    """Starlette's authentication backend for Basic and Bearer; no credentials is an error,
    since every JMAP resource, the session included, belongs to an account."""

    def __init__(self, services: JMAPServices) -> None:
        self.services = services
        policy = services.policy
        self.cache = LoginCache(policy.auth_cache_seconds, policy.auth_cache_size)
        self._pending: dict[tuple[str, bytes], asyncio.Task[Account | None]] = {}

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser]:
        header = conn.headers.get("authorization")
        ip = conn.client.host if conn.client else "unknown"
        if not header:
            session = conn.cookies.get(SESSION_COOKIE)
            if not session:
                raise Unauthorized("credentials are required")
            return await self._cookie(conn, session, ip)
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        try:
            if scheme == "basic":
                account = await self._basic(value.strip(), ip)
            elif scheme == "bearer":
                account = await self._bearer(value.strip(), ip)
            else:
                raise Unauthorized(f"unsupported authentication scheme {scheme[:20]!r}")
        except LoginRefused:
            raise TooManyFailures("too many failed logins; try later") from None
        if account is None:
            raise Unauthorized("wrong credentials",
                               bearer_error="invalid_token" if scheme == "bearer" else None)
        return AuthCredentials(["authenticated"]), AccountUser(account)

    async def _basic(self, value: str, ip: str) -> Account | None:
        """RFC 7617 user-pass, base64 of UTF-8 (the charset our challenge names).

        Starlette hands header values decoded as Latin-1, so a client's raw 8-bit octets
        arrive as non-ASCII characters, which `b64decode` refuses with a plain ValueError
        (binascii.Error is one too): every way of being malformed is the same 401."""
        if len(value) > MAX_BASIC:
            raise Unauthorized("malformed Basic credentials")
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII input
            raise Unauthorized("malformed Basic credentials") from None
        username, colon, password = decoded.partition(":")
        if not colon or not username or not password or _CONTROL.search(decoded):
            raise Unauthorized("malformed Basic credentials")  # RFC 7617 §2: no controls
        key = self.cache.key(username, password)
        account = self.cache.get(key, time.monotonic())
        if account is not None:
            current = await self.services.accounts.still_valid(account)
            if current is not None:
                return current
            self.cache.drop(key)
        # Concurrent first requests of one client share a single verification.
        task = self._pending.get(key)
        if task is None:
            task = asyncio.ensure_future(self.services.accounts.login(
                username, password, ip=ip, protocol="jmap"))
            self._pending[key] = task
            task.add_done_callback(lambda _: self._pending.pop(key, None))
        account = await asyncio.shield(task)
        if account is not None:
            self.cache.put(key, account, time.monotonic())
        return account

    async def _cookie(self, conn: HTTPConnection, session: str, ip: str
                      ) -> tuple[AuthCredentials, BaseUser]:
        """The webmail's session cookie, from our own page only (see the module's note).

        A wrong or revoked cookie is not counted as a failed login: the browser replays a stale
        one on every request until the page logs in again, and its 256-bit secret is not worth
        guessing. A blocked network is still refused."""
        unsafe = conn.scope["type"] == "websocket" or conn.scope.get("method") not in _SAFE
        if unsafe and not from_own_page(conn.scope, self.services.policy.allowed_origins):
            raise Unauthorized("a request made with the session cookie must come from the "
                               "webmail's own page", cookie=True)
        if unsafe and conn.scope["type"] == "http" and CSRF_HEADER not in conn.headers:
            raise Unauthorized(f"a request made with the session cookie needs {CSRF_HEADER}",
                               cookie=True)
        if await self.services.accounts.refused(ip):
            raise TooManyFailures("too many failed logins; try later")
        check = self.services.tokens
        account = await check(session) if check is not None else None
        if account is None:
            raise Unauthorized("the session has ended; log in again", cookie=True)
        return AuthCredentials(["authenticated", "session"]), AccountUser(account)

    async def _bearer(self, token: str, ip: str) -> Account | None:
        """A token is checked only while the client's network is not blocked (LoginGuard);
        a wrong one counts as a failed login."""
        accounts = self.services.accounts
        if await accounts.refused(ip):
            raise LoginRefused(Refusal.NETWORK)
        check = self.services.tokens
        account = await check(token) if check is not None and token else None
        if account is None:
            await accounts.failed(ip, "", "jmap")
        return account


def from_own_page(scope: Scope, allowed: frozenset[str]) -> bool:
    """Whether the request carries an Origin, and it is ours: the one it was addressed to or
    a configured one. Absent is not enough here, unlike in CheckOrigin: a browser sends
    Origin with every request of this kind that a page makes."""
    from mailyard.protocols.jmap import origin  # imports this module for problem_response

    values = [v for k, v in scope.get("headers", ()) if k == b"origin"]
    if len(values) != 1:
        return False
    parsed = origin.parse_origin(values[0].decode("latin-1"))
    return parsed is not None and (parsed == origin.own_origin(scope)
                                   or parsed in origin.configured_origins(allowed))


def on_auth_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    if isinstance(exc, TooManyFailures):
        return problem_response(429, str(exc), {"Retry-After": "600"})
    response = problem_response(401, str(exc))
    bearer = f'Bearer realm="{REALM}"'
    if isinstance(exc, Unauthorized) and exc.bearer_error:
        bearer += f', error="{exc.bearer_error}"'
    if not (isinstance(exc, Unauthorized) and exc.cookie):
        response.headers.append("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')
    response.headers.append("WWW-Authenticate", bearer)
    return response


class RequireTLS:
    """ASGI middleware: refuse plain HTTP, where credentials and mail would cross the network
    readable, except on loopback when the policy allows it (tests, a local TLS proxy)."""

    def __init__(self, app: ASGIApp, policy: JMAPPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            host = str(client[0]) if client else ""
            self._believe_proxy(scope, host)
            if scope.get("scheme") not in ("https", "wss") and not (
                    self.policy.allow_plaintext_loopback and is_loopback(host)):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                response = problem_response(403, "TLS is required: use https://")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _believe_proxy(self, scope: Scope, host: str) -> None:
        """A trusted proxy that terminated TLS says so in a header: the request counts as
        TLS, and the URLs in the session say https."""
        name = self.policy.forwarded_proto_header
        if not name or host not in self.policy.trusted_proxies:
            return
        wanted = name.lower().encode("latin-1")
        for key, value in scope.get("headers", ()):
            if key == wanted:
                proto = value.decode("latin-1").split(",")[0].strip().lower()
                if proto == "https":
                    scope["scheme"] = "wss" if scope["type"] == "websocket" else "https"
                return


