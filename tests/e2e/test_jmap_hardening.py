"""JMAP against hostile input (issue 17), over real sockets to a real `mailyard serve`:

- the Origin of WebSocket upgrades and POSTs: another site's page is refused with 403 before
  anything runs, the server's own origin and non-browser clients (no Origin) are not;
- malformed `Authorization: Basic` headers (8-bit octets, bad base64, no colon, an empty user,
  a huge header) get 401 with the challenges, never 500 or a traceback;
- CR, LF, other control characters and RFC 2047 encoded words hiding them, in every client
  string that ends up in a header field or an SMTP command, get `invalidProperties` naming
  the property (RFC 8621 §4.6), never serverFail, and never an extra header field.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from mailyard.protocols.jmap.http import JMAPPolicy, JMAPServices, build_app, start_http
from mailyard.protocols.jmap.websocket import routes as websocket_routes
from mailyard.services.accounts import AccountService
from mailyard.store.local.eventbus import LocalEventBus
from mailyard.store.sqlite.mailstore import SqliteMailStore
from tests.e2e.jmapclient import PASSWORD, Jmap
from tests.e2e.server import Server, wait_port

ALICE, BOB = "alice@example.test", "bob@example.test"
CORE, MAIL = "urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
VACATION = "urn:ietf:params:jmap:vacationresponse"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("jmap-hardening")))
    srv.add_user(ALICE)
    srv.add_user(BOB)
    srv.start()
    wait_port(srv.http_port)  # the HTTP listener starts after SMTP's
    yield srv
    srv.stop()


def insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
    return ctx


def basic(user: str = ALICE, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def no_traceback(server: Server) -> None:
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]


# --------------------------------------------------------------------------- Origin


def open_ws(port: int, origin: str | None, scheme: str = "wss") -> ClientConnection:
    headers = {"Authorization": basic()}
    if origin is not None:
        headers["Origin"] = origin
    return connect(f"{scheme}://127.0.0.1:{port}/jmap/ws",
                   ssl=insecure() if scheme == "wss" else None,
                   subprotocols=[Subprotocol("jmap")], additional_headers=headers,
                   open_timeout=10)


def echo(ws: ClientConnection) -> None:
    ws.send(json.dumps({"@type": "Request", "id": "r", "using": [CORE],
                        "methodCalls": [["Core/echo", {"hi": 1}, "c"]]}))
    reply = json.loads(ws.recv(timeout=10))
    assert reply["methodResponses"] == [["Core/echo", {"hi": 1}, "c"]]


FOREIGN = ["https://evil.example", "null", "https://127.0.0.1", "http://127.0.0.1:{port}",
           "https://127.0.0.1:{other}", "https://127.0.0.1.evil.example:{port}", "garbage",
           "https://user@127.0.0.1:{port}"]


@pytest.mark.parametrize("origin", FOREIGN)
def test_websocket_from_another_origin_is_refused(server: Server, origin: str) -> None:
    port = server.http_port
    with pytest.raises(InvalidStatus) as refused:
        open_ws(port, origin.format(port=port, other=port + 1))
    assert refused.value.response.status_code == 403
    problem = json.loads(refused.value.response.body or b"{}")
    assert problem["status"] == 403 and "Traceback" not in str(problem)


@pytest.mark.parametrize("origin", [None, "https://127.0.0.1:{port}",
                                    "HTTPS://127.0.0.1:{port}", "https://127.0.0.1:{port}/"])
def test_websocket_from_our_own_origin_or_no_browser(server: Server, origin: str | None
                                                     ) -> None:
    port = server.http_port
    with open_ws(port, origin.format(port=port) if origin else None) as ws:
        echo(ws)


def test_post_from_another_origin_is_refused_before_authentication(server: Server) -> None:
    port = server.http_port
    body = {"using": [CORE], "methodCalls": [["Core/echo", {}, "c"]]}
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=False, timeout=30) as c:
        for headers in ({"Authorization": basic()},
                        {"Authorization": basic(password="wrong")}):
            for origin in ("https://evil.example", "null"):
                r = c.post("/jmap/api", json=body, headers={**headers, "Origin": origin})
                assert r.status_code == 403, r.text
                assert r.headers["content-type"] == "application/problem+json"
            r = c.post(f"/jmap/upload/{'x'}/", content=b"x",
                       headers={**headers, "Origin": "https://evil.example"})
            assert r.status_code == 403
        ok = c.post("/jmap/api", json=body, headers={"Authorization": basic(),
                                                     "Origin": f"https://127.0.0.1:{port}"})
        assert ok.status_code == 200 and ok.json()["methodResponses"][0][0] == "Core/echo"
        # GET changes nothing, and no foreign page can read the answer (no CORS headers).
        session = c.get("/jmap/session", headers={"Authorization": basic(),
                                                  "Origin": "https://evil.example"})
        assert session.status_code == 200
        assert "access-control-allow-origin" not in session.headers


class Listener:
    """The JMAP app with its WebSocket route on an event loop in a thread, for a policy the
    config file does not set yet (extra origins)."""

    def __init__(self, root: Path, policy: JMAPPolicy) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.store = SqliteMailStore(root / "mail.db")
        accounts = AccountService(self.store, config_domains=("example.test",))
        self.run(accounts.add_user(ALICE, PASSWORD))
        services = JMAPServices(accounts, policy=policy)
        app = build_app(services, routes=websocket_routes(services, LocalEventBus()))
        self.server = self.run(start_http(app, "127.0.0.1", 0))
        self.port = int(self.server.port)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.run(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.store.close()


def test_configured_origins_are_ours_too(tmp_path: Path) -> None:
    listener = Listener(tmp_path, JMAPPolicy(
        allow_plaintext_loopback=True,
        allowed_origins=frozenset({"https://mail.example.test", "http://webmail.test:8080/"})))
    try:
        for origin in ("https://mail.example.test", "https://MAIL.example.test:443",
                       "http://webmail.test:8080", f"http://127.0.0.1:{listener.port}", None):
            with open_ws(listener.port, origin, scheme="ws") as ws:
                echo(ws)
        for origin in ("https://evil.example", "http://mail.example.test",
                       "https://mail.example.test:8443", "http://webmail.test"):
            with pytest.raises(InvalidStatus) as refused:
                open_ws(listener.port, origin, scheme="ws")
            assert refused.value.response.status_code == 403, origin
    finally:
        listener.close()
    with pytest.raises(ValueError, match="not an origin"):
        build_app(JMAPServices(AccountService(SqliteMailStore(tmp_path / "other.db")),
                               policy=JMAPPolicy(allowed_origins=frozenset({"mail.test"}))))


# --------------------------------------------------------------------------- Basic


def raw_request(port: int, authorization: bytes) -> bytes:
    """One HTTP/1.1 request with the Authorization octets as given; the whole answer."""
    with (socket.create_connection(("127.0.0.1", port), timeout=30) as plain,
          insecure().wrap_socket(plain) as tls):
        tls.sendall(b"GET /jmap/session HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Authorization: " + authorization + b"\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return data


MALFORMED = [
    b"Basic \xc3\xa9\xff\x80",  # 8-bit octets where base64 belongs
    b"Basic " + base64.b64encode("\xe9lise:motdepasse".encode("latin-1")),  # not UTF-8
    b"Basic ===", b"Basic YWxpY2U", b"Basic !!!!", b"Basic", b"Basic ",
    b"Basic " + base64.b64encode(b"no-colon-here"),
    b"Basic " + base64.b64encode(b":" + PASSWORD.encode()),  # an empty user
    b"Basic " + base64.b64encode(ALICE.encode() + b":"),  # an empty password
    b"Basic " + base64.b64encode(ALICE.encode() + b":pass\x00word"),  # a control character
    b"Basic " + base64.b64encode(b"a" * 6000 + b":" + b"b" * 3000),  # long, well-formed
    b"Bearer \xff\xfe", b"\xff\xfe basic",
]


@pytest.mark.parametrize("authorization", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_basic_gets_401(server: Server, authorization: bytes) -> None:
    answer = raw_request(server.http_port, authorization)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 "), answer[:500]
    assert b'www-authenticate: basic realm="mailyard"' in head.lower()
    problem = json.loads(body)
    assert problem["status"] == 401
    if authorization.startswith(b"Basic"):
        assert problem["detail"] == "malformed Basic credentials"
    assert b"Traceback" not in body and b"Error" not in body
    no_traceback(server)


def test_a_header_beyond_what_http_allows_is_refused_and_the_server_goes_on(
        server: Server) -> None:
    answer = raw_request(server.http_port, b"Basic " + b"A" * 1_000_000)
    status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/1.1 ") else b""
    assert answer == b"" or status.startswith(b"4"), answer[:300]
    assert Jmap(server, ALICE).call("Core/echo", hi=1) == {"accountId": Jmap(
        server, ALICE).account_id, "hi": 1}
    no_traceback(server)
