"""Every registered JMAP method, fuzzed over real HTTP: random and mutated arguments must get
a result or the RFC's method error, never an HTTP 500 or a "serverFail", and the server stays up.

The methods are read from the registry the server fills (`METHODS`, after importing the app
that serves them), so methods added later are fuzzed without touching this file. Arguments mix
the names the standard methods take with values that are almost right: real ids of this
account and of another one, creation references, states old, new and malformed, numbers at
the edges of 53 and 64 bits, digits that are not ASCII, deep and wide JSON.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mailyard.app  # noqa: F401  (registers every method the server serves)
from mailyard.protocols.jmap.core import METHODS
from tests.e2e.jmapclient import PASSWORD, Jmap, deliver, wait_count
from tests.e2e.server import Server, wait_port

ALICE, BOB = "alice@example.test", "bob@example.test"
EXAMPLES = 20
"""Requests per method, each with up to four calls: about 35 s of CPU for the 33 methods of
today (wall time grows with the load of the machine)."""

ARGUMENT_NAMES = [
    "ids", "properties", "bodyProperties", "fetchTextBodyValues", "fetchHTMLBodyValues",
    "fetchAllBodyValues", "maxBodyValueBytes", "sinceState", "maxChanges", "filter", "sort",
    "position", "anchor", "anchorOffset", "limit", "calculateTotal", "collapseThreads",
    "sinceQueryState", "upToId", "ifInState", "create", "update", "destroy",
    "onDestroyRemoveEmails", "sortAsTree", "filterAsTree", "emails", "blobIds", "fromAccountId",
    "ifFromInState", "onSuccessDestroyOriginal", "destroyFromIfInState", "emailIds",
    "onSuccessUpdateEmail", "onSuccessDestroyEmail", "accountId",
]
FILTER_NAMES = ["inMailbox", "inMailboxOtherThan", "before", "after", "minSize", "maxSize",
                "hasKeyword", "notKeyword", "text", "from", "to", "subject", "body", "header",
                "allInThreadHaveKeyword", "operator", "conditions", "parentId", "name", "role",
                "hasAnyRole", "isSubscribed", "scope", "resourceType", "type", "emailIds",
                "threadId", "undoStatus", "identityIds"]
PROPERTY_NAMES = ["id", "name", "parentId", "role", "keywords", "mailboxIds", "subject",
                  "header:Subject:asText", "header:From:asAddresses:all", "bodyValues",
                  "textBody", "used", "hardLimit", "undoStatus", "emailId", "partId",
                  "receivedAt", "threadId", "blobId", "size", "isSubscribed"]


STATES = ["0", "1", "-1", "²", "٣", "1.5", " 1", "1 ", "0x10", "99999999999999999999",
          "1.1", "1.", ".1", "a.b", ""]
"""Malformed and out-of-range states; real ones are added from the server."""


class Ids:
    """Real ids the strategies draw from, filled once the server has data."""

    values: list[str] = ["#c0", "#nope", "", "a" * 300]


REAL_ID = st.deferred(lambda: st.sampled_from(Ids.values))
"""Drawn first inside a test, after the server fixture has filled Ids.values."""


def _leaf() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64),
        st.sampled_from([0, 1, -1, 2**53 - 1, 2**53, 2**63 - 1, 10**30]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30),
        st.sampled_from(["0", "1", "99999999999", "²", "١٢", "1.5", "-1", "$seen", "inbox",
                         "AND", "NOT", "receivedAt", "name", "2024-01-01T00:00:00Z",
                         "text/plain", "*"]),
        REAL_ID,
        st.text(string.ascii_letters, min_size=1, max_size=8).map(lambda s: "#" + s),
    )


JSON: st.SearchStrategy[Any] = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.sampled_from(FILTER_NAMES + PROPERTY_NAMES),
                                  st.text(max_size=10)), inner, max_size=5),
    ),
    max_leaves=25,
)


def _value(name: str) -> st.SearchStrategy[Any]:
    """Values that are nearly what `name` wants, with plain random JSON among them."""
    ids = st.lists(REAL_ID,
                   max_size=4)
    specific: dict[str, st.SearchStrategy[Any]] = {
        "ids": st.one_of(st.none(), ids),
        "emailIds": ids, "blobIds": ids, "destroy": ids,
        "properties": st.lists(st.sampled_from(PROPERTY_NAMES), max_size=5),
        "filter": st.dictionaries(st.sampled_from(FILTER_NAMES), JSON, max_size=3),
        "sort": st.lists(st.fixed_dictionaries(
            {"property": st.sampled_from(PROPERTY_NAMES)},
            optional={"isAscending": st.one_of(st.booleans(), JSON)}), max_size=3),
        "create": st.dictionaries(st.sampled_from(["c0", "c1", "x"]), st.dictionaries(
            st.sampled_from(PROPERTY_NAMES + FILTER_NAMES), JSON, max_size=4), max_size=2),
        "update": st.dictionaries(
            REAL_ID,
            st.dictionaries(st.sampled_from([*PROPERTY_NAMES, "keywords/$seen",
                                                         "mailboxIds/x"]),
                            JSON, max_size=3), max_size=2),
        "accountId": st.sampled_from(["ACCOUNT", "ACCOUNT", "OTHER", "nope"]),
    }
    for state in ("sinceState", "sinceQueryState", "ifInState", "ifFromInState",
                  "destroyFromIfInState"):
        specific[state] = st.one_of(st.sampled_from(STATES), st.integers().map(str))
    return st.one_of(specific[name], JSON) if name in specific else JSON


BY_SUFFIX = {
    "get": ["ids", "properties"],
    "changes": ["sinceState", "maxChanges"],
    "query": ["filter", "sort", "position", "anchor", "limit", "calculateTotal"],
    "queryChanges": ["sinceQueryState", "filter", "sort", "maxChanges", "upToId"],
    "set": ["ifInState", "create", "update", "destroy"],
    "copy": ["fromAccountId", "create", "ifFromInState", "onSuccessDestroyOriginal"],
}


def arguments(method: str) -> st.SearchStrategy[dict[str, Any]]:
    """The arguments `method` takes (by the standard method it is a kind of), most of them
    most of the time, with any other names besides."""
    usual = BY_SUFFIX.get(method.rpartition("/")[2], [])
    chosen = st.tuples(st.lists(st.sampled_from(usual), unique=True) if usual else st.just([]),
                       st.lists(st.sampled_from(ARGUMENT_NAMES), max_size=3, unique=True))
    return chosen.flatmap(lambda names: st.fixed_dictionaries(
        {n: _value(n) for n in dict.fromkeys([*names[0], *names[1]])}))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("jmap-fuzz")))
    srv.add_user(ALICE)
    srv.add_user(BOB)
    srv.start()
    wait_port(srv.http_port)  # the HTTP listener starts after SMTP
    for n in range(3):
        deliver(srv, ALICE, f"fuzz {n}")
    deliver(srv, BOB, "bob's")
    wait_count(srv, ALICE, 3)
    wait_count(srv, BOB, 1)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def session(server: Server) -> dict[str, Any]:
    """Real ids of both accounts for the strategies; the two account ids."""
    alice, bob = Jmap(server, ALICE), Jmap(server, BOB)
    values = list(Ids.values)
    for j in (alice, bob):
        emails = j.call("Email/get", ids=j.call("Email/query")["ids"],
                        properties=["id", "threadId", "blobId"])["list"]
        values += [e[k] for e in emails for k in ("id", "threadId", "blobId")]
        values += list(j.boxes()[b]["id"] for b in j.boxes())
        values += [j.state(), str(int(j.state()) - 1)]
        STATES.extend([j.state(), str(int(j.state()) - 1)])
    Ids.values = values
    return {"ACCOUNT": alice.account_id, "OTHER": bob.account_id,
            "using": list(alice.session["capabilities"])}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_never_fails_the_server(server: Server, session: dict[str, Any],
                                       name: str) -> None:
    client = httpx.Client(base_url=f"https://127.0.0.1:{server.http_port}", verify=False,
                          auth=(ALICE, PASSWORD), timeout=30)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(calls=st.lists(arguments(name), min_size=1, max_size=4))
    def check(calls: list[dict[str, Any]]) -> None:
        method_calls = []
        for n, args in enumerate(calls):
            args = dict(args)
            account = args.get("accountId", "ACCOUNT")
            args["accountId"] = session.get(account, account) if isinstance(
                account, str) else account
            method_calls.append([name, args, f"c{n}"])
        body = {"using": session["using"], "methodCalls": method_calls}
        response = client.post("/jmap/api", json=body)
        assert response.status_code != 500, response.text
        if response.status_code != 200:  # a request-level refusal, as a problem document
            assert response.headers["content-type"] == "application/problem+json"
            return
        for answer, result, _ in response.json()["methodResponses"]:
            assert not (answer == "error" and result.get("type") == "serverFail"), (
                name, body, result)

    try:
        check()
    finally:
        client.close()
    assert server.process is not None and server.process.poll() is None
    assert Jmap(server, ALICE).call("Mailbox/get", ids=[])["accountId"] == session["ACCOUNT"]


# ----------------------------------------------------------- whole requests and Email/set create

TEXT = st.one_of(st.text(max_size=12), st.sampled_from([
    "\r\n", "a\r\nBcc: eve@evil.example", "\x00", "\x85", "\u2028", "=?utf-8?q?a=0D=0Ab?=",
    "=?x?b?AA0K?=", "é", '"', "\\", "text/plain", "multipart/mixed", "a@b.test",
    "alice@example.test", "x" * 1200, "utf-8", "idna", "en", "inline", "attachment"]))
PART: st.SearchStrategy[Any] = st.recursive(
    st.fixed_dictionaries({}, optional={
        "partId": st.one_of(st.sampled_from(["1", "2"]), JSON),
        "blobId": st.one_of(REAL_ID, JSON), "type": st.one_of(TEXT, JSON), "charset": TEXT,
        "name": st.one_of(TEXT, JSON), "disposition": st.one_of(TEXT, JSON), "cid": TEXT,
        "language": st.one_of(st.lists(TEXT, max_size=2), JSON), "location": TEXT,
        "headers": JSON, "size": JSON}),
    lambda inner: st.fixed_dictionaries(
        {"type": st.sampled_from(["multipart/mixed", "multipart/alternative", "text/plain"]),
         "subParts": st.one_of(st.lists(inner, max_size=3), JSON)}),
    max_leaves=6)
ADDRESSES = st.one_of(st.lists(st.fixed_dictionaries(
    {"email": st.one_of(TEXT, JSON)}, optional={"name": st.one_of(TEXT, JSON)}), max_size=2),
    JSON)
EMAIL = st.fixed_dictionaries({"mailboxIds": st.one_of(st.just("INBOX"), JSON)}, optional={
    "from": ADDRESSES, "to": ADDRESSES, "replyTo": ADDRESSES, "sender": ADDRESSES,
    "subject": st.one_of(TEXT, JSON), "sentAt": st.one_of(TEXT, JSON),
    "messageId": st.one_of(st.lists(TEXT, max_size=2), JSON),
    "references": st.one_of(st.lists(TEXT, max_size=2), JSON),
    "header:X-A": st.one_of(TEXT, JSON), "header:X-B:asText": TEXT,
    "header:Resent-To:asRaw": TEXT, "header:X-C:asAddresses": JSON,
    "bodyStructure": PART, "textBody": st.one_of(st.lists(PART, max_size=2), JSON),
    "htmlBody": st.lists(PART, max_size=1), "attachments": st.one_of(
        st.lists(PART, max_size=3), JSON),
    "bodyValues": st.one_of(st.dictionaries(st.sampled_from(["1", "2"]), st.one_of(
        st.fixed_dictionaries({"value": TEXT}), JSON), max_size=2), JSON),
    "keywords": JSON, "receivedAt": JSON})


def test_email_set_create_never_fails_the_server(server: Server,
                                                 session: dict[str, Any]) -> None:
    """Email/set create with EmailBodyPart trees and header text made to break the builder:
    each object is created or gets a SetError, never a serverFail."""
    alice = Jmap(server, ALICE)
    inbox = alice.boxes()["inbox"]["id"]
    blob = alice.client.post(f"/jmap/upload/{alice.account_id}/", content=b"hello\r\n",
                             headers={"content-type": "text/plain"}).json()["blobId"]
    Ids.values = [*Ids.values, blob]

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(emails=st.lists(EMAIL, min_size=1, max_size=3))
    def check(emails: list[dict[str, Any]]) -> None:
        create = {}
        for n, obj in enumerate(emails):
            if obj["mailboxIds"] == "INBOX":
                obj = {**obj, "mailboxIds": {inbox: True}}
            create[f"k{n}"] = obj
        [[answer, result, _]] = alice.calls(("Email/set", {"create": create}))
        assert answer == "Email/set", result
        for error in (result["notCreated"] or {}).values():
            assert error["type"] not in ("serverFail", "serverPartialFail"), (create, error)

    try:
        check()
    finally:
        alice.client.close()


REQUEST = st.recursive(
    st.one_of(JSON, st.fixed_dictionaries({
        "using": st.one_of(st.just(["urn:ietf:params:jmap:core",
                                    "urn:ietf:params:jmap:mail"]), JSON),
        "methodCalls": st.one_of(st.lists(st.tuples(
            st.one_of(st.sampled_from(sorted(METHODS)), JSON), JSON, JSON), max_size=3), JSON),
    }, optional={"createdIds": JSON})),
    lambda inner: st.lists(inner, max_size=2), max_leaves=4)


def test_any_request_body_gets_a_json_answer_never_500(server: Server) -> None:
    """Whole request bodies, well-formed JSON of any shape and octets that are none, over
    HTTP and as WebSocket frames: a Response or a RequestError, and the connection stays."""
    from websockets.sync.client import connect
    from websockets.typing import Subprotocol

    from tests.e2e.test_jmap_hardening import basic, insecure

    client = httpx.Client(base_url=f"https://127.0.0.1:{server.http_port}", verify=False,
                          auth=(ALICE, PASSWORD), timeout=30)
    ws = connect(f"wss://127.0.0.1:{server.http_port}/jmap/ws", ssl=insecure(),
                 subprotocols=[Subprotocol("jmap")],
                 additional_headers={"Authorization": basic()}, open_timeout=10)

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=st.one_of(REQUEST.map(lambda v: orjson_bytes(v)), st.binary(max_size=40)))
    def check(body: bytes) -> None:
        response = client.post("/jmap/api", content=body,
                               headers={"content-type": "application/json"})
        assert response.status_code in (200, 400), (body, response.text)
        answer = response.json()
        if response.status_code == 400:
            assert answer["type"].startswith("urn:ietf:params:jmap:error:"), answer
        else:
            for name, result, _ in answer["methodResponses"]:
                assert not (name == "error" and result["type"] == "serverFail"), (body, result)
        ws.send(body.decode("utf-8", "replace"))
        reply = json.loads(ws.recv(timeout=30))
        assert reply["@type"] in ("Response", "RequestError"), reply

    with client, ws:
        check()
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]


def orjson_bytes(value: Any) -> bytes:
    import orjson

    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):  # integers beyond 64 bits
        return json.dumps(value).encode()
