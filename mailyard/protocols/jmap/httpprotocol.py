"""uvicorn's HTTP/1.1 protocol (h11), safe against a malformed HEAD request.

uvicorn answers a request h11 cannot parse (an illegal chunk header, say) with a 400 that
has a body. When that request was a HEAD, h11 knows the response may carry no body and
raises LocalProtocolError ("Too much data for declared Content-Length") out of uvicorn's
`send_400_response`, into the event loop's TLS or TCP transport ("Fatal error on SSL
protocol"). Here the 400 goes out without its body when h11 refuses one, and the
connection is closed either way: the client's mistake, answered, and nothing logged as ours.
"""

from __future__ import annotations

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class HTTPProtocol(H11Protocol):
    """uvicorn's h11 protocol whose 400 to an unreadable request never raises."""

    def send_400_response(self, msg: str) -> None:
        try:
            super().send_400_response(msg)
        except h11.LocalProtocolError:  # a HEAD: the status line went out, no body may
            self.transport.close()
