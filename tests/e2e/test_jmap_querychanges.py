"""Email/queryChanges (RFC 8620 §5.6) against a real server: mail delivered over SMTP, flags
set and messages expunged over IMAP, and each time the client's cached query result, patched
with queryChanges, equals a fresh Email/query."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.jmapclient import PASSWORD, Jmap, deliver, wait_count
from tests.e2e.server import Server, wait_port

ALICE, BOB = "alice@example.test", "bob@example.test"
NEWEST = [{"property": "receivedAt", "isAscending": False}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("jmap-querychanges")))
    srv.add_user(ALICE)
    srv.add_user(BOB)
    srv.start()
    wait_port(srv.http_port)  # the HTTP listener starts after SMTP
    for n in range(3):
        deliver(srv, ALICE, f"old {n}")
    deliver(srv, BOB, "bob's own")
    wait_count(srv, ALICE, 3)
    wait_count(srv, BOB, 1)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def alice(server: Server) -> Jmap:
    return Jmap(server, ALICE)


def _apply(old: list[str], changes: dict[str, Any]) -> list[str]:
    """What a client does with a queryChanges response (§5.6)."""
    removed = set(changes["removed"])
    result = [i for i in old if i not in removed]
    for added in sorted(changes["added"], key=lambda a: a["index"]):
        result.insert(added["index"], added["id"])
    return result


def _check(j: Jmap, args: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """queryChanges from `before`, checked against a fresh query; returns the changes."""
    changes = j.call("Email/queryChanges", sinceQueryState=before["queryState"],
                     calculateTotal=True, **args)
    now = j.call("Email/query", **args)
    assert changes["oldQueryState"] == before["queryState"]
    assert changes["newQueryState"] == now["queryState"]
    assert _apply(before["ids"], changes) == now["ids"]
    assert changes["total"] == len(now["ids"])
    return changes


def _imap(server: Server, user: str = ALICE) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
    imap.login(user, PASSWORD)
    imap.select("INBOX")
    return imap


def test_after_smtp_deliveries(server: Server, alice: Jmap) -> None:
    args = {"filter": {"inMailbox": alice.boxes()["inbox"]["id"]}, "sort": NEWEST}
    before = alice.call("Email/query", **args)
    assert before["canCalculateChanges"] is True
    count = len(server.emails(ALICE))
    for n in range(3):
        deliver(server, ALICE, f"new {n}")
    wait_count(server, ALICE, count + 3)
    changes = _check(alice, args, before)
    assert sorted(a["index"] for a in changes["added"]) == [0, 1, 2]
    assert set(changes["removed"]) == {a["id"] for a in changes["added"]}
    # Oldest first: the new ones come at the end.
    oldest = {**args, "sort": [{"property": "receivedAt", "isAscending": True}]}
    changes = _check(alice, oldest, {**before, "ids": before["ids"][::-1]})
    assert sorted(a["index"] for a in changes["added"]) == [len(before["ids"]) + n
                                                            for n in range(3)]


def test_after_imap_store_and_expunge(server: Server, alice: Jmap) -> None:
    unread = {"filter": {"notKeyword": "$seen"}, "sort": NEWEST}
    inbox = {"filter": {"inMailbox": alice.boxes()["inbox"]["id"]}, "sort": NEWEST}
    before_unread = alice.call("Email/query", **unread)
    before_inbox = alice.call("Email/query", **inbox)
    with _imap(server) as imap:
        typ, [found] = imap.search(None, "SUBJECT", '"old 1"')
        assert typ == "OK" and found
        assert imap.store(found.decode(), "+FLAGS", "\\Seen")[0] == "OK"
    seen_id = next(i for i in before_unread["ids"]
                   if i not in alice.call("Email/query", **unread)["ids"])
    changes = _check(alice, unread, before_unread)
    assert seen_id in changes["removed"]
    assert seen_id not in [a["id"] for a in changes["added"]]
    # The inbox query still holds it: removed and added back at the same place.
    changes = _check(alice, inbox, before_inbox)
    assert {"id": seen_id, "index": before_inbox["ids"].index(seen_id)} in changes["added"]

    before_inbox = alice.call("Email/query", **inbox)
    with _imap(server) as imap:
        typ, [found] = imap.search(None, "SUBJECT", '"old 2"')
        imap.store(found.decode(), "+FLAGS", "\\Deleted")
        assert imap.expunge()[0] == "OK"
    changes = _check(alice, inbox, before_inbox)
    gone = set(before_inbox["ids"]) - set(alice.call("Email/query", **inbox)["ids"])
    assert len(gone) == 1 and gone <= set(changes["removed"])


def test_errors_and_limits(server: Server, alice: Jmap) -> None:
    args = {"sort": NEWEST}
    before = alice.call("Email/query", **args)
    count = len(server.emails(ALICE))
    deliver(server, ALICE, "one more")
    deliver(server, ALICE, "and another")
    wait_count(server, ALICE, count + 2)
    state = before["queryState"]
    too_many = alice.error("Email/queryChanges", sinceQueryState=state, maxChanges=3, **args)
    assert too_many["type"] == "tooManyChanges"
    enough = alice.call("Email/queryChanges", sinceQueryState=state, maxChanges=4, **args)
    assert len(enough["removed"]) + len(enough["added"]) == 4
    assert alice.call("Email/queryChanges", sinceQueryState=state, upToId=before["ids"][0],
                      **args)["added"] == enough["added"]
    assert alice.error("Email/queryChanges", sinceQueryState=state, collapseThreads=True,
                       **args)["type"] == "cannotCalculateChanges"
    thread_filter = {"filter": {"someInThreadHaveKeyword": "$flagged"}}
    assert alice.call("Email/query", **thread_filter)["canCalculateChanges"] is False
    assert alice.call("Email/query", collapseThreads=True)["canCalculateChanges"] is False
    assert alice.error("Email/queryChanges", sinceQueryState=state,
                       filter={"operator": "OR", "conditions": [
                           {"allInThreadHaveKeyword": "$seen"}]})["type"] \
        == "cannotCalculateChanges"
    assert alice.error("Email/queryChanges", sinceQueryState="999999999"
                       )["type"] == "cannotCalculateChanges"
    for bad in ({"sinceQueryState": None}, {"sinceQueryState": "abc"},
                {"sinceQueryState": state, "maxChanges": 0},
                {"sinceQueryState": state, "upToId": 5},
                {"sinceQueryState": state, "calculateTotal": "yes"}):
        assert alice.error("Email/queryChanges", **bad)["type"] == "invalidArguments", bad
    assert alice.error("Email/queryChanges", sinceQueryState=state,
                       sort=[{"property": "colour"}])["type"] == "unsupportedSort"
    assert alice.error("Email/queryChanges", sinceQueryState=state, sort=[
        {"property": "someInThreadHaveKeyword", "keyword": "$flagged"}]
                       )["type"] == "cannotCalculateChanges"


def test_isolation(server: Server, alice: Jmap) -> None:
    bob = Jmap(server, BOB)
    before = bob.call("Email/query")
    count = len(server.emails(ALICE))
    deliver(server, ALICE, "not for bob")
    wait_count(server, ALICE, count + 1)
    changes = bob.call("Email/queryChanges", sinceQueryState=before["queryState"])
    assert changes["removed"] == [] and changes["added"] == []
    mine = alice.call("Email/query", limit=1)["ids"]
    assert bob.call("Email/get", ids=mine)["notFound"] == mine
