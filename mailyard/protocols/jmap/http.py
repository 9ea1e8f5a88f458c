"""The JMAP listener: a Starlette app over the core, and uvicorn running it in our event loop.

The app is composed of Starlette's pieces: `RequireTLS`, `CheckOrigin` and the authentication
middleware in front of every route, plain endpoints behind. Later modules pass their routes (upload,
download, push) to `build_app`; they take the place of the 501 placeholders here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Sequence
from ssl import SSLContext
from typing import Any

import h11
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from mailyard.core.ratelimit import ConcurrencyLimiter
from mailyard.protocols.jmap.auth import JMAPAuth, RequireTLS, on_auth_error, problem_response
from mailyard.protocols.jmap.blobs import routes as blob_routes
from mailyard.protocols.jmap.core import encode, execute, parse_request
from mailyard.protocols.jmap.errors import PROBLEM_JSON, RequestError
from mailyard.protocols.jmap.httpprotocol import HTTPProtocol
from mailyard.protocols.jmap.origin import CheckOrigin, configured_origins
from mailyard.protocols.jmap.services import CoreLimits, JMAPPolicy, JMAPServices, TokenChecker
from mailyard.protocols.jmap.session import CAPABILITIES, session_resource
from mailyard.protocols.jmap.wsprotocol import WebSocketProtocol
from mailyard.store.ports import Account

__all__ = ["CoreLimits", "HTTPServer", "JMAPPolicy", "JMAPServices", "TokenChecker",
           "build_app", "start_http"]

NO_STORE = {"Cache-Control": "no-cache, no-store, must-revalidate"}


def build_app(services: JMAPServices, routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The JMAP app; `routes` come first, so they replace the placeholders they match."""
    api = API(services)
    # Checked now: Starlette builds its middleware at the first request, too late to stop
    # start-up on a configured origin that is none.
    origins = configured_origins(services.policy.allowed_origins)
    app = Starlette(
        routes=[
            *routes,
            # The session is served at the well-known URI itself, not through a redirect:
            # one round trip, and no client has to decide whether credentials follow it.
            Route("/.well-known/jmap", api.session, methods=["GET"]),
            Route("/jmap/session", api.session, methods=["GET"]),
            Route("/jmap/api", api.call, methods=["POST"]),
            *blob_routes(services),
            Route("/jmap/eventsource", not_yet, methods=["GET"]),
            Route("/jmap/ws", not_yet, methods=["GET"]),
        ],
        middleware=[
            Middleware(RequireTLS, policy=services.policy),
            Middleware(CheckOrigin, allowed=origins),
            Middleware(AuthenticationMiddleware, backend=JMAPAuth(services),
                       on_error=on_auth_error),
        ],
        exception_handlers={RequestError: request_error},
    )
    app.state.jmap_services = services  # for routes made without them (push.EventSource)
    return app


class API:
    """The session resource and the API endpoint, sharing the per-account request count."""

    def __init__(self, services: JMAPServices) -> None:
        self.services = services
        self.limits = services.policy.limits
        self.running = ConcurrencyLimiter(self.limits.max_concurrent_requests)

    async def session(self, request: Request) -> Response:
        account: Account = request.user.account
        body = session_resource(self.services, account, base_url(request))
        return Response(orjson.dumps(body), media_type="application/json", headers=NO_STORE)

    async def call(self, request: Request) -> Response:
        account: Account = request.user.account
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise RequestError("notJSON", "the request must be of type application/json")
        if not self.running.acquire(account.id):
            raise RequestError("limit", f"at most {self.limits.max_concurrent_requests} "
                               "requests at a time", limit="maxConcurrentRequests")
        try:
            body = await read_body(request, self.limits.max_size_request)
            parsed = parse_request(body, capabilities=CAPABILITIES.keys(),
                                   max_calls=self.limits.max_calls_in_request)
            state = session_resource(self.services, account, base_url(request))["state"]
            result = await execute(parsed, account=account, services=self.services,
                                   session_state=state)
        finally:
            self.running.release(account.id)
        return Response(encode(result), media_type="application/json", headers=NO_STORE)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed `limit` (maxSizeRequest)."""
    too_large = RequestError("limit", f"the request is larger than {limit} octets",
                             limit="maxSizeRequest")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestError("notJSON", "the client went away mid-request") from None
    return b"".join(chunks)


def base_url(request: Request) -> str:
    """scheme://host[:port] as the client addressed us, for the session's absolute URLs."""
    try:
        netloc = request.url.netloc
    except ValueError:  # a Host header that is no host name
        netloc = ""
    if not netloc:
        host, port = request.scope.get("server") or ("localhost", None)
        netloc = f"[{host}]" if ":" in host else host
        netloc += f":{port}" if port else ""
    return f"{request.scope.get('scheme', 'http')}://{netloc}"


async def request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return Response(orjson.dumps(exc.problem()), exc.status, media_type=PROBLEM_JSON)


async def not_yet(request: Request) -> Response:
    return problem_response(501, "not implemented yet")


# --------------------------------------------------------------------------- the listener


def _listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket made with proto=IPPROTO_TCP, as getaddrinfo gives it: asyncio sets
    TCP_NODELAY only on connections accepted from such a socket (`socket.create_server` makes
    proto 0), and without it every response after the first on a kept-alive connection
    waited 40 ms for a delayed ACK."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock


log = logging.getLogger("mailyard.jmap")


class ClientFraming:
    """The app as uvicorn runs it, for two faults of the client that uvicorn leaves to the app.

    A request whose body breaks HTTP/1.1 framing (a bad chunk size after the headers) is
    answered `400` by uvicorn itself, which closes the connection, while the app already runs
    for that request; the app's own response then meets h11 past its one response
    (`LocalProtocolError ... state=MUST_CLOSE`), and uvicorn would log it as "Exception in ASGI
    application" with a traceback. Only that error of `send` is caught here: the client already
    has its 400, so the rest of the app's response is dropped and one line logged.

    And a client that goes away while a route reads its body (Starlette's ClientDisconnect,
    WebSocketDisconnect) ends that request with one INFO line, on every route at once: the
    upload, the API, the WebSocket, the webmail's forms."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._framed(scope, receive, send)
        except (ClientDisconnect, WebSocketDisconnect):
            # The client went away while a route read its body (an upload cut short, a
            # webmail form, a WebSocket dropped mid-message): nobody is left to answer, and it
            # is no fault of the server's, so one INFO line instead of uvicorn's "Exception
            # in ASGI application" traceback. Starlette's error middleware already tried its
            # 500, which uvicorn drops for a closed connection.
            log.info("%s %s: the client went away mid-request", scope.get("method", "WS"),
                     scope.get("path"))

    async def _framed(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answered = False

        async def guarded(message: Message) -> None:
            nonlocal answered
            if answered:
                return
            try:
                await send(message)
            except h11.LocalProtocolError as error:
                answered = True
                log.info("%s %s: response dropped, the client's malformed request was already"
                         " answered 400 (%s)", scope.get("method"), scope.get("path"), error)

        await self.app(scope, receive, guarded)
        if answered:  # uvicorn closed the connection: wait for it to say so (5 s at most),
            # or it takes the app's unfinished response for our bug ("ASGI callable returned
            # without completing response", an ERROR)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    while (await receive())["type"] != "http.disconnect":
                        pass


class ClientInputRecords(logging.Filter):
    """uvicorn's websockets-sansio protocol answers a text frame of invalid UTF-8 rightly, a
    close with 1007 (RFC 6455 §8.1), but logs it with `logger.exception`: an ERROR record and
    a traceback for a client's input. That record, and only it, becomes one INFO line."""

    MESSAGES = frozenset({"Invalid UTF-8 sequence received from client."})

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self.MESSAGES and record.levelno >= logging.ERROR:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
            record.msg = f"{record.msg} Closed with 1007."
        return True


CLIENT_INPUT_RECORDS = ClientInputRecords()


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (`serve` owns SIGTERM and SIGINT for every
    listener) and telling us when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class HTTPServer:
    """A running HTTP listener."""

    def __init__(self, server: _Server, task: asyncio.Task[None], sock: socket.socket) -> None:
        self._server = server
        self._task = task
        self.host, self.port = sock.getsockname()[:2]

    async def close(self) -> None:
        """Stop listening, let requests in progress finish (5 s at most), return."""
        self._server.should_exit = True
        await self._task


async def start_http(app: ASGIApp, host: str, port: int, ssl: SSLContext | None = None
                     ) -> HTTPServer:
    """Serve `app` on host:port (port 0: any free port) inside the running event loop.

    We bind the socket ourselves, so a port in use raises OSError here instead of uvicorn
    exiting the process, and port 0 reports the port it got.
    """
    sock = _listening_socket(host, port)
    logging.getLogger("uvicorn.error").addFilter(CLIENT_INPUT_RECORDS)  # once: same filter
    config = uvicorn.Config(
        ClientFraming(app), lifespan="off", log_config=None, access_log=False, proxy_headers=False,
        server_header=False, timeout_graceful_shutdown=5, ws=WebSocketProtocol, http=HTTPProtocol,
        ssl_context_factory=(lambda _config, _default: ssl) if ssl is not None else None)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"http {host}:{port}")
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not server.ready.is_set():
        ready.cancel()
        sock.close()
        await task  # raises what stopped it
        raise RuntimeError("the HTTP listener stopped while starting")
    return HTTPServer(server, task, sock)
