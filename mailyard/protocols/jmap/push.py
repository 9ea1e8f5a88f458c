"""JMAP push over EventSource (RFC 8620 §7.3): StateChange events the moment the account changes.

The event bus says "account X is now at state S" after every delivery, flag change, move or
submission, from any protocol and any worker process. One JMAP state covers every type here
(the account's modification sequence, the same number IMAP calls MODSEQ), so a StateChange
names each type the client asked for with that state; the client's next /changes call finds
what, if anything, changed for each type.

Each StateChange event carries that state as its `id:`, so a client that lost the connection
reconnects with `Last-Event-ID` (RFC 8620 §7.3 SHOULD, the EventSource standard's resume): if
the account has moved on since, the new state comes at once, before any live event; a phone
that slept through a delivery misses nothing. The same number is the account's state in every
worker process, so the resume holds whichever process the reconnect reaches.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from mailyard.protocols.jmap.auth import problem_response
from mailyard.protocols.jmap.services import JMAPServices
from mailyard.store.ports import Account, EventBus

TYPES = ("Email", "Mailbox", "Thread", "EmailDelivery", "EmailSubmission", "Identity", "Quota",
         "VacationResponse")
"""Every data type a StateChange can name; EventSource, WebSocket and PushSubscription share it."""
MAX_PING = 300


def wanted_types(requested: Iterable[str] | None) -> tuple[str, ...]:
    """The types a client asked for (None: all), in TYPES order, unknown names left out."""
    if requested is None:
        return TYPES
    asked = set(requested)
    return tuple(t for t in TYPES if t in asked)


def state_change(account_id: str, state: int, types: tuple[str, ...],
                 push_state: str | None = None) -> bytes:
    """A StateChange (RFC 8620 §7.1) naming each type with the account's one state; WebSocket
    pushes add `pushState` (RFC 8887 §4.3.5)."""
    body: dict[str, object] = {"@type": "StateChange",
                               "changed": {account_id: {t: str(state) for t in types}}}
    if push_state is not None:
        body["pushState"] = push_state
    return orjson.dumps(body)


class EventSource:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    async def stream(self, request: Request) -> Response:
        account: Account = request.user.account
        query = request.query_params
        wanted = query.get("types", "*")
        types = wanted_types(None if wanted in ("*", "") else wanted.split(","))
        closeafter = query.get("closeafter", "no")
        ping = query.get("ping", "0")
        if closeafter not in ("state", "no") or not ping.isdigit():
            return problem_response(400, "closeafter must be state or no, ping a number of"
                                         " seconds")
        interval = min(int(ping), MAX_PING)
        last_id = request.headers.get("last-event-id")
        # Subscribed before the state is read: a change between the two is then both in the
        # state and on the subscription, never in neither.
        subscription = self.bus.subscribe(account.id)
        sent = -1
        if last_id is not None:
            try:
                current = await _services(request).need_data().changes.state(account)
            except BaseException:
                subscription.cancel()
                raise
            if last_id.strip() != str(current):  # moved on, or an id from elsewhere
                sent = current

        async def events() -> AsyncIterator[bytes]:
            last = sent
            # One read of the subscription stays pending across pings: cancelling it at each
            # ping (wait_for) could drop a state that arrived just then, a missed change.
            waiting: asyncio.Future[int] | None = None
            try:
                if last >= 0:
                    if types:
                        yield _event(account.id, last, types)
                    if closeafter == "state":
                        return
                while True:
                    if waiting is None:
                        waiting = asyncio.ensure_future(anext(subscription))
                    done, _ = await asyncio.wait({waiting}, timeout=interval or None)
                    if not done:
                        yield b"event: ping\ndata: " + orjson.dumps({"interval": interval}) \
                            + b"\n\n"
                        continue
                    state, waiting = waiting.result(), None
                    if state <= last:  # already told, in the resume
                        continue
                    last = state
                    if types:
                        yield _event(account.id, state, types)
                    if closeafter == "state":
                        return
            finally:
                if waiting is not None:
                    waiting.cancel()
                with contextlib.suppress(Exception):
                    subscription.cancel()

        return StreamingResponse(events(), media_type="text/event-stream", headers={
            "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _event(account_id: str, state: int, types: tuple[str, ...]) -> bytes:
    """One `state` event; its id is the state, what Last-Event-ID brings back."""
    return (b"event: state\nid: " + str(state).encode() + b"\ndata: "
            + state_change(account_id, state, types) + b"\n\n")


def _services(request: Request) -> JMAPServices:
    """The JMAP app's services (build_app puts them in its state)."""
    services: JMAPServices = request.app.state.jmap_services
    return services


def routes(bus: EventBus) -> list[Route]:
    return [Route("/jmap/eventsource", EventSource(bus).stream, methods=["GET"])]
