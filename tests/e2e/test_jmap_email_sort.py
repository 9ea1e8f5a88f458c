"""Email/query sorts (RFC 8621 §4.4.2) on both metadata stores: every property
emailQuerySortOptions advertises, collations, multi-property sorts, collapseThreads, anchors
and queryChanges over a sorted query, each checked on exact id orders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.jmapclient import Jmap
from tests.e2e.server import Server, wait_port
from tests.e2e.test_jmap_blobs import upload

ALICE = "alice@example.test"

# (from, to, subject, Date or None, body length, keywords, replies to, receivedAt day)
MESSAGES = {
    "m1": ("Zed <z@x.test>", "b@x.test", "Re: banana", "Wed, 03 Jan 2024 10:00:00 +0000",
           700, ["$flagged"], None, 1),
    "m2": ("adam@x.test", "Carl <c@x.test>", "apple", "Mon, 01 Jan 2024 10:00:00 +0000",
           200, [], None, 2),
    "m3": ("=?utf-8?q?=C3=89mile?= <e@x.test>", "a@x.test", "[list] Cherry", None,
           400, [], "m2", 3),
    "m4": ("bob@x.test", "d@x.test", "Fwd: apple pie", "Tue, 02 Jan 2024 10:00:00 +0000",
           10, ["$flagged", "$seen"], "m1", 4),
    "m5": ("carol@x.test", "e@x.test", "date", "Thu, 04 Jan 2024 10:00:00 +0000",
           1000, ["$seen"], None, 5),
}


def _raw(key: str) -> bytes:
    sender, to, subject, date, length, _, reply_to, _ = MESSAGES[key]
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}",
             f"Message-ID: <{key}@sort.test>"]
    if date:
        lines.append(f"Date: {date}")
    if reply_to:
        lines += [f"In-Reply-To: <{reply_to}@sort.test>", f"References: <{reply_to}@sort.test>"]
    return ("\r\n".join(lines) + "\r\n\r\n" + "x" * length + "\r\n").encode()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Jmap, dict[str, str], str]]:
    """A server on the engine, ALICE with the five messages in a mailbox of their own:
    (client, message key -> email id, mailbox id)."""
    metadata = "" if request.param == "sqlite" else "postgres"
    srv = Server(Path(tmp_path_factory.mktemp(f"jmap-sort-{request.param}")),
                 metadata=metadata)
    srv.add_user(ALICE)
    srv.start()
    wait_port(srv.http_port)
    j = Jmap(srv, ALICE)
    box = j.call("Mailbox/set", create={"b": {"name": "Sorting"}})["created"]["b"]["id"]
    ids: dict[str, str] = {}
    for key, spec in MESSAGES.items():  # one by one: a reply finds its parent's thread
        blob = upload(j, _raw(key), "message/rfc822")["blobId"]
        created = j.call("Email/import", emails={key: {
            "blobId": blob, "mailboxIds": {box: True},
            "keywords": dict.fromkeys(spec[5], True),
            "receivedAt": f"2024-02-0{spec[7]}T00:00:00Z"}})["created"]
        ids[key] = created[key]["id"]
    yield j, ids, box
    srv.stop()


def _query(world: tuple[Jmap, dict[str, str], str], *sort: dict[str, Any],
           **args: Any) -> list[str]:
    j, ids, box = world
    names = {v: k for k, v in ids.items()}
    got = j.call("Email/query", filter={"inMailbox": box}, sort=list(sort), **args)
    return [names[i] for i in got["ids"]]


def test_the_setup_holds(world: tuple[Jmap, dict[str, str], str]) -> None:
    j, ids, _ = world
    got = {e["id"]: e for e in j.call("Email/get", ids=list(ids.values()), properties=[
        "threadId", "sentAt", "from"])["list"]}
    thread = {k: got[v]["threadId"] for k, v in ids.items()}
    assert thread["m1"] == thread["m4"] and thread["m2"] == thread["m3"]
    assert len({thread["m1"], thread["m2"], thread["m5"]}) == 3
    assert got[ids["m3"]]["sentAt"] is None
    assert got[ids["m3"]]["from"] == [{"name": "\u00c9mile", "email": "e@x.test"}]


def test_single_property_sorts(world: tuple[Jmap, dict[str, str], str]) -> None:
    q = lambda prop, **c: _query(world, {"property": prop, **c})  # noqa: E731
    assert q("receivedAt") == ["m1", "m2", "m3", "m4", "m5"]
    assert q("receivedAt", isAscending=False) == ["m5", "m4", "m3", "m2", "m1"]
    assert q("size") == ["m4", "m2", "m3", "m1", "m5"]
    assert q("size", isAscending=False) == ["m5", "m1", "m3", "m2", "m4"]
    # from/to: the first address's name, else its email; i;unicode-casemap by default.
    assert q("from") == ["m2", "m4", "m5", "m3", "m1"]
    assert q("from", collation="i;octet") == ["m1", "m2", "m4", "m5", "m3"]
    assert q("from", collation="i;ascii-casemap") == ["m2", "m4", "m5", "m1", "m3"]
    assert q("to") == ["m3", "m1", "m2", "m4", "m5"]
    # subject: the base subject (Re:, Fwd:, [list] taken off).
    assert q("subject") == ["m2", "m4", "m1", "m3", "m5"]
    assert q("subject", isAscending=False) == ["m5", "m3", "m1", "m4", "m2"]
    # sentAt: no Date header sorts first.
    assert q("sentAt") == ["m3", "m2", "m4", "m1", "m5"]
    # Keyword sorts: false before true; ties newest first.
    assert q("hasKeyword", keyword="$flagged") == ["m5", "m3", "m2", "m4", "m1"]
    assert q("hasKeyword", keyword="$Flagged", isAscending=False) == [
        "m4", "m1", "m5", "m3", "m2"]
    assert q("someInThreadHaveKeyword", keyword="$seen", isAscending=False) == [
        "m5", "m4", "m1", "m3", "m2"]
    assert q("allInThreadHaveKeyword", keyword="$seen", isAscending=False) == [
        "m5", "m4", "m3", "m2", "m1"]
    assert q("allInThreadHaveKeyword", keyword="$flagged", isAscending=False) == [
        "m4", "m1", "m5", "m3", "m2"]


def test_multi_property_sort_and_paging(world: tuple[Jmap, dict[str, str], str]) -> None:
    j, ids, box = world
    by_seen_then_subject = ({"property": "hasKeyword", "keyword": "$seen",
                             "isAscending": False}, {"property": "subject"})
    assert _query(world, *by_seen_then_subject) == ["m4", "m5", "m2", "m1", "m3"]
    assert _query(world, *by_seen_then_subject, position=1, limit=2) == ["m5", "m2"]
    assert _query(world, *by_seen_then_subject, position=-2) == ["m1", "m3"]
    assert _query(world, *by_seen_then_subject, anchor=ids["m2"], anchorOffset=-1,
                  limit=2) == ["m5", "m2"]
    answer = j.call("Email/query", filter={"inMailbox": box}, sort=[{"property": "subject"}],
                    calculateTotal=True, limit=2)
    assert answer["total"] == 5 and answer["position"] == 0
    assert answer["canCalculateChanges"] is True


def test_collapse_threads_keeps_each_threads_first_in_sort_order(
        world: tuple[Jmap, dict[str, str], str]) -> None:
    assert _query(world, {"property": "subject"}, collapseThreads=True) == ["m2", "m4", "m5"]
    assert _query(world, {"property": "size", "isAscending": False},
                  collapseThreads=True) == ["m5", "m1", "m3"]


def test_query_changes_follow_a_sorted_query(world: tuple[Jmap, dict[str, str], str]
                                             ) -> None:
    j, ids, box = world
    sort = [{"property": "subject"}]
    first = j.call("Email/query", filter={"inMailbox": box}, sort=sort)
    # A change of subject order: m5 ("date") moves nowhere, but a flag on m3 makes it
    # "changed", so queryChanges removes and re-adds it at its (same) index.
    assert j.call("Email/set", update={ids["m3"]: {"keywords/$flagged": True}})["updated"]
    changes = j.call("Email/queryChanges", filter={"inMailbox": box}, sort=sort,
                     sinceQueryState=first["queryState"])
    assert changes["removed"] == [ids["m3"]]
    assert changes["added"] == [{"id": ids["m3"], "index": 3}]
    j.call("Email/set", update={ids["m3"]: {"keywords/$flagged": None}})
    thread_sorted = j.call("Email/query", filter={"inMailbox": box}, sort=[
        {"property": "someInThreadHaveKeyword", "keyword": "$seen"}])
    assert thread_sorted["canCalculateChanges"] is False
