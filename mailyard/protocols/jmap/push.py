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
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from mailyard.protocols.jmap.auth import problem_response
from mailyard.store.ports import Account, EventBus

TYPES = ("Email", "Mailbox", "Thread", "EmailDelivery", "EmailSubmission", "Identity")
MAX_PING = 300


def state_change(account_id: str, state: int, types: tuple[str, ...]) -> bytes:
    changed = {account_id: {t: str(state) for t in types}}
    return orjson.dumps({"@type": "StateChange", "changed": changed})


class EventSource:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    async def stream(self, request: Request) -> Response:
        account: Account = request.user.account
        query = request.query_params
        wanted = query.get("types", "*")
        types = TYPES if wanted in ("*", "") else tuple(
            t for t in wanted.split(",") if t in TYPES)
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
