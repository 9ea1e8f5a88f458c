"""Mailbox totalThreads/unreadThreads (RFC 8621 §2) agree with the threaded Email/query a
client pages with (§4.4 collapseThreads, calculateTotal) on both metadata stores: the webmail
sizes its virtual list from totalThreads (issue 22), and before the fix totalThreads repeated
totalEmails, so a mailbox holding replies showed a tail of empty rows.

The mailbox is built over real JMAP HTTP with threads spread across mailboxes: replies in
Trash and Spam, a thread whose first email is in another mailbox, an email in two mailboxes,
destroyed emails, and a late parent that joins two replies."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.jmapclient import PASSWORD, Jmap
from tests.e2e.server import Server, wait_port

ALICE = "alice@example.test"

# key -> (mailboxes, parent key or None, seen); a reply joins its parent's thread.
MESSAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "a1": (("inbox",), (), True),
    "a2": (("inbox",), ("a1",), False),          # two in the inbox, one thread
    "a3": (("inbox",), ("a1",), True),
    "b1": (("inbox",), (), True),
    "b2": (("trash",), ("b1",), False),          # a reply in the Trash
    "c1": (("Other",), (), True),
    "c2": (("inbox",), ("c1",), True),           # first email elsewhere
    "d1": (("inbox",), (), True),
    "d2": (("inbox", "Other"), ("d1",), False),  # in two mailboxes
    "e1": (("inbox",), (), True),
    "e2": (("inbox",), ("e1",), True),           # e1 destroyed below
    "f1": (("inbox",), (), False),               # destroyed below: its thread goes
    "g1": (("junk",), (), True),
    "g2": (("inbox",), ("g1",), True),           # its first in Spam
    "h2": (("inbox",), ("h1",), True),           # replies before their parent
    "h3": (("inbox",), ("h1", "h2"), True),
    "h1": (("inbox",), (), True),
}
DESTROYED = ("e1", "f1")


def _upload(j: Jmap, raw: bytes) -> str:
    r = j.client.post(f"/jmap/upload/{j.account_id}/", content=raw,
                      headers={"Content-Type": "message/rfc822"})
    assert r.status_code == 201, r.text
    return str(r.json()["blobId"])


def _raw(key: str, parents: tuple[str, ...]) -> bytes:
    lines = ["From: bob@x.test", f"To: {ALICE}", f"Subject: thread {key[0]}",
             f"Message-ID: <{key}@threads.test>"]
    if parents:
        refs = " ".join(f"<{p}@threads.test>" for p in parents)
        lines += [f"In-Reply-To: <{parents[-1]}@threads.test>", f"References: {refs}"]
    return ("\r\n".join(lines) + f"\r\n\r\nbody {key}\r\n").encode()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Server, Jmap, dict[str, str]]]:
    """A server on the engine, ALICE with MESSAGES imported and DESTROYED destroyed:
    (server, client, message key -> email id)."""
    metadata = "" if request.param == "sqlite" else "postgres"
    srv = Server(Path(tmp_path_factory.mktemp(f"jmap-threads-{request.param}")),
                 metadata=metadata)
    srv.add_user(ALICE)
    srv.start()
    wait_port(srv.http_port)
    j = Jmap(srv, ALICE)
    j.call("Mailbox/set", create={"o": {"name": "Other"}})
    boxes = {k: b["id"] for k, b in j.boxes().items()}
    ids: dict[str, str] = {}
    for key, (where, parents, seen) in MESSAGES.items():  # one by one, in thread order
        blob = _upload(j, _raw(key, parents))
        created = j.call("Email/import", emails={key: {
            "blobId": blob, "mailboxIds": {boxes[b]: True for b in where},
            "keywords": {"$seen": True} if seen else {}}})["created"]
        ids[key] = created[key]["id"]
    destroyed = j.call("Email/set", destroy=[ids[k] for k in DESTROYED])["destroyed"]
    assert sorted(destroyed) == sorted(ids[k] for k in DESTROYED)
    yield srv, j, ids
    srv.stop()


def _collapsed(j: Jmap, condition: dict[str, Any], **args: Any) -> dict[str, Any]:
    return j.call("Email/query", filter=condition, collapseThreads=True,
                  calculateTotal=True, **args)


def test_the_threads_are_as_built(world: tuple[Server, Jmap, dict[str, str]]) -> None:
    _, j, ids = world
    live = [k for k in MESSAGES if k not in DESTROYED]
    got = j.call("Email/get", ids=[ids[k] for k in live], properties=["threadId"])["list"]
    thread = {e["id"]: e["threadId"] for e in got}
    by_letter: dict[str, set[str]] = {}
    for k in live:
        by_letter.setdefault(k[0], set()).add(thread[ids[k]])
    # One thread per letter, distinct across letters (h joined by its late parent or not:
    # the counts below hold either way, which is what they are about).
    assert all(len(t) == 1 for letter, t in by_letter.items() if letter != "h")
    firsts = [next(iter(t)) for letter, t in by_letter.items() if letter != "h"]
    assert len(set(firsts)) == len(firsts)


def test_total_threads_equals_the_collapsed_query_in_every_mailbox(
        world: tuple[Server, Jmap, dict[str, str]]) -> None:
    _, j, _ = world
    boxes = j.call("Mailbox/get", ids=None)["list"]
    for box in boxes:
        query = _collapsed(j, {"inMailbox": box["id"]})
        assert box["totalThreads"] == query["total"] == len(query["ids"]), box["name"]
        assert box["totalThreads"] <= box["totalEmails"], box["name"]
        unread = _collapsed(j, {"inMailbox": box["id"], "notKeyword": "$seen"})
        assert box["unreadThreads"] == unread["total"] == len(unread["ids"]), box["name"]
        # A client that pages from totalThreads finds no row past it, and one row before.
        if box["totalThreads"]:
            last = _collapsed(j, {"inMailbox": box["id"]},
                              position=box["totalThreads"] - 1)
            assert len(last["ids"]) == 1, box["name"]
        past = _collapsed(j, {"inMailbox": box["id"]}, position=box["totalThreads"])
        assert past["ids"] == [], box["name"]


def test_inbox_counts_threads_not_emails(world: tuple[Server, Jmap, dict[str, str]]
                                         ) -> None:
    _, j, ids = world
    inbox = j.boxes()["inbox"]
    h = j.call("Email/get", ids=[ids["h1"], ids["h2"], ids["h3"]], properties=["threadId"])
    h_threads = len({e["threadId"] for e in h["list"]})
    # a, b, c, d, e, g and h's threads (one if its late parent joined the replies' thread):
    # f's only email was destroyed. Emails: a1 a2 a3 b1 c2 d1 d2 e2 g2 h1 h2 h3.
    assert inbox["totalEmails"] == 12
    assert inbox["totalThreads"] == 6 + h_threads
    assert inbox["totalThreads"] < inbox["totalEmails"]  # the email count was the bug
    # Unread: a2 (a), d2 (d); b2 is unread but in the Trash, not the Inbox.
    assert inbox["unreadEmails"] == 2
    assert inbox["unreadThreads"] == 2
    other = j.boxes()["Other"]
    assert (other["totalEmails"], other["totalThreads"]) == (2, 2)  # c1 and d2


def test_moving_a_reply_to_trash_keeps_the_counts_in_step(
        world: tuple[Server, Jmap, dict[str, str]]) -> None:
    _, j, ids = world
    boxes = j.boxes()
    before = boxes["inbox"]["totalThreads"]
    # a3 leaves the Inbox: a's thread is still there through a1 and a2.
    j.call("Email/set", update={ids["a3"]: {"mailboxIds": {boxes["trash"]["id"]: True}}})
    # c2, c's only email in the Inbox, leaves: the Inbox has one thread fewer.
    j.call("Email/set", update={ids["c2"]: {"mailboxIds": {boxes["Other"]["id"]: True}}})
    after = j.boxes()
    assert after["inbox"]["totalThreads"] == before - 1
    for box in after.values():
        query = _collapsed(j, {"inMailbox": box["id"]})
        assert box["totalThreads"] == query["total"] == len(query["ids"]), box["name"]


def test_imap_status_still_counts_messages(world: tuple[Server, Jmap, dict[str, str]]
                                           ) -> None:
    """IMAP has no thread count: STATUS MESSAGES is the number of emails, as before."""
    srv, j, _ = world
    inbox = j.boxes()["inbox"]
    with imaplib.IMAP4("127.0.0.1", srv.imap_port) as imap:
        imap.login(ALICE, PASSWORD)
        typ, data = imap.status("INBOX", "(MESSAGES UNSEEN)")
        assert typ == "OK", data
    text = data[0].decode()
    assert f"MESSAGES {inbox['totalEmails']}" in text, text
    assert f"UNSEEN {inbox['unreadEmails']}" in text, text


def test_counts_follow_a_flag_set_over_imap(world: tuple[Server, Jmap, dict[str, str]]
                                            ) -> None:
    """A change through the other door is seen by the next Mailbox/get (no stale count)."""
    srv, j, _ = world
    assert j.boxes()["inbox"]["unreadThreads"] > 0  # counted, and kept for this state
    with imaplib.IMAP4("127.0.0.1", srv.imap_port) as imap:
        imap.login(ALICE, PASSWORD)
        assert imap.select("INBOX")[0] == "OK"
        assert imap.store("1:*", "+FLAGS", "(\\Seen)")[0] == "OK"
    inbox = j.boxes()["inbox"]
    assert (inbox["unreadEmails"], inbox["unreadThreads"]) == (0, 0)
    assert inbox["totalThreads"] == _collapsed(j, {"inMailbox": inbox["id"]})["total"]
