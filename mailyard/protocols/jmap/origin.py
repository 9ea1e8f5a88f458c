"""Refuse browsers sent by another site (RFC 6454 Origin, RFC 6455 §10.2).

A browser attaches the credentials it holds for us (a cached Basic login, later the webmail's
session) to requests that any page it shows may start: a WebSocket upgrade, which the
same-origin policy does not stop, or a form or `fetch` POST. Such a request carries the Origin
of the page that made it, so the server compares it with its own origins, the scheme and Host
the request was addressed to plus any configured ones (a public URL behind a proxy that
rewrites Host, a webmail on another host), and answers a foreign one with 403 before any
upgrade, authentication or method runs.

No Origin at all is a client that is not a browser (an IMAP-minded JMAP client, curl), which
holds no ambient credentials of a user: allowed. "null" is an opaque origin (a sandboxed frame,
a file:// page, a redirect across sites): never ours. GET and HEAD pass whatever their Origin:
they change nothing, and without CORS headers a foreign page cannot read their answers.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from mailyard.protocols.jmap.auth import problem_response

DEFAULT_PORTS = {"http": 80, "https": 443}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_HTTP_SCHEME = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def normalize(scheme: str, netloc: str) -> str | None:
    """scheme://host[:port], lower case, without the scheme's default port; None when
    `netloc` is no host[:port] (an IPv6 literal keeps its brackets)."""
    scheme = _HTTP_SCHEME.get(scheme.lower(), "")
    netloc = netloc.strip().lower()
    if not scheme or not netloc or any(c in netloc for c in "/?#@ \\") or any(
            ord(c) < 33 or ord(c) > 126 for c in netloc):
        return None
    if netloc.startswith("["):  # an IPv6 literal
        end = netloc.find("]") + 1
        host, after = (netloc[:end], netloc[end:]) if end else ("", "")
        if after and not after.startswith(":"):
            return None
        port = after[1:] if after else None
    else:
        host, colon, port_text = netloc.partition(":")
        port = port_text if colon else None
    if port is not None and not port.isdigit():  # "host:" included
        return None
    if not host or (port is not None and (not port.isascii() or int(port) > 65535)):
        return None
    if port is not None and int(port) == DEFAULT_PORTS[scheme]:
        port = None
    return f"{scheme}://{host}" + (f":{int(port)}" if port is not None else "")


def parse_origin(value: str) -> str | None:
    """An Origin header (or a configured origin, with or without a trailing slash) in the
    form `normalize` gives; None for "null" and anything that is no serialized origin."""
    scheme, sep, rest = value.strip().partition("://")
    if not sep or scheme.lower() not in DEFAULT_PORTS:
        return None
    return normalize(scheme, rest[:-1] if rest.endswith("/") else rest)


def configured_origins(values: Iterable[str]) -> frozenset[str]:
    """The configured origins, normalized; one that is no origin raises ValueError, so a
    typo stops start-up instead of refusing the webmail."""
    out = set()
    for value in values:
        origin = parse_origin(value)
        if origin is None:
            raise ValueError(f"{value!r} is not an origin (scheme://host[:port])")
        out.add(origin)
    return frozenset(out)


def _header(scope: Scope, name: bytes) -> str | None:
    found = [v for k, v in scope.get("headers", ()) if k == name]
    if not found:
        return None
    # Two Origin headers are no origin a browser sends; the second makes the first foreign.
    return found[0].decode("latin-1") if len(found) == 1 else "null"


def own_origin(scope: Scope) -> str | None:
    """The origin this request was addressed to: its scheme (after RequireTLS believed a
    trusted proxy) and its Host header (HTTP/1.1 requires one)."""
    host = _header(scope, b"host")
    return normalize(str(scope.get("scheme", "http")), host) if host else None


class CheckOrigin:
    """ASGI middleware: a WebSocket upgrade or a state-changing request whose Origin is not
    one of ours gets 403 and reaches nothing behind."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.allowed = configured_origins(allowed)

    def foreign(self, scope: Scope) -> bool:
        if scope["type"] == "http" and scope.get("method", "GET") in SAFE_METHODS:
            return False
        origin = _header(scope, b"origin")
        if origin is None:
            return False
        parsed = parse_origin(origin)
        return parsed is None or (parsed not in self.allowed and parsed != own_origin(scope))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.foreign(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket" and "websocket.http.response" not in scope.get(
                "extensions", {}):
            await send({"type": "websocket.close", "code": 1008})  # the server sends 403
            return
        # Starlette sends a Response to a WebSocket scope as the ASGI denial response: a real
        # 403 with our problem document instead of the upgrade.
        await problem_response(403, "requests from another site's pages are refused")(
            scope, receive, send)
