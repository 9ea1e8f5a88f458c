"""Mailbox/set, /query and /queryChanges (RFC 8621 §2.3-2.5) over real HTTP against a real
`mailyard serve`, with IMAP as the second witness: our mailboxes are "/"-separated labels, so a
JMAP rename of a parent must show as a renamed tree in IMAP LIST."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.jmapclient import PASSWORD, Jmap, deliver, wait_count
from tests.e2e.server import Server, wait_port

ALICE, BOB = "alice@example.test", "bob@example.test"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("jmap-mailbox-set")))
    srv.add_user(ALICE)
    srv.add_user(BOB)
    srv.start()
    wait_port(srv.http_port)  # the HTTP listener starts after SMTP
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def alice(server: Server) -> Jmap:
    return Jmap(server, ALICE)


@pytest.fixture(scope="module")
def bob(server: Server) -> Jmap:
    return Jmap(server, BOB)


def _imap_names(server: Server, command: str = "LIST") -> set[str]:
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as imap:
        imap.login(ALICE, PASSWORD)
        typ, lines = getattr(imap, command.lower())('""', "*")
        assert typ == "OK"
    names = set()
    for line in lines:
        assert isinstance(line, bytes)
        names.add(line.rsplit(b' "/" ', 1)[1].strip(b'"').decode())
    return names


def _set(j: Jmap, **args: Any) -> dict[str, Any]:
    return j.call("Mailbox/set", **args)


def test_create_tree_with_creation_ids_and_later_calls(server: Server, alice: Jmap) -> None:
    responses = alice.calls(
        ("Mailbox/set", {"create": {
            # The child comes first in the map: it must wait for its parent.
            "kid": {"name": "2024", "parentId": "#top"},
            "top": {"name": "Projects", "isSubscribed": False}}}),
        ("Mailbox/set", {"create": {"grand": {"name": "Q1", "parentId": "#kid"}}}),
        ("Mailbox/get", {"ids": ["#top", "#kid", "#grand"]}))
    [[_, first, _], [_, second, _], [_, got, _]] = responses
    assert first["notCreated"] is None and set(first["created"]) == {"kid", "top"}
    top, kid = first["created"]["top"]["id"], first["created"]["kid"]["id"]
    assert first["created"]["top"]["totalEmails"] == 0
    assert "name" not in first["created"]["top"]  # only what the client did not send
    grand = second["created"]["grand"]["id"]
    by_id = {m["id"]: m for m in got["list"]}
    assert by_id[top]["parentId"] is None and by_id[top]["isSubscribed"] is False
    assert (by_id[kid]["name"], by_id[kid]["parentId"]) == ("2024", top)
    assert (by_id[grand]["name"], by_id[grand]["parentId"]) == ("Q1", kid)
    assert {"Projects", "Projects/2024", "Projects/2024/Q1"} <= _imap_names(server)
    assert "Projects" not in _imap_names(server, "LSUB")


def test_create_refusals(alice: Jmap) -> None:
    _set(alice, create={"a": {"name": "Receipts"}})
    result = _set(alice, create={
        "slash": {"name": "a/b"},
        "dup": {"name": "Receipts"},
        "inbox": {"name": "inbox"},
        "unknown": {"name": "X1", "colour": "red"},
        "serverset": {"name": "X2", "totalEmails": 5},
        "role": {"name": "X3", "role": "inbox"},
        "badrole": {"name": "X4", "role": "no-such-role"},
        "noparent": {"name": "X5", "parentId": "m-nope"},
        "unknownref": {"name": "X6", "parentId": "#nope"},
        "noname": {"parentId": None},
        "notobject": ["name"],
    })
    assert result["created"] is None
    errors = result["notCreated"]
    assert set(errors) == {"slash", "dup", "inbox", "unknown", "serverset", "role", "badrole",
                           "noparent", "unknownref", "noname", "notobject"}
    assert {e["type"] for e in errors.values()} == {"invalidProperties"}
    assert errors["slash"]["properties"] == ["name"]
    assert errors["dup"]["properties"] == ["name"]
    assert errors["unknown"]["properties"] == ["colour"]
    assert errors["serverset"]["properties"] == ["totalEmails"]
    assert errors["role"]["properties"] == ["role"]
    assert errors["noparent"]["properties"] == ["parentId"]


def test_create_with_a_free_role(alice: Jmap) -> None:
    taken = {b["role"] for b in alice.call("Mailbox/get", ids=None)["list"]}
    free = next(r for r in ("archive", "drafts", "sent", "junk", "trash") if r not in taken) \
        if not {"archive", "drafts", "sent", "junk", "trash"} <= taken else None
    if free is None:  # every role exists: a second one is refused
        errors = _set(alice, create={"r": {"name": "Second", "role": "archive"}})["notCreated"]
        assert errors["r"]["properties"] == ["role"]
        return
    made = _set(alice, create={"r": {"name": "Role box", "role": free}})["created"]["r"]
    assert alice.boxes()[free]["id"] == made["id"]
    again = _set(alice, create={"r": {"name": "Role box 2", "role": free}})["notCreated"]
    assert again["r"]["properties"] == ["role"]


def test_rename_and_move_take_the_children(server: Server, alice: Jmap) -> None:
    created = _set(alice, create={"p": {"name": "Clients"},
                                  "c": {"name": "Acme", "parentId": "#p"},
                                  "other": {"name": "Archive2"}})["created"]
    parent, child, other = (created[k]["id"] for k in ("p", "c", "other"))
    result = _set(alice, update={parent: {"name": "Customers"}})
    assert result["updated"] == {parent: None}
    assert {"Customers", "Customers/Acme"} <= _imap_names(server)
    assert "Clients/Acme" not in _imap_names(server)
    # Move the whole subtree below another mailbox.
    _set(alice, update={parent: {"parentId": other}})
    assert "Archive2/Customers/Acme" in _imap_names(server)
    got = {m["id"]: m for m in alice.call("Mailbox/get", ids=[parent, child])["list"]}
    assert got[parent]["parentId"] == other and got[child]["parentId"] == parent
    # Below itself or its own child: refused; nothing moves.
    refused = _set(alice, update={parent: {"parentId": child}})["notUpdated"][parent]
    assert (refused["type"], refused["properties"]) == ("invalidProperties", ["parentId"])
    # Back to the top level, with a name that clashes: refused.
    _set(alice, create={"clash": {"name": "Customers"}})
    refused = _set(alice, update={parent: {"parentId": None}})["notUpdated"][parent]
    assert refused["properties"] == ["name"]


def test_update_subscription_and_fixed_properties(server: Server, alice: Jmap) -> None:
    box = _set(alice, create={"s": {"name": "Newsletters"}})["created"]["s"]["id"]
    assert "Newsletters" in _imap_names(server, "LSUB")
    _set(alice, update={box: {"isSubscribed": False}})
    assert "Newsletters" not in _imap_names(server, "LSUB")
    assert alice.call("Mailbox/get", ids=[box])["list"][0]["isSubscribed"] is False
    result = _set(alice, update={box: {"role": "trash", "totalEmails": 7, "sortOrder": 10}})
    assert result["notUpdated"][box]["properties"] == ["totalEmails", "role"]
    inbox = alice.boxes()["inbox"]["id"]
    renamed = _set(alice, update={inbox: {"name": "Eingang"}})["notUpdated"][inbox]
    assert renamed["type"] == "forbidden"
    assert _set(alice, update={inbox: {"name": alice.boxes()["inbox"]["name"]}})["updated"]


def test_destroy_rules(server: Server, alice: Jmap) -> None:
    created = _set(alice, create={"t": {"name": "Trips"},
                                  "k": {"name": "Kyoto", "parentId": "#t"},
                                  "e": {"name": "Empty"}})["created"]
    trips, kyoto, empty = (created[k]["id"] for k in ("t", "k", "e"))
    boxes = alice.boxes()
    result = _set(alice, destroy=[trips, boxes["inbox"]["id"], boxes["all"]["id"], "m-nope"])
    errors = result["notDestroyed"]
    assert errors[trips]["type"] == "mailboxHasChild"
    assert errors[boxes["inbox"]["id"]]["type"] == "forbidden"
    assert errors[boxes["all"]["id"]]["type"] == "forbidden"
    assert errors["m-nope"]["type"] == "notFound"
    # Parent and child in one call: the child goes first.
    assert sorted(_set(alice, destroy=[trips, kyoto, empty])["destroyed"]) == sorted(
        [trips, kyoto, empty])
    assert not {"Trips", "Trips/Kyoto", "Empty"} & _imap_names(server)


def test_destroy_with_emails(server: Server, alice: Jmap) -> None:
    before = len(server.emails(ALICE))
    deliver(server, ALICE, "only in the label")
    deliver(server, ALICE, "also in the inbox")
    wait_count(server, ALICE, before + 2)
    box = _set(alice, create={"l": {"name": "Doomed"}})["created"]["l"]["id"]
    inbox = alice.boxes()["inbox"]["id"]
    ids = alice.call("Email/query", filter={"inMailbox": inbox}, sort=[
        {"property": "receivedAt", "isAscending": False}], limit=2)["ids"]
    emails = {e["subject"]: e["id"] for e in alice.call(
        "Email/get", ids=ids, properties=["subject"])["list"]}
    only, both = emails["only in the label"], emails["also in the inbox"]
    moved = alice.call("Email/set", update={only: {"mailboxIds": {box: True}},
                                            both: {f"mailboxIds/{box}": True}})
    assert set(moved["updated"]) == {only, both}
    assert _set(alice, destroy=[box])["notDestroyed"][box]["type"] == "mailboxHasEmail"
    result = _set(alice, destroy=[box], onDestroyRemoveEmails=True)
    assert result["destroyed"] == [box]
    got = alice.call("Email/get", ids=[only, both], properties=["mailboxIds"])
    assert got["notFound"] == [only]
    [kept] = got["list"]
    assert box not in kept["mailboxIds"] and inbox in kept["mailboxIds"]


def test_if_in_state_and_changes(alice: Jmap) -> None:
    state = alice.state()
    stale = alice.error("Mailbox/set", ifInState="1", create={"x": {"name": "Never"}})
    assert stale["type"] == "stateMismatch"
    result = _set(alice, ifInState=state, create={"x": {"name": "Stateful"}})
    new_id = result["created"]["x"]["id"]
    assert result["oldState"] == state and int(result["newState"]) > int(state)
    _set(alice, update={new_id: {"name": "Stateful2"}})
    changes = alice.call("Mailbox/changes", sinceState=state)
    assert new_id in changes["created"]
    _set(alice, destroy=[new_id])
    changes = alice.call("Mailbox/changes", sinceState=state)
    assert new_id not in changes["created"] + changes["updated"] + changes["destroyed"]


def test_bad_arguments(alice: Jmap) -> None:
    args: dict[str, Any]
    for args in ({"create": []}, {"update": "x"}, {"destroy": "x"}, {"destroy": [1]},
                 {"onDestroyRemoveEmails": "yes"}, {"ifInState": 5}):
        assert alice.error("Mailbox/set", **args)["type"] == "invalidArguments", args
    assert alice.error("Mailbox/get", properties=["header:Subject:asText"]
                       )["type"] == "invalidArguments"


def test_isolation(alice: Jmap, bob: Jmap) -> None:
    bobs = _set(bob, create={"b": {"name": "Bob private"}})["created"]["b"]["id"]
    assert alice.call("Mailbox/get", ids=[bobs])["notFound"] == [bobs]
    result = _set(alice, update={bobs: {"name": "Mine"}}, destroy=[bobs],
                  create={"c": {"name": "Under bob", "parentId": bobs}})
    assert result["notUpdated"][bobs]["type"] == "notFound"
    assert result["notDestroyed"][bobs]["type"] == "notFound"
    assert result["notCreated"]["c"]["properties"] == ["parentId"]
    assert bob.call("Mailbox/get", ids=[bobs])["list"][0]["name"] == "Bob private"
    assert bobs not in alice.call("Mailbox/query")["ids"]
    foreign = dict(accountId=bob.account_id)
    assert alice.error("Mailbox/set", **foreign)["type"] == "accountNotFound"


# --------------------------------------------------------------------------- query


def test_query_filters_and_sorts(bob: Jmap) -> None:
    made = _set(bob, create={"z": {"name": "zeta"}, "a": {"name": "Alpha"},
                             "a1": {"name": "beta", "parentId": "#a"},
                             "a2": {"name": "Aardvark", "parentId": "#a", "isSubscribed": False},
                             })["created"]
    zeta, alpha, beta, aard = (made[k]["id"] for k in ("z", "a", "a1", "a2"))
    boxes = bob.boxes()

    def q(**args: Any) -> list[str]:
        return list(bob.call("Mailbox/query", **args)["ids"])

    assert q(filter={"parentId": alpha}, sort=[{"property": "name"}]) == [aard, beta]
    assert q(filter={"parentId": alpha}, sort=[{"property": "name", "isAscending": False}]
             ) == [beta, aard]
    assert q(filter={"name": "ALPH"}) == [alpha]
    assert q(filter={"role": "inbox"}) == [boxes["inbox"]["id"]]
    with_role = set(q(filter={"hasAnyRole": True}))
    assert with_role == {b["id"] for b in boxes.values() if b["role"]}
    assert zeta in q(filter={"hasAnyRole": False}) and zeta not in with_role
    assert aard in q(filter={"isSubscribed": False})
    assert q(filter={"operator": "AND", "conditions": [
        {"parentId": alpha}, {"operator": "NOT", "conditions": [{"isSubscribed": False}]}]}
             ) == [beta]
    # sortOrder first (the server's mailboxes by role; a client's default to 0), then name.
    ordered = q(sort=[{"property": "sortOrder"}, {"property": "name"}])
    every = bob.call("Mailbox/get", ids=None)["list"]
    assert ordered == [m["id"] for m in sorted(every, key=lambda m: (m["sortOrder"],
                                                                     m["name"].casefold()))]
    assert ordered.index(alpha) < ordered.index(zeta)
    assert ordered.index(boxes["inbox"]["id"]) < ordered.index(boxes["trash"]["id"])
    # As a tree: each parent right before its children.
    tree = q(filter={"hasAnyRole": False}, sort=[{"property": "name"}], sortAsTree=True)
    assert tree[tree.index(alpha) + 1 : tree.index(alpha) + 3] == [aard, beta]
    # filterAsTree: a child whose parent does not match is left out.
    mine = {aard, alpha, beta, zeta}
    assert [i for i in q(filter={"name": "a"}, sort=[{"property": "name"}], filterAsTree=True)
            if i in mine] == [aard, alpha, beta, zeta]
    assert alpha not in q(filter={"name": "eta"}, filterAsTree=True)
    assert beta not in q(filter={"name": "eta"}, filterAsTree=True)
    assert set(q(filter={"name": "eta"})) == {beta, zeta}
    # Paging.
    page = bob.call("Mailbox/query", sort=[{"property": "name"}], position=1, limit=2,
                    calculateTotal=True)
    every = q(sort=[{"property": "name"}])
    assert page["ids"] == every[1:3] and page["total"] == len(every)
    assert page["canCalculateChanges"] is True
    anchored = bob.call("Mailbox/query", sort=[{"property": "name"}], anchor=beta,
                        anchorOffset=-1, limit=2)
    assert anchored["ids"] == every[every.index(beta) - 1 : every.index(beta) + 1]
    assert bob.error("Mailbox/query", anchor="m-nope")["type"] == "anchorNotFound"
    assert bob.error("Mailbox/query", filter={"color": "red"})["type"] == "unsupportedFilter"
    assert bob.error("Mailbox/query", sort=[{"property": "totalEmails"}]
                     )["type"] == "unsupportedSort"
    assert bob.error("Mailbox/query", filter={"isSubscribed": "yes"}
                     )["type"] == "invalidArguments"


def test_query_changes(bob: Jmap) -> None:
    args: dict[str, Any] = {"filter": {"hasAnyRole": False}, "sort": [{"property": "name"}]}
    first = bob.call("Mailbox/query", **args)
    made = _set(bob, create={"n": {"name": "mmm new"}})["created"]["n"]["id"]
    gone = first["ids"][0]
    _set(bob, destroy=[gone], onDestroyRemoveEmails=True)
    changes = bob.call("Mailbox/queryChanges", sinceQueryState=first["queryState"],
                       calculateTotal=True, **args)
    now = bob.call("Mailbox/query", **args)
    assert changes["newQueryState"] == now["queryState"]
    assert set(changes["removed"]) >= {made, gone}
    # Applying the changes to the old result gives the new one (RFC 8620 §5.6).
    result = [i for i in first["ids"] if i not in changes["removed"]]
    for added in sorted(changes["added"], key=lambda a: a["index"]):
        result.insert(added["index"], added["id"])
    assert result == now["ids"] and changes["total"] == len(now["ids"])
    same = bob.call("Mailbox/queryChanges", sinceQueryState=now["queryState"], **args)
    assert same["removed"] == [] and same["added"] == []
    assert bob.error("Mailbox/queryChanges", sinceQueryState=first["queryState"],
                     maxChanges=1, **args)["type"] == "tooManyChanges"
    assert bob.error("Mailbox/queryChanges", sinceQueryState="99999999",
                     **args)["type"] == "cannotCalculateChanges"
    assert bob.error("Mailbox/queryChanges", sinceQueryState="x",
                     **args)["type"] == "invalidArguments"


def test_orphan_after_imap_delete_of_its_parent(server: Server, alice: Jmap) -> None:
    """IMAP may delete a parent and leave its child: the child then shows its whole path as
    its name at the top level, and queryChanges reports it though the log has no entry for it."""
    args: dict[str, Any] = {"filter": {"parentId": None}, "sort": [{"property": "name"}]}
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as imap:
        imap.login(ALICE, PASSWORD)
        assert imap.create("Orph/Child")[0] == "OK"
        before = alice.call("Mailbox/query", **args)
        assert imap.delete("Orph")[0] == "OK"
    child = next(m for m in alice.call("Mailbox/get", ids=None)["list"]
                 if m["name"] == "Orph/Child")
    assert child["parentId"] is None
    changes = alice.call("Mailbox/queryChanges", sinceQueryState=before["queryState"], **args)
    now = alice.call("Mailbox/query", **args)
    result = [i for i in before["ids"] if i not in changes["removed"]]
    for added in sorted(changes["added"], key=lambda a: a["index"]):
        result.insert(added["index"], added["id"])
    assert result == now["ids"] and child["id"] in now["ids"]
    # Sending the shown name back is no rename; a real rename gives a proper leaf name.
    assert _set(alice, update={child["id"]: {"name": "Orph/Child"}})["updated"]
    _set(alice, update={child["id"]: {"name": "Adopted"}})
    assert "Adopted" in _imap_names(server)


def test_subscription_change_is_pushed(server: Server, alice: Jmap) -> None:
    box = _set(alice, create={"p": {"name": "Pushed"}})["created"]["p"]["id"]
    url = "/jmap/eventsource?types=Mailbox&closeafter=state&ping=0"
    with alice.client.stream("GET", url, timeout=10) as stream:
        lines = stream.iter_lines()
        _set(alice, update={box: {"isSubscribed": False}})
        data = next(line for line in lines if line.startswith("data:"))
    assert '"Mailbox"' in data and alice.state() in data
