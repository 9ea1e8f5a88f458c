"""`GET /sync?since=N` against a real server: the account's change log as plain JSON, the same
sequence JMAP states and IMAP MODSEQ read, behind the JMAP listener's authentication."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.jmapclient import PASSWORD, Jmap, deliver, wait_count
from tests.e2e.server import Server, wait_port

ALICE, BOB = "alice@example.test", "bob@example.test"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("jmap-sync")))
    srv.add_user(ALICE)
    srv.add_user(BOB)
    srv.start()
    wait_port(srv.http_port)  # the HTTP listener starts after SMTP
    yield srv
    srv.stop()


def _client(server: Server, user: str = ALICE, password: str = PASSWORD) -> httpx.Client:
    return httpx.Client(base_url=f"https://127.0.0.1:{server.http_port}", verify=False,
                        auth=(user, password), timeout=30)


def _sync(server: Server, query: str, user: str = ALICE) -> dict[str, Any]:
    with _client(server, user) as c:
        r = c.get("/sync?" + query)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body: dict[str, Any] = r.json()
    return body


def test_changes_from_smtp_imap_and_jmap(server: Server) -> None:
    start = _sync(server, "since=0")
    assert start["since"] == 0 and start["hasMore"] is False
    state = start["state"]
    deliver(server, ALICE, "hello sync")
    wait_count(server, ALICE, 1)
    delivered = _sync(server, f"since={state}")
    created = [c for c in delivered["changes"] if c["type"] == "Email" and c["op"] == "created"]
    assert len(created) == 1
    email_id = created[0]["id"]
    assert all(c["modseq"] > state for c in delivered["changes"])
    assert delivered["state"] == max(c["modseq"] for c in delivered["changes"])
    # The JMAP state is the same number.
    jmap = Jmap(server, ALICE)
    assert jmap.state() == str(delivered["state"])
    # A flag over IMAP is the next change.
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as imap:
        imap.login(ALICE, PASSWORD)
        imap.select("INBOX")
        assert imap.store("1", "+FLAGS", "\\Flagged")[0] == "OK"
    flagged = _sync(server, f"since={delivered['state']}")
    assert {"type": "Email", "id": email_id, "op": "updated"} in [
        {k: c[k] for k in ("type", "id", "op")} for c in flagged["changes"]]
    # A mailbox made over JMAP.
    made = jmap.call("Mailbox/set", create={"m": {"name": "Synced"}})["created"]["m"]["id"]
    boxes = _sync(server, f"since={flagged['state']}")
    assert [(c["type"], c["id"], c["op"]) for c in boxes["changes"]] == [
        ("Mailbox", made, "created")]
    assert _sync(server, f"since={boxes['state']}")["changes"] == []


def test_paging_never_splits_a_modseq(server: Server) -> None:
    jmap = Jmap(server, ALICE)
    made = jmap.call("Mailbox/set", create={"p": {"name": "Pager"},
                                            "a": {"name": "A", "parentId": "#p"},
                                            "b": {"name": "B", "parentId": "#p"}})["created"]
    before = int(jmap.state())
    # One rename: three Mailbox changes under one modseq.
    jmap.call("Mailbox/set", update={made["p"]["id"]: {"name": "Pager2"}})
    page = _sync(server, f"since={before}&limit=1")
    assert len(page["changes"]) == 3 and len({c["modseq"] for c in page["changes"]}) == 1
    everything, since = [], 0
    while True:
        page = _sync(server, f"since={since}&limit=2")
        everything += page["changes"]
        if not page["hasMore"]:
            break
        assert page["state"] == page["changes"][-1]["modseq"]
        since = page["state"]
    assert everything == _sync(server, "since=0&limit=100000")["changes"]


def test_bad_requests_and_auth(server: Server) -> None:
    with _client(server) as c:
        for query in ("since=-1", "since=abc", "since=²", "since=1&limit=0",
                      "since=1&limit=x", "since=99999999999999999999"):
            r = c.get("/sync?" + query)
            assert r.status_code == 400, query
            assert r.headers["content-type"] == "application/problem+json"
        assert c.get("/sync?since=999999999").status_code == 409
    with _client(server, password="wrong") as c:
        assert c.get("/sync?since=0").status_code == 401
    assert httpx.get(f"https://127.0.0.1:{server.http_port}/sync?since=0",
                     verify=False).status_code == 401


def test_isolation(server: Server) -> None:
    alice_ids = {c["id"] for c in _sync(server, "since=0")["changes"]}
    bob = _sync(server, "since=0", user=BOB)
    assert alice_ids and not alice_ids & {c["id"] for c in bob["changes"]}
