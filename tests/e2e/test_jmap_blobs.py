"""JMAP binary data and new emails, end to end: upload and download (RFC 8620 §6), Email/import,
Email/parse, Email/set create with uploaded attachments (RFC 8621 §4.6-4.9), Blob/copy, and
the same emails seen over IMAP. Blob ids of another account answer 404 / notFound.
"""

from __future__ import annotations

import email
import hashlib
import imaplib
import os
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server import Server
from tests.e2e.test_jmap_mail import ALICE, BOB, PASSWORD, Jmap

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("jmap-blobs")))
    srv.add_user(ALICE)
    srv.add_user(BOB)
    srv.start()
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "ann@shop.test", ALICE, "Receipt"
    m["Message-ID"] = "<receipt-1@shop.test>"
    m.set_content("Thanks for shopping.\n")
    m.add_attachment(b"receipt " * 4000, maintype="application", subtype="pdf",
                     filename="receipt.pdf")
    with smtplib.SMTP("127.0.0.1", srv.smtp_port) as s:
        s.send_message(m, from_addr="ann@shop.test", to_addrs=[ALICE])
    srv.wait_emails(ALICE, 1)
    srv.wait_queue_empty()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def alice(server: Server) -> Jmap:
    return Jmap(server, ALICE)


@pytest.fixture(scope="module")
def bob(server: Server) -> Jmap:
    return Jmap(server, BOB)


def upload(j: Jmap, data: bytes, media_type: str = "application/octet-stream") -> Any:
    r = j.client.post(f"/jmap/upload/{j.account_id}/", content=data,
                      headers={"Content-Type": media_type})
    assert r.status_code == 201, r.text
    return r.json()


def download(j: Jmap, account_id: str, blob_id: str, name: str = "f.bin",
             media_type: str = "application/octet-stream") -> Any:
    return j.client.get(f"/jmap/download/{account_id}/{blob_id}/{name}",
                        params={"type": media_type})


def boxes(j: Jmap) -> dict[str, str]:
    return {b["role"] or b["name"]: b["id"] for b in j.call("Mailbox/get", ids=None)["list"]}


def imap_fetch(server: Server, mailbox: str, criteria: str) -> list[bytes]:
    conn = imaplib.IMAP4("127.0.0.1", server.imap_port)
    try:
        conn.login(ALICE, PASSWORD)
        conn.select(f'"{mailbox}"')
        _, data = conn.search(None, criteria)
        out = []
        for num in data[0].split():
            _, fetched = conn.fetch(num, "(BODY.PEEK[])")
            out.append(fetched[0][1])
        return out
    finally:
        conn.logout()


# ------------------------------------------------------------------ upload and download


def test_upload_then_download_round_trips_25_mb(alice: Jmap) -> None:
    data = os.urandom(25 * MiB)
    up = upload(alice, data, "application/x-test; charset=x")
    assert up["blobId"] == "U" + hashlib.sha256(data).hexdigest()
    assert (up["type"], up["size"], up["accountId"]) == ("application/x-test", len(data),
                                                         alice.account_id)
    r = download(alice, alice.account_id, up["blobId"], "big file.bin", "application/x-test")
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "application/x-test"
    assert "filename*=UTF-8''big%20file.bin" in r.headers["content-disposition"]


def test_the_same_octets_upload_to_the_same_blob(alice: Jmap) -> None:
    assert upload(alice, b"same")["blobId"] == upload(alice, b"same")["blobId"]


def test_upload_over_the_limit_is_refused(alice: Jmap) -> None:
    limit = alice.session["capabilities"]["urn:ietf:params:jmap:core"]["maxSizeUpload"]
    r = alice.client.post(f"/jmap/upload/{alice.account_id}/", content=b"x" * (limit + 1))
    assert r.status_code == 413
    assert r.json()["type"] == "urn:ietf:params:jmap:error:limit"
    assert r.json()["limit"] == "maxSizeUpload"


def test_an_email_blob_is_its_raw_message_and_a_part_blob_its_content(
        server: Server, alice: Jmap) -> None:
    [got] = alice.call("Email/query", filter={"subject": "Receipt"})["ids"][:1]
    [mail] = alice.call("Email/get", ids=[got], properties=["blobId", "attachments"],
                        bodyProperties=["blobId", "name", "size"])["list"]
    raw = download(alice, alice.account_id, mail["blobId"], "m.eml", "message/rfc822")
    assert raw.status_code == 200
    assert raw.content == imap_fetch(server, "INBOX", "SUBJECT Receipt")[0]
    [pdf] = mail["attachments"]
    part = download(alice, alice.account_id, pdf["blobId"], "receipt.pdf", "application/pdf")
    assert part.content == b"receipt " * 4000 and len(part.content) == pdf["size"]


def test_blobs_of_another_account_are_not_found(alice: Jmap, bob: Jmap) -> None:
    secret = upload(alice, b"alice's secret")
    [mail_id] = alice.call("Email/query", filter={"subject": "Receipt"})["ids"]
    for blob_id in (secret["blobId"], mail_id, mail_id + "_2"):
        assert download(bob, bob.account_id, blob_id).status_code == 404
        assert download(bob, alice.account_id, blob_id).status_code == 404
    answer = bob.call("Blob/copy", fromAccountId=bob.account_id,
                      blobIds=[secret["blobId"], mail_id])
    assert answer["copied"] is None and set(answer["notCopied"]) == {secret["blobId"], mail_id}
    parsed = bob.call("Email/parse", blobIds=[mail_id])
    assert parsed["notFound"] == [mail_id]
    assert bob.error("Blob/copy", fromAccountId=alice.account_id, blobIds=[mail_id]) \
        == "fromAccountNotFound"


def test_upload_to_another_account_is_refused(alice: Jmap, bob: Jmap) -> None:
    r = bob.client.post(f"/jmap/upload/{alice.account_id}/", content=b"x")
    assert r.status_code == 404


def test_download_of_unknown_and_malformed_ids(alice: Jmap) -> None:
    for blob_id in ("U" + "0" * 64, "nonsense", "e_", "_1", "U../../etc", "e" * 300):
        assert download(alice, alice.account_id, blob_id).status_code == 404


# ------------------------------------------------------------------------ Email/import, parse


def _message(subject: str, body: str = "Hello there.\n") -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "Old Friend <old@friend.test>", ALICE, subject
    m["Message-ID"] = f"<{subject.replace(' ', '-')}@friend.test>"
    m["Date"] = "Tue, 05 Mar 2024 09:00:00 +0000"
    m.set_content(body)
    return m.as_bytes()


def test_import_an_uploaded_message_into_two_mailboxes(server: Server, alice: Jmap) -> None:
    raw = _message("Imported letter")
    blob = upload(alice, raw, "message/rfc822")["blobId"]
    ids = boxes(alice)
    answer = alice.call("Email/import", emails={"k1": {
        "blobId": blob, "mailboxIds": {ids["archive"]: True, ids["inbox"]: True},
        "keywords": {"$seen": True, "work": True}, "receivedAt": "2024-03-05T09:00:01Z"}})
    created = answer["created"]["k1"]
    assert int(answer["newState"]) > int(answer["oldState"])
    [got] = alice.call("Email/get", ids=[created["id"]],
                       properties=["mailboxIds", "keywords", "receivedAt", "subject", "size",
                                   "threadId", "blobId"])["list"]
    assert got["mailboxIds"] == {ids["archive"]: True, ids["inbox"]: True, ids["all"]: True}
    assert got["keywords"] == {"$seen": True, "work": True}
    assert got["receivedAt"] == "2024-03-05T09:00:01Z"
    assert (got["subject"], got["size"], got["threadId"]) == (
        "Imported letter", len(raw), created["threadId"])
    assert imap_fetch(server, "Archive", "SUBJECT \"Imported letter\"") == [raw]
    # Importing the same message again makes a second Email (a client's explicit import, like
    # IMAP APPEND, is a new message: issue 16; RFC 8621 §4.8 lets the server choose).
    again = alice.call("Email/import", emails={"k2": {
        "blobId": blob, "mailboxIds": {ids["inbox"]: True}}})
    assert again["created"]["k2"]["id"] != created["id"]


def test_import_errors(alice: Jmap) -> None:
    ids = boxes(alice)
    good = upload(alice, _message("Never imported"))["blobId"]
    garbage = upload(alice, b"\x00\x01 not a message")["blobId"]
    answer = alice.call("Email/import", emails={
        "missing": {"blobId": "U" + "1" * 64, "mailboxIds": {ids["inbox"]: True}},
        "nobox": {"blobId": good, "mailboxIds": {}},
        "badbox": {"blobId": good, "mailboxIds": {"nope": True}},
        "garbage": {"blobId": garbage, "mailboxIds": {ids["inbox"]: True}},
        "badkw": {"blobId": good, "mailboxIds": {ids["inbox"]: True}, "keywords": {"a b": True}},
    })
    errors = {k: v["type"] for k, v in answer["notCreated"].items()}
    assert errors == {"missing": "invalidProperties", "nobox": "invalidProperties",
                      "badbox": "invalidProperties", "garbage": "invalidEmail",
                      "badkw": "invalidProperties"}
    assert answer["created"] is None
    assert alice.error("Email/import", emails={}, ifInState="0") == "stateMismatch"


def test_parse_an_uploaded_message(alice: Jmap) -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "Zoë <zoe@x.test>", "a@b.test", "Fwd: =?x?"
    m.set_content("Inner text\n")
    m.add_attachment(b"data", maintype="application", subtype="zip", filename="a.zip")
    blob = upload(alice, m.as_bytes(), "message/rfc822")["blobId"]
    answer = alice.call("Email/parse", blobIds=[blob, "U" + "2" * 64],
                        fetchTextBodyValues=True)
    got = answer["parsed"][blob]
    assert got["from"] == [{"name": "Zoë", "email": "zoe@x.test"}]
    assert got["subject"] == "Fwd: =?x?"
    assert [a["name"] for a in got["attachments"]] == ["a.zip"]
    [text] = got["textBody"]
    assert got["bodyValues"][text["partId"]]["value"] == "Inner text\n"
    assert answer["notFound"] == ["U" + "2" * 64]
    with_ids = alice.call("Email/parse", blobIds=[blob], properties=["id", "mailboxIds",
                                                                      "subject"])
    assert with_ids["parsed"][blob] == {"id": None, "mailboxIds": None, "subject": "Fwd: =?x?"}


# ------------------------------------------------------------------------ Email/set create


def test_create_a_draft_with_an_uploaded_attachment(server: Server, alice: Jmap) -> None:
    pdf = os.urandom(3 * MiB)
    blob = upload(alice, pdf, "application/pdf")["blobId"]
    ids = boxes(alice)
    answer = alice.calls(
        ("Email/set", {"create": {"d1": {
            "mailboxIds": {ids["drafts"]: True}, "keywords": {"$draft": True, "$seen": True},
            "from": [{"name": "Alice Ä", "email": ALICE}],
            "to": [{"name": "Bob", "email": BOB}], "cc": [{"email": "carol@remote.test"}],
            "subject": "Quarterly report ✓", "sentAt": "2026-11-29T10:00:00+01:00",
            "header:X-Mailer:asText": "Mailyard tests",
            "textBody": [{"partId": "t", "type": "text/plain"}],
            "htmlBody": [{"partId": "h", "type": "text/html"}],
            "bodyValues": {"t": {"value": "See the report.\n"},
                           "h": {"value": "<p>See the <b>report</b>.</p>"}},
            "attachments": [{"blobId": blob, "type": "application/pdf",
                             "name": "report Q4.pdf"}],
        }}}),
        ("Email/get", {"ids": ["#d1"], "properties": [
            "subject", "from", "to", "cc", "sentAt", "keywords", "mailboxIds", "textBody",
            "htmlBody", "attachments", "bodyValues", "header:X-Mailer:asText", "messageId"],
            "fetchAllBodyValues": True}),
    )
    [[_, created, _], [_, got, _]] = answer
    draft_id = created["created"]["d1"]["id"]
    [mail] = got["list"]
    assert mail["id"] == draft_id
    assert mail["subject"] == "Quarterly report ✓"
    assert mail["from"] == [{"name": "Alice Ä", "email": ALICE}]
    assert mail["cc"] == [{"name": None, "email": "carol@remote.test"}]
    assert mail["sentAt"].startswith("2026-11-29T09:00:00")
    assert mail["keywords"] == {"$draft": True, "$seen": True}
    assert mail["header:X-Mailer:asText"] == "Mailyard tests"
    assert mail["messageId"] and "@example.test" in mail["messageId"][0]
    [att] = mail["attachments"]
    assert (att["name"], att["type"], att["size"]) == ("report Q4.pdf", "application/pdf",
                                                       len(pdf))
    assert download(alice, alice.account_id, att["blobId"]).content == pdf
    [text], [html] = mail["textBody"], mail["htmlBody"]
    assert mail["bodyValues"][text["partId"]]["value"] == "See the report.\n"
    assert "<b>report</b>" in mail["bodyValues"][html["partId"]]["value"]
    [raw] = imap_fetch(server, "Drafts", "SUBJECT report")
    parsed = email.message_from_bytes(raw, policy=default_policy)
    assert parsed.get_content_type() == "multipart/mixed"
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


def test_create_with_body_structure(alice: Jmap) -> None:
    ids = boxes(alice)
    logo = upload(alice, b"\x89PNG fake", "image/png")["blobId"]
    created = alice.call("Email/set", create={"c": {
        "mailboxIds": {ids["drafts"]: True}, "from": [{"email": ALICE}], "subject": "tree",
        "bodyStructure": {"type": "multipart/related", "subParts": [
            {"partId": "h", "type": "text/html"},
            {"blobId": logo, "type": "image/png", "cid": "logo1", "disposition": "inline"}]},
        "bodyValues": {"h": {"value": "<img src=\"cid:logo1\">"}}}})["created"]["c"]
    [mail] = alice.call("Email/get", ids=[created["id"]],
                        properties=["bodyStructure"])["list"]
    tree = mail["bodyStructure"]
    assert tree["type"] == "multipart/related"
    assert [p["type"] for p in tree["subParts"]] == ["text/html", "image/png"]
    assert tree["subParts"][1]["cid"] == "logo1"


def test_create_errors(alice: Jmap, bob: Jmap) -> None:
    ids = boxes(alice)
    bob_blob = upload(bob, b"bob's file")["blobId"]
    base = {"mailboxIds": {ids["drafts"]: True}, "from": [{"email": ALICE}]}
    answer = alice.call("Email/set", create={
        "nobox": {"subject": "x"},
        "badaddr": {**base, "to": [{"email": "not an address"}]},
        "readonly": {**base, "id": "x", "size": 3},
        "bobblob": {**base, "attachments": [{"blobId": bob_blob, "type": "text/plain"}]},
        "novalue": {**base, "textBody": [{"partId": "t", "type": "text/plain"}]},
        "both": {**base, "bodyStructure": {"partId": "t"}, "textBody": [],
                 "bodyValues": {"t": {"value": "x"}}},
        "crlf": {**base, "subject": "a\r\nBcc: victim@x.test"},
        "badheader": {**base, "header:Content-Type": "text/html"},
    })
    errors = {k: v["type"] for k, v in answer["notCreated"].items()}
    assert errors == {"nobox": "invalidProperties", "badaddr": "invalidProperties",
                      "readonly": "invalidProperties", "bobblob": "blobNotFound",
                      "novalue": "invalidProperties", "both": "invalidProperties",
                      "crlf": "invalidProperties", "badheader": "invalidProperties"}
    assert answer["created"] is None


def test_header_forms_grouped_addresses_and_urls(alice: Jmap) -> None:
    raw = (b"From: a@x.test\r\nTo: a@x.test, Team: b@y.test, \"C D\" <c@y.test>;, e@z.test\r\n"
           b"Cc: undisclosed-recipients:;\r\n"
           b"List-Unsubscribe: <mailto:l@x.test?subject=unsub>,\r\n <https://x.test/u>\r\n"
           b"Subject: forms\r\n\r\nbody\r\n")
    blob = upload(alice, raw, "message/rfc822")["blobId"]
    got = alice.call("Email/parse", blobIds=[blob], properties=[
        "header:To:asGroupedAddresses", "header:Cc:asGroupedAddresses",
        "header:List-Unsubscribe:asURLs", "header:Subject:asURLs"])["parsed"][blob]
    assert got["header:To:asGroupedAddresses"] == [
        {"name": None, "addresses": [{"name": None, "email": "a@x.test"}]},
        {"name": "Team", "addresses": [{"name": None, "email": "b@y.test"},
                                       {"name": "C D", "email": "c@y.test"}]},
        {"name": None, "addresses": [{"name": None, "email": "e@z.test"}]}]
    assert got["header:Cc:asGroupedAddresses"] == [
        {"name": "undisclosed-recipients", "addresses": []}]
    assert got["header:List-Unsubscribe:asURLs"] == ["mailto:l@x.test?subject=unsub",
                                                    "https://x.test/u"]
    assert got["header:Subject:asURLs"] is None
