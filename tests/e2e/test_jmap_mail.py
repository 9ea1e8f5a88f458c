"""JMAP Mail (RFC 8621) end to end: a real `mailyard serve`, mail delivered over SMTP, read and
changed over JMAP with httpx, and the same changes seen from IMAP (one email id, one change log).
"""

from __future__ import annotations

import imaplib
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import Server

ALICE, BOB = "alice@example.test", "bob@example.test"
PASSWORD = "secret-password"
CORE, MAIL = "urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"


def _send(server: Server, sender: str, rcpt: str, msg: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as s:
        s.send_message(msg, from_addr=sender, to_addrs=[rcpt])


def _messages() -> list[EmailMessage]:
    out = []
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "Ann Lee <ann@shop.test>", ALICE, "Invoice March"
    m["Message-ID"] = "<invoice-1@shop.test>"
    m["Date"] = "Mon, 04 Mar 2024 10:00:00 +0000"
    m.set_content("The total amount is due on Friday.\n")
    m.add_alternative("<p>The total <b>amount</b> is due on Friday.</p>\n", subtype="html")
    m.add_attachment(b"%PDF-1.4 not really" * 500, maintype="application", subtype="pdf",
                     filename="invoice-march.pdf")
    out.append(m)
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "bob@home.test", ALICE, "Lunch plans"
    m["Cc"] = "Dave <dave@corp.test>"
    m["Message-ID"] = "<lunch-1@home.test>"
    m.set_content("Pizza or sushi?\n")
    out.append(m)
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "carol@corp.test", ALICE, "Re: Lunch plans"
    m["Message-ID"] = "<lunch-2@corp.test>"
    m["In-Reply-To"] = m["References"] = "<lunch-1@home.test>"
    m.set_content("Sushi, obviously.\n")
    out.append(m)
    return out


class Jmap:
    def __init__(self, server: Server, user: str, using: tuple[str, ...] = (CORE, MAIL)
                 ) -> None:
        self.using = list(using)
        self.client = httpx.Client(base_url=f"https://127.0.0.1:{server.http_port}", verify=False,
                                   auth=(user, PASSWORD), timeout=30)
        session = self.client.get("/jmap/session").json()
        self.session = session
        self.account_id: str = session["primaryAccounts"][MAIL]

    def calls(self, *calls: tuple[str, dict[str, Any]]) -> list[list[Any]]:
        body = {"using": self.using,
                "methodCalls": [[name, {"accountId": self.account_id, **args}, f"c{n}"]
                                for n, (name, args) in enumerate(calls)]}
        response = self.client.post("/jmap/api", json=body)
        assert response.status_code == 200, response.text
        result: list[list[Any]] = response.json()["methodResponses"]
        return result

    def call(self, name: str, **args: Any) -> dict[str, Any]:
        [[answer, result, _]] = self.calls((name, args))
        assert answer == name, result
        return result  # type: ignore[no-any-return]

    def error(self, name: str, **args: Any) -> str:
        [[answer, result, _]] = self.calls((name, args))
        assert answer == "error", result
        return result["type"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("jmap-mail")))
    srv.add_user(ALICE)
    srv.add_user(BOB)
    srv.start()
    for m in _messages():
        _send(srv, "sender@remote.test", ALICE, m)
        time.sleep(0.05)  # distinct receivedAt, so the order is known
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "eve@remote.test", BOB, "For Bob only: lunch"
    m.set_content("Secret lunch.\n")
    _send(srv, "eve@remote.test", BOB, m)
    srv.wait_emails(ALICE, 3)
    srv.wait_emails(BOB, 1)
    srv.wait_queue_empty()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def alice(server: Server) -> Jmap:
    return Jmap(server, ALICE)


@pytest.fixture(scope="module")
def bob(server: Server) -> Jmap:
    return Jmap(server, BOB)


def _boxes(j: Jmap) -> dict[str, dict[str, Any]]:
    return {b["role"] or b["name"]: b for b in j.call("Mailbox/get", ids=None)["list"]}


def _query(j: Jmap, **args: Any) -> list[str]:
    ids: list[str] = j.call("Email/query", **args)["ids"]
    return ids


def _subjects(j: Jmap, ids: list[str]) -> list[str]:
    got = j.call("Email/get", ids=ids, properties=["subject"])["list"]
    return [e["subject"] for e in got]


def _imap(server: Server, user: str = ALICE) -> imaplib.IMAP4:
    conn = imaplib.IMAP4("127.0.0.1", server.imap_port)
    conn.login(user, PASSWORD)
    return conn


# ---------------------------------------------------------------------- session, Mailbox


def test_session_advertises_mail(alice: Jmap) -> None:
    cap = alice.session["accounts"][alice.account_id]["accountCapabilities"][MAIL]
    assert cap["emailQuerySortOptions"] == [
        "receivedAt", "size", "from", "to", "subject", "sentAt", "hasKeyword",
        "allInThreadHaveKeyword", "someInThreadHaveKeyword"]
    assert cap["maxSizeMailboxName"] == 255 and cap["mayCreateTopLevelMailbox"] is True
    assert MAIL in alice.session["capabilities"]


def test_mailbox_get_roles_and_counts(alice: Jmap) -> None:
    result = alice.call("Mailbox/get", ids=None)
    assert result["state"].isdigit()
    boxes = {b["role"]: b for b in result["list"]}
    assert {"inbox", "sent", "drafts", "trash", "junk", "archive", "all"} <= set(boxes)
    inbox = boxes["inbox"]
    assert inbox["totalEmails"] >= 3 and inbox["unreadEmails"] >= 3
    assert inbox["parentId"] is None and inbox["myRights"]["mayDelete"] is True
    assert set(inbox) == {"id", "name", "parentId", "role", "sortOrder", "totalEmails",
                          "unreadEmails", "totalThreads", "unreadThreads", "myRights",
                          "isSubscribed"}
    few = alice.call("Mailbox/get", ids=[inbox["id"], "nope"], properties=["role"])
    assert few["list"] == [{"id": inbox["id"], "role": "inbox"}]
    assert few["notFound"] == ["nope"]


def test_mailbox_nested_name_and_parent(server: Server, alice: Jmap) -> None:
    conn = _imap(server)
    try:
        assert conn.create("Work")[0] == "OK"
        assert conn.create("Work/Projects")[0] == "OK"
    finally:
        conn.logout()
    boxes = alice.call("Mailbox/get", ids=None)["list"]
    work = next(b for b in boxes if b["name"] == "Work")
    child = next(b for b in boxes if b["name"] == "Projects")
    assert child["parentId"] == work["id"] and work["role"] is None


def test_mailbox_unknown_property(alice: Jmap) -> None:
    assert alice.error("Mailbox/get", ids=None, properties=["colour"]) == "invalidArguments"


# ---------------------------------------------------------------------- Email/query


def test_query_all_newest_first(alice: Jmap) -> None:
    result = alice.call("Email/query", calculateTotal=True)
    assert result["total"] == 3 and result["canCalculateChanges"] is True
    assert _subjects(alice, result["ids"]) == ["Re: Lunch plans", "Lunch plans",
                                               "Invoice March"]
    asc = _query(alice, sort=[{"property": "receivedAt", "isAscending": True}])
    assert asc == list(reversed(result["ids"]))


def test_query_filters(alice: Jmap) -> None:
    inbox = _boxes(alice)["inbox"]["id"]
    assert _subjects(alice, _query(alice, filter={"text": "sushi"})) == [
        "Re: Lunch plans", "Lunch plans"]
    assert _subjects(alice, _query(alice, filter={"from": "ann@shop.test"})) == ["Invoice March"]
    assert len(_query(alice, filter={"inMailbox": inbox})) == 3
    assert _query(alice, filter={"inMailbox": _boxes(alice)["trash"]["id"]}) == []
    assert _subjects(alice, _query(alice, filter={"minSize": 5000})) == ["Invoice March"]
    assert _subjects(alice, _query(alice, filter={"hasAttachment": True})) == ["Invoice March"]
    assert len(_query(alice, filter={"after": "2000-01-01T00:00:00Z"})) == 3
    assert _query(alice, filter={"before": "2000-01-01T00:00:00Z"}) == []
    both = {"operator": "AND", "conditions": [{"text": "lunch"}, {"from": "carol@corp.test"}]}
    assert _subjects(alice, _query(alice, filter=both)) == ["Re: Lunch plans"]


def test_query_keywords(server: Server, alice: Jmap) -> None:
    [invoice] = _query(alice, filter={"from": "ann@shop.test"})
    alice.call("Email/set", update={invoice: {"keywords/$flagged": True}})
    assert _query(alice, filter={"hasKeyword": "$flagged"}) == [invoice]
    assert invoice not in _query(alice, filter={"notKeyword": "$flagged"})
    assert len(_query(alice, filter={"notKeyword": "$flagged"})) == 2
    alice.call("Email/set", update={invoice: {"keywords/$flagged": None}})


def test_query_paging_and_anchor(alice: Jmap) -> None:
    every = _query(alice)
    page = alice.call("Email/query", position=1, limit=1, calculateTotal=True)
    assert page["ids"] == every[1:2] and page["position"] == 1 and page["total"] == 3
    anchored = alice.call("Email/query", anchor=every[1], limit=5)
    assert anchored["ids"] == every[1:] and anchored["position"] == 1
    back = alice.call("Email/query", anchor=every[2], anchorOffset=-1, limit=1)
    assert back["ids"] == every[1:2]
    assert alice.call("Email/query", position=-1)["ids"] == every[-1:]
    assert alice.error("Email/query", anchor="no-such-email") == "anchorNotFound"


def test_query_errors(alice: Jmap) -> None:
    assert alice.error("Email/query", sort=[{"property": "colour"}]) == "unsupportedSort"
    assert alice.error("Email/query", sort=[{"property": "subject", "collation": "i;klingon"}]
                       ) == "unsupportedSort"
    assert alice.error("Email/query", sort=[{"property": "hasKeyword"}]) == "invalidArguments"
    assert alice.error("Email/query", filter={"colour": "red"}) == "unsupportedFilter"
    assert alice.error("Email/query", filter={"minSize": "big"}) == "invalidArguments"
    assert alice.error("Email/query", limit=-1) == "invalidArguments"


def test_query_collapse_threads(alice: Jmap) -> None:
    ids = _query(alice, collapseThreads=True)
    assert _subjects(alice, ids) == ["Re: Lunch plans", "Invoice March"]


# ---------------------------------------------------------------------- isolation


def test_accounts_are_isolated(alice: Jmap, bob: Jmap) -> None:
    bobs = _query(bob)
    assert len(bobs) == 1
    assert not set(bobs) & set(_query(alice, filter={"text": "lunch"}))
    assert bobs[0] not in _query(alice)
    got = alice.call("Email/get", ids=bobs, properties=["subject"])
    assert got["list"] == [] and got["notFound"] == bobs
    boxes = bob.call("Mailbox/get", ids=None)["list"]
    assert alice.call("Mailbox/get", ids=[boxes[0]["id"]])["notFound"] == [boxes[0]["id"]]
    body = {"using": [CORE, MAIL], "methodCalls": [
        ["Email/query", {"accountId": bob.account_id}, "0"]]}
    [[name, result, _]] = alice.client.post("/jmap/api", json=body).json()["methodResponses"]
    assert name == "error" and result["type"] == "accountNotFound"


# ---------------------------------------------------------------------- Email/get


def test_email_get_default_properties(alice: Jmap) -> None:
    [invoice] = _query(alice, filter={"from": "ann@shop.test"})
    result = alice.call("Email/get", ids=[invoice])
    assert result["state"].isdigit() and result["notFound"] == []
    [email] = result["list"]
    inbox = _boxes(alice)["inbox"]["id"]
    assert email["id"] == invoice and inbox in email["mailboxIds"]
    assert email["subject"] == "Invoice March"
    assert email["from"] == [{"name": "Ann Lee", "email": "ann@shop.test"}]
    assert email["to"] == [{"name": None, "email": ALICE}]
    assert email["messageId"] == ["invoice-1@shop.test"]
    assert email["sentAt"] == "2024-03-04T10:00:00Z"
    assert email["receivedAt"].endswith("Z") and email["size"] > 5000
    assert email["hasAttachment"] is True and "total amount" in email["preview"]
    assert email["keywords"] == {} and email["bodyValues"] == {}
    assert [p["type"] for p in email["textBody"]] == ["text/plain"]
    assert [p["type"] for p in email["htmlBody"]] == ["text/html"]
    [pdf] = email["attachments"]
    assert pdf["name"] == "invoice-march.pdf" and pdf["type"] == "application/pdf"
    assert pdf["size"] == len(b"%PDF-1.4 not really" * 500)
    assert pdf["disposition"] == "attachment"


def test_email_get_body_values_and_structure(alice: Jmap) -> None:
    [invoice] = _query(alice, filter={"from": "ann@shop.test"})
    [email] = alice.call("Email/get", ids=[invoice], fetchTextBodyValues=True,
                         fetchHTMLBodyValues=True, maxBodyValueBytes=12,
                         properties=["bodyStructure", "bodyValues", "textBody", "htmlBody"],
                         bodyProperties=["partId", "type", "subParts"])["list"]
    structure = email["bodyStructure"]
    assert structure["type"] == "multipart/mixed" and structure["partId"] is None
    assert [p["type"] for p in structure["subParts"]] == ["multipart/alternative",
                                                         "application/pdf"]
    text_id = email["textBody"][0]["partId"]
    html_id = email["htmlBody"][0]["partId"]
    assert email["bodyValues"][text_id] == {"value": "The total am", "isEncodingProblem": False,
                                            "isTruncated": True}
    assert email["bodyValues"][html_id]["value"].startswith("<p>The tota")
    [full] = alice.call("Email/get", ids=[invoice], fetchAllBodyValues=True,
                        properties=["bodyValues"])["list"]
    assert full["bodyValues"][text_id]["value"] == "The total amount is due on Friday.\n"
    assert full["bodyValues"][text_id]["isTruncated"] is False


def test_email_get_headers_and_properties(alice: Jmap) -> None:
    [reply] = _query(alice, filter={"from": "carol@corp.test"})
    [email] = alice.call("Email/get", ids=[reply, "missing"], properties=[
        "inReplyTo", "references", "header:Subject:asText", "header:From:asAddresses",
        "header:Message-ID:asMessageIds", "header:Received:all", "replyTo", "bcc",
    ])["list"]
    assert set(email) == {"id", "inReplyTo", "references", "header:Subject:asText",
                          "header:From:asAddresses", "header:Message-ID:asMessageIds",
                          "header:Received:all", "replyTo", "bcc"}
    assert email["inReplyTo"] == ["lunch-1@home.test"]
    assert email["references"] == ["lunch-1@home.test"]
    assert email["header:Subject:asText"] == "Re: Lunch plans"
    assert email["header:From:asAddresses"] == [{"name": None, "email": "carol@corp.test"}]
    assert email["header:Message-ID:asMessageIds"] == ["lunch-2@corp.test"]
    assert isinstance(email["header:Received:all"], list)
    assert email["replyTo"] is None and email["bcc"] is None
    assert alice.error("Email/get", ids=[reply], properties=["colour"]) == "invalidArguments"


def test_back_reference_query_then_get(alice: Jmap) -> None:
    responses = alice.calls(
        ("Email/query", {"filter": {"text": "lunch"}}),
        ("Email/get", {"#ids": {"resultOf": "c0", "name": "Email/query", "path": "/ids"},
                       "properties": ["subject", "threadId"]}),
    )
    assert [r[0] for r in responses] == ["Email/query", "Email/get"]
    got = responses[1][1]["list"]
    assert [e["subject"] for e in got] == ["Re: Lunch plans", "Lunch plans"]
    assert got[0]["threadId"] == got[1]["threadId"]


# ---------------------------------------------------------------------- changes, set, IMAP


def _imap_flags(server: Server, subject: str, folder: str = "INBOX") -> str:
    conn = _imap(server)
    try:
        conn.select(f'"{folder}"')
        _, data = conn.search(None, "SUBJECT", f'"{subject}"')
        [num] = data[0].split()
        _, fetched = conn.fetch(num, "(FLAGS)")
        return str(fetched[0])
    finally:
        conn.logout()


def test_imap_flag_shows_in_email_changes(server: Server, alice: Jmap) -> None:
    [lunch] = _query(alice, filter={"subject": "plans", "from": "bob@home.test"})
    since = alice.call("Email/get", ids=[])["state"]
    conn = _imap(server)
    try:
        conn.select("INBOX")
        _, data = conn.search(None, "FROM", '"bob@home.test"')
        [num] = data[0].split()
        assert conn.store(num, "+FLAGS", "(\\Seen)")[0] == "OK"
    finally:
        conn.logout()
    changes = alice.call("Email/changes", sinceState=since)
    assert changes["updated"] == [lunch] and changes["created"] == []
    assert int(changes["newState"]) > int(since) and changes["hasMoreChanges"] is False
    [email] = alice.call("Email/get", ids=[lunch], properties=["keywords"])["list"]
    assert email["keywords"] == {"$seen": True}
    assert alice.call("Email/changes", sinceState=changes["newState"])["updated"] == []


def test_changes_errors_and_paging(alice: Jmap) -> None:
    assert alice.error("Email/changes", sinceState="not-a-state") == "invalidArguments"
    assert alice.error("Email/changes", sinceState="999999999") == "cannotCalculateChanges"
    first = alice.call("Email/changes", sinceState="0", maxChanges=1)
    assert first["hasMoreChanges"] is True and len(first["created"]) == 1
    everything = alice.call("Email/changes", sinceState="0")
    assert len(everything["created"]) == 3 and everything["hasMoreChanges"] is False
    boxes = alice.call("Mailbox/changes", sinceState="0")
    assert len(boxes["created"]) >= 7 and boxes["updatedProperties"] is None


def test_email_set_keywords_seen_over_imap(server: Server, alice: Jmap) -> None:
    [invoice] = _query(alice, filter={"from": "ann@shop.test"})
    result = alice.call("Email/set", update={invoice: {"keywords/$flagged": True,
                                                       "keywords/$seen": True}})
    assert result["updated"] == {invoice: None}
    assert int(result["newState"]) > int(result["oldState"])
    flags = _imap_flags(server, "Invoice March")
    assert "\\Flagged" in flags and "\\Seen" in flags
    alice.call("Email/set", update={invoice: {"keywords": {"$seen": True}}})
    flags = _imap_flags(server, "Invoice March")
    assert "\\Flagged" not in flags and "\\Seen" in flags
    [email] = alice.call("Email/get", ids=[invoice], properties=["keywords"])["list"]
    assert email["keywords"] == {"$seen": True}


def test_email_set_errors(alice: Jmap) -> None:
    [invoice] = _query(alice, filter={"from": "ann@shop.test"})
    result = alice.call("Email/set", update={
        "missing": {"keywords/$seen": True},
        invoice: {"subject": "changed"},
    }, destroy=["missing-too"])
    assert result["notUpdated"]["missing"]["type"] == "notFound"
    assert result["notUpdated"][invoice]["type"] == "invalidProperties"
    assert result["notUpdated"][invoice]["properties"] == ["subject"]
    assert result["notDestroyed"]["missing-too"]["type"] == "notFound"
    bad_box = alice.call("Email/set", update={invoice: {"mailboxIds/nope": True}})
    assert bad_box["notUpdated"][invoice]["type"] == "invalidProperties"
    assert alice.error("Email/set", ifInState="1", update={}) == "stateMismatch"


def test_email_set_mailbox_moves_over_imap(server: Server, alice: Jmap) -> None:
    boxes = _boxes(alice)
    inbox, archive = boxes["inbox"]["id"], boxes["archive"]["id"]
    [reply] = _query(alice, filter={"from": "carol@corp.test"})
    state = alice.call("Email/get", ids=[])["state"]
    result = alice.call("Email/set", ifInState=state, update={
        reply: {f"mailboxIds/{inbox}": None, f"mailboxIds/{archive}": True}})
    assert result["updated"] == {reply: None}, result
    [email] = alice.call("Email/get", ids=[reply], properties=["mailboxIds"])["list"]
    assert archive in email["mailboxIds"] and inbox not in email["mailboxIds"]
    assert "Seen" not in _imap_flags(server, "Re: Lunch plans", "Archive")
    conn = _imap(server)
    try:
        conn.select("INBOX")
        _, data = conn.search(None, "FROM", '"carol@corp.test"')
        assert data[0].split() == []
    finally:
        conn.logout()
    assert reply in _query(alice, filter={"inMailbox": archive})
    assert reply not in _query(alice, filter={"inMailbox": inbox})
    alice.call("Email/set", update={reply: {f"mailboxIds/{inbox}": True,
                                            f"mailboxIds/{archive}": None}})
    assert reply in _query(alice, filter={"inMailbox": inbox})


def test_thread_get_and_changes(alice: Jmap) -> None:
    lunch = _query(alice, filter={"text": "lunch"},
                   sort=[{"property": "receivedAt", "isAscending": True}])
    [first] = alice.call("Email/get", ids=lunch[:1], properties=["threadId"])["list"]
    threads = alice.call("Thread/get", ids=[first["threadId"], "nope"])
    assert threads["list"] == [{"id": first["threadId"], "emailIds": lunch}]
    assert threads["notFound"] == ["nope"]
    assert len(alice.call("Thread/changes", sinceState="0")["created"]) == 2


def test_email_destroy(server: Server, alice: Jmap) -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "spam@remote.test", ALICE, "Doomed message"
    m.set_content("Delete me.\n")
    _send(server, "spam@remote.test", ALICE, m)
    deadline = time.monotonic() + 20
    while not (found := _query(alice, filter={"subject": "Doomed"})):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    [doomed] = found
    since = alice.call("Email/get", ids=[])["state"]
    result = alice.call("Email/set", destroy=[doomed])
    assert result["destroyed"] == [doomed]
    assert alice.call("Email/get", ids=[doomed])["notFound"] == [doomed]
    assert doomed in alice.call("Email/changes", sinceState=since)["destroyed"]
    assert _query(alice, filter={"subject": "Doomed"}) == []


# ---------------------------------------------------------------------- snippets, identities


def test_search_snippets(alice: Jmap) -> None:
    ids = _query(alice, filter={"text": "sushi"})
    result = alice.call("SearchSnippet/get", filter={"text": "sushi"},
                        emailIds=[*ids, "missing"])
    assert result["notFound"] == ["missing"]
    marked = [s for s in result["list"] if "<mark>" in (s["preview"] or "")]
    assert {s["emailId"] for s in result["list"]} == set(ids) and marked
    plain = alice.call("SearchSnippet/get", filter={"hasKeyword": "$seen"}, emailIds=ids)
    assert all(s["subject"] is None and s["preview"] is None for s in plain["list"])


def test_identity_get(alice: Jmap) -> None:
    body = {"using": [CORE, "urn:ietf:params:jmap:submission"], "methodCalls": [
        ["Identity/get", {"accountId": alice.account_id}, "0"]]}
    [[name, result, _]] = alice.client.post("/jmap/api", json=body).json()["methodResponses"]
    assert name == "Identity/get", result
    assert [i["email"] for i in result["list"]] == [ALICE]
