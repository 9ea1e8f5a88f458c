"""RFC 8621 §2 points a conformance run found: sortOrder is the client's to set (default 0),
a sibling with the same name is refused with a description naming the clash, and a filter
nested past the limit says so. Over real HTTP against a real `mailyard serve`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.jmapclient import Jmap
from tests.e2e.server import Server, wait_port

ALICE = "alice@example.test"


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jmap]:
    srv = Server(Path(tmp_path_factory.mktemp("jmap-rfc-mailbox")))
    srv.add_user(ALICE)
    srv.start()
    wait_port(srv.http_port)
    yield Jmap(srv, ALICE)
    srv.stop()


def _set(j: Jmap, **args: Any) -> dict[str, Any]:
    return j.call("Mailbox/set", **args)


def test_sort_order_is_settable_on_create_and_update(alice: Jmap) -> None:
    created = _set(alice, create={"five": {"name": "Five", "sortOrder": 5},
                                  "plain": {"name": "Plain"}})
    assert created["notCreated"] is None
    five, plain = created["created"]["five"], created["created"]["plain"]
    assert "sortOrder" not in five  # the client gave it: not echoed (RFC 8620 §5.3)
    assert plain["sortOrder"] == 0  # §2 "(default: 0)", returned as server-set
    got = {m["id"]: m for m in alice.call("Mailbox/get", ids=[five["id"], plain["id"]])["list"]}
    assert (got[five["id"]]["sortOrder"], got[plain["id"]]["sortOrder"]) == (5, 0)

    state = alice.state()
    inbox = alice.boxes()["inbox"]["id"]
    updated = _set(alice, update={five["id"]: {"sortOrder": 99}, inbox: {"sortOrder": 7}})
    assert updated["notUpdated"] is None
    assert updated["updated"] == {five["id"]: None, inbox: None}
    got = {m["id"]: m for m in alice.call("Mailbox/get", ids=[five["id"], inbox])["list"]}
    assert (got[five["id"]]["sortOrder"], got[inbox]["sortOrder"]) == (99, 7)
    # The change is a Mailbox update in /changes: not a creation of a known mailbox.
    changes = alice.call("Mailbox/changes", sinceState=state)
    assert set(changes["updated"]) == {five["id"], inbox} and changes["created"] == []

    # Mailbox/query sorts on the stored values.
    order = alice.call("Mailbox/query", sort=[{"property": "sortOrder"}],
                       filter={"name": "i"})["ids"]
    assert order.index(plain["id"]) < order.index(inbox) < order.index(five["id"])


def test_sort_order_must_be_an_unsigned_int(alice: Jmap) -> None:
    box = _set(alice, create={"b": {"name": "Bounds"}})["created"]["b"]["id"]
    bad = _set(alice, create={"neg": {"name": "Neg", "sortOrder": -1},
                              "big": {"name": "Big", "sortOrder": 2**31},
                              "str": {"name": "Str", "sortOrder": "1"},
                              "bool": {"name": "Bool", "sortOrder": True}})
    assert bad["created"] is None
    assert {k: (e["type"], e["properties"]) for k, e in bad["notCreated"].items()} == dict.fromkeys(
        ("neg", "big", "str", "bool"), ("invalidProperties", ["sortOrder"]))
    refused = _set(alice, update={box: {"sortOrder": -3}})["notUpdated"][box]
    assert (refused["type"], refused["properties"]) == ("invalidProperties", ["sortOrder"])
    assert _set(alice, update={box: {"sortOrder": 2**31 - 1}})["updated"] == {box: None}


def test_destroyed_mailbox_takes_its_sort_order(alice: Jmap) -> None:
    box = _set(alice, create={"g": {"name": "Gone", "sortOrder": 3}})["created"]["g"]["id"]
    assert _set(alice, destroy=[box])["destroyed"] == [box]
    again = _set(alice, create={"g": {"name": "Gone"}})["created"]["g"]
    assert again["id"] != box and again["sortOrder"] == 0


def test_sibling_clash_description_names_it(alice: Jmap) -> None:
    made = _set(alice, create={"p": {"name": "Clients"},
                               "c": {"name": "Acme", "parentId": "#p"}})["created"]
    parent = made["p"]["id"]
    clash = _set(alice, create={"again": {"name": "Acme", "parentId": parent},
                                "top": {"name": "Clients"},
                                "inbox": {"name": "inBox"}})["notCreated"]
    again, top, inbox = clash["again"], clash["top"], clash["inbox"]
    assert (again["type"], again["properties"]) == ("invalidProperties", ["name"])
    assert "'Acme' already exists in 'Clients'" in again["description"]
    assert made["c"]["id"] in again["description"]
    assert "'Clients' already exists at the top level" in top["description"]
    assert top["properties"] == ["name"]
    assert "'inBox' is the name of the inbox" in inbox["description"]
    assert inbox["properties"] == ["name"]
    # A rename onto a sibling's name: the same answer.
    other = _set(alice, create={"o": {"name": "Other", "parentId": parent}})["created"]["o"]
    renamed = _set(alice, update={other["id"]: {"name": "Acme"}})["notUpdated"][other["id"]]
    assert (renamed["type"], renamed["properties"]) == ("invalidProperties", ["name"])
    assert "'Acme' already exists in 'Clients'" in renamed["description"]


def _nested(levels: int, leaf: str = "name") -> dict[str, Any]:
    node: dict[str, Any] = {leaf: "x"}
    for _ in range(levels):
        node = {"operator": "AND", "conditions": [node]}
    return node


def test_filter_nesting_past_the_limit_says_so(alice: Jmap) -> None:
    assert "ids" in alice.call("Mailbox/query", filter=_nested(16))
    error = alice.error("Mailbox/query", filter=_nested(40))
    assert error["type"] == "invalidArguments"
    assert "deeper than 16 levels" in error["description"]
    email = alice.error("Email/query", filter=_nested(200, "text"))
    assert email["type"] == "invalidArguments"
    assert "deeper than 64 levels" in email["description"]
    assert "ids" in alice.call("Email/query", filter={"operator": "NOT", "conditions": [
        _nested(60, "text")]})
