"""JMAP over WebSocket (RFC 8887) against a real server with the `websockets` client: requests
with ids and back-references, RequestErrors, the subprotocol, and StateChange pushes after an
SMTP delivery and an IMAP STORE."""

from __future__ import annotations

import base64
import imaplib
import json
import smtplib
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.e2e.server import Server, wait_port

ALICE, BOB, PASSWORD = "alice@example.test", "bob@example.test", "secret-password"
CORE = "urn:ietf:params:jmap:core"
WEBSOCKET = "urn:ietf:params:jmap:websocket"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
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


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()


def session(server: Server, user: str = ALICE) -> dict[str, Any]:
    r = httpx.get(f"https://127.0.0.1:{server.http_port}/jmap/session", auth=(user, PASSWORD),
                  verify=False)
    assert r.status_code == 200
    result: dict[str, Any] = r.json()
    return result


def open_ws(server: Server, user: str = ALICE, subprotocols: list[str] | None = None
            ) -> ClientConnection:
    return connect(f"wss://127.0.0.1:{server.http_port}/jmap/ws", ssl=insecure(),
                   subprotocols=[Subprotocol(p) for p in subprotocols or ["jmap"]],
                   additional_headers={"Authorization": basic(user)}, open_timeout=10)


def recv(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    message = ws.recv(timeout=timeout)
    assert isinstance(message, str), "JMAP over WebSocket answers in text frames"
    result: dict[str, Any] = json.loads(message)
    return result


def read_so_far(ws: ClientConnection) -> None:
    """Returns once the server has handled every message sent on `ws` before: it reads them
    in order, so the answer to a Core/echo sent now comes after theirs (a fixed sleep here
    raced the server on a busy machine)."""
    ws.send(json.dumps({"@type": "Request", "id": "so-far", "using": [CORE],
                        "methodCalls": [["Core/echo", {}, "e"]]}))
    assert recv(ws)["requestId"] == "so-far"


def deliver(server: Server, subject: str, to: str = ALICE) -> float:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail("carol@remote.test", [to],
                      f"From: carol@remote.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nhi\r\n")
        return time.monotonic()


def test_session_advertises_the_websocket(server: Server) -> None:
    cap = session(server)["capabilities"][WEBSOCKET]
    assert cap == {"url": f"wss://127.0.0.1:{server.http_port}/jmap/ws", "supportsPush": True}


def test_request_with_id_and_back_references(server: Server) -> None:
    me = session(server)
    with open_ws(server) as ws:
        assert ws.subprotocol == "jmap"
        ws.send(json.dumps({
            "@type": "Request", "id": "req-1", "using": [CORE, "urn:ietf:params:jmap:mail"],
            "methodCalls": [
                ["Core/echo", {"hello": "world"}, "c0"],
                ["Mailbox/get", {"accountId": me["primaryAccounts"][CORE], "ids": None,
                                 "properties": ["name", "role"]}, "c1"],
                ["Core/echo", {"#names": {
                    "resultOf": "c1", "name": "Mailbox/get", "path": "/list/*/name"}}, "c2"],
            ]}))
        reply = recv(ws)
        assert reply["@type"] == "Response" and reply["requestId"] == "req-1"
        assert reply["sessionState"] == me["state"], "the same session as over HTTP"
        echo, mailboxes, names = reply["methodResponses"]
        assert echo == ["Core/echo", {"hello": "world"}, "c0"]
        assert mailboxes[0] == "Mailbox/get"
        listed = sorted(m["name"] for m in mailboxes[1]["list"])
        assert listed, "every account has an inbox"
        assert names[0] == "Core/echo" and sorted(names[1]["names"]) == listed
        ws.send(json.dumps({"@type": "Request", "using": [CORE],
                            "methodCalls": [["Core/echo", {}, "x"]]}))
        reply = recv(ws)
        assert "requestId" not in reply and reply["methodResponses"] == [["Core/echo", {}, "x"]]


def test_request_errors_keep_the_connection(server: Server) -> None:
    with open_ws(server) as ws:
        ws.send("{not json")
        error = recv(ws)
        assert error["@type"] == "RequestError"
        assert error["type"] == "urn:ietf:params:jmap:error:notJSON" and error["status"] == 400
        ws.send(json.dumps({"@type": "Request", "id": "r2", "using": ["urn:example:nope"],
                            "methodCalls": []}))
        error = recv(ws)
        assert error["@type"] == "RequestError" and error["requestId"] == "r2"
        assert error["type"] == "urn:ietf:params:jmap:error:unknownCapability"
        ws.send(json.dumps({"@type": "Request", "id": "r3", "using": [CORE],
                            "methodCalls": "nope"}))
        assert recv(ws)["type"] == "urn:ietf:params:jmap:error:notRequest"
        ws.send(json.dumps({"@type": "Bogus", "id": "r4"}))
        error = recv(ws)
        assert error["type"] == "urn:ietf:params:jmap:error:notRequest"
        assert error["requestId"] == "r4"
        ws.send(b"\x00binary")
        assert recv(ws)["type"] == "urn:ietf:params:jmap:error:notJSON"
        big = json.dumps({"@type": "Request", "id": "big", "using": [CORE], "methodCalls": [
            ["Core/echo", {"pad": "x" * (10 * 1024 * 1024)}, "c"]]})
        ws.send(big)
        error = recv(ws, timeout=30)
        assert error["type"] == "urn:ietf:params:jmap:error:limit"
        assert error["limit"] == "maxSizeRequest"
        assert "requestId" not in error, "an oversized message is refused unread"
        ws.send(json.dumps({"@type": "Request", "id": "ok", "using": [CORE],
                            "methodCalls": [["Core/echo", {"still": "here"}, "c"]]}))
        assert recv(ws)["methodResponses"] == [["Core/echo", {"still": "here"}, "c"]]


def test_refused_without_the_jmap_subprotocol_or_credentials(server: Server) -> None:
    with pytest.raises(InvalidStatus) as refused:  # no Sec-WebSocket-Protocol at all
        connect(f"wss://127.0.0.1:{server.http_port}/jmap/ws", ssl=insecure(),
                additional_headers={"Authorization": basic(ALICE)}, open_timeout=10)
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as other:
        open_ws(server, subprotocols=["chat"])
    assert other.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as anonymous:
        connect(f"wss://127.0.0.1:{server.http_port}/jmap/ws", ssl=insecure(),
                subprotocols=[Subprotocol("jmap")], open_timeout=10)
    assert anonymous.value.response.status_code == 403


def test_push_after_smtp_delivery_and_imap_store_until_disabled(server: Server) -> None:
    me = session(server)["primaryAccounts"][CORE]
    with open_ws(server) as ws, open_ws(server, user=BOB) as bob:
        ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Email", "Mailbox"]}))
        bob.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
        read_so_far(ws)  # the enable is a message like any other: the server has read it
        read_so_far(bob)
        deliver(server, "pushed over ws")
        change = recv(ws)
        assert change["@type"] == "StateChange"
        assert set(change["changed"]) == {me}
        assert set(change["changed"][me]) == {"Email", "Mailbox"}
        state = change["changed"][me]["Email"]
        assert change["pushState"] == state
        imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
        imap.login(ALICE, PASSWORD)
        imap.select("INBOX")
        imap.store("1", "+FLAGS", "(\\Flagged)")
        after_store = recv(ws)
        assert int(after_store["changed"][me]["Email"]) > int(state)
        with pytest.raises(TimeoutError):
            bob.recv(timeout=0.5)  # Bob's account did not change
        ws.send(json.dumps({"@type": "WebSocketPushDisable"}))
        read_so_far(ws)
        imap.store("1", "-FLAGS", "(\\Flagged)")
        imap.logout()
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.0)
        ws.send(json.dumps({"@type": "Request", "id": "after", "using": [CORE],
                            "methodCalls": [["Core/echo", {}, "c"]]}))
        assert recv(ws)["requestId"] == "after"


def test_push_enable_with_an_old_push_state_catches_up(server: Server) -> None:
    me = session(server)["primaryAccounts"][CORE]
    with open_ws(server) as ws:
        ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None,
                            "pushState": "a-state-from-long-ago"}))
        first = recv(ws)
        current = first["pushState"]
        assert first["changed"][me]["Email"] == current
        ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None,
                            "pushState": current}))
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)  # up to date: nothing to say
