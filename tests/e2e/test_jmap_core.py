"""JMAP core (RFC 8620) over real sockets: uvicorn on loopback, httpx and curl as clients."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.http import (
    CoreLimits,
    HTTPServer,
    JMAPPolicy,
    JMAPServices,
    build_app,
    start_http,
)
from mailyard.services.accounts import AccountService
from mailyard.services.loginguard import LoginGuard, LoginLimits
from mailyard.store.ports import Account
from mailyard.store.sqlite.counters import SqliteCounters
from mailyard.store.sqlite.mailstore import SqliteMailStore
from mailyard.tls import ensure_self_signed, server_context

T = TypeVar("T")

CORE = "urn:ietf:params:jmap:core"
ERR = "urn:ietf:params:jmap:error:"
PASSWORD = "correct horse battery"
ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
TOKEN = "tok-alice-0123456789"


@method("Test/explode")
async def explode(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("a bug in a method")


@method("Test/wait")
async def wait(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(float(args.get("seconds", 0.3)))
    return {}


class CountingAccounts(AccountService):
    """Counts password verifications, to see which requests the login cache answered."""

    calls = 0

    async def authenticate(self, address: str, password: str) -> Account | None:
        self.calls += 1
        return await super().authenticate(address, password)


class Served:
    """JMAP listeners on an event loop of their own in a thread, so that blocking clients
    (httpx.Client, curl, hypothesis) can call them from the test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.store = SqliteMailStore(root / "mail.db")
        self.accounts = CountingAccounts(self.store, config_domains=("example.test",))
        self.users = {a: self.run(self.accounts.add_user(a, PASSWORD)) for a in (ALICE, BOB, CAROL)}
        self.servers: list[HTTPServer] = []
        self.port = self.listen(JMAPPolicy(allow_plaintext_loopback=True))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _token(self, token: str) -> Account | None:
        return self.users[ALICE] if token == TOKEN else None

    def listen(self, policy: JMAPPolicy, tls: ssl.SSLContext | None = None) -> int:
        app = build_app(JMAPServices(self.accounts, tokens=self._token, policy=policy))
        server = self.run(start_http(app, "127.0.0.1", 0, tls))
        self.servers.append(server)
        return int(server.port)

    def close(self) -> None:
        async def close_all() -> None:
            await asyncio.gather(*(server.close() for server in self.servers))

        self.run(close_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.store.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("jmap"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def base(served: Served) -> str:
    return f"http://127.0.0.1:{served.port}"


@pytest.fixture(scope="module")
def client(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, auth=(ALICE, PASSWORD), timeout=10) as c:
        yield c


def api(client: httpx.Client, calls: list[Any], using: list[str] | None = None,
        **extra: Any) -> httpx.Response:
    return client.post("/jmap/api", json={"using": [CORE] if using is None else using,
                                          "methodCalls": calls, **extra})


def responses(r: httpx.Response) -> list[Any]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert isinstance(body["sessionState"], str)
    return list(body["methodResponses"])


def problem(r: httpx.Response, type_: str) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == ERR + type_ and body["status"] == 400
    return dict(body)


# --------------------------------------------------------------------------- authentication


def test_credentials_are_required(base: str) -> None:
    attempts: list[dict[str, Any]] = [
        {},
        {"auth": (ALICE, "wrong password")},
        {"auth": ("nobody@example.test", PASSWORD)},
        {"headers": {"Authorization": "Basic !!!not-base64"}},
        {"headers": {"Authorization": "Digest username=alice"}},
        {"headers": {"Authorization": "Bearer not-the-token"}},
    ]
    for attempt in attempts:
        with httpx.Client(base_url=base, **attempt) as c:
            for r in (c.get("/jmap/session"), c.post("/jmap/api", json={})):
                assert r.status_code == 401, (attempt, r.text)
                challenges = r.headers.get_list("www-authenticate")
                assert 'Basic realm="Mailyard", charset="UTF-8"' in challenges
                assert any(c.startswith('Bearer realm="Mailyard"') for c in challenges)
                assert r.json()["status"] == 401
    with httpx.Client(base_url=base, headers={"Authorization": "Bearer x"}) as c:
        assert 'error="invalid_token"' in c.get("/jmap/session").headers.get_list(
            "www-authenticate")[1]


def test_bearer_token(base: str, served: Served) -> None:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        r = c.get("/jmap/session")
    assert r.status_code == 200 and r.json()["username"] == ALICE


def test_basic_logins_are_cached_failures_are_not(base: str, served: Served) -> None:
    with httpx.Client(base_url=base, auth=(BOB, PASSWORD)) as c:
        before = served.accounts.calls
        t0 = time.perf_counter()
        assert c.get("/jmap/session").status_code == 200
        first = time.perf_counter() - t0
        assert served.accounts.calls == before + 1
        t0 = time.perf_counter()
        for _ in range(5):
            assert c.get("/jmap/session").status_code == 200
        later = (time.perf_counter() - t0) / 5
        assert served.accounts.calls == before + 1, "the cache should answer"
    print(f"first Basic login {first * 1000:.1f} ms, cached {later * 1000:.1f} ms")
    with httpx.Client(base_url=base, auth=(BOB, "not it")) as c:
        assert c.get("/jmap/session").status_code == 401
        assert c.get("/jmap/session").status_code == 401
    assert served.accounts.calls == before + 3, "failures must be verified every time"


def test_a_remembered_login_ends_with_a_new_password_at_once(base: str, served: Served
                                                             ) -> None:
    """The login cache saves the password hash's verification, not the account's state: a
    password changed (by `mailyard user passwd`, through any node) stops the old one on the
    next request, not when the cache entry expires."""
    dave = "dave@example.test"
    served.run(served.accounts.add_user(dave, PASSWORD))
    with httpx.Client(base_url=base, auth=(dave, PASSWORD)) as c:
        assert c.get("/jmap/session").status_code == 200
        calls = served.accounts.calls
        assert c.get("/jmap/session").status_code == 200
        assert served.accounts.calls == calls, "the cache should answer"
        served.run(served.accounts.set_password(dave, "a new password"))
        assert c.get("/jmap/session").status_code == 401
    with httpx.Client(base_url=base, auth=(dave, "a new password")) as c:
        assert c.get("/jmap/session").status_code == 200


def test_repeated_failures_are_refused_for_a_while(served: Served) -> None:
    """The LoginGuard every protocol shares (tests/e2e/test_login_guard.py has the rest)."""
    guard = LoginGuard(SqliteCounters(served.root / "guard-counters.db"),
                       LoginLimits(failures_per_network=2, failures_per_account=0))
    accounts = AccountService(served.store, config_domains=("example.test",), guard=guard)
    app = build_app(JMAPServices(accounts, policy=JMAPPolicy(allow_plaintext_loopback=True)))
    server = served.run(start_http(app, "127.0.0.1", 0, None))
    served.servers.append(server)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as c:
        for _ in range(2):
            assert c.get("/jmap/session", auth=(ALICE, "guess")).status_code == 401
        r = c.get("/jmap/session", auth=(ALICE, PASSWORD))
        assert r.status_code == 429 and r.headers["retry-after"]


def test_plain_http_is_refused_unless_loopback_is_allowed(served: Served) -> None:
    port = served.listen(JMAPPolicy())
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(ALICE, PASSWORD)) as c:
        r = c.get("/jmap/session")
        assert r.status_code == 403
        assert r.headers["content-type"] == "application/problem+json"
        assert "TLS" in r.json()["detail"]
        # The proxy header is not believed when it is not configured.
        assert c.get("/jmap/session", headers={"X-Forwarded-Proto": "https"}).status_code == 403

    port = served.listen(JMAPPolicy(forwarded_proto_header="X-Forwarded-Proto"))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(ALICE, PASSWORD)) as c:
        assert c.get("/jmap/session").status_code == 403
        r = c.get("/jmap/session", headers={"X-Forwarded-Proto": "https"})
        assert r.status_code == 200
        assert r.json()["apiUrl"] == f"https://127.0.0.1:{port}/jmap/api"


def test_tls(served: Served) -> None:
    tls = server_context(*ensure_self_signed(served.root, "localhost"))
    port = served.listen(JMAPPolicy(), tls)
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", auth=(ALICE, PASSWORD),
                      verify=False) as c:
        session = c.get("/jmap/session").json()
        assert session["apiUrl"] == f"https://127.0.0.1:{port}/jmap/api"
        r = c.post("/jmap/api", json={"using": [CORE], "methodCalls": [["Core/echo", {}, "0"]]})
        assert responses(r) == [["Core/echo", {}, "0"]]


# --------------------------------------------------------------------------- the session


def test_session(base: str, client: httpx.Client, served: Served) -> None:
    r = client.get("/jmap/session")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    session = r.json()
    alice = served.users[ALICE]
    core = session["capabilities"][CORE]
    assert core == {
        "maxSizeUpload": 36700160, "maxConcurrentUpload": 4, "maxSizeRequest": 10485760,
        "maxConcurrentRequests": 4, "maxCallsInRequest": 64, "maxObjectsInGet": 1000,
        "maxObjectsInSet": 1000,
        "collationAlgorithms": ["i;ascii-numeric", "i;ascii-casemap", "i;unicode-casemap"],
    }
    account = session["accounts"][alice.id]
    assert list(session["accounts"]) == [alice.id]
    assert {k: v for k, v in account.items() if k != "accountCapabilities"} == {
        "name": ALICE, "isPersonal": True, "isReadOnly": False}
    assert account["accountCapabilities"][CORE] == {}
    assert set(account["accountCapabilities"]) <= set(session["capabilities"])
    assert session["primaryAccounts"][CORE] == alice.id
    assert session["username"] == ALICE
    assert session["apiUrl"] == base + "/jmap/api"
    assert session["downloadUrl"] == base + "/jmap/download/{accountId}/{blobId}/{name}?type={type}"
    assert session["uploadUrl"] == base + "/jmap/upload/{accountId}/"
    assert session["eventSourceUrl"] == (
        base + "/jmap/eventsource?types={types}&closeafter={closeafter}&ping={ping}")
    assert isinstance(session["state"], str) and session["state"]
    # The same session at the well-known URI (served there, not redirected), the same state.
    well_known = client.get("/.well-known/jmap", follow_redirects=False)
    assert well_known.status_code == 200 and well_known.json() == session
    # URLs follow the name the client used for us.
    other = f"http://localhost:{served.port}"
    by_name = httpx.get(other + "/jmap/session", auth=(ALICE, PASSWORD)).json()
    assert by_name["apiUrl"] == other + "/jmap/api"
    echo = responses(api(client, [["Core/echo", {}, "0"]]))
    assert client.post("/jmap/api", json={"using": [], "methodCalls": []}).json()[
        "sessionState"] == session["state"]
    assert echo == [["Core/echo", {}, "0"]]


def test_curl(base: str) -> None:
    out = subprocess.run(["curl", "-sS", "-u", f"{ALICE}:{PASSWORD}", base + "/.well-known/jmap"],
                         capture_output=True, check=True, timeout=10).stdout
    session = json.loads(out)
    assert session["username"] == ALICE and session["apiUrl"] == base + "/jmap/api"
    request = {"using": [CORE], "methodCalls": [
        ["Core/echo", {"hello": ["wörld", 1, None]}, "a"],
        ["Core/echo", {"#first": {"resultOf": "a", "name": "Core/echo", "path": "/hello/0"}},
         "b"]]}
    out = subprocess.run(
        ["curl", "-sS", "-u", f"{ALICE}:{PASSWORD}", "-H", "Content-Type: application/json",
         "--data-binary", json.dumps(request), session["apiUrl"]],
        capture_output=True, check=True, timeout=10).stdout
    assert json.loads(out)["methodResponses"] == [
        ["Core/echo", {"hello": ["wörld", 1, None]}, "a"], ["Core/echo", {"first": "wörld"}, "b"]]
    head = subprocess.run(["curl", "-sS", "-i", base + "/jmap/session"],
                          capture_output=True, check=True, timeout=10).stdout.decode()
    assert head.startswith("HTTP/1.1 401") and 'www-authenticate: Basic realm="Mailyard"' in head


def test_push_resources_need_their_routes(client: httpx.Client, served: Served) -> None:
    """The core app alone has placeholders where the push module plugs its routes in."""
    assert client.get("/jmap/eventsource?types=*&closeafter=no&ping=0").status_code == 501
    assert client.get("/jmap/ws").status_code == 501


# --------------------------------------------------------------------------- method calls


def test_echo_and_result_references(client: httpx.Client) -> None:
    listing = {"list": [{"id": "a", "tags": ["x", "y"]}, {"id": "b", "tags": ["z"]},
                        {"id": "c", "tags": []}], "weird/key": {"t~": 7}}
    calls = [
        ["Core/echo", listing, "c0"],
        ["Core/echo", {"#ids": {"resultOf": "c0", "name": "Core/echo", "path": "/list/*/id"},
                       "#tags": {"resultOf": "c0", "name": "Core/echo", "path": "/list/*/tags"},
                       "#one": {"resultOf": "c0", "name": "Core/echo", "path": "/list/1/tags/0"},
                       "#esc": {"resultOf": "c0", "name": "Core/echo", "path": "/weird~1key/t~0"},
                       "#all": {"resultOf": "c0", "name": "Core/echo", "path": ""},
                       "plain": 1}, "c1"],
        # A reference to a reference's result.
        ["Core/echo", {"#again": {"resultOf": "c1", "name": "Core/echo", "path": "/ids"}}, "c2"],
    ]
    got = responses(api(client, calls))
    assert got[0] == ["Core/echo", listing, "c0"]
    assert got[1] == ["Core/echo", {"ids": ["a", "b", "c"], "tags": ["x", "y", "z"],
                                    "one": "z", "esc": 7, "all": listing, "plain": 1}, "c1"]
    assert got[2] == ["Core/echo", {"again": ["a", "b", "c"]}, "c2"]


@pytest.mark.parametrize("ref", [
    {"resultOf": "nope", "name": "Core/echo", "path": "/a"},     # no such call
    {"resultOf": "c0", "name": "Foo/get", "path": "/a"},         # another method's name
    {"resultOf": "c0", "name": "Core/echo", "path": "/b"},       # no such property
    {"resultOf": "c0", "name": "Core/echo", "path": "/a/3"},     # past the end
    {"resultOf": "c0", "name": "Core/echo", "path": "/a/01"},    # not an index
    {"resultOf": "c0", "name": "Core/echo", "path": "/a/-"},
    {"resultOf": "c0", "name": "Core/echo", "path": "a"},        # not a pointer
    {"resultOf": "c0", "name": "Core/echo", "path": "/a/~2"},    # bad escape
    {"resultOf": "c0", "name": "Core/echo", "path": "/a/0/x"},   # into a number
    {"resultOf": "c0", "name": "Core/echo", "path": "/a/*/x"},
    {"resultOf": "c0", "name": "Core/echo"},                     # no path
    ["c0", "Core/echo", "/a"],                                   # not an object
])
def test_invalid_result_reference(client: httpx.Client, ref: Any) -> None:
    got = responses(api(client, [["Core/echo", {"a": [1, 2, 3]}, "c0"],
                                 ["Core/echo", {"#x": ref}, "c1"],
                                 ["Core/echo", {"after": True}, "c2"]]))
    assert got[1][0] == "error" and got[1][1]["type"] == "invalidResultReference"
    assert got[1][2] == "c1"
    assert got[2] == ["Core/echo", {"after": True}, "c2"]


def test_reference_to_a_failed_call(client: httpx.Client) -> None:
    got = responses(api(client, [
        ["Nope/nothing", {}, "c0"],
        ["Core/echo", {"#x": {"resultOf": "c0", "name": "Nope/nothing", "path": ""}}, "c1"],
        ["Core/echo", {"x": 1, "#x": {"resultOf": "c0", "name": "error", "path": "/type"}},
         "c2"],
        ["Core/echo", {"#x": {"resultOf": "c0", "name": "error", "path": "/type"}}, "c3"],
    ]))
    assert [r[1].get("type") for r in got[:3]] == [
        "unknownMethod", "invalidResultReference", "invalidArguments"]
    assert got[3] == ["Core/echo", {"x": "unknownMethod"}, "c3"]


def test_unknown_method_and_capability_not_used(client: httpx.Client) -> None:
    got = responses(api(client, [["Nothing/here", {}, "m"], ["Core/echo", {"ok": 1}, "e"]]))
    assert got == [["error", {"type": "unknownMethod"}, "m"], ["Core/echo", {"ok": 1}, "e"]]
    # A method answers only to clients that asked for its capability.
    got = responses(api(client, [["Core/echo", {}, "e"]], using=[]))
    assert got[0][0] == "error" and got[0][1]["type"] == "unknownMethod"
    got = responses(api(client, [["Mailbox/get", {}, "m"]]))  # mail not in "using"
    assert got[0][0] == "error" and got[0][1]["type"] == "unknownMethod"


def test_server_fail_does_not_stop_the_request(client: httpx.Client) -> None:
    got = responses(api(client, [["Core/echo", {"n": 1}, "a"], ["Test/explode", {}, "b"],
                                 ["Core/echo", {"n": 2}, "c"]]))
    assert got[0] == ["Core/echo", {"n": 1}, "a"]
    assert got[1][0] == "error" and got[1][1]["type"] == "serverFail" and got[1][2] == "b"
    assert "a bug" not in json.dumps(got[1])
    assert got[2] == ["Core/echo", {"n": 2}, "c"]


def test_result_too_deep_to_write_fails_that_call_only(client: httpx.Client) -> None:
    deep: Any = []
    for _ in range(400):
        deep = [deep]
    got = responses(api(client, [["Core/echo", {"d": deep}, "a"], ["Core/echo", {}, "b"]]))
    assert got[0][0] == "error" and got[0][1]["type"] == "serverFail"
    assert got[1] == ["Core/echo", {}, "b"]


def test_created_ids_round_trip(client: httpx.Client) -> None:
    r = api(client, [["Core/echo", {}, "a"]], createdIds={"k1": "id1"})
    assert r.json()["createdIds"] == {"k1": "id1"}
    assert "createdIds" not in api(client, [["Core/echo", {}, "a"]]).json()


# --------------------------------------------------------------------------- request errors


def test_unknown_capability(client: httpx.Client) -> None:
    body = problem(api(client, [["Core/echo", {}, "a"]],
                       using=[CORE, "urn:example:nonsense"]), "unknownCapability")
    assert "urn:example:nonsense" in body["detail"]


def test_not_json(client: httpx.Client) -> None:
    problem(client.post("/jmap/api", content=b'{"using": [', headers={
        "content-type": "application/json"}), "notJSON")
    problem(client.post("/jmap/api", content=b"\xff\xfe", headers={
        "content-type": "application/json; charset=utf-8"}), "notJSON")
    good = json.dumps({"using": [CORE], "methodCalls": []}).encode()
    problem(client.post("/jmap/api", content=good, headers={"content-type": "text/plain"}),
            "notJSON")
    problem(client.post("/jmap/api", content=good), "notJSON")  # no content type at all
    assert client.post("/jmap/api", content=good, headers={
        "content-type": "Application/JSON; charset=utf-8"}).status_code == 200


@pytest.mark.parametrize("body", [
    [], "text", 1, None,
    {"methodCalls": []},
    {"using": CORE, "methodCalls": []},
    {"using": [CORE, 7], "methodCalls": []},
    {"using": [CORE]},
    {"using": [CORE], "methodCalls": {"0": ["Core/echo", {}, "a"]}},
    {"using": [CORE], "methodCalls": [["Core/echo", {}]]},
    {"using": [CORE], "methodCalls": [["Core/echo", {}, "a", "extra"]]},
    {"using": [CORE], "methodCalls": [["Core/echo", [], "a"]]},
    {"using": [CORE], "methodCalls": [[1, {}, "a"]]},
    {"using": [CORE], "methodCalls": [["Core/echo", {}, 1]]},
    {"using": [CORE], "methodCalls": ["Core/echo"]},
    {"using": [CORE], "methodCalls": [], "createdIds": ["a"]},
    {"using": [CORE], "methodCalls": [], "createdIds": {"a": 1}},
])
def test_not_request(client: httpx.Client, body: Any) -> None:
    problem(client.post("/jmap/api", content=json.dumps(body),
                        headers={"content-type": "application/json"}), "notRequest")


def test_limit_calls_in_request(client: httpx.Client) -> None:
    calls = [["Core/echo", {}, str(n)] for n in range(65)]
    body = problem(api(client, calls), "limit")
    assert body["limit"] == "maxCallsInRequest"
    assert len(responses(api(client, calls[:64]))) == 64


def test_limit_request_size(client: httpx.Client, served: Served) -> None:
    big = {"using": [CORE], "methodCalls": [["Core/echo", {"x": "a" * (10 * 1024 * 1024)}, "0"]]}
    body = problem(client.post("/jmap/api", json=big), "limit")
    assert body["limit"] == "maxSizeRequest"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts as it reads
        yield b'{"using": [], "methodCalls": [], "x": "'
        for _ in range(11):
            yield b"a" * (1024 * 1024)
        yield b'"}'

    r = client.post("/jmap/api", content=chunks(), headers={"content-type": "application/json"})
    assert problem(r, "limit")["limit"] == "maxSizeRequest"
    # The connection is still good.
    assert responses(api(client, [["Core/echo", {}, "0"]])) == [["Core/echo", {}, "0"]]
    # A request at the limit passes.
    port = served.listen(JMAPPolicy(allow_plaintext_loopback=True,
                                    limits=CoreLimits(max_size_request=200)))
    body_at_limit = b'{"using":[],"methodCalls":[],"pad":"' + b"p" * 162 + b'"}'
    assert len(body_at_limit) == 200
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(ALICE, PASSWORD)) as c:
        headers = {"content-type": "application/json"}
        assert c.post("/jmap/api", content=body_at_limit, headers=headers).status_code == 200
        problem(c.post("/jmap/api", content=body_at_limit + b" ", headers=headers), "limit")


def test_limit_concurrent_requests(base: str) -> None:
    def call() -> httpx.Response:
        with httpx.Client(base_url=base, auth=(CAROL, PASSWORD), timeout=10) as c:
            return api(c, [["Test/wait", {"seconds": 0.5}, "w"]])

    with httpx.Client(base_url=base, auth=(CAROL, PASSWORD)) as c:
        assert c.get("/jmap/session").status_code == 200  # the login is cached from here on
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: call(), range(6)))
    ok = [r for r in results if r.status_code == 200]
    refused = [r for r in results if r.status_code == 400]
    assert len(ok) == 4 and len(refused) == 2
    assert all(problem(r, "limit")["limit"] == "maxConcurrentRequests" for r in refused)
    # Another account is not held back by carol's requests, and carol's slots come back.
    with httpx.Client(base_url=base, auth=(CAROL, PASSWORD)) as c:
        assert responses(api(c, [["Core/echo", {}, "0"]])) == [["Core/echo", {}, "0"]]


# --------------------------------------------------------------------------- the listener


async def test_listener_runs_in_our_loop_without_signal_handlers(tmp_path: Path) -> None:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    store = SqliteMailStore(tmp_path / "mail.db")
    try:
        accounts = AccountService(store, config_domains=("example.test",))
        await accounts.add_user(ALICE, PASSWORD)
        app = build_app(JMAPServices(accounts, policy=JMAPPolicy(allow_plaintext_loopback=True)))
        server = await start_http(app, "127.0.0.1", 0)
        assert {s: signal.getsignal(s) for s in handlers} == handlers
        url = f"http://127.0.0.1:{server.port}/jmap/session"
        async with httpx.AsyncClient(auth=(ALICE, PASSWORD)) as c:
            assert (await c.get(url)).status_code == 200
        # A port in use is an OSError here, not an exit of the process.
        with pytest.raises(OSError):
            await start_http(app, "127.0.0.1", server.port)
        await server.close()
        assert {s: signal.getsignal(s) for s in handlers} == handlers
        async with httpx.AsyncClient(auth=(ALICE, PASSWORD)) as c:
            with pytest.raises(httpx.ConnectError):
                await c.get(url)
    finally:
        store.close()


# --------------------------------------------------------------------------- fuzz

CALL_IDS = ["a", "b", "c"]
NAMES = st.sampled_from(["Core/echo"] * 4 + ["Test/explode", "Mailbox/get", "", "Core/echo "])
json_leaf = (st.none() | st.booleans() | st.integers() | st.text(max_size=10)
             | st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=15)
pointers = st.lists(st.sampled_from(["*", "0", "1", "a", "id", "~0", "~1", "~", "-", ""]),
                    max_size=4).map(lambda ts: "".join("/" + t for t in ts))
references = st.fixed_dictionaries(
    {"resultOf": st.sampled_from(CALL_IDS), "name": NAMES, "path": pointers})
arguments = st.dictionaries(
    st.sampled_from(["a", "#a", "b", "#b", "id", "#id"]),
    references | json_values, max_size=3)
calls = st.lists(st.tuples(NAMES, arguments, st.sampled_from(CALL_IDS)).map(list), max_size=5)
requests = st.fixed_dictionaries(
    {"using": st.just([CORE]) | st.lists(st.sampled_from([CORE, CORE, "urn:x"]), max_size=2),
     "methodCalls": calls},
    optional={"createdIds": st.dictionaries(st.text(max_size=3), st.text(max_size=3))})


def mutate(request: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    """One part of a well-formed request replaced by any JSON value."""
    request = dict(request)
    if where == "call" and request["methodCalls"]:
        request["methodCalls"] = [value, *request["methodCalls"][1:]]
    elif where == "args" and request["methodCalls"]:
        name, _, call_id = request["methodCalls"][0]
        request["methodCalls"] = [[name, value, call_id], *request["methodCalls"][1:]]
    else:
        request[where] = value
    return request


mutated = st.builds(mutate, requests,
                    st.sampled_from(["using", "methodCalls", "createdIds", "call", "args"]),
                    json_values)
KINDS = {"request": requests, "mutated": mutated, "value": json_values}
bodies = st.sampled_from(["request"] * 3 + ["mutated"] * 2 + ["value"]).flatmap(
    KINDS.__getitem__).map(lambda v: json.dumps(v).encode()) | st.binary(max_size=64)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
def test_fuzz_never_a_server_error(client: httpx.Client, body: bytes) -> None:
    r = client.post("/jmap/api", content=body, headers={"content-type": "application/json"})
    assert r.status_code in (200, 400), r.text
    answer = r.json()
    if r.status_code == 400:
        assert answer["type"].startswith(ERR)
        event(answer["type"])
        return
    sent = json.loads(body)["methodCalls"]
    assert len(answer["methodResponses"]) == len(sent)
    for (name, result, call_id), call in zip(answer["methodResponses"], sent, strict=True):
        assert call_id == call[2]
        assert name in (call[0], "error")
        event(result["type"] if name == "error" else "a method answered")
        if name == "error":
            assert result["type"] in ("unknownMethod", "serverFail", "invalidResultReference",
                                      "invalidArguments")
