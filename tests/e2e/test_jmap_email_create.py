"""Email/set create as RFC 8621 §4.6 has it, over HTTP on a real `mailyard serve`: every
`header:` form (§4.1.2) on the Email and on body parts, a known field given only in its header
form, textBody/htmlBody given by blobId, bodyStructure instead of the shorthand; and the
refusals §4.6 asks for, each an exact invalidProperties SetError. Each created email is read
back as octets (blob download) and through Email/get."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.jmapclient import Jmap
from tests.e2e.server import Server, wait_port
from tests.e2e.test_jmap_blobs import boxes, upload

ALICE = "alice@example.test"
TEXT = {"textBody": [{"partId": "1", "type": "text/plain"}],
        "bodyValues": {"1": {"value": "Hello.\n"}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("jmap-email-create")))
    srv.add_user(ALICE)
    srv.start()
    wait_port(srv.http_port)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def alice(server: Server) -> Jmap:
    return Jmap(server, ALICE)


def create(j: Jmap, obj: dict[str, Any]) -> dict[str, Any]:
    drafts = boxes(j)["drafts"]
    return j.call("Email/set", create={"k": {"mailboxIds": {drafts: True}, **obj}})


def created(j: Jmap, obj: dict[str, Any]) -> dict[str, Any]:
    answer = create(j, obj)
    assert answer["notCreated"] is None, answer
    made: dict[str, Any] = answer["created"]["k"]
    assert set(made) == {"id", "blobId", "threadId", "size"}
    return made


def refusal(j: Jmap, obj: dict[str, Any]) -> dict[str, Any]:
    """The SetError of a create the server must refuse; the account is left as it was."""
    before = j.call("Email/query")["ids"]
    answer = create(j, obj)
    assert answer["created"] is None, answer
    assert j.call("Email/query")["ids"] == before
    error: dict[str, Any] = answer["notCreated"]["k"]
    return error


def octets(j: Jmap, blob_id: str) -> bytes:
    r = j.client.get(f"/jmap/download/{j.account_id}/{blob_id}/m.eml",
                     params={"type": "message/rfc822"})
    assert r.status_code == 200, r.text
    return r.content


def test_every_header_form_on_create_is_written_as_given(alice: Jmap) -> None:
    made = created(alice, {
        **TEXT,
        "header:From:asAddresses": [{"name": "Alice Liddell", "email": ALICE}],
        "header:To:asGroupedAddresses": [
            {"name": "Team", "addresses": [{"name": None, "email": "bob@example.test"},
                                           {"name": "Carol", "email": "carol@example.test"}]},
            {"name": None, "addresses": [{"name": None, "email": "dan@example.test"}]}],
        "header:Subject:asText": "Grüße aus Köln",
        "header:Date:asDate": "2024-02-29T12:30:00+01:00",
        "header:Message-ID:asMessageIds": ["one@example.test"],
        "header:References:asMessageIds": ["a@example.test", "b@example.test"],
        "header:List-Unsubscribe:asURLs": ["mailto:off@example.test",
                                           "https://example.test/off"],
        "header:X-Tag:all": ["first", "second"],
        "header:X-Note:asText:all": ["é"],
        "header:X-Raw:asRaw": "kept  as  given",
        "header:X-Any:asDate": "2024-03-01T00:00:00Z",
        "header:Comments:asText": "fine",
    })
    assert octets(alice, made["blobId"]) == (
        b"From: Alice Liddell <alice@example.test>\r\n"
        b"To: Team: bob@example.test, Carol <carol@example.test>;, dan@example.test\r\n"
        b"Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n"
        b"Date: Thu, 29 Feb 2024 12:30:00 +0100\r\n"
        b"Message-ID: <one@example.test>\r\n"
        b"References: <a@example.test> <b@example.test>\r\n"
        b"List-Unsubscribe: <mailto:off@example.test>, <https://example.test/off>\r\n"
        b"X-Tag: first\r\nX-Tag: second\r\n"
        b"X-Note: =?UTF-8?B?w6k=?=\r\n"
        b"X-Raw: kept  as  given\r\n"
        b"X-Any: Fri, 01 Mar 2024 00:00:00 +0000\r\n"
        b"Comments: fine\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: text/plain; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: 7bit\r\n\r\nHello.\r\n")
    [got] = alice.call("Email/get", ids=[made["id"]], properties=[
        "from", "subject", "sentAt", "messageId", "references",
        "header:To:asGroupedAddresses", "header:List-Unsubscribe:asURLs",
        "header:X-Tag:all", "header:X-Note:asText"])["list"]
    assert got == {
        "id": made["id"], "from": [{"name": "Alice Liddell", "email": ALICE}],
        "subject": "Grüße aus Köln", "sentAt": "2024-02-29T11:30:00Z",
        "messageId": ["one@example.test"], "references": ["a@example.test", "b@example.test"],
        "header:To:asGroupedAddresses": [
            {"name": "Team", "addresses": [{"name": None, "email": "bob@example.test"},
                                           {"name": "Carol", "email": "carol@example.test"}]},
            {"name": None, "addresses": [{"name": None, "email": "dan@example.test"}]}],
        "header:List-Unsubscribe:asURLs": ["mailto:off@example.test",
                                           "https://example.test/off"],
        "header:X-Tag:all": [" first", " second"], "header:X-Note:asText": "é"}


def test_a_known_field_in_raw_header_form_alone(alice: Jmap) -> None:
    made = created(alice, {**TEXT, "header:Subject": "Plain subject",
                           "header:From": "Alice <alice@example.test>",
                           "header:Date": "Mon, 01 Jan 2024 10:00:00 +0000",
                           "header:Message-ID": "<raw@example.test>"})
    raw = octets(alice, made["blobId"])
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[:4] == [b"Subject: Plain subject", b"From: Alice <alice@example.test>",
                        b"Date: Mon, 01 Jan 2024 10:00:00 +0000",
                        b"Message-ID: <raw@example.test>"]
    # No second Date or Message-ID of the server's own.
    assert [line.split(b":")[0] for line in head] == [
        b"Subject", b"From", b"Date", b"Message-ID", b"MIME-Version", b"Content-Type",
        b"Content-Transfer-Encoding"]
    [got] = alice.call("Email/get", ids=[made["id"]],
                       properties=["subject", "from", "sentAt", "messageId"])["list"]
    assert got == {"id": made["id"], "subject": "Plain subject",
                   "from": [{"name": "Alice", "email": ALICE}],
                   "sentAt": "2024-01-01T10:00:00Z", "messageId": ["raw@example.test"]}


def test_header_properties_on_body_parts(alice: Jmap) -> None:
    image = upload(alice, b"\x89PNG fake", "image/png")["blobId"]
    made = created(alice, {**TEXT, "subject": "parts",
                           "textBody": [{"partId": "1", "header:X-Part": "text part"}],
                           "attachments": [{
                               "blobId": image, "type": "image/png",
                               "header:Content-Disposition": "attachment; filename=pic.png",
                               "header:X-Attachment-Id:asText": "Bild ü",
                               "header:Content-Description:all": ["a picture"]}]})
    raw = octets(alice, made["blobId"])
    boundary = re.search(rb'boundary="([^"]+)"', raw)
    assert boundary is not None
    parts = raw.split(b"--" + boundary.group(1))
    assert parts[1] == (b'\r\nContent-Type: text/plain; charset="utf-8"\r\n'
                        b"Content-Transfer-Encoding: 7bit\r\nX-Part: text part\r\n\r\n"
                        b"Hello.\r\n\r\n")
    assert parts[2] == (b"\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
                        b"Content-Disposition: attachment; filename=pic.png\r\n"
                        b"X-Attachment-Id: =?UTF-8?B?QmlsZCDDvA==?=\r\n"
                        b"Content-Description: a picture\r\n\r\niVBORyBmYWtl\r\n\r\n")
    [got] = alice.call("Email/get", ids=[made["id"]], properties=["attachments", "textBody"],
                       bodyProperties=["partId", "type", "disposition", "name",
                                       "header:X-Attachment-Id:asText", "header:X-Part"]
                       )["list"]
    assert got["textBody"] == [{"partId": "1", "type": "text/plain", "disposition": None,
                                "name": None, "header:X-Attachment-Id:asText": None,
                                "header:X-Part": " text part"}]
    assert got["attachments"] == [{"partId": "2", "type": "image/png", "disposition": "attachment",
                                   "name": "pic.png", "header:X-Attachment-Id:asText": "Bild ü",
                                   "header:X-Part": None}]


def test_text_and_html_bodies_given_by_blob_id(alice: Jmap) -> None:
    text = upload(alice, b"caf\xe9 by blob\n", "text/plain")["blobId"]
    html = upload(alice, b"<p>by blob</p>\n", "text/html")["blobId"]
    made = created(alice, {"subject": "blobs",
                           "textBody": [{"blobId": text, "charset": "iso-8859-1"}],
                           "htmlBody": [{"blobId": html, "type": "text/html", "size": 1}]})
    raw = octets(alice, made["blobId"])
    assert b"multipart/alternative" in raw and b"Content-Disposition" not in raw
    assert raw.count(b'Content-Type: text/plain; charset="utf-8"') == 1
    assert raw.count(b'Content-Type: text/html; charset="utf-8"') == 1
    [got] = alice.call("Email/get", ids=[made["id"]], fetchAllBodyValues=True, properties=[
        "textBody", "htmlBody", "attachments", "bodyValues"],
        bodyProperties=["partId", "type", "charset"])["list"]
    assert got["textBody"] == [{"partId": "1", "type": "text/plain", "charset": "utf-8"}]
    assert got["htmlBody"] == [{"partId": "2", "type": "text/html", "charset": "utf-8"}]
    assert got["attachments"] == []
    assert {k: v["value"] for k, v in got["bodyValues"].items()} == {
        "1": "café by blob\n", "2": "<p>by blob</p>\n"}


def test_body_structure_instead_of_text_and_html_bodies(alice: Jmap) -> None:
    made = created(alice, {
        "subject": "tree", "bodyValues": {"t": {"value": "plain\n"}, "h": {"value": "<b>x</b>\n"}},
        "bodyStructure": {"type": "multipart/alternative", "header:X-Root": "r", "subParts": [
            {"partId": "t", "type": "text/plain", "language": ["en"]},
            {"partId": "h", "type": "text/html", "header:X-Html:asText": "yes"}]}})
    raw = octets(alice, made["blobId"])
    assert re.search(rb"Content-Type: multipart/alternative;\r?\n? ?boundary=\"[^\"]+\"\r\n"
                     rb"X-Root: r\r\n\r\n", raw), raw
    assert b"Content-Language: en\r\n" in raw and b"X-Html: yes\r\n" in raw
    [got] = alice.call("Email/get", ids=[made["id"]], fetchAllBodyValues=True, properties=[
        "bodyStructure", "bodyValues"], bodyProperties=["partId", "type", "language",
                                                        "subParts"])["list"]
    assert got["bodyStructure"] == {
        "partId": None, "type": "multipart/alternative", "language": None, "subParts": [
            {"partId": "1", "type": "text/plain", "language": ["en"], "subParts": None},
            {"partId": "2", "type": "text/html", "language": None, "subParts": None}]}
    assert got["bodyValues"]["1"]["value"] == "plain\n"


def _error(description: str, *properties: str) -> dict[str, Any]:
    return {"type": "invalidProperties", "description": description,
            "properties": list(properties)}


def test_refusals_of_section_4_6(alice: Jmap) -> None:
    image = upload(alice, b"\x89PNG fake", "image/png")["blobId"]
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({**TEXT, "subject": "a", "header:Subject:asText": "b"},
         _error("subject and header:Subject:asText both set the Subject field",
                "subject", "header:Subject:asText")),
        ({**TEXT, "header:From": "a@example.test", "header:from:asAddresses": []},
         _error("header:From and header:from:asAddresses both set the from field",
                "header:From", "header:from:asAddresses")),
        ({**TEXT, "header:Subject:asAddresses": []},
         _error("header:Subject:asAddresses: the Subject field cannot take the asAddresses"
                " form (RFC 8621 §4.1.2)", "header:Subject:asAddresses")),
        ({**TEXT, "header:X-A:asNothing": "x"},
         _error("header:X-A:asNothing: not header:Name[:form][:all] with a form of RFC 8621"
                " §4.1.2", "header:X-A:asNothing")),
        ({**TEXT, "header:Content-Type": "text/html"},
         _error("header:Content-Type: MIME-Version and Content-* fields are not set on the"
                " Email (a body part's are)", "header:Content-Type")),
        ({**TEXT, "header:Content-Language:asText": "en"},
         _error("header:Content-Language:asText: MIME-Version and Content-* fields are not"
                " set on the Email (a body part's are)", "header:Content-Language:asText")),
        ({**TEXT, "headers": [{"name": "X-A", "value": "b"}]},
         _error("these cannot be set on create", "headers")),
        ({"bodyValues": TEXT["bodyValues"], "textBody": [
            {"partId": "1", "headers": [{"name": "X-A", "value": "b"}]}]},
         _error("textBody: a part's header fields are given as header: properties, not "
                "headers (RFC 8621 §4.6)", "textBody")),
        ({"bodyValues": TEXT["bodyValues"], "textBody": [
            {"partId": "1", "header:Content-Transfer-Encoding": "base64"}]},
         _error("textBody: header:Content-Transfer-Encoding is not given (the server writes"
                " MIME-Version, Content-Type from type and charset, and the "
                "Content-Transfer-Encoding)", "textBody")),
        ({"bodyValues": TEXT["bodyValues"], "textBody": [{"partId": "1", "size": 7}]},
         _error("textBody: a part given by partId has no size (the server encodes its body "
                "value; RFC 8621 §4.6)", "textBody")),
        ({"bodyValues": TEXT["bodyValues"], "textBody": [{"partId": "1", "charset": "utf-8"}]},
         _error("textBody: a part given by partId has no charset (the server encodes its "
                "body value; RFC 8621 §4.6)", "textBody")),
        ({**TEXT, "attachments": [{"blobId": image, "type": "image/png", "charset": "utf-8"}]},
         _error("attachments: charset is for a text/* part, not image/png", "attachments")),
        ({**TEXT, "attachments": [{"blobId": image, "type": "image/png", "cid": "c@x",
                                   "header:Content-ID": "<d@x>"}]},
         _error("attachments: cid and header:Content-ID both set the Content-ID field",
                "attachments")),
        ({"subject": "s", "bodyValues": TEXT["bodyValues"],
          "bodyStructure": {"partId": "1", "type": "text/plain", "header:Subject": "t"}},
         _error("bodyStructure: header:Subject sets a field the Email sets (subject)",
                "bodyStructure", "subject")),
        ({**TEXT, "bodyStructure": {"partId": "1", "type": "text/plain"}},
         _error("give bodyStructure or textBody/htmlBody/attachments, not both",
                "bodyStructure")),
        ({"htmlBody": [{"blobId": image, "type": "image/png"}]},
         _error("htmlBody must be one text/html part", "htmlBody")),
    ]
    for obj, expected in cases:
        assert refusal(alice, obj) == expected, obj
