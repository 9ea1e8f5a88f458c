"""One account never reaches another's data over JMAP: every id of Alice's — email, blob,
thread, mailbox, submission, identity, upload — is notFound (or 404) to Bob, in every method
that takes an id, and Alice's account id is accountNotFound to him."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server import Server
from tests.e2e.test_jmap_blobs import download, upload
from tests.e2e.test_jmap_mail import ALICE, BOB, CORE, MAIL, Jmap

USING = (CORE, MAIL, "urn:ietf:params:jmap:submission",
         "urn:ietf:params:jmap:vacationresponse")




@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("jmap-isolation")))
    srv.add_user(ALICE)
    srv.add_user(BOB)
    srv.start()
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "ann@shop.test", ALICE, "Alice's private invoice"
    m.set_content("Only for Alice: account number 12345.\n")
    m.add_attachment(b"secret " * 1000, maintype="application", subtype="pdf",
                     filename="private.pdf")
    with smtplib.SMTP("127.0.0.1", srv.smtp_port) as s:
        s.send_message(m, from_addr="ann@shop.test", to_addrs=[ALICE])
    srv.wait_emails(ALICE, 1)
    srv.wait_queue_empty()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def ids(server: Server) -> dict[str, Any]:
    """Every kind of id Alice has."""
    alice = Jmap(server, ALICE, USING)
    [email_id] = alice.call("Email/query", filter={"subject": "private"})["ids"]
    [mail] = alice.call("Email/get", ids=[email_id],
                        properties=["threadId", "mailboxIds", "attachments"])["list"]
    boxes = {b["role"]: b["id"] for b in alice.call("Mailbox/get", ids=None)["list"]}
    identity = alice.call("Identity/set", create={"i": {"email": ALICE, "name": "Private"}})[
        "created"]["i"]["id"]
    draft = alice.call("Email/set", create={"d": {
        "mailboxIds": {boxes["drafts"]: True}, "from": [{"email": ALICE}],
        "to": [{"email": BOB}], "subject": "held"}})["created"]["d"]["id"]
    submission = alice.call("EmailSubmission/set", create={"s": {
        "identityId": identity, "emailId": draft, "envelope": {
            "mailFrom": {"email": ALICE, "parameters": {"HOLDFOR": "3600"}},
            "rcptTo": [{"email": BOB}]}}})["created"]["s"]["id"]
    return {"account": alice.account_id, "email": email_id, "thread": mail["threadId"],
            "mailbox": boxes["inbox"], "part": mail["attachments"][0]["blobId"],
            "upload": upload(alice, b"alice's upload")["blobId"], "identity": identity,
            "submission": submission, "draft": draft}


@pytest.fixture(scope="module")
def bob(server: Server) -> Jmap:
    return Jmap(server, BOB, USING)


def test_gets_answer_not_found(bob: Jmap, ids: dict[str, Any]) -> None:
    for method, key in (("Email/get", "email"), ("Thread/get", "thread"),
                        ("Mailbox/get", "mailbox"), ("Identity/get", "identity"),
                        ("EmailSubmission/get", "submission")):
        answer = bob.call(method, ids=[ids[key]])
        assert answer["list"] == [] and answer["notFound"] == [ids[key]], method
    snippets = bob.call("SearchSnippet/get", emailIds=[ids["email"]],
                        filter={"text": "account"})
    assert snippets["list"] == [] and snippets["notFound"] == [ids["email"]]
    parsed = bob.call("Email/parse", blobIds=[ids["email"], ids["part"], ids["upload"]])
    assert parsed["parsed"] is None and len(parsed["notFound"]) == 3


def test_queries_find_nothing_of_alice(bob: Jmap, ids: dict[str, Any]) -> None:
    assert bob.call("Email/query", filter={"text": "account number"})["ids"] == []
    assert bob.call("Email/query", filter={"inMailbox": ids["mailbox"]})["ids"] == []
    assert bob.call("EmailSubmission/query")["ids"] == []
    assert ids["mailbox"] not in bob.call("Mailbox/query")["ids"]


def test_sets_answer_not_found(bob: Jmap, ids: dict[str, Any]) -> None:
    email_set = bob.call("Email/set", update={ids["email"]: {"keywords/$seen": True}},
                         destroy=[ids["email"]])
    assert email_set["notUpdated"][ids["email"]]["type"] == "notFound"
    assert email_set["notDestroyed"][ids["email"]]["type"] == "notFound"
    boxes = bob.call("Mailbox/set", update={ids["mailbox"]: {"name": "x"}},
                     destroy=[ids["mailbox"]])
    assert boxes["notUpdated"][ids["mailbox"]]["type"] == "notFound"
    assert boxes["notDestroyed"][ids["mailbox"]]["type"] == "notFound"
    bob_inbox = {b["role"]: b["id"] for b in bob.call("Mailbox/get", ids=None)["list"]}["inbox"]
    imported = bob.call("Email/import", emails={
        k: {"blobId": ids[k], "mailboxIds": {bob_inbox: True}}
        for k in ("email", "part", "upload")})
    assert {(v["type"], tuple(v["properties"])) for v in imported["notCreated"].values()
            } == {("invalidProperties", ("blobId",))}
    created = bob.call("Email/set", create={"c": {
        "mailboxIds": {ids["mailbox"]: True}, "subject": "into Alice's inbox"}})
    assert created["notCreated"]["c"]["type"] == "invalidProperties"
    sub = bob.call("EmailSubmission/set", create={"s": {
        "identityId": ids["identity"], "emailId": ids["draft"]}},
        update={ids["submission"]: {"undoStatus": "canceled"}})
    assert sub["notCreated"]["s"]["type"] == "invalidProperties"
    assert sub["notUpdated"][ids["submission"]]["type"] == "notFound"
    identity = bob.call("Identity/set", destroy=[ids["identity"]])
    assert identity["notDestroyed"][ids["identity"]]["type"] == "notFound"


def test_alices_account_id_is_not_bobs(bob: Jmap, ids: dict[str, Any]) -> None:
    for method in ("Email/get", "Mailbox/get", "Identity/get", "EmailSubmission/get",
                   "VacationResponse/get", "Email/query", "Mailbox/changes"):
        args: dict[str, Any] = {"accountId": ids["account"]}
        if method.endswith("/changes"):
            args["sinceState"] = "0"
        [[name, answer, _]] = bob.calls((method, args))
        assert name == "error" and answer["type"] == "accountNotFound", method


def test_blob_urls_are_404(bob: Jmap, ids: dict[str, Any]) -> None:
    for key in ("email", "part", "upload"):
        assert download(bob, bob.account_id, ids[key]).status_code == 404
        assert download(bob, ids["account"], ids[key]).status_code == 404
    r = bob.client.post(f"/jmap/upload/{ids['account']}/", content=b"x")
    assert r.status_code == 404
