"""uvicorn's WebSocket protocol (websockets-sansio), safe against a client that breaks the
framing before the handshake is answered.

A client may send frames right behind its upgrade request, before the application has
accepted or refused it. When such a frame breaks RFC 6455 (bad opcode, reserved bits,
invalid UTF-8 in a close reason...), `websockets` fails the connection while it is still
CONNECTING: per §7.1.7 it sends no close frame, only an EOF, and leaves `close_sent` unset.
uvicorn 0.55 asserts that a close frame went out (an AssertionError raised into the event
loop's TLS or TCP transport: "Fatal error on SSL protocol") and, if the application answers
afterwards, asserts again in `send_eof` ("Exception in ASGI application"). Neither is the
server's fault. Here a connection failed that way is simply over: the application is told the
client went away (1006) and its later sends raise `ClientDisconnected`, which uvicorn ends
quietly, as for any client that vanished.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame

if TYPE_CHECKING:
    from uvicorn._types import ASGISendEvent

log = logging.getLogger(__name__)

ABNORMAL_CLOSURE = 1006  # RFC 6455 §7.4.1: no close frame was exchanged


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's protocol, ending a connection the client failed before the handshake."""

    def handle_parser_exception(self) -> None:
        if self.disconnected:  # data the transport still delivers after we closed it
            return
        if self.conn.close_sent is not None:
            super().handle_parser_exception()
            return
        log.info("WebSocket from %s failed by the client before the handshake: %s",
                 self.client[0] if self.client else "?", self.conn.parser_exc)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": ABNORMAL_CLOSURE})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = self.disconnected = self.handshake_complete = True
        self.transport.close()

    def handle_close(self, event: Frame) -> None:
        """A close frame before the handshake was answered: the client is gone before it
        began. uvicorn would tell the application, then take its unanswered handshake for the
        application's error ("ASGI callable returned without completing handshake") and
        assert sending a 500 after the EOF `websockets` already sent."""
        if self.handshake_complete or self.close_sent:
            super().handle_close(event)
            return
        log.info("WebSocket from %s closed by the client before the handshake",
                 self.client[0] if self.client else "?")
        code = self.conn.close_rcvd.code if self.conn.close_rcvd else ABNORMAL_CLOSURE
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = self.disconnected = self.handshake_complete = True
        self.transport.close()

    async def send(self, message: ASGISendEvent) -> None:
        if self.disconnected:  # also when the client failed the handshake: no second EOF
            raise ClientDisconnected()
        await super().send(message)
