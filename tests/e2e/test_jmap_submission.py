"""JMAP EmailSubmission (RFC 8621 §7) end to end: a draft made with Email/set (with a 25 MB
uploaded attachment) is sent to a remote MX on loopback and a local user, filed in Sent by
onSuccessUpdateEmail; held sends (FUTURERELEASE) are pending until canceled; the objects have
/get, /changes and /query; another account sees none of it.
"""

from __future__ import annotations

import email
import hashlib
import os
import time
from collections.abc import Iterator
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest

from tests.dnsserver import TestDNS
from tests.e2e.server import Server
from tests.e2e.test_jmap_blobs import boxes, upload
from tests.e2e.test_jmap_mail import ALICE, BOB, CORE, MAIL, Jmap
from tests.e2e.test_sending import inbox
from tests.fakemx import FakeMX

SUBMISSION = "urn:ietf:params:jmap:submission"
MiB = 1024 * 1024


USING = (CORE, MAIL, SUBMISSION)


@pytest.fixture(scope="module")
def mx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMX]:
    with FakeMX(Path(tmp_path_factory.mktemp("mx"))) as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mx: FakeMX) -> Iterator[Server]:
    with TestDNS({("remote.test", "MX"): ["10 mx.remote.test."],
                  ("mx.remote.test", "A"): ["127.0.0.1"]}) as dns:
        srv = Server(Path(tmp_path_factory.mktemp("jmap-submission")),
                     outbound={"port": mx.port, "retry_schedule": [1.0]},
                     dns={"nameservers": [dns.address], "timeout": 2.0})
        srv.add_user(ALICE)
        srv.add_user(BOB)
        srv.start()
        yield srv
        srv.stop()


@pytest.fixture(scope="module")
def alice(server: Server) -> Jmap:
    return Jmap(server, ALICE, USING)


@pytest.fixture(scope="module")
def bob(server: Server) -> Jmap:
    return Jmap(server, BOB, USING)


def draft(j: Jmap, subject: str, to: list[str], **extra: Any) -> str:
    ids = boxes(j)
    answer = j.call("Email/set", create={"d": {
        "mailboxIds": {ids["drafts"]: True}, "keywords": {"$draft": True},
        "from": [{"name": "Alice", "email": ALICE}], "to": [{"email": t} for t in to],
        "subject": subject, "textBody": [{"partId": "t", "type": "text/plain"}],
        "bodyValues": {"t": {"value": f"{subject}\n"}}, **extra}})
    assert answer["created"], answer
    return str(answer["created"]["d"]["id"])


def test_session_advertises_submission(alice: Jmap) -> None:
    cap = alice.session["accounts"][alice.account_id]["accountCapabilities"][SUBMISSION]
    assert cap["maxDelayedSend"] >= 86400 and "FUTURERELEASE" in cap["submissionExtensions"]


def test_send_a_draft_with_a_25_mb_attachment(server: Server, alice: Jmap, mx: FakeMX
                                              ) -> None:
    big = os.urandom(25 * MiB)
    blob = upload(alice, big, "application/octet-stream")["blobId"]
    email_id = draft(alice, "The big file", ["far@remote.test", BOB],
                     bcc=[{"email": "hidden@remote.test"}],
                     attachments=[{"blobId": blob, "type": "application/octet-stream",
                                   "name": "big.bin"}])
    ids = boxes(alice)
    answer = alice.calls(("EmailSubmission/set", {
        "create": {"s1": {"identityId": alice.account_id, "emailId": email_id}},
        "onSuccessUpdateEmail": {"#s1": {f"mailboxIds/{ids['drafts']}": None,
                                         f"mailboxIds/{ids['sent']}": True,
                                         "keywords/$draft": None}}}))
    [[name, result, _], [implicit, email_set, _]] = answer
    assert name == "EmailSubmission/set" and implicit == "Email/set", answer
    sub = result["created"]["s1"]
    assert email_set["updated"] == {email_id: None}
    [mail] = alice.call("Email/get", ids=[email_id], properties=["mailboxIds", "keywords"])[
        "list"]
    assert mail["mailboxIds"] == {ids["sent"]: True, ids["all"]: True}
    assert "$draft" not in mail["keywords"]
    got = mx.wait(1, timeout=60)
    assert sorted(r for m in got for r in m.recipients) == ["far@remote.test",
                                                           "hidden@remote.test"]
    message = email.message_from_bytes(got[0].data, policy=default_policy)
    assert message["Bcc"] is None and message["Subject"] == "The big file"
    [part] = [p for p in message.iter_attachments()]
    content = part.get_content()
    assert hashlib.sha256(content).digest() == hashlib.sha256(big).digest()
    assert inbox(server, BOB, 1, timeout=60), "the local recipient got it too"
    [view] = alice.call("EmailSubmission/get", ids=[sub["id"]])["list"]
    assert view["emailId"] == email_id and view["undoStatus"] == "final"
    assert view["identityId"] == alice.account_id and view["threadId"] == sub["threadId"]
    assert {r["email"] for r in view["envelope"]["rcptTo"]} == {
        "far@remote.test", BOB, "hidden@remote.test"}


def test_held_send_is_pending_then_canceled(alice: Jmap, mx: FakeMX) -> None:
    before = len(mx.received)
    state = alice.call("EmailSubmission/get", ids=[])["state"]
    email_id = draft(alice, "Maybe later", ["later@remote.test"])
    created = alice.call("EmailSubmission/set", create={"h": {
        "identityId": alice.account_id, "emailId": email_id,
        "envelope": {"mailFrom": {"email": ALICE, "parameters": {"HOLDFOR": "600"}},
                     "rcptTo": [{"email": "later@remote.test"}]}}})["created"]["h"]
    [view] = alice.call("EmailSubmission/get", ids=[created["id"]])["list"]
    assert view["undoStatus"] == "pending"
    assert view["deliveryStatus"]["later@remote.test"]["delivered"] == "queued"
    assert view["sendAt"] > time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 500))
    changes = alice.call("EmailSubmission/changes", sinceState=state)
    assert changes["created"] == [created["id"]]
    pending = alice.call("EmailSubmission/query", filter={"undoStatus": "pending"})["ids"]
    assert pending == [created["id"]]
    answer = alice.call("EmailSubmission/set",
                        update={created["id"]: {"undoStatus": "canceled"}})
    assert answer["updated"] == {created["id"]: None}
    [view] = alice.call("EmailSubmission/get", ids=[created["id"]])["list"]
    assert view["undoStatus"] == "canceled"
    again = alice.call("EmailSubmission/set", update={created["id"]: {"undoStatus": "canceled"}})
    assert again["notUpdated"][created["id"]]["type"] == "cannotUnsend"
    assert alice.call("EmailSubmission/changes", sinceState=state)["created"] == [
        created["id"]]
    time.sleep(1.0)
    assert len(mx.received) == before


def test_created_holds_every_server_set_property(alice: Jmap) -> None:
    """RFC 8620 §5.3: `created` has each property the server set, so a client need not
    /get the object it just made (RFC 8621 §7: undoStatus, deliveryStatus, dsnBlobIds,
    mdnBlobIds, and the envelope when the client gave none)."""
    held_email = draft(alice, "Held for the created test", ["held@remote.test"])
    ids = boxes(alice)
    [[_, made, _], [_, result, _]] = alice.calls(
        ("Email/set", {"create": {"d": {
            "mailboxIds": {ids["drafts"]: True}, "from": [{"email": ALICE}],
            "to": [{"email": "soon@remote.test"}], "subject": "Created in the same call",
            "bodyValues": {"t": {"value": "hi\n"}},
            "textBody": [{"partId": "t", "type": "text/plain"}]}}}),
        ("EmailSubmission/set", {"create": {
            "held": {"identityId": alice.account_id, "emailId": held_email, "envelope": {
                "mailFrom": {"email": ALICE, "parameters": {"HOLDFOR": "600"}},
                "rcptTo": [{"email": "held@remote.test", "parameters": None}]}},
            "ref": {"identityId": alice.account_id, "emailId": "#d"}}}))
    assert result["notCreated"] is None, result
    held, ref = result["created"]["held"], result["created"]["ref"]
    [stored] = alice.call("EmailSubmission/get", ids=[held["id"]])["list"]
    assert held == {k: stored[k] for k in ("id", "threadId", "sendAt", "undoStatus",
                                          "deliveryStatus", "dsnBlobIds", "mdnBlobIds")}
    assert held["undoStatus"] == "pending" and held["dsnBlobIds"] == held["mdnBlobIds"] == []
    assert held["deliveryStatus"] == {"held@remote.test": {
        "smtpReply": "250 2.0.0 Queued", "delivered": "queued", "displayed": "unknown"}}
    # No envelope given: the server's is returned; "#d" came back as the email's id.
    email_id = made["created"]["d"]["id"]
    assert ref["emailId"] == email_id and "identityId" not in ref
    assert ref["envelope"] == {"mailFrom": {"email": ALICE, "parameters": None},
                               "rcptTo": [{"email": "soon@remote.test", "parameters": None}]}
    assert {"id", "threadId", "sendAt", "undoStatus", "deliveryStatus", "dsnBlobIds",
            "mdnBlobIds"} <= set(ref)
    assert set(ref["deliveryStatus"]) == {"soon@remote.test"}
    canceled = alice.call("EmailSubmission/set", update={held["id"]: {"undoStatus": "canceled"}})
    assert canceled["updated"] == {held["id"]: None}


def test_sent_mail_cannot_be_unsent(alice: Jmap, mx: FakeMX) -> None:
    email_id = draft(alice, "Gone already", ["gone@remote.test"])
    sub = alice.call("EmailSubmission/set", create={"g": {
        "identityId": alice.account_id, "emailId": email_id}})["created"]["g"]
    deadline = time.monotonic() + 30
    while not any("gone@remote.test" in r.recipients for r in mx.received):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    answer = alice.call("EmailSubmission/set", update={sub["id"]: {"undoStatus": "canceled"}})
    assert answer["notUpdated"][sub["id"]]["type"] == "cannotUnsend"
    destroyed = alice.call("EmailSubmission/set", destroy=[sub["id"]])
    assert destroyed["destroyed"] == [sub["id"]]
    assert alice.call("EmailSubmission/get", ids=[sub["id"]])["notFound"] == [sub["id"]]


def test_submission_errors(alice: Jmap) -> None:
    ids = boxes(alice)
    forged = alice.call("Email/set", create={"f": {
        "mailboxIds": {ids["drafts"]: True}, "from": [{"email": "ceo@bank.test"}],
        "to": [{"email": "x@remote.test"}], "subject": "forged"}})["created"]["f"]["id"]
    nobody = draft(alice, "To nobody", [])
    # RFC 5322 §3.6.2: a Sender names one mailbox; two make the email itself invalid.
    senders = alice.call("Email/set", create={"s": {
        "mailboxIds": {ids["drafts"]: True}, "from": [{"email": ALICE}],
        "sender": [{"email": ALICE}, {"email": "other@example.test"}],
        "to": [{"email": "x@remote.test"}], "subject": "two senders"}})["created"]["s"]["id"]
    unknown = draft(alice, "To no such user", ["nosuchuser@example.test"])
    answer = alice.call("EmailSubmission/set", create={
        "senders": {"identityId": alice.account_id, "emailId": senders},
        "unknown": {"identityId": alice.account_id, "emailId": unknown},
        "forged": {"identityId": alice.account_id, "emailId": forged},
        "noid": {"identityId": "someone-else", "emailId": forged},
        "noemail": {"identityId": alice.account_id, "emailId": "e-missing"},
        "norcpt": {"identityId": alice.account_id, "emailId": nobody},
        "badhold": {"identityId": alice.account_id, "emailId": forged, "envelope": {
            "mailFrom": {"email": ALICE, "parameters": {"HOLDFOR": "99999999"}},
            "rcptTo": [{"email": "x@remote.test"}]}},
    })
    errors = {k: v["type"] for k, v in answer["notCreated"].items()}
    assert errors == {"forged": "forbiddenFrom", "noid": "invalidProperties",
                      "noemail": "invalidProperties", "norcpt": "noRecipients",
                      "badhold": "invalidProperties", "senders": "invalidEmail",
                      "unknown": "invalidRecipients"}


def test_another_account_sees_no_submission(alice: Jmap, bob: Jmap) -> None:
    mine = alice.call("EmailSubmission/query")["ids"]
    assert mine
    assert bob.call("EmailSubmission/get", ids=mine)["notFound"] == mine
    assert bob.call("EmailSubmission/query")["ids"] == []
    [alice_email] = alice.call("Email/query", filter={"subject": "Maybe later"})["ids"]
    answer = bob.call("EmailSubmission/set", create={"x": {
        "identityId": bob.account_id, "emailId": alice_email}},
        update={mine[0]: {"undoStatus": "canceled"}}, destroy=[mine[0]])
    assert answer["notCreated"]["x"]["type"] == "invalidProperties"
    assert answer["notUpdated"][mine[0]]["type"] == "notFound"
    assert answer["notDestroyed"][mine[0]]["type"] == "notFound"


def test_identities(alice: Jmap, bob: Jmap) -> None:
    [own] = alice.call("Identity/get", ids=None)["list"]
    assert own == {"id": alice.account_id, "name": "", "email": ALICE, "replyTo": None,
                   "bcc": None, "textSignature": "", "htmlSignature": "", "mayDelete": False}
    state = alice.call("Identity/get", ids=[])["state"]
    answer = alice.call("Identity/set", update={alice.account_id: {
        "name": "Alice Liddell", "textSignature": "-- \nAlice", "email": ALICE}},
        create={"work": {"name": "Alice at work", "email": ALICE,
                         "bcc": [{"name": None, "email": "archive@example.test"}]},
                "forged": {"email": "ceo@bank.test"},
                "bad": {"email": ALICE, "replyTo": "nope"}},
        destroy=[alice.account_id])
    work = answer["created"]["work"]["id"]
    assert answer["updated"] == {alice.account_id: None}
    assert answer["notCreated"]["forged"]["type"] == "forbiddenFrom"
    assert answer["notCreated"]["bad"]["type"] == "invalidProperties"
    assert answer["notDestroyed"][alice.account_id]["type"] == "forbidden"
    listed = {i["id"]: i for i in alice.call("Identity/get", ids=None)["list"]}
    assert listed[alice.account_id]["name"] == "Alice Liddell"
    assert listed[work]["mayDelete"] is True and listed[work]["bcc"][0]["email"] \
        == "archive@example.test"
    changed = alice.call("Identity/changes", sinceState=state)
    assert changed["created"] == [work] and changed["updated"] == [alice.account_id]
    assert bob.call("Identity/get", ids=[work, alice.account_id])["notFound"] == [
        work, alice.account_id]
    assert bob.call("Identity/set", update={work: {"name": "x"}})["notUpdated"][work][
        "type"] == "notFound"
    email_id = draft(alice, "From my work identity", ["someone@remote.test"])
    sub = alice.call("EmailSubmission/set", create={"w": {
        "identityId": work, "emailId": email_id}})["created"]["w"]
    [view] = alice.call("EmailSubmission/get", ids=[sub["id"]])["list"]
    assert view["identityId"] == work and view["envelope"]["mailFrom"]["email"] == ALICE
    assert alice.call("Identity/set", destroy=[work])["destroyed"] == [work]
