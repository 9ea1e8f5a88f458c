"""JMAP over WebSocket (RFC 8887): requests, responses and push on one authenticated connection.

The upgrade request passes the same TLS and Basic/Bearer middleware as every HTTP request, so a
connection belongs to one account from its first frame. Each text frame is one JSON object whose
`@type` says what it is (§4.3): a Request (answered by a Response or a RequestError carrying the
request's `id` as `requestId`), or WebSocketPushEnable / WebSocketPushDisable, which start and
stop StateChange pushes from the event bus on the same connection. Requests run one after the
other, as the client sent them; pushes go out between them, never inside a frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from mailyard.protocols.jmap.core import encode, execute, parse_request
from mailyard.protocols.jmap.errors import RequestError
from mailyard.protocols.jmap.push import state_change, wanted_types
from mailyard.protocols.jmap.services import JMAPServices
from mailyard.protocols.jmap.session import CAPABILITIES, capability, session_resource
from mailyard.store.ports import Account, EventBus, Subscription

log = logging.getLogger("mailyard.jmap")

WEBSOCKET = "urn:ietf:params:jmap:websocket"
SUBPROTOCOL = "jmap"
WS_PATH = "/jmap/ws"


def ws_url(base_url: str) -> str:
    """wss://host/jmap/ws for https://host (ws:// only where plain HTTP is allowed)."""
    scheme, sep, rest = base_url.partition("://")
    return ("wss" if scheme == "https" else "ws") + sep + rest + WS_PATH


capability(WEBSOCKET, session=lambda _services, base: {"url": ws_url(base),
                                                       "supportsPush": True})


def http_base_url(websocket: WebSocket) -> str:
    """The https://host[:port] the session resource names for a client that reached us at
    this WebSocket, so `sessionState` here equals the one over HTTP."""
    scheme = "https" if websocket.scope.get("scheme") == "wss" else "http"
    try:
        netloc = websocket.url.netloc
    except ValueError:  # a Host header that is no host name
        netloc = ""
    if not netloc:
        host, port = websocket.scope.get("server") or ("localhost", None)
        netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    return f"{scheme}://{netloc}"


class Connection:
    """One accepted WebSocket: its account, its requests, and its push subscription."""

    def __init__(self, websocket: WebSocket, services: JMAPServices, bus: EventBus) -> None:
        self.websocket = websocket
        self.services = services
        self.bus = bus
        self.account: Account = websocket.user.account
        self.limits = services.policy.limits
        self._send_lock = asyncio.Lock()
        self._subscription: Subscription | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._types: tuple[str, ...] = ()
        self.requests = 0

    async def run(self) -> None:
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                await self.handle(message.get("text"))
        except WebSocketDisconnect:
            return
        finally:
            await self.push_disable()

    async def send(self, body: bytes) -> None:
        """A reply or a push. The client may have closed meanwhile (its close frame answered
        by the server's): the ASGI server then refuses the send with a RuntimeError, which is
        the connection's end, not the server's error (fuzz stage, CI seed 99807)."""
        async with self._send_lock:
            try:
                await self.websocket.send_text(body.decode())
            except RuntimeError as e:
                raise WebSocketDisconnect(code=1006) from e

    async def handle(self, text: str | None) -> None:
        """One frame; every failure is answered with a RequestError and the connection stays."""
        request_id: str | None = None
        try:
            if text is None:
                raise RequestError("notJSON", "JMAP over WebSocket is sent in text frames")
            raw = text.encode()
            if len(raw) > self.limits.max_size_request:
                raise RequestError("limit", f"the message is larger than "
                                   f"{self.limits.max_size_request} octets",
                                   limit="maxSizeRequest")
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                raise RequestError("notJSON", f"the message is not I-JSON: {e}") from None
            if not isinstance(value, dict):
                raise RequestError("notRequest", "a message is a JSON object with an @type")
            if isinstance(value.get("id"), str):
                request_id = value["id"]
            kind = value.get("@type")
            if kind == "Request":
                self.requests += 1
                await self.request(raw, request_id)
            elif kind == "WebSocketPushEnable":
                await self.push_enable(value)
            elif kind == "WebSocketPushDisable":
                await self.push_disable()
            else:
                raise RequestError("notRequest", "@type must be Request, WebSocketPushEnable"
                                                 " or WebSocketPushDisable")
        except RequestError as e:
            body: dict[str, Any] = {"@type": "RequestError", **e.problem()}
            if request_id is not None:
                body["requestId"] = request_id
            await self.send(orjson.dumps(body))

    async def request(self, raw: bytes, request_id: str | None) -> None:
        parsed = parse_request(raw, capabilities=CAPABILITIES.keys(),
                               max_calls=self.limits.max_calls_in_request)
        state = session_resource(self.services, self.account,
                                 http_base_url(self.websocket))["state"]
        result = await execute(parsed, account=self.account, services=self.services,
                               session_state=state)
        head: dict[str, Any] = {"@type": "Response"}
        if request_id is not None:
            head["requestId"] = request_id
        await self.send(encode({**head, **result}))

    async def push_enable(self, value: dict[str, Any]) -> None:
        """§4.3.5.2: StateChanges of `dataTypes` (null: all) from now on; with a `pushState`
        the client last saw, one at once if the account has moved on since."""
        data_types = value.get("dataTypes")
        if data_types is not None and not (
                isinstance(data_types, list) and all(isinstance(t, str) for t in data_types)):
            raise RequestError("notRequest", "dataTypes must be null or an array of strings")
        push_state = value.get("pushState")
        if push_state is not None and not isinstance(push_state, str):
            raise RequestError("notRequest", "pushState must be a string")
        self._types = wanted_types(data_types)
        if self._subscription is None:
            # Subscribed before the state is read: nothing published in between is missed.
            self._subscription = self.bus.subscribe(self.account.id)
            self._pusher = asyncio.create_task(self._push(self._subscription))
        if push_state is not None:
            current = (await self.services.accounts.fresh(self.account)).modseq
            if push_state != str(current) and self._types:
                await self.send(state_change(self.account.id, current, self._types,
                                             str(current)))

    async def push_disable(self) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pusher
            self._pusher = None
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None

    async def _push(self, subscription: Subscription) -> None:
        async for state in subscription:
            if self._types:
                try:
                    await self.send(state_change(self.account.id, state, self._types,
                                                 str(state)))
                except (WebSocketDisconnect, RuntimeError, OSError):
                    return  # the connection is gone; run() cleans up


def routes(services: JMAPServices, bus: EventBus) -> list[WebSocketRoute]:
    async def endpoint(websocket: WebSocket) -> None:
        if SUBPROTOCOL not in websocket.scope.get("subprotocols", ()):
            # Closing before accepting refuses the upgrade (HTTP 403): RFC 8887 §4.2 needs
            # the "jmap" subprotocol negotiated.
            await websocket.close(code=1002)
            return
        await websocket.accept(subprotocol=SUBPROTOCOL)
        connection = Connection(websocket, services, bus)
        await connection.run()
        log.info("JMAP WebSocket closed for %s after %d requests",
                 connection.account.address, connection.requests)

    return [WebSocketRoute(WS_PATH, endpoint)]
