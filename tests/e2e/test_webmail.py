"""The webmail in a real browser (Debian's chromium through Playwright) against a real server:
log in, read mail delivered over SMTP, reply with an attachment that reaches a second user's
open page live, star, label, archive, search, spam and not spam, log out; the session cookie is
refused to other sites' pages, and one account never reaches another's mail by id or URL."""

from __future__ import annotations

import gzip
import json
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, FilePayload, expect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.typing import Origin, Subprotocol

from tests.e2e.jmapclient import PASSWORD, Jmap
from tests.e2e.server import Server, wait_port
from tests.e2e.webmail_browser import Guarded, browser, login, row, shot, submit, wait_for

__all__ = ["browser"]

ALICE, BOB = "alice@example.test", "bob@example.test"
ROOT = Path(__file__).resolve().parents[2]
FIGURES = bytes(range(256)) * 64  # every octet value: a download must give them back exactly


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    srv.add_user(ALICE)
    srv.add_user(BOB)
    srv.start()
    wait_port(srv.http_port)  # the HTTP listener starts after SMTP's
    yield srv
    srv.stop()


def insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
    return context


def emails_with(jmap: Jmap, subject: str) -> list[dict[str, Any]]:
    ids = jmap.call("Email/query", filter={"subject": subject})["ids"]
    got: list[dict[str, Any]] = jmap.call(
        "Email/get", ids=ids, properties=["subject", "mailboxIds", "keywords"])["list"]
    return got


def in_only(jmap: Jmap, subject: str, box: dict[str, Any]) -> bool:
    """Whether every email with `subject` is in `box` and no other mailbox but All Mail
    (which holds every email)."""
    everything = jmap.boxes()["all"]["id"]
    found = emails_with(jmap, subject)
    return bool(found) and all(set(e["mailboxIds"]) - {everything} == {box["id"]} for e in found)


def seen(jmap: Jmap, subject: str) -> bool | None:
    """Whether every email with `subject` is read (None when there is none)."""
    found = emails_with(jmap, subject)
    return all(e["keywords"].get("$seen", False) for e in found) if found else None


def test_webmail_read_reply_live_actions(server: Server, browser: Browser) -> None:
    alice_api, bob_api = Jmap(server, ALICE), Jmap(server, BOB)
    alice_api.call("Mailbox/set", create={"l": {"name": "Projects"}})
    submit(server, BOB, ALICE, "Quarterly plan", "Draft at https://example.org/plan today.\n")

    bob = Guarded(browser, server)
    login(bob.page, BOB)
    bob.page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads

    alice = Guarded(browser, server)
    page = alice.page
    tool = page.get_by_role("toolbar", name="Actions")
    login(page, ALICE)
    row(page, "Quarterly plan").wait_for()
    expect(row(page, "Quarterly plan")).to_have_class(re.compile(r"\bunread\b"))
    expect(page.locator(".box.current .count")).to_have_text("1")
    shot(page, "list")

    # Reading: the text body with its link, and the message marked read.
    row(page, "Quarterly plan").click()
    link = page.locator("article.message pre.text a")
    expect(link).to_have_attribute("href", "https://example.org/plan")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    wait_for(lambda: all(e["keywords"].get("$seen") for e in emails_with(alice_api, "Quarterly")),
             what="the message marked read")

    # Reply with an attachment; it reaches Bob's open page without a reload.
    page.get_by_role("button", name="Reply", exact=True).click()
    composer = page.locator("form.composer")
    expect(composer.get_by_label("To")).to_have_value(BOB)
    expect(composer.get_by_label("Subject")).to_have_value("Re: Quarterly plan")
    composer.get_by_label("Message").press("Control+Home")
    composer.get_by_label("Message").type("Looks good; figures attached.")
    composer.locator("input[type=file]").set_input_files(files=[FilePayload(
        name="figures.ods", mimeType="application/vnd.oasis.opendocument.spreadsheet",
        buffer=FIGURES)])
    expect(composer.locator(".attachments")).to_contain_text("figures.ods")
    shot(page, "compose")
    composer.get_by_role("button", name="Send").click()
    expect(composer).to_have_count(0)

    reply = row(bob.page, "Re: Quarterly plan")
    reply.wait_for(timeout=30_000)
    assert bob.page.evaluate("window.__sameDocument") is True
    expect(reply).to_have_class(re.compile(r"\bunread\b"))
    expect(reply.locator(".clip")).to_have_count(1)
    reply.click()
    bob_message = bob.page.locator("article.message").last
    expect(bob_message.locator("pre.text")).to_contain_text("Looks good; figures attached.")
    with bob.page.expect_download() as download:
        bob_message.get_by_role("link", name=re.compile("figures.ods")).click()
    assert Path(download.value.path()).read_bytes() == FIGURES
    [received] = emails_with(bob_api, "Re: Quarterly plan")
    assert received["keywords"].get("$seen")

    # Alice's sent reply threads with the original.
    tool.get_by_role("button", name="←").click()
    row(page, "Quarterly plan").click()
    expect(page.locator("article.message")).to_have_count(2)
    shot(page, "conversation")

    # A new label from the sidebar.
    page.get_by_label("New label").fill("Travel")
    page.get_by_label("New label").press("Enter")
    expect(page.locator(".box", has_text="Travel")).to_be_visible()
    assert "Travel" in alice_api.boxes()

    # Star, label, archive: each lands in the store.
    tool.get_by_role("button", name="Star", exact=True).click()
    wait_for(lambda: any(e["keywords"].get("$flagged")
                         for e in emails_with(alice_api, "Quarterly plan")), what="star")
    tool.get_by_label("Label").select_option(label="Projects")
    boxes = alice_api.boxes()
    wait_for(lambda: all(boxes["Projects"]["id"] in e["mailboxIds"]
                         for e in emails_with(alice_api, "Quarterly plan")), what="label")
    tool.get_by_role("button", name="Archive", exact=True).click()
    wait_for(lambda: all(boxes["inbox"]["id"] not in e["mailboxIds"]
                         for e in emails_with(alice_api, "Quarterly plan")), what="archive")
    expect(row(page, "Quarterly plan")).to_have_count(0)
    page.locator(".box", has_text="Projects").click()
    expect(row(page, "Quarterly plan").locator(".star.on")).to_have_count(1)

    # Search in Gmail's language.
    search = page.get_by_label("Search mail")
    search.fill("from:bob plan")
    search.press("Enter")
    row(page, "Quarterly plan").wait_for()
    search.fill("subject:nothing-like-this")
    search.press("Enter")
    expect(page.locator(".list .empty")).to_be_visible()

    # Spam, then not spam, from the keyboard and the toolbar.
    submit(server, BOB, ALICE, "Cheap watches", "Buy now.\n")
    page.locator(".box", has_text="Inbox").click()
    row(page, "Cheap watches").click()
    tool.get_by_role("button", name="Spam", exact=True).click()
    wait_for(lambda: in_only(alice_api, "Cheap watches", boxes["junk"]), what="spam")
    page.locator(".box", has_text="Spam").click()
    row(page, "Cheap watches").click()
    tool.get_by_role("button", name="Not spam", exact=True).click()
    wait_for(lambda: in_only(alice_api, "Cheap watches", boxes["inbox"]), what="not spam")

    # Keyboard: back to the inbox list, j/k, # deletes to Trash, ? shows the help.
    page.keyboard.press("u")
    page.locator(".box", has_text="Inbox").click()
    row(page, "Cheap watches").wait_for()
    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("#")
    wait_for(lambda: in_only(alice_api, "Cheap watches", boxes["trash"]), what="delete")

    # Mark unread, then read again from the list; move out of Trash into a label.
    page.locator(".box", has_text="Trash").click()
    row(page, "Cheap watches").click()
    wait_for(lambda: seen(alice_api, "Cheap watches") is True, what="read on opening")
    tool.get_by_role("button", name="Mark unread").click()
    wait_for(lambda: seen(alice_api, "Cheap watches") is False, what="mark unread")
    expect(row(page, "Cheap watches")).to_have_class(re.compile(r"\bunread\b"))
    tool.get_by_role("button", name="Mark read").click()
    wait_for(lambda: seen(alice_api, "Cheap watches") is True, what="mark read")
    tool.get_by_label("Move to").select_option(label="Projects")
    wait_for(lambda: in_only(alice_api, "Cheap watches", boxes["Projects"]), what="move")

    # Log out: the session's token is revoked, so the old cookie is worth nothing.
    [cookie] = [c for c in alice.context.cookies() if c["name"] == "__Host-mailyard-session"]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    old = httpx.get(f"{alice.base}/jmap/session", verify=False,
                    cookies={cookie["name"]: cookie["value"]})
    assert old.status_code == 401
    assert "basic" not in old.headers.get("www-authenticate", "").lower()

    assert alice.errors == [] and bob.errors == []
    assert alice.remote == [] and bob.remote == []
    alice.close()
    bob.close()


def test_webmail_accounts_are_isolated(server: Server, browser: Browser) -> None:
    submit(server, BOB, ALICE, "For Alice only", "Secret.\n", html="<p>Secret</p>")
    alice_api = Jmap(server, ALICE)
    wait_for(lambda: emails_with(alice_api, "For Alice only"), what="delivery")
    [email] = emails_with(alice_api, "For Alice only")
    blob = alice_api.call("Email/get", ids=[email["id"]], properties=["blobId"])["list"][0]

    bob = Guarded(browser, server)
    login(bob.page, BOB)
    answers = bob.page.evaluate("""async ([id, aliceAccount, blob]) => {
        const html = await fetch(`/web/message/${id}/html`);
        const session = await (await fetch('/jmap/session')).json();
        const account = session.primaryAccounts['urn:ietf:params:jmap:mail'];
        const api = await fetch('/jmap/api', {method: 'POST', headers: {
            'Content-Type': 'application/json', 'X-Mailyard-CSRF': '1'}, body: JSON.stringify({
            using: ['urn:ietf:params:jmap:core', 'urn:ietf:params:jmap:mail'],
            methodCalls: [['Email/get', {accountId: account, ids: [id]}, 'a'],
                          ['Email/get', {accountId: aliceAccount, ids: [id]}, 'b']]})});
        const own = await fetch(`/jmap/download/${account}/${blob}/x`);
        const theirs = await fetch(`/jmap/download/${aliceAccount}/${blob}/x`);
        return {html: html.status, api: await api.json(), own: own.status,
                theirs: theirs.status};
    }""", [email["id"], alice_api.account_id, blob["blobId"]])
    assert answers["html"] == 404
    [mine, theirs] = answers["api"]["methodResponses"]
    assert mine[0] == "Email/get" and mine[1]["notFound"] == [email["id"]]
    assert mine[1]["list"] == []
    assert theirs[0] == "error" and theirs[1]["type"] == "accountNotFound"
    assert answers["own"] == 404 and answers["theirs"] == 404

    # Opening Alice's message URL in Bob's browser shows nothing of it.
    response = bob.page.goto(f"/web/message/{email['id']}/html")
    assert response is not None and response.status == 404
    assert "Secret" not in bob.page.content()
    assert bob.remote == []
    bob.close()


def test_webmail_cookie_is_refused_to_other_sites(server: Server, browser: Browser) -> None:
    """The session cookie authenticates only requests from the webmail's own page: a
    state-changing one needs our Origin and the CSRF header; login and logout likewise."""
    base = f"https://127.0.0.1:{server.http_port}"
    own = {"Origin": base, "X-Mailyard-CSRF": "1"}
    with httpx.Client(base_url=base, verify=False) as client:
        foreign = client.post("/login", json={"username": ALICE, "password": PASSWORD},
                              headers={"Origin": "https://evil.test", "X-Mailyard-CSRF": "1"})
        assert foreign.status_code == 403
        assert client.post("/login", json={"username": ALICE, "password": PASSWORD},
                           headers={"Origin": base}).status_code == 403  # no CSRF header
        assert client.post("/login", json={"username": ALICE, "password": "wrong"},
                           headers=own).status_code == 401
        logged = client.post("/login", json={"username": ALICE, "password": PASSWORD},
                             headers=own)
        assert logged.status_code == 200
        set_cookie = logged.headers["set-cookie"].lower()
        for part in ("httponly", "secure", "samesite=strict", "path=/"):
            assert part in set_cookie
        call = {"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", {}, "e"]]}
        assert client.post("/jmap/api", json=call, headers=own).status_code == 200
        assert client.get("/jmap/session").status_code == 200  # a GET changes nothing
        for headers, status in (({}, 401), ({"X-Mailyard-CSRF": "1"}, 401),
                                ({"Origin": base}, 401),
                                ({"Origin": "https://evil.test", "X-Mailyard-CSRF": "1"}, 403),
                                ({"Origin": "null", "X-Mailyard-CSRF": "1"}, 403)):
            refused = client.post("/jmap/api", json=call, headers=headers)
            assert refused.status_code == status, (headers, refused.text)
            assert "basic" not in refused.headers.get("www-authenticate", "").lower()
        # JMAP over WebSocket with the cookie: only from our own page (an Origin that is ours;
        # no page can add the CSRF header to an upgrade, and none is asked for).
        session_cookie = f"__Host-mailyard-session={logged.cookies['__Host-mailyard-session']}"
        with ws_connect(f"wss://127.0.0.1:{server.http_port}/jmap/ws", ssl=insecure(),
                        subprotocols=[Subprotocol("jmap")], origin=Origin(base),
                        additional_headers={"Cookie": session_cookie}, open_timeout=10) as ws:
            ws.send(json.dumps({"@type": "Request", "using": ["urn:ietf:params:jmap:core"],
                                "methodCalls": [["Core/echo", {"hi": 1}, "e"]]}))
            assert json.loads(ws.recv(timeout=10))["methodResponses"] == [
                ["Core/echo", {"hi": 1}, "e"]]
        for origin in (None, Origin("https://evil.test")):
            with pytest.raises(InvalidStatus) as refused_ws:
                ws_connect(f"wss://127.0.0.1:{server.http_port}/jmap/ws", ssl=insecure(),
                           subprotocols=[Subprotocol("jmap")], origin=origin,
                           additional_headers={"Cookie": session_cookie}, open_timeout=10)
            assert refused_ws.value.response.status_code == 403
        assert client.post("/logout", headers={"Origin": "https://evil.test",
                                               "X-Mailyard-CSRF": "1"}).status_code == 403
        assert client.post("/jmap/api", json=call, headers=own).status_code == 200
        assert client.post("/logout", headers=own).status_code == 204
        # The cookie the client kept is revoked on the server, not only dropped here.
        stale = httpx.post(f"{base}/jmap/api", json=call, headers=own, verify=False,
                           cookies={"__Host-mailyard-session":
                                    logged.cookies["__Host-mailyard-session"]})
        assert stale.status_code == 401

    # Every page carries the strict policy; the message frame's forbids scripts outright.
    page = httpx.get(f"{base}/", verify=False)
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and page.headers["x-frame-options"] == "DENY"
    for name in ("app.js", "jmap.js", "app.css", "vendor/preact.mjs", "vendor/hooks.mjs",
                 "vendor/htm.mjs", "vendor/LICENSE-preact", "vendor/LICENSE-htm"):
        assert httpx.get(f"{base}/web/static/{name}", verify=False).status_code == 200, name


def test_webmail_settings_vacation_and_tokens(server: Server, browser: Browser) -> None:
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    page.get_by_role("button", name="Settings").click()
    settings = page.get_by_role("region", name="Settings")
    away = settings.locator("form.vacation")  # the filters' form has a Subject too
    expect(settings.locator(".quota")).to_contain_text("used")

    settings.get_by_label("Reply automatically").check()
    away.get_by_label("Subject").fill("Away until Monday")
    away.get_by_label("Message").fill("I am away; back on Monday.")
    away.get_by_role("button", name="Save").click()
    api = Jmap(server, ALICE, using=("urn:ietf:params:jmap:core",
                                     "urn:ietf:params:jmap:vacationresponse"))
    wait_for(lambda: api.call("VacationResponse/get", ids=["singleton"])["list"][0]["isEnabled"],
             what="the vacation responder on")
    [vacation] = api.call("VacationResponse/get", ids=["singleton"])["list"]
    assert vacation["subject"] == "Away until Monday"
    assert vacation["textBody"] == "I am away; back on Monday."
    # The page shows what is saved when it comes back to the settings.
    expect(page.locator(".notice")).to_have_text("Vacation responder saved.")
    page.locator(".box", has_text="Inbox").click()
    page.get_by_role("button", name="Settings").click()
    expect(away.get_by_label("Subject")).to_have_value("Away until Monday")
    expect(settings.get_by_label("Reply automatically")).to_be_checked()

    # An app token: created (shown once), usable as a Bearer token, then revoked.
    expect(settings.locator("tr", has_text="(this session)")).to_have_count(1)
    settings.locator("form.newtoken").get_by_label("Name").fill("phone")
    settings.locator("form.newtoken").get_by_label("Days").fill("30")
    settings.get_by_role("button", name="Create token").click()
    token = settings.locator(".created code").inner_text()
    assert token.startswith("myt1.")
    base = alice.base
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{base}/jmap/session", headers=bearer, verify=False).status_code == 200
    # A token cannot manage tokens: only a webmail session can.
    assert httpx.get(f"{base}/web/tokens", headers=bearer, verify=False).status_code == 403
    shot(page, "settings")
    settings.locator("tr", has_text="phone").get_by_role("button", name="Revoke").click()
    expect(settings.locator("tr", has_text="phone")).to_have_count(0)
    assert httpx.get(f"{base}/jmap/session", headers=bearer, verify=False).status_code == 401
    assert alice.errors == [] and alice.remote == []
    alice.close()


def test_webmail_on_a_phone_screen(server: Server, browser: Browser) -> None:
    """At a phone's width the mailboxes fold into a menu; the list and reading still work."""
    submit(server, BOB, ALICE, "Lunch on Friday?", "Shall we meet at noon?\n")
    phone = Guarded(browser, server, width=390, height=844)
    page = phone.page
    login(page, ALICE)
    row(page, "Lunch on Friday?").wait_for()
    nav = page.get_by_role("navigation", name="Mailboxes")
    expect(nav).to_be_hidden()
    shot(page, "phone")
    page.get_by_role("button", name="Mailboxes").click()
    expect(nav).to_be_visible()
    nav.locator(".box", has_text="Sent").click()
    expect(nav).to_be_hidden()
    expect(page.locator(".list .empty")).to_be_visible()
    page.get_by_role("button", name="Mailboxes").click()
    nav.locator(".box", has_text="Inbox").click()
    row(page, "Lunch on Friday?").click()
    expect(page.locator("article.message pre.text")).to_contain_text("meet at noon")
    assert phone.errors == [] and phone.remote == []
    phone.close()


def test_webmail_send_later_then_undo_then_send(server: Server, browser: Browser) -> None:
    """A scheduled send is held by FUTURERELEASE and taken back with Undo (the message goes
    back to Drafts and the composer reopens); sent again now, it leaves after the undo window
    and reaches its recipient once."""
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    page.get_by_role("button", name="Compose").click()
    composer = page.locator("form.composer")
    composer.get_by_label("To").fill(BOB)
    composer.get_by_label("Subject").fill("Later plan")
    composer.get_by_label("Message").fill("Talk tomorrow.")
    composer.get_by_label("When").select_option(label="in 1 hour")
    composer.get_by_role("button", name="Send").click()
    notice = page.locator(".notice")
    expect(notice).to_contain_text("Scheduled for")

    api = Jmap(server, ALICE, using=("urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail",
                                     "urn:ietf:params:jmap:submission"))
    [held] = api.call("EmailSubmission/get", ids=None)["list"]
    assert held["undoStatus"] == "pending"
    assert held["envelope"]["mailFrom"]["parameters"] == {"HOLDFOR": "3600"}
    notice.get_by_role("button", name="Undo").click()
    expect(composer.get_by_label("Subject")).to_have_value("Later plan")
    [canceled] = api.call("EmailSubmission/get", ids=[held["id"]])["list"]
    assert canceled["undoStatus"] == "canceled"
    boxes = api.boxes()
    wait_for(lambda: in_only(api, "Later plan", boxes["drafts"]), what="back in Drafts")

    composer.get_by_role("button", name="Send").click()
    expect(notice).to_contain_text("Message sent.")
    expect(notice.get_by_role("button", name="Undo")).to_be_visible()
    bob_api = Jmap(server, BOB)
    wait_for(lambda: emails_with(bob_api, "Later plan"), timeout=60, what="delivery to Bob")
    assert len(emails_with(bob_api, "Later plan")) == 1
    wait_for(lambda: in_only(api, "Later plan", boxes["sent"]), what="the copy in Sent only")
    assert alice.errors == [] and alice.remote == []
    alice.close()


def test_webmail_actions_on_several_conversations(server: Server, browser: Browser) -> None:
    for subject in ("Batch one", "Batch two", "Batch three"):
        submit(server, BOB, ALICE, subject, f"{subject}.\n")
    api = Jmap(server, ALICE)
    wait_for(lambda: len(api.call("Email/query", filter={"subject": "Batch"})["ids"]) == 3,
             what="three deliveries")
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    row(page, "Batch three").wait_for()
    row(page, "Batch one").get_by_role("checkbox").check()
    row(page, "Batch two").get_by_role("checkbox").check()
    page.get_by_role("toolbar", name="Actions").get_by_role("button", name="Star").click()
    wait_for(lambda: all(e["keywords"].get("$flagged") for e in emails_with(api, "Batch one")
                         + emails_with(api, "Batch two")), what="both starred")
    assert not emails_with(api, "Batch three")[0]["keywords"].get("$flagged")
    # Selected with the keyboard: k/j move, x ticks.
    page.keyboard.press("j")  # from "Batch three" (newest, first) to "Batch two"
    page.keyboard.press("x")
    page.keyboard.press("j")
    page.keyboard.press("x")
    page.get_by_role("toolbar", name="Actions").get_by_role("button", name="Archive").click()
    boxes = api.boxes()
    wait_for(lambda: all(boxes["inbox"]["id"] not in e["mailboxIds"]
                         for e in emails_with(api, "Batch one") + emails_with(api, "Batch two")),
             what="both archived")
    assert boxes["inbox"]["id"] in emails_with(api, "Batch three")[0]["mailboxIds"]
    expect(page.locator(".row")).to_have_count(1)

    # Every other action on the two ticked conversations, in the Archive.
    api.call("Mailbox/set", create={"l": {"name": "Projects"}})
    boxes = api.boxes()
    page.locator(".box", has_text="Projects").wait_for()
    page.locator(".box", has_text="Archive").click()
    tools = page.get_by_role("toolbar", name="Actions")
    both = ("Batch one", "Batch two")

    def tick_both() -> None:
        for subject in both:
            row(page, subject).get_by_role("checkbox").check()

    def each(check: Any) -> bool:
        return all(check(e) for s in both for e in emails_with(api, s))

    row(page, "Batch two").wait_for()
    tick_both()
    tools.get_by_role("button", name="Mark unread").click()
    wait_for(lambda: each(lambda e: not e["keywords"].get("$seen")), what="both unread")
    tick_both()
    tools.get_by_role("button", name="Mark read").click()
    wait_for(lambda: each(lambda e: e["keywords"].get("$seen")), what="both read")
    tick_both()
    tools.get_by_label("Label").select_option(label="Projects")
    wait_for(lambda: each(lambda e: boxes["Projects"]["id"] in e["mailboxIds"]),
             what="both labelled")
    tick_both()
    tools.get_by_role("button", name="Spam", exact=True).click()
    wait_for(lambda: all(in_only(api, s, boxes["junk"]) for s in both), what="both spam")
    page.locator(".box", has_text="Spam").click()
    row(page, "Batch two").wait_for()
    tick_both()
    tools.get_by_role("button", name="Not spam", exact=True).click()
    wait_for(lambda: all(in_only(api, s, boxes["inbox"]) for s in both), what="both not spam")
    page.locator(".box", has_text="Inbox").click()
    row(page, "Batch two").wait_for()
    tick_both()
    tools.get_by_role("button", name="Delete", exact=True).click()
    wait_for(lambda: all(in_only(api, s, boxes["trash"]) for s in both), what="both deleted")
    page.locator(".box", has_text="Trash").click()
    row(page, "Batch two").wait_for()
    tick_both()
    tools.get_by_label("Move to").select_option(label="Projects")
    wait_for(lambda: all(in_only(api, s, boxes["Projects"]) for s in both), what="both moved")
    assert in_only(api, "Batch three", boxes["inbox"])  # never ticked, never touched
    assert alice.errors == [] and alice.remote == []
    alice.close()


def test_webmail_script_budget_and_no_outside_requests(server: Server, browser: Browser) -> None:
    """Every script the page loads (logged in, a conversation open, the composer and the
    settings opened, so that every module is in) comes from the server itself, and all of
    them together are under the issue's 200 KB compressed (gzip -9 of each, as a server or
    proxy compressing them would send)."""
    submit(server, BOB, ALICE, "Budget", "Small.\n")
    alice = Guarded(browser, server)
    page = alice.page
    scripts: dict[str, bytes] = {}

    def record(response: Any) -> None:
        if response.request.resource_type == "script":
            scripts[response.url] = response.body()

    page.on("response", record)
    login(page, ALICE)
    row(page, "Budget").click()
    page.locator("article.message pre.text").wait_for()
    page.get_by_role("button", name="Reply", exact=True).click()
    page.locator("form.composer").get_by_role("button", name="Discard").click()
    page.get_by_role("button", name="Settings").click()
    page.get_by_role("region", name="Settings").locator(".quota").wait_for()
    names = sorted(url.rsplit("/web/static/", 1)[-1] for url in scripts)
    assert names == ["app.js", "compose.js", "jmap.js", "list.js", "reader.js", "search.js",
                     "settings.js", "sidebar.js", "util.js", "vendor/hooks.mjs",
                     "vendor/htm.mjs", "vendor/preact.mjs"], names
    assert all(url.startswith(f"{alice.base}/web/static/") for url in scripts)
    raw = sum(len(b) for b in scripts.values())
    compressed = sum(len(gzip.compress(b, 9)) for b in scripts.values())
    print(f"scripts: {len(scripts)} files, {raw} bytes, {compressed} bytes gzip -9")
    assert compressed < 200_000, compressed
    assert alice.errors == [] and alice.remote == []
    alice.close()
