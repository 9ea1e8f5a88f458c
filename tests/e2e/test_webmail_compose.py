"""Composing in the webmail, in Debian's chromium against a real server: every tool of the
rich-text toolbar (bold, italic, underline, bulleted and numbered lists, a link, clearing the
formatting) ends up in the HTML part that reaches the recipient over SMTP, beside a plain-text
alternative with the lists and the link's address; a 25 MB attachment uploaded with its
progress shown, downloaded back octet for octet by the recipient; identities and signatures made
in Settings and put into new messages."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.jmapclient import CORE, MAIL, Jmap
from tests.e2e.server import Server, wait_port
from tests.e2e.webmail_browser import Guarded, browser, login, row, wait_for

__all__ = ["browser"]

ALICE, BOB = "alice@example.test", "bob@example.test"
SUBMISSION = "urn:ietf:params:jmap:submission"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    srv.add_user(ALICE)
    srv.add_user(BOB)
    srv.start()
    wait_port(srv.http_port)  # the HTTP listener starts after SMTP's
    yield srv
    srv.stop()


def received(api: Jmap, subject: str) -> dict[str, Any] | None:
    """The one email with `subject` in the account, with its bodies, once it is there."""
    ids = api.call("Email/query", filter={"subject": subject})["ids"]
    if not ids:
        return None
    [email] = api.call("Email/get", ids=ids, fetchAllBodyValues=True, properties=[
        "from", "subject", "bodyStructure", "textBody", "htmlBody", "bodyValues",
        "attachments"])["list"]
    return email  # type: ignore[no-any-return]


def body(email: dict[str, Any], kind: str) -> str:
    return "".join(email["bodyValues"][p["partId"]]["value"] for p in email[kind])


def test_rich_text_toolbar_sends_html_and_plain_text(server: Server, browser: Browser) -> None:
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    page.evaluate("localStorage.setItem('mailyard.undoSeconds', '5')")
    page.get_by_role("button", name="Compose").click()
    composer = page.locator("form.composer")
    composer.get_by_role("combobox", name="To").fill(BOB)
    composer.get_by_label("Subject").fill("Every tool")
    composer.get_by_role("button", name="Rich text").click()
    tools = composer.get_by_role("toolbar", name="Formatting")
    editor = composer.get_by_role("textbox", name="Message")
    editor.click()

    def toggle(name: str, text: str) -> None:
        """The tool on, `text` typed, the tool off again."""
        tools.get_by_role("button", name=name, exact=True).click()
        editor.press_sequentially(text)
        tools.get_by_role("button", name=name, exact=True).click()

    editor.press_sequentially("Plain ")
    toggle("Bold", "strong")
    editor.press_sequentially(" ")
    toggle("Italic", "slanted")
    editor.press_sequentially(" ")
    toggle("Underline", "lined")
    expect(editor.locator("b")).to_have_text("strong")
    expect(editor.locator("i")).to_have_text("slanted")
    expect(editor.locator("u")).to_have_text("lined")

    editor.press("Enter")
    tools.get_by_role("button", name="Bulleted list").click()
    editor.press_sequentially("apples")
    editor.press("Enter")
    editor.press_sequentially("pears")
    editor.press("Enter")
    editor.press("Enter")  # an empty item ends the list
    tools.get_by_role("button", name="Numbered list").click()
    editor.press_sequentially("first")
    editor.press("Enter")
    editor.press_sequentially("second")
    editor.press("Enter")
    editor.press("Enter")
    expect(editor.locator("ul > li")).to_have_text(["apples", "pears"])
    expect(editor.locator("ol > li")).to_have_text(["first", "second"])

    # A link on the selected words; a javascript: address is refused.
    editor.press_sequentially("See the site")
    for _ in range(len("the site")):
        editor.press("Shift+ArrowLeft")
    tools.get_by_role("button", name="Link").click()
    field = composer.get_by_label("Link address")
    expect(field).to_be_focused()
    field.fill("javascript:alert(1)")
    field.press("Enter")
    expect(composer.get_by_role("alert")).to_have_text("A link is an http(s) or mailto: address.")
    field.fill("https://example.org/site")
    field.press("Enter")
    expect(field).to_have_count(0)
    expect(editor.locator("a")).to_have_text("the site")
    expect(editor.locator("a")).to_have_attribute("href", "https://example.org/site")
    expect(editor.locator("a[href^='javascript']")).to_have_count(0)

    # Clear formatting takes the marks off a selection.
    editor.press("End")
    editor.press("Enter")
    tools.get_by_role("button", name="Bold", exact=True).click()
    editor.press_sequentially("was bold")
    for _ in range(len("was bold")):
        editor.press("Shift+ArrowLeft")
    tools.get_by_role("button", name="Clear formatting").click()
    expect(editor.locator("b")).to_have_count(1)  # only "strong" still bold
    composer.get_by_role("button", name="Send").click()
    expect(composer).to_have_count(0)

    bob_api = Jmap(server, BOB)
    got = wait_for(lambda: received(bob_api, "Every tool"), timeout=60, what="delivery to Bob")
    assert got["bodyStructure"]["type"] == "multipart/alternative"
    assert [p["type"] for p in got["bodyStructure"]["subParts"]] == ["text/plain", "text/html"]
    sent_html = body(got, "htmlBody")
    for fragment in ("<b>strong</b>", "<i>slanted</i>", "<u>lined</u>", "<li>apples</li>",
                     "<li>pears</li>", "<li>first</li>", "<li>second</li>",
                     '<a href="https://example.org/site">the site</a>'):
        assert fragment in sent_html, (fragment, sent_html)
    assert re.search(r"<ul>\s*<li>apples", sent_html) and re.search(r"<ol>\s*<li>first", sent_html)
    assert "<b>was bold" not in sent_html
    text = body(got, "textBody")
    assert text.splitlines() == ["Plain strong slanted lined", "- apples", "- pears",
                                 "1. first", "2. second",
                                 "See the site <https://example.org/site>", "was bold"], text

    # Bob reads it in his page: the formatting survives the server's sanitiser.
    bob = Guarded(browser, server)
    login(bob.page, BOB)
    row(bob.page, "Every tool").click()
    frame = bob.page.frame_locator("iframe.body")
    expect(frame.locator("i")).to_have_text("slanted")
    expect(frame.locator("u")).to_have_text("lined")
    expect(frame.locator("ol > li")).to_have_text(["first", "second"])
    expect(frame.locator("a")).to_have_attribute("href", "https://example.org/site")
    assert alice.errors == [] and bob.errors == []
    assert alice.remote == [] and bob.remote == []
    alice.close()
    bob.close()


def test_large_attachment_upload_shows_progress(server: Server, browser: Browser,
                                                tmp_path: Path) -> None:
    big = os.urandom(25 * 1024 * 1024)  # the 25 MB
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    page.evaluate("localStorage.setItem('mailyard.undoSeconds', '5')")
    # Uploads held to 8 MB/s, so that the upload lasts long enough to watch its progress.
    cdp = alice.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": 8 * 1024 * 1024})
    page.get_by_role("button", name="Compose").click()
    composer = page.locator("form.composer")
    composer.get_by_role("combobox", name="To").fill(BOB)
    composer.get_by_label("Subject").fill("The big file")
    # From a file on disk: the browser reads it itself (a 25 MB buffer sent through
    # Playwright's pipe takes longer than a busy machine allows).
    path = tmp_path / "big.bin"
    path.write_bytes(big)
    composer.locator("input[type=file]").set_input_files(path, timeout=120_000)
    progress = composer.get_by_role("progressbar", name="Uploading big.bin")
    progress.wait_for()
    expect(composer.get_by_role("button", name="Send")).to_be_disabled()
    seen: list[float] = []

    def moved() -> bool:
        value = progress.evaluate("p => p.value / p.max") if progress.count() else None
        if value is not None:
            seen.append(value)
        return any(0 < v < 1 for v in seen)

    wait_for(moved, timeout=60, what="progress between 0 and 100 %")
    expect(progress).to_have_count(0, timeout=120_000)
    expect(composer.locator(".attachments")).to_contain_text("big.bin")
    expect(composer.locator(".attachments")).to_contain_text("25.0 MB")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    composer.get_by_role("button", name="Send").click()
    expect(composer).to_have_count(0, timeout=60_000)

    bob_api = Jmap(server, BOB)
    got = wait_for(lambda: received(bob_api, "The big file"), timeout=120, what="delivery")
    [a] = got["attachments"]
    assert (a["name"], a["size"]) == ("big.bin", len(big))
    blob = bob_api.client.get(f"/jmap/download/{bob_api.account_id}/{a['blobId']}/big.bin",
                              timeout=120)
    assert hashlib.sha256(blob.content).digest() == hashlib.sha256(big).digest()
    assert alice.errors == [] and alice.remote == []
    alice.close()


def test_identities_and_signatures(server: Server, browser: Browser) -> None:
    api = Jmap(server, ALICE, (CORE, MAIL, SUBMISSION))
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    page.evaluate("localStorage.setItem('mailyard.undoSeconds', '5')")
    page.get_by_role("button", name="Settings").click()
    own = page.get_by_role("form", name="Identity alice@example.test")
    own.get_by_label("Name").fill("Alice Example")
    own.get_by_label("Signature").fill("Alice Example\nExample Corp")
    own.get_by_role("button", name="Save identity").click()
    expect(page.locator(".notice")).to_have_text("Identity saved.")
    expect(own).to_have_count(0)  # the form is now named after the saved name
    [mine] = api.call("Identity/get", ids=None)["list"]
    assert (mine["name"], mine["textSignature"]) == ("Alice Example", "Alice Example\nExample Corp")
    expect(page.get_by_role("form", name="Identity Alice Example").get_by_label("Signature")
           ).to_have_value("Alice Example\nExample Corp")

    page.get_by_text("Add an identity").click()
    new = page.get_by_role("form", name="New identity")
    new.get_by_label("Name").fill("Alice (home)")
    new.get_by_label("Signature").fill("A.")
    new.get_by_role("button", name="Add identity").click()
    expect(page.get_by_role("form", name="Identity Alice (home)")).to_be_visible()
    assert sorted(i["name"] for i in api.call("Identity/get", ids=None)["list"]) == [
        "Alice (home)", "Alice Example"]

    # A new message starts with the first identity's signature; another identity swaps it.
    page.get_by_role("button", name="Compose").click()
    composer = page.locator("form.composer")
    message = composer.get_by_label("Message")
    expect(message).to_have_value("\n\n-- \nAlice Example\nExample Corp")
    composer.get_by_label("From").select_option(label="Alice (home) <alice@example.test>")
    expect(message).to_have_value("\n\n-- \nA.")
    composer.get_by_label("From").select_option(label="Alice Example <alice@example.test>")
    expect(message).to_have_value("\n\n-- \nAlice Example\nExample Corp")
    composer.get_by_role("combobox", name="To").fill(BOB)
    composer.get_by_label("Subject").fill("Signed")
    message.press("Control+Home")
    message.type("Hello Bob.")
    composer.get_by_role("button", name="Send").click()
    expect(composer).to_have_count(0)

    bob_api = Jmap(server, BOB)
    got = wait_for(lambda: received(bob_api, "Signed"), timeout=60, what="delivery to Bob")
    assert got["from"] == [{"name": "Alice Example", "email": ALICE}]
    assert body(got, "textBody").rstrip() == "Hello Bob.\n\n-- \nAlice Example\nExample Corp"

    # The added identity can go; the account's own cannot.
    page.get_by_role("button", name="Settings").click()
    home = page.get_by_role("form", name="Identity Alice (home)")
    home.get_by_role("button", name="Delete identity").click()
    expect(home).to_have_count(0)
    expect(page.get_by_role("form", name="Identity Alice Example").get_by_role(
        "button", name="Delete identity")).to_have_count(0)
    assert [i["name"] for i in api.call("Identity/get", ids=None)["list"]] == ["Alice Example"]
    assert alice.errors == [] and alice.remote == []
    alice.close()
