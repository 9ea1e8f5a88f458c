"""More of the webmail in Debian's chromium against a real server: labels renamed, nested and
deleted from the sidebar; the sender's authentication (our own Authentication-Results) shown
as a mark or a warning; image and PDF attachments previewed; search snippets with the terms
marked and operator hints; rich-text compose saved as a draft while typed, reopened from
Drafts, with addresses completed from the user's mail, held for the undo window chosen in
Settings; forward with the original's attachments; a Gmail-style filter edited in place."""

from __future__ import annotations

import imaplib
import re
import smtplib
import struct
import zlib
from collections.abc import Iterator
from email.message import EmailMessage
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.dnsserver import TestDNS
from tests.e2e.jmapclient import CORE, MAIL, PASSWORD, Jmap
from tests.e2e.server import Server, wait_port
from tests.e2e.webmail_browser import Guarded, browser, login, row, shot, submit, wait_for

__all__ = ["browser"]

ALICE, BOB = "alice@example.test", "bob@example.test"
SUBMISSION = "urn:ietf:params:jmap:submission"
FILTERS = "urn:mailyard:params:jmap:filters"
SIEVE = "urn:ietf:params:jmap:sieve"


def png(width: int = 24, height: int = 16) -> bytes:
    """A real PNG (solid red), so that the browser decodes it and the thumbnail has a size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
       b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 100]>>endobj\n"
       b"trailer<</Root 1 0 R>>\n%%EOF\n")


def make(tmp_path: Path, **kwargs: Any) -> Server:
    srv = Server(tmp_path, **kwargs)
    srv.add_user(ALICE)
    srv.add_user(BOB)
    srv.start()
    wait_port(srv.http_port)  # the HTTP listener starts after SMTP's
    return srv


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = make(tmp_path)
    yield srv
    srv.stop()


def emails(api: Jmap, subject: str, props: list[str] | None = None) -> list[dict[str, Any]]:
    ids = api.call("Email/query", filter={"subject": subject})["ids"]
    found: list[dict[str, Any]] = api.call(
        "Email/get", ids=ids, properties=props or ["subject", "mailboxIds", "keywords"])["list"]
    return found


def test_labels_renamed_nested_and_deleted(server: Server, browser: Browser) -> None:
    api = Jmap(server, ALICE)
    api.call("Mailbox/set", create={"p": {"name": "Projects"}, "c": {"name": "Clients"}})
    submit(server, BOB, ALICE, "Contract draft", "Attached soon.\n")
    wait_for(lambda: emails(api, "Contract draft"), what="delivery")
    boxes = api.boxes()
    [email] = emails(api, "Contract draft")
    api.call("Email/set", update={email["id"]: {f"mailboxIds/{boxes['Clients']['id']}": True}})

    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    nav = page.get_by_role("navigation", name="Mailboxes")
    nav.get_by_role("button", name="Edit label Clients").click()
    editor = nav.get_by_role("form", name="Edit label Clients")
    editor.get_by_label("Name").fill("Customers")
    editor.get_by_label("Nest under").select_option(label="Projects")
    shot(page, "labels")
    editor.get_by_role("button", name="Save").click()
    expect(editor).to_have_count(0)
    wait_for(lambda: "Customers" in api.boxes(), what="the rename")
    boxes = api.boxes()
    assert "Clients" not in boxes
    assert boxes["Customers"]["parentId"] == boxes["Projects"]["id"]
    # Shown under its parent, one level in; the label menu names it by its path.
    labels = nav.locator("ul.labels > li")
    expect(labels).to_have_text([re.compile("Projects"), re.compile("Customers")])
    expect(labels.nth(1)).to_have_class("depth-1")
    page.locator(".row", has_text="Contract draft").get_by_role("checkbox").check()
    expect(page.get_by_role("toolbar", name="Actions").get_by_label("Label").locator("option")
           ).to_contain_text(["Projects/Customers"])

    # A parent with a child is not deleted; the child is, and its mail stays.
    nav.get_by_role("button", name="Edit label Projects").click()
    editor = nav.get_by_role("form", name="Edit label Projects")
    editor.get_by_role("button", name="Delete").click()
    editor.get_by_role("button", name="Delete for good").click()
    expect(editor.get_by_role("alert")).to_have_text("Move or delete the labels under it first.")
    assert "Projects" in api.boxes()
    editor.get_by_role("button", name="Cancel").click()
    nav.locator(".box", has_text="Customers").click()
    row(page, "Contract draft").wait_for()
    nav.get_by_role("button", name="Edit label Customers").click()
    editor = nav.get_by_role("form", name="Edit label Customers")
    editor.get_by_role("button", name="Delete").click()
    editor.get_by_role("button", name="Delete for good").click()
    expect(nav.locator(".box", has_text="Customers")).to_have_count(0)
    expect(page.locator(".box.current")).to_contain_text("Inbox")  # it was open: back to Inbox
    assert "Customers" not in api.boxes()
    [kept] = emails(api, "Contract draft")
    assert api.boxes()["inbox"]["id"] in kept["mailboxIds"]
    assert alice.errors == [] and alice.remote == []
    alice.close()


@pytest.fixture
def dns() -> Iterator[TestDNS]:
    with TestDNS({
        # sender.test: SPF covers the loopback and DMARC asks for alignment, so mail from it
        # over 127.0.0.1 passes DMARC through SPF.
        ("sender.test", "TXT"): ["v=spf1 ip4:127.0.0.0/8 -all"],
        ("_dmarc.sender.test", "TXT"): ["v=DMARC1; p=reject"],
        ("mail.sender.test", "A"): ["127.0.0.1"],
        # lax.test sends from elsewhere: DMARC fails and its policy quarantines.
        ("lax.test", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all"],
        ("_dmarc.lax.test", "TXT"): ["v=DMARC1; p=quarantine"],
        # plain.test says nothing either way.
        ("plain.test", "TXT"): ["v=spf1 ?all"],
    }) as server:
        yield server


def mx_send(server: Server, mail_from: str, from_: str, subject: str, extra: str = "") -> None:
    raw = (f"{extra}From: {from_}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject.replace(' ', '.')}@x>\r\n\r\nHello.\r\n").encode()
    with smtplib.SMTP("127.0.0.1", server.smtp_port, local_hostname="mail.sender.test",
                      timeout=30) as s:
        s.sendmail(mail_from, [ALICE], raw)


def test_sender_authentication_marks(tmp_path: Path, dns: TestDNS, browser: Browser) -> None:
    server = make(tmp_path, dns={"nameservers": [dns.address], "timeout": 2.0})
    try:
        # Forged results are no use: the one that claims our hostname is removed by the MX,
        # another host's is not ours to trust.
        forged = ("Authentication-Results: mx.example.test; dmarc=pass header.from=plain.test\r\n"
                  "Authentication-Results: elsewhere.test; spf=pass; dkim=pass; dmarc=pass\r\n")
        mx_send(server, "news@sender.test", "News <news@sender.test>", "Real newsletter")
        mx_send(server, "ceo@lax.test", "CEO <ceo@lax.test>", "Wire the money")
        mx_send(server, "someone@plain.test", "Someone <someone@plain.test>", "Trust me",
                extra=forged)
        api = Jmap(server, ALICE)
        for subject in ("Real newsletter", "Wire the money", "Trust me"):
            wait_for(partial(emails, api, subject), what=subject)

        alice = Guarded(browser, server)
        page = alice.page
        login(page, ALICE)
        row(page, "Real newsletter").click()
        message = page.locator("article.message")
        expect(message.get_by_label("Verified sender: sender.test")).to_be_visible()
        expect(message.locator(".auth.warning")).to_have_count(0)
        shot(page, "verified")

        page.get_by_role("toolbar", name="Actions").get_by_role("button", name="←").click()
        row(page, "Trust me").click()
        expect(message.locator(".auth.warning")).to_contain_text(
            "could not be verified as coming from plain.test")
        expect(message.locator(".auth.verified")).to_have_count(0)

        page.locator(".box", has_text="Spam").click()  # DMARC quarantine
        row(page, "Wire the money").click()
        expect(message.locator(".auth.warning")).to_contain_text(
            "failed lax.test's authentication (DMARC)")
        expect(message.locator(".auth.verified")).to_have_count(0)
        assert alice.errors == [] and alice.remote == []
        alice.close()
    finally:
        server.stop()


def test_attachment_previews(server: Server, browser: Browser) -> None:
    image = png()

    def attach(m: EmailMessage) -> None:
        m.add_attachment(image, maintype="image", subtype="png", filename="chart.png")
        m.add_attachment(PDF, maintype="application", subtype="pdf", filename="report.pdf")
        m.add_attachment(b"<script>alert(1)</script>", maintype="text", subtype="html",
                         filename="page.html")

    submit(server, BOB, ALICE, "Figures attached", "See attached.\n", extra=attach)
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    with page.expect_response(lambda r: "/web/attachment/" in r.url and "png" in r.url) as got:
        row(page, "Figures attached").click()
    assert got.value.status == 200 and got.value.body() == image
    assert got.value.headers["content-type"] == "image/png"
    thumb = page.get_by_role("link", name="Preview chart.png").locator("img")
    wait_for(lambda: thumb.evaluate("img => img.complete && img.naturalWidth") == 24,
             what="the thumbnail decoded")
    # The HTML attachment gets no preview, only its download.
    page_html = page.locator("li.attachment[data-name='page.html']")
    expect(page_html.get_by_role("link", name="page.html")).to_be_visible()
    expect(page_html.locator("img.thumb, iframe, button")).to_have_count(0)

    pdf_item = page.locator("li.attachment[data-name='report.pdf']")
    with page.expect_response(lambda r: "/web/attachment/" in r.url and "pdf" in r.url) as got:
        pdf_item.get_by_role("button", name="Preview").click()
    response = got.value
    assert response.status == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == "inline"
    expect(pdf_item.locator("iframe.pdf")).to_be_visible()
    # Chromium hands the frame's PDF to its viewer (the response body Playwright sees is the
    # viewer's page), so the octets are checked with a fetch of the same URL.
    octets = page.evaluate("async (url) => Array.from(new Uint8Array(await (await fetch(url))"
                           ".arrayBuffer()))", response.url)
    assert bytes(octets) == PDF
    shot(page, "previews")
    with page.expect_download() as download:
        pdf_item.get_by_role("link", name="report.pdf").click()
    assert Path(download.value.path()).read_bytes() == PDF

    assert alice.errors == [] and alice.remote == []
    # The route serves only previewable types, and only the caller's own blobs (the refusals
    # below are logged by the browser, so the page's errors were checked above).
    api = Jmap(server, ALICE)
    [email] = emails(api, "Figures attached", ["attachments"])
    blobs = {a["name"]: a["blobId"] for a in email["attachments"]}
    asked = page.evaluate("""async (blobs) => {
        const get = async (blob, type) =>
            (await fetch(`/web/attachment/${blob}/x?type=${type}`)).status;
        return [await get(blobs['page.html'], 'text/html'),
                await get(blobs['page.html'], 'image/svg%2Bxml'),
                await get(blobs['chart.png'], 'image/png')];
    }""", blobs)
    assert asked == [415, 415, 200]
    bob = Guarded(browser, server)
    login(bob.page, BOB)
    theirs = bob.page.evaluate(
        "async (b) => (await fetch(`/web/attachment/${b}/x?type=image/png`)).status",
        blobs["chart.png"])
    assert theirs == 404
    unauthenticated = httpx.get(
        f"{alice.base}/web/attachment/{blobs['chart.png']}/x?type=image/png", verify=False)
    assert unauthenticated.status_code == 401
    assert alice.remote == [] and bob.remote == []
    alice.close()
    bob.close()


def test_search_snippets_and_operator_hints(server: Server, browser: Browser) -> None:
    submit(server, BOB, ALICE, "Quarterly figures", "The budget numbers are in.\n")
    submit(server, BOB, ALICE, "Lunch", "Noon at the usual place.\n")
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    row(page, "Lunch").wait_for()
    search = page.get_by_label("Search mail")
    hints = page.get_by_role("listbox", name="Search operators")
    search.press_sequentially("fr")
    expect(hints.get_by_role("option")).to_have_count(1)
    expect(hints).to_contain_text("from:")
    hints.get_by_role("option").first.click()
    expect(search).to_have_value("from:")
    search.fill("")
    search.press_sequentially("is:st")
    expect(hints.get_by_role("option")).to_have_text([re.compile("is:starred")])
    search.press("Tab")
    expect(search).to_have_value("is:starred ")
    search.fill("")
    search.press_sequentially("in:sp")
    expect(hints.get_by_role("option")).to_have_text(["in:spam"])
    shot(page, "search-hints")

    search.fill("budget")
    search.press("Enter")
    found = row(page, "Quarterly figures")
    expect(found.locator(".preview mark")).to_have_text(["budget"])
    expect(row(page, "Lunch")).to_have_count(0)
    search.fill("subject:quarterly")
    search.press("Enter")
    expect(row(page, "Quarterly figures").locator("b mark")).to_have_text(["Quarterly"])
    assert alice.errors == [] and alice.remote == []
    alice.close()


def test_rich_compose_draft_completion_undo_window(server: Server, browser: Browser) -> None:
    submit(server, BOB, ALICE, "Hello from Bob", "Hi.\n")
    api = Jmap(server, ALICE, (CORE, MAIL, SUBMISSION))
    wait_for(lambda: emails(api, "Hello from Bob"), what="delivery")
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)

    # The undo window, chosen in Settings (this browser's).
    page.get_by_role("button", name="Settings").click()
    page.get_by_label("Undo send window").select_option(label="30 seconds")
    expect(page.locator(".notice")).to_have_text("Messages are held 30 seconds.")

    page.get_by_role("button", name="Compose").click()
    composer = page.locator("form.composer")
    to = composer.get_by_role("combobox", name="To")
    to.press_sequentially("bo")
    suggestions = composer.get_by_role("listbox", name="Suggested addresses")
    expect(suggestions.get_by_role("option")).to_have_text([BOB])
    suggestions.get_by_role("option").first.click()
    expect(to).to_have_value(f"{BOB}, ")
    composer.get_by_label("Subject").fill("Rich hello")
    composer.get_by_role("button", name="Rich text").click()
    editor = composer.get_by_role("textbox", name="Message")
    editor.click()
    editor.press_sequentially("Please read ")
    composer.get_by_role("toolbar", name="Formatting").get_by_role("button", name="Bold").click()
    editor.press_sequentially("this part")
    expect(editor.locator("b")).to_have_text("this part")
    shot(page, "compose-rich")

    # Saved as a draft while typed: one draft, the newest text.
    boxes = api.boxes()

    def draft_text() -> str | None:
        found = emails(api, "Rich hello", ["mailboxIds", "keywords", "htmlBody", "bodyValues"])
        if len(found) != 1 or boxes["drafts"]["id"] not in found[0]["mailboxIds"]:
            return None
        got = api.call("Email/get", ids=[found[0]["id"]], properties=["htmlBody", "bodyValues"],
                       fetchHTMLBodyValues=True)["list"]
        if not got:
            return None  # replaced by a newer save between the query and the get
        [m] = got
        assert found[0]["keywords"].get("$draft")
        return str(m["bodyValues"][m["htmlBody"][0]["partId"]]["value"]).rstrip()

    wait_for(lambda: (draft_text() or "").endswith("<b>this part</b>"), what="the draft saved")
    composer.get_by_role("button", name="Close").click()
    expect(composer).to_have_count(0)
    page.locator(".box", has_text="Drafts").click()
    row(page, "Rich hello").click()
    expect(composer.get_by_label("Subject")).to_have_value("Rich hello")
    expect(editor.locator("b")).to_have_text("this part")
    editor.press("End")
    editor.press_sequentially(" now")
    wait_for(lambda: "part now" in re.sub(r"<[^>]+>", "", draft_text() or ""),
             what="the draft saved again")

    composer.get_by_role("button", name="Send").click()
    notice = page.locator(".notice")
    expect(notice).to_contain_text("Message sent.")
    [held] = [s for s in api.call("EmailSubmission/get", ids=None)["list"]
              if s["undoStatus"] == "pending"]
    assert held["envelope"]["mailFrom"]["parameters"] == {"HOLDFOR": "30"}
    # Sent as multipart/alternative: the plain text and the HTML.
    [sent] = api.call("Email/get", ids=[held["emailId"]], properties=["bodyStructure", "bodyValues",
                      "textBody", "htmlBody", "to"], fetchAllBodyValues=True)["list"]
    assert sent["bodyStructure"]["type"] == "multipart/alternative"
    assert [p["type"] for p in sent["bodyStructure"]["subParts"]] == ["text/plain", "text/html"]
    values = sent["bodyValues"]
    assert values[sent["textBody"][0]["partId"]]["value"].strip() == "Please read this part now"
    assert "<b>this part" in values[sent["htmlBody"][0]["partId"]]["value"]
    assert sent["to"] == [{"name": None, "email": BOB}]
    notice.get_by_role("button", name="Undo").click()
    expect(composer.get_by_label("Subject")).to_have_value("Rich hello")
    [canceled] = api.call("EmailSubmission/get", ids=[held["id"]])["list"]
    assert canceled["undoStatus"] == "canceled"
    # Discarded: the draft goes.
    composer.get_by_role("button", name="Discard").click()
    wait_for(lambda: not emails(api, "Rich hello"), what="the draft gone")
    assert alice.errors == [] and alice.remote == []
    alice.close()


def test_forward_with_attachments(server: Server, browser: Browser) -> None:
    data = png(8, 8)

    def attach(m: EmailMessage) -> None:
        m.add_attachment(data, maintype="image", subtype="png", filename="map.png")

    submit(server, BOB, ALICE, "Where we meet", "The map.\n", extra=attach)
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    page.evaluate("localStorage.setItem('mailyard.undoSeconds', '5')")
    row(page, "Where we meet").click()
    page.get_by_role("button", name="Forward").click()
    composer = page.locator("form.composer")
    expect(composer.get_by_label("Subject")).to_have_value("Fwd: Where we meet")
    expect(composer.locator(".attachments")).to_contain_text("map.png")
    composer.get_by_role("combobox", name="To").fill(BOB)
    composer.get_by_role("button", name="Send").click()
    expect(composer).to_have_count(0)
    bob_api = Jmap(server, BOB)
    wait_for(lambda: emails(bob_api, "Fwd: Where we meet"), timeout=60, what="the forward")
    [got] = emails(bob_api, "Fwd: Where we meet", ["attachments"])
    [a] = got["attachments"]
    assert a["name"] == "map.png" and a["type"] == "image/png"
    blob = bob_api.client.get(f"/jmap/download/{bob_api.account_id}/{a['blobId']}/map.png")
    assert blob.content == data
    assert alice.errors == [] and alice.remote == []
    alice.close()


def test_filter_edited_in_place(server: Server, browser: Browser) -> None:
    api = Jmap(server, ALICE, (CORE, MAIL, SIEVE, FILTERS))
    created = api.call("Filters/set", create={"f": {"from": "boss@remote.test", "label": "Work"}})
    fid = created["created"]["f"]["id"]
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    page.get_by_role("button", name="Settings").click()
    page.get_by_role("button", name="Edit filter From: boss@remote.test").click()
    form = page.get_by_role("form", name="Edit filter")
    expect(form.get_by_label("From")).to_have_value("boss@remote.test")
    expect(form.get_by_label("Apply the label")).to_have_value("Work")
    form.get_by_label("Apply the label").fill("Urgent")
    form.get_by_label("Star it").check()
    form.get_by_role("button", name="Save filter").click()
    listed = page.get_by_role("list", name="Filters").get_by_role("listitem")
    expect(listed).to_have_count(1)
    expect(listed).to_contain_text("label Urgent")
    expect(page.get_by_role("form", name="New filter")).to_be_visible()
    [f] = api.call("Filters/get", ids=None)["list"]
    assert f["id"] == fid and (f["label"], f["star"]) == ("Urgent", True)
    [script] = [s for s in api.call("SieveScript/get", ids=None)["list"] if s["isActive"]]
    text = api.client.get(f"/jmap/download/{api.account_id}/{script['blobId']}/s.sieve").text
    assert '"Urgent"' in text and '"Work"' not in text
    assert alice.errors == [] and alice.remote == []
    alice.close()


def test_virtual_scrolling(server: Server, browser: Browser) -> None:
    """Hundreds of conversations: the scroller is as tall as all of them, the page holds only
    the rows in view, and a jump to the end loads the page there (the oldest conversation)."""
    count = 260
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as imap:
        imap.login(ALICE, PASSWORD)
        for n in range(count):
            raw = (f"From: Sender {n} <s{n}@remote.test>\r\nTo: {ALICE}\r\n"
                   f"Subject: Bulk {n:03d}\r\nMessage-ID: <bulk{n}@remote.test>\r\n\r\n"
                   f"Number {n}.\r\n").encode()
            when = imaplib.Time2Internaldate(1_700_000_000 + n * 60)
            imap.append("INBOX", "", when, raw)
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    expect(page.locator(".paging")).to_have_text(f"{count} conversations")
    row(page, "Bulk 259").wait_for()
    scroller = page.locator(".scroller")
    height = scroller.evaluate("s => s.scrollHeight")
    assert height == count * 37, height
    rendered = page.locator(".list > li").count()
    assert 0 < rendered < 80, rendered  # the rows in view and the overscan, not all 260

    # To the end: the last page is fetched, the first page's rows leave the page.
    scroller.evaluate("s => { s.scrollTop = s.scrollHeight; }")
    row(page, "Bulk 000").wait_for()
    expect(row(page, "Bulk 259")).to_have_count(0)
    assert page.locator(".list > li").count() < 80
    # The keyboard's cursor scrolls the list: k from the top row brings nothing new, j down
    # from the first row keeps the selected row in view.
    scroller.evaluate("s => { s.scrollTop = 0; }")
    row(page, "Bulk 259").wait_for()
    for _ in range(40):
        page.keyboard.press("j")
    selected = page.locator(".row.selected")
    expect(selected).to_contain_text("Bulk 219")
    expect(selected).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("article.message pre.text")).to_contain_text("Number 219.")
    assert alice.errors == [] and alice.remote == []
    alice.close()
