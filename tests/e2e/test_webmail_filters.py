"""Gmail-style filters made in the webmail (Settings -> Filters, in Debian's chromium) and run
by the Sieve engine on mail delivered over SMTP: the filter labels, stars and marks read a
message from the boss, leaves another sender's alone, and once deleted leaves the boss's
next message alone too; the account's active Sieve script (JMAP SieveScript/get) is the
compiled one. Filters/set refuses invalid filters with invalidProperties."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from mailyard.core.sieve.gmailfilters import compile_filters, parse_filters
from tests.e2e.jmapclient import CORE, MAIL, Jmap
from tests.e2e.server import Server, wait_port
from tests.e2e.webmail_browser import Guarded, browser, login, wait_for

__all__ = ["browser"]

ALICE = "alice@example.test"
BOSS = "boss@remote.test"
SIEVE = "urn:ietf:params:jmap:sieve"
FILTERS = "urn:mailyard:params:jmap:filters"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    srv.add_user(ALICE)
    srv.start()
    wait_port(srv.http_port)  # the HTTP listener starts after SMTP's
    yield srv
    srv.stop()


GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def deliver(server: Server, sender: str, subject: str, body: str = "Hello.\n") -> None:
    """Over the MX port, as mail from outside arrives."""
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = f"Someone <{sender}>", ALICE, subject
    m["Message-ID"] = f"<{subject.replace(' ', '-')}@remote.test>"
    m.set_content(body)
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as s:
        s.send_message(m, from_addr=sender, to_addrs=[ALICE])


def arrived(jmap: Jmap, subject: str) -> dict[str, Any] | None:
    """The one email with `subject`, once stored: its mailboxes (by name) and keywords."""
    ids = jmap.call("Email/query", filter={"subject": subject})["ids"]
    if not ids:
        return None
    [email] = jmap.call("Email/get", ids=ids, properties=["mailboxIds", "keywords"])["list"]
    names = {b["id"]: b["name"] for b in jmap.call("Mailbox/get", ids=None)["list"]}
    return {"boxes": {names[i] for i in email["mailboxIds"]} - {"All Mail"},
            "keywords": set(email["keywords"])}


def active_script(jmap: Jmap) -> tuple[str, str]:
    [script] = [s for s in jmap.call("SieveScript/get", ids=None)["list"] if s["isActive"]]
    text = jmap.client.get(f"/jmap/download/{jmap.account_id}/{script['blobId']}/s.sieve").text
    return script["name"], text


def test_filter_created_in_webmail_runs_in_sieve(server: Server, browser: Browser) -> None:
    api = Jmap(server, ALICE, (CORE, MAIL, SIEVE, FILTERS))
    guarded = Guarded(browser, server)
    page = guarded.page
    login(page, ALICE)
    page.get_by_role("button", name="Settings").click()
    form = page.get_by_role("form", name="New filter")
    form.get_by_label("From").fill(BOSS)
    form.get_by_label("Apply the label").fill("Work")
    form.get_by_label("Star it").check()
    form.get_by_label("Mark as read").check()
    form.get_by_role("button", name="Create filter").click()
    listed = page.get_by_role("list", name="Filters").get_by_role("listitem")
    expect(listed).to_have_count(1)
    expect(listed).to_contain_text(f"From: {BOSS}")
    expect(listed).to_contain_text("label Work")

    # One engine: the active Sieve script is the compiled filter.
    [f] = api.call("Filters/get", ids=None)["list"]
    assert (f["from"], f["label"], f["star"], f["markRead"], f["archive"]) == \
        (BOSS, "Work", True, True, False)
    name, text = active_script(api)
    assert name == "mailyard-filters"
    assert f'header :contains "from" "{BOSS}"' in text
    assert 'fileinto :copy :create "Work";' in text and "addflag" in text
    assert text == compile_filters(parse_filters(text))  # exactly what the compiler writes

    deliver(server, BOSS, "Budget review")
    deliver(server, "other@remote.test", "Lunch plans")
    boss = wait_for(lambda: arrived(api, "Budget review"), what="the boss's message")
    other = wait_for(lambda: arrived(api, "Lunch plans"), what="the other message")
    assert boss == {"boxes": {"INBOX", "Work"}, "keywords": {"$seen", "$flagged"}}, boss
    assert other == {"boxes": {"INBOX"}, "keywords": set()}, other

    # An invalid filter is refused with the property named, in the page and over JMAP.
    form.get_by_label("Subject").fill("no action given")
    form.get_by_role("button", name="Create filter").click()
    expect(form.get_by_role("alert")).to_contain_text("at least one action")
    refused = api.call("Filters/set", create={"x": {"from": "a\nb", "label": "L"}})
    assert refused["notCreated"]["x"]["type"] == "invalidProperties"
    assert refused["notCreated"]["x"]["properties"] == ["from"]
    refused = api.call("Filters/set", create={"x": {"from": "a", "sieve": "discard;"}})
    assert refused["notCreated"]["x"]["type"] == "invalidProperties"
    assert len(api.call("Filters/get", ids=None)["list"]) == 1

    # Deleted in the page: the boss's next message is left alone.
    page.get_by_role("button", name=f"Delete filter From: {BOSS}").first.click()
    expect(page.get_by_text("No filters.")).to_be_visible()
    assert api.call("Filters/get", ids=None)["list"] == []
    name, text = active_script(api)
    assert name == "mailyard-filters" and "if " not in text
    deliver(server, BOSS, "Second budget review")
    later = wait_for(lambda: arrived(api, "Second budget review"), what="the later message")
    assert later == {"boxes": {"INBOX"}, "keywords": set()}, later
    assert not guarded.errors and not guarded.remote, (guarded.errors, guarded.remote)
    guarded.close()


def test_never_spam_and_archive_over_jmap(server: Server) -> None:
    """Archive with a label: only the label; never spam: the Inbox for a message the spam
    placement put in Junk (a script's explicit fileinto "INBOX"), while the same spam from
    another sender stays in Junk."""
    api = Jmap(server, ALICE, (CORE, MAIL, SIEVE, FILTERS))
    result = api.call("Filters/set", create={
        "a": {"subject": "newsletter", "label": "News", "archive": True},
        "b": {"from": "friend@remote.test", "neverSpam": True, "star": True}})
    assert set(result["created"]) == {"a", "b"}, result
    deliver(server, "list@remote.test", "Weekly newsletter")
    deliver(server, "friend@remote.test", "Photos", f"test {GTUBE}\n")
    deliver(server, "stranger@remote.test", "Offer", f"test {GTUBE}\n")
    news = wait_for(lambda: arrived(api, "Weekly newsletter"), what="the newsletter")
    photos = wait_for(lambda: arrived(api, "Photos"), what="the friend's message")
    assert news == {"boxes": {"News"}, "keywords": set()}, news
    offer = wait_for(lambda: arrived(api, "Offer"), what="the stranger's spam")
    assert photos == {"boxes": {"INBOX"}, "keywords": {"$flagged"}}, photos
    assert offer["boxes"] == {"Junk"} and "$junk" in offer["keywords"], offer
    fid = result["created"]["a"]["id"]
    changed = api.call("Filters/set", update={fid: {"archive": False}})
    assert changed["updated"] == {fid: None}, changed
    [a] = [f for f in api.call("Filters/get", ids=[fid])["list"]]
    assert a["archive"] is False and a["label"] == "News"
