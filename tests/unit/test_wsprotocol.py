"""mailyard.protocols.jmap.wsprotocol over a real socket. Frames that break RFC 6455 arrive
before the application has answered the upgrade request, so `websockets` fails the
connection while it is still CONNECTING (no close frame is due, RFC 6455 §7.1.7).
uvicorn 0.55's own protocol raised AssertionError into the transport there, and again
when the application answered after it; ours ends the connection quietly.

Over the network the frame must come after uvicorn's HTTP layer has handed over (it drops
bytes that follow the request in the same read) and before the application's password
check is done: the WebSocket protocol is served directly here, and the application waits
for the test, to make that order certain rather than a matter of timing. A close frame in
that window (the client gave up) is the other way uvicorn asserted (fuzz seed 76100)."""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest
import uvicorn
from uvicorn.server import ServerState

from mailyard.protocols.jmap.wsprotocol import WebSocketProtocol

KEY = base64.b64encode(b"0123456789abcdef").decode()
REQUEST = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
RESERVED_BITS = bytes([0xF1, 0x80 | 4]) + b"\0\0\0\0" + b"oops"  # RSV1-3 set: §5.2
CLOSE = bytes([0x88, 0x82]) + b"\0\0\0\0" + (1000).to_bytes(2, "big")  # a masked close


@pytest.mark.parametrize("frame", [RESERVED_BITS, CLOSE], ids=["reserved-bits", "close"])
@pytest.mark.parametrize("answer", ["none", "websocket.accept", "websocket.close", "return"])
def test_a_frame_failing_the_connection_before_the_handshake_ends_it_quietly(
        answer: str, frame: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """"none": the frame comes in the request's own read, so the application is never called;
    otherwise it comes while the application is busy, and its answer comes after ("return":
    it returns without answering, as Starlette's endpoints do once told the client left).
    A close frame there (the client gave up) ends the connection the same way."""
    started, go_on, answered = asyncio.Event(), asyncio.Event(), asyncio.Event()
    outcome: list[str] = []

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        assert scope["type"] == "websocket"
        started.set()
        await go_on.wait()  # the application's own checks (a password) take a while
        if answer == "return":
            answered.set()
            return
        try:
            await send({"type": answer})  # type: ignore[operator]
            outcome.append("sent")
        except Exception as error:  # which one is the point
            outcome.append(type(error).__name__)
        answered.set()

    async def main() -> bytes:
        config = uvicorn.Config(app, lifespan="off", log_config=None, ws=WebSocketProtocol)
        config.load()
        state = ServerState()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: WebSocketProtocol(config=config, server_state=state, app_state={}),
            "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if answer == "none":
            writer.write(REQUEST + frame)
        else:
            writer.write(REQUEST)
            await asyncio.wait_for(started.wait(), 60)
            writer.write(frame)
        got = await asyncio.wait_for(reader.read(), 60)  # until the server closes
        go_on.set()
        if answer != "none" or started.is_set():  # a close frame lets the request be read
            await asyncio.wait_for(answered.wait(), 60)
        writer.close()
        server.close()
        await server.wait_closed()
        return got

    handler_errors: list[dict] = []  # type: ignore[type-arg]

    def run() -> bytes:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(lambda _loop, context: handler_errors.append(context))
        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()

    with caplog.at_level(logging.INFO):
        got = run()
    assert got == b""  # cut off: no 101, no close frame (it was never open)
    called = frame is CLOSE or answer != "none"
    assert outcome == ([] if answer == "return" or not called else ["ClientDisconnected"])
    assert not handler_errors, handler_errors
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert any("by the client before the handshake" in r.getMessage() for r in caplog.records)
