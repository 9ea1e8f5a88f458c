"""RFC 8621 §4 points a conformance run found, each checked on the exact response of a real
`mailyard serve` over HTTP: Email/import's error for a blob that does not exist, Email/set's
blobNotFound with its notFound list, Email/parse and Email/import agreeing on what an email
is, header:X:asText in NFC, and what Email/set create accepts and refuses (§4.6)."""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.jmapclient import Jmap
from tests.e2e.server import Server, wait_port
from tests.e2e.test_jmap_blobs import boxes, upload

ALICE = "alice@example.test"
MISSING = "U" + "1" * 64
"""An upload blob id of the right shape that no upload has."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("jmap-rfc-email")))
    srv.add_user(ALICE)
    srv.start()
    wait_port(srv.http_port)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def alice(server: Server) -> Jmap:
    return Jmap(server, ALICE)


def _base(j: Jmap) -> dict[str, Any]:
    return {"mailboxIds": {boxes(j)["drafts"]: True}, "from": [{"email": ALICE}]}


def test_import_of_a_missing_blob_is_invalid_properties(alice: Jmap) -> None:
    answer = alice.call("Email/import", emails={"k": {
        "blobId": MISSING, "mailboxIds": {boxes(alice)["inbox"]: True}}})
    assert answer["created"] is None
    error = answer["notCreated"]["k"]
    assert (error["type"], error["properties"]) == ("invalidProperties", ["blobId"])


def test_set_blob_not_found_lists_the_blobs(alice: Jmap) -> None:
    real = upload(alice, b"real file")["blobId"]
    other = "U" + "2" * 64
    answer = alice.call("Email/set", create={
        "att": {**_base(alice), "attachments": [
            {"blobId": real, "type": "application/octet-stream"},
            {"blobId": MISSING, "type": "application/octet-stream"}]},
        "tree": {**_base(alice), "bodyStructure": {"type": "multipart/mixed", "subParts": [
            {"blobId": MISSING, "type": "text/plain"},
            {"blobId": other, "type": "image/png"}]}},
        "both": {**_base(alice), "textBody": [{"blobId": other, "type": "text/plain"}],
                 "attachments": [{"blobId": MISSING, "type": "image/png"}]},
    })
    assert answer["created"] is None
    errors = answer["notCreated"]
    assert {k: e["type"] for k, e in errors.items()} == dict.fromkeys(
        ("att", "tree", "both"), "blobNotFound")
    assert (errors["att"]["notFound"], errors["att"]["properties"]) == (
        [MISSING], ["attachments"])
    assert (errors["tree"]["notFound"], errors["tree"]["properties"]) == (
        [MISSING, other], ["bodyStructure"])
    assert sorted(errors["both"]["notFound"]) == sorted([MISSING, other])
    assert sorted(errors["both"]["properties"]) == ["attachments", "textBody"]


@pytest.mark.parametrize("data", [b"", b"   \r\n", b"\x00\x01 not a message",
                                  b"no header here\r\n\r\nbody\r\n"])
def test_parse_and_import_agree_on_what_an_email_is(alice: Jmap, data: bytes) -> None:
    blob = upload(alice, data, "message/rfc822")["blobId"]
    imported = alice.call("Email/import", emails={"k": {
        "blobId": blob, "mailboxIds": {boxes(alice)["inbox"]: True}}})
    assert imported["notCreated"]["k"]["type"] == "invalidEmail"
    parsed = alice.call("Email/parse", blobIds=[blob])
    assert (parsed["parsed"], parsed["notParsable"], parsed["notFound"]) == (
        None, [blob], None)


def test_parse_and_import_agree_on_an_email(alice: Jmap) -> None:
    blob = upload(alice, b"Subject: minimal\r\n\r\nbody\r\n", "message/rfc822")["blobId"]
    parsed = alice.call("Email/parse", blobIds=[blob], properties=["subject"])
    assert parsed["parsed"] == {blob: {"subject": "minimal"}} and parsed["notParsable"] is None
    imported = alice.call("Email/import", emails={"k": {
        "blobId": blob, "mailboxIds": {boxes(alice)["inbox"]: True}}})
    assert imported["notCreated"] is None and imported["created"]["k"]["id"]


def test_as_text_is_nfc(alice: Jmap) -> None:
    """§4.1.2.2: the Text form is "converted to Normalization Form C"; the subject property is
    header:Subject:asText. The message spells é as e + U+0301 (NFD) in encoded words."""
    raw = (b"From: a@x.test\r\nSubject: =?utf-8?q?Cafe=CC=81_cre=CC=80me?=\r\n"
           b"X-Note: =?utf-8?b?" + base64.b64encode(
               "A\u030angstro\u0308m".encode()) + b"?=\r\n\r\nbody\r\n")
    blob = upload(alice, raw, "message/rfc822")["blobId"]
    props = ["subject", "header:Subject:asText", "header:X-Note:asText",
             "header:X-Note:asText:all", "header:Subject"]
    parsed = alice.call("Email/parse", blobIds=[blob], properties=props)["parsed"][blob]
    imported = alice.call("Email/import", emails={"k": {
        "blobId": blob, "mailboxIds": {boxes(alice)["inbox"]: True}}})["created"]["k"]
    [got] = alice.call("Email/get", ids=[imported["id"]], properties=props)["list"]
    for view in (parsed, got):
        assert view["subject"] == view["header:Subject:asText"] == "Caf\u00e9 cr\u00e8me"
        assert view["header:X-Note:asText"] == "\u00c5ngstr\u00f6m"
        assert view["header:X-Note:asText:all"] == ["\u00c5ngstr\u00f6m"]
        assert all(unicodedata.is_normalized("NFC", view[p]) for p in props[:3])
        # The raw form is the octets as they are: not normalised.
        assert view["header:Subject"] == " =?utf-8?q?Cafe=CC=81_cre=CC=80me?="
