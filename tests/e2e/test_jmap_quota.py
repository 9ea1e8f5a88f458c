"""JMAP Quotas (RFC 9425) against a real server: the account's octet quota and its usage, which
grows with mail delivered over SMTP and whose limit an administrator changes with the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.jmapclient import CORE, MAIL, QUOTA, Jmap, deliver, wait_count
from tests.e2e.server import Server, wait_port

ALICE, BOB = "alice@example.test", "bob@example.test"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("jmap-quota")))
    srv.cli("user", "add", ALICE, "--password-stdin", "--quota", "5000000",
            input=b"secret-password\n")
    srv.add_user(BOB)
    srv.start()
    wait_port(srv.http_port)  # the HTTP listener starts after SMTP
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def alice(server: Server) -> Jmap:
    return Jmap(server, ALICE, using=(CORE, MAIL, QUOTA))


def _used(server: Server, address: str) -> int:
    for line in server.cli("user", "list").stdout.decode().splitlines():
        if line.startswith(address + "\t"):
            return int(line.split("\t")[1].split("/")[0])
    raise AssertionError(f"{address} not listed")


def test_session_advertises_quota(alice: Jmap) -> None:
    assert QUOTA in alice.session["capabilities"]
    assert QUOTA in alice.session["accounts"][alice.account_id]["accountCapabilities"]
    assert alice.session["primaryAccounts"][QUOTA] == alice.account_id


def test_get_changes_after_delivery_and_admin_change(server: Server, alice: Jmap) -> None:
    first = alice.call("Quota/get", ids=None)
    [quota] = first["list"]
    assert quota["resourceType"] == "octets" and quota["scope"] == "account"
    assert quota["types"] == ["Email"] and quota["hardLimit"] == 5_000_000
    assert quota["used"] == _used(server, ALICE)
    deliver(server, ALICE, "fills the quota a little", "x" * 20_000 + "\n")
    wait_count(server, ALICE, 1)
    second = alice.call("Quota/get", ids=[quota["id"]], properties=["used"])
    assert set(second["list"][0]) == {"id", "used"}
    assert second["list"][0]["used"] >= quota["used"] + 20_000
    assert second["list"][0]["used"] == _used(server, ALICE)
    changes = alice.call("Quota/changes", sinceState=first["state"])
    assert changes["updated"] == [quota["id"]] and changes["updatedProperties"] == ["used"]
    assert changes["newState"] == second["state"]
    # A flag change does not move usage: no change to report.
    email = alice.call("Email/query")["ids"][0]
    alice.call("Email/set", update={email: {"keywords/$seen": True}})
    quiet = alice.call("Quota/changes", sinceState=second["state"])
    assert quiet["updated"] == [] and quiet["newState"] != second["state"]
    # The administrator's new limit, made outside any JMAP call, is seen too.
    server.cli("user", "quota", ALICE, "7000000")
    third = alice.call("Quota/get", ids=None)
    assert third["list"][0]["hardLimit"] == 7_000_000
    limit_changes = alice.call("Quota/changes", sinceState=quiet["newState"])
    assert limit_changes["updated"] == [quota["id"]]
    assert "hardLimit" in limit_changes["updatedProperties"]


def test_query(alice: Jmap) -> None:
    [quota_id] = alice.call("Quota/get", ids=None, properties=["id"])["list"][0].values()
    assert alice.call("Quota/query")["ids"] == [quota_id]
    assert alice.call("Quota/query", filter={"scope": ["account"], "resourceType": ["octets"],
                                             "type": ["Email"]})["ids"] == [quota_id]
    assert alice.call("Quota/query", filter={"type": ["Calendar"]})["ids"] == []
    assert alice.call("Quota/query", filter={"operator": "NOT", "conditions": [
        {"scope": ["domain"]}]})["ids"] == [quota_id]
    result = alice.call("Quota/query", sort=[{"property": "used"}], calculateTotal=True)
    assert result["total"] == 1 and result["canCalculateChanges"] is True
    changes = alice.call("Quota/queryChanges", sinceQueryState=result["queryState"])
    assert changes["removed"] == [] and changes["added"] == []
    assert alice.error("Quota/query", filter={"colour": 1})["type"] == "unsupportedFilter"
    assert alice.error("Quota/query", sort=[{"property": "hardLimit"}]
                       )["type"] == "unsupportedSort"
    assert alice.error("Quota/changes", sinceState="12")["type"] == "invalidArguments"
    assert alice.error("Quota/get", properties=["header:X:asText"]
                       )["type"] == "invalidArguments"
    assert alice.error("Quota/changes", sinceState="99999999.1"
                       )["type"] == "cannotCalculateChanges"


def test_isolation_and_capability(server: Server, alice: Jmap) -> None:
    bob = Jmap(server, BOB, using=(CORE, MAIL, QUOTA))
    [bobs] = bob.call("Quota/get", ids=None)["list"]
    [mine] = alice.call("Quota/get", ids=None)["list"]
    assert bobs["id"] != mine["id"]
    answer = alice.call("Quota/get", ids=[bobs["id"]])
    assert answer["list"] == [] and answer["notFound"] == [bobs["id"]]
    without = Jmap(server, ALICE)  # core and mail only
    assert without.error("Quota/get", ids=None)["type"] == "unknownMethod"
