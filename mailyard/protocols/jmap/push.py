"""JMAP push over EventSource (RFC 8620 §7.3): StateChange events the moment the account changes.

The event bus says "account X is now at state S" after every delivery, flag change, move or
submission, from any protocol and any worker process. One JMAP state covers every type here
(the account's modification sequence, the same number IMAP calls MODSEQ), so a StateChange
names each type the client asked for with that state; the client's next /changes call finds
what, if anything, changed for each type.
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
        subscription = self.bus.subscribe(account.id)

        async def events() -> AsyncIterator[bytes]:
            try:
                while True:
                    try:
                        state = await asyncio.wait_for(anext(subscription),
                                                       interval or None)
                    except TimeoutError:
                        yield b"event: ping\ndata: " + orjson.dumps({"interval": interval}) \
                            + b"\n\n"
                        continue
                    if types:
                        yield (b"event: state\ndata: "
                               + state_change(account.id, state, types) + b"\n\n")
                    if closeafter == "state":
                        return
            finally:
                with contextlib.suppress(Exception):
                    subscription.cancel()

        return StreamingResponse(events(), media_type="text/event-stream", headers={
            "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def routes(bus: EventBus) -> list[Route]:
    return [Route("/jmap/eventsource", EventSource(bus).stream, methods=["GET"])]
