"""JMAP for Sieve Scripts (RFC 9661) over HTTPS: a script uploaded as a blob, created and
activated in one SieveScript/set, read back, validated, refused when invalid, kept from
deletion while active; the active script then files mail sent over SMTP."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server import Server
from tests.e2e.test_jmap_mail import ALICE, CORE, MAIL, Jmap

SIEVE = "urn:ietf:params:jmap:sieve"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("jmap-sieve")))
    srv.add_user(ALICE)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def jmap(server: Server) -> Jmap:
    return Jmap(server, ALICE, (CORE, MAIL, SIEVE))


def upload(j: Jmap, text: str) -> str:
    r = j.client.post(f"/jmap/upload/{j.account_id}/", content=text.encode(),
                      headers={"Content-Type": "application/sieve"})
    assert r.status_code == 201, r.text
    blob_id: str = r.json()["blobId"]
    return blob_id


def test_capability(jmap: Jmap) -> None:
    caps: dict[str, Any] = jmap.session["accounts"][jmap.account_id]["accountCapabilities"]
    sieve = caps[SIEVE]
    assert "fileinto" in sieve["sieveExtensions"] and sieve["maxSizeScript"] == 65536


def test_create_activate_get_and_filter(server: Server, jmap: Jmap) -> None:
    script = ('require ["fileinto", "mailbox"];\n'
              'if header :contains "subject" "via jmap" { fileinto :create "ByJmap"; }\n')
    blob = upload(jmap, script)
    result = jmap.call("SieveScript/set", create={"a": {"name": "jmap-rules", "blobId": blob}},
                       onSuccessActivateScript="#a")
    assert list(result["created"]) == ["a"], result
    script_id = result["created"]["a"]["id"]
    got = jmap.call("SieveScript/get", ids=[script_id])
    [obj] = got["list"]
    assert (obj["name"], obj["isActive"]) == ("jmap-rules", True)
    content = jmap.client.get(f"/jmap/download/{jmap.account_id}/{obj['blobId']}/s.sieve")
    assert content.text == script
    assert jmap.call("SieveScript/query", filter={"isActive": True})["ids"] == [script_id]
    refused = jmap.call("SieveScript/set", destroy=[script_id])
    assert refused["notDestroyed"][script_id]["type"] == "scriptIsActive"
    assert "* jmap-rules" in server.cli("sieve", "list", ALICE).stdout.decode()
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
        smtp.sendmail("x@remote.test", [ALICE], f"From: x@remote.test\r\nTo: {ALICE}\r\n"
                      "Subject: sent via jmap rules\r\n\r\nhi\r\n")
    deadline = time.monotonic() + 30
    while not any(e.get("subject") == "sent via jmap rules"
                  for e in server.emails(ALICE, label="ByJmap")):
        assert time.monotonic() < deadline, server.emails(ALICE)
        time.sleep(0.3)
    done = jmap.call("SieveScript/set", onSuccessDeactivateScript=True, destroy=[])
    assert done["newState"] != done["oldState"]
    gone = jmap.call("SieveScript/set", destroy=[script_id])
    assert gone["destroyed"] == [script_id]


def test_invalid_scripts(jmap: Jmap) -> None:
    bad = upload(jmap, 'fileinto "x";\n')
    answer = jmap.call("SieveScript/validate", blobId=bad)
    assert answer["error"]["type"] == "invalidSieve"
    assert "line 1" in answer["error"]["description"]
    assert jmap.call("SieveScript/validate", blobId=upload(jmap, "keep;"))["error"] is None
    result = jmap.call("SieveScript/set", create={"b": {"name": "bad", "blobId": bad}})
    assert result["notCreated"]["b"]["type"] == "invalidSieve"
    result = jmap.call("SieveScript/set", create={"c": {"name": "x", "blobId": "Unope"}})
    assert result["notCreated"]["c"]["type"] == "blobNotFound"


@pytest.mark.parametrize("args", [{"destroy": [None]}, {"destroy": [{}]}, {"destroy": [1]},
                                  {"properties": [[]]}])
def test_malformed_arguments_are_invalid_arguments(server: Server, jmap: Jmap,
                                                   args: dict[str, object]) -> None:
    """What the JMAP fuzz stage sent (`destroy: [null]` and `[{}]` to /set, `[[]]` as
    properties to /get): invalidArguments, never serverFail, and no traceback in the log."""
    method = "SieveScript/get" if "properties" in args else "SieveScript/set"
    assert jmap.error(method, **args) == "invalidArguments"
    assert "Traceback" not in server.log_path.read_text()


def test_rename_keeps_the_id_and_gives_the_rfc_errors(server: Server, jmap: Jmap) -> None:
    """RFC 9661 §2.2: a /set update of `name` renames (the id is immutable, RFC 8620 §1.2);
    a name another script has is alreadyExists with that script's id; a name RFC 5804 §1.6
    forbids is invalidProperties; isActive is server-set; a script over maxSizeScript is
    tooLarge. The active script stays active when renamed, as ManageSieve's RENAMESCRIPT."""
    made = jmap.call("SieveScript/set", create={
        "one": {"name": "rename-one", "blobId": upload(jmap, "keep;")},
        "two": {"name": "rename-two", "blobId": upload(jmap, "discard;")},
        "anon": {"blobId": upload(jmap, "stop;")}}, onSuccessActivateScript="#one")
    one, two = made["created"]["one"]["id"], made["created"]["two"]["id"]
    assert made["created"]["one"]["isActive"] is True, made
    assert made["created"]["anon"]["name"], "a script created without a name gets one"
    renamed = jmap.call("SieveScript/set", update={one: {"name": "rename-uno"}})
    assert renamed["updated"] == {one: None}, renamed
    [obj] = jmap.call("SieveScript/get", ids=[one])["list"]
    assert (obj["id"], obj["name"], obj["isActive"]) == (one, "rename-uno", True)
    assert "* rename-uno" in server.cli("sieve", "list", ALICE).stdout.decode()

    clash = jmap.call("SieveScript/set", update={one: {"name": "rename-two"}})
    assert clash["notUpdated"][one]["type"] == "alreadyExists", clash
    assert clash["notUpdated"][one]["existingId"] == two
    clash = jmap.call("SieveScript/set", create={"c": {"name": "rename-two",
                                                       "blobId": upload(jmap, "keep;")}})
    assert clash["notCreated"]["c"]["type"] == "alreadyExists"
    assert clash["notCreated"]["c"]["existingId"] == two
    for bad in ("a/b", "tab\there", "", 7):
        answer = jmap.call("SieveScript/set", update={two: {"name": bad}})
        assert answer["notUpdated"][two]["type"] == "invalidProperties", (bad, answer)
        assert answer["notUpdated"][two]["properties"] == ["name"], (bad, answer)
    answer = jmap.call("SieveScript/set", update={two: {"isActive": True}})
    assert answer["notUpdated"][two]["type"] == "invalidProperties", answer
    huge = upload(jmap, "# " + "x" * 70_000 + "\nkeep;\n")
    answer = jmap.call("SieveScript/set", update={two: {"blobId": huge}})
    assert answer["notUpdated"][two]["type"] == "tooLarge", answer
    bad_script = upload(jmap, "fileinto;\n")
    answer = jmap.call("SieveScript/set", update={two: {"name": "rename-dos",
                                                        "blobId": bad_script}})
    assert answer["notUpdated"][two]["type"] == "invalidSieve", answer
    [still] = jmap.call("SieveScript/get", ids=[two])["list"]
    assert still["name"] == "rename-two", "a failed update changes nothing"

    both = jmap.call("SieveScript/set", update={two: {"name": "rename-dos",
                                                      "blobId": upload(jmap, "stop;")}},
                     onSuccessActivateScript=two)
    assert both["updated"] == {two: {"isActive": True}, one: {"isActive": False}}, both
    [obj] = jmap.call("SieveScript/get", ids=[two])["list"]
    assert (obj["name"], obj["isActive"]) == ("rename-dos", True)
    text = jmap.client.get(f"/jmap/download/{jmap.account_id}/{obj['blobId']}/s.sieve").text
    assert text == "stop;"
    off = jmap.call("SieveScript/set", onSuccessDeactivateScript=True)
    assert off["updated"] == {two: {"isActive": False}}, off
    gone = jmap.call("SieveScript/set", destroy=[one, two, made["created"]["anon"]["id"]])
    assert len(gone["destroyed"]) == 3, gone


@pytest.mark.parametrize("method", ["SieveScript/set", "Filters/set"])
def test_a_set_over_max_objects_in_set_is_request_too_large(server: Server,
                                                             method: str) -> None:
    """RFC 8620 §5.3: more than the session's maxObjectsInSet (1000) objects in one /set is
    requestTooLarge, here as for every other /set; and nothing is destroyed."""
    api = Jmap(server, ALICE, (CORE, MAIL, SIEVE, "urn:mailyard:params:jmap:filters"))
    limit = api.client.get("/.well-known/jmap").json()["capabilities"][CORE]["maxObjectsInSet"]
    ids = [f"S{n}" for n in range(limit + 1)]
    assert api.error(method, destroy=ids) == "requestTooLarge"
    assert api.error(method, update={i: {} for i in ids}) == "requestTooLarge"
    assert api.error(method, create="x") == "invalidArguments"
