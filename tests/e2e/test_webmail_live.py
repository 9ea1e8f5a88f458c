"""The webmail kept up to date and the rest of issue 22's reading and login bullets, in Debian's
chromium against a real server: flags, labels and new mail changed over IMAP and from a second
browser appear in an open page without a reload; logging in with an app token; remote images
hidden until shown for one message or always for a sender; Spam and Not spam in the page
teach the spam filter (the next similar mail is filed by what was learnt)."""

from __future__ import annotations

import imaplib
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.jmapclient import PASSWORD, Jmap
from tests.e2e.server import Server, wait_port
from tests.e2e.test_checks_content import GTUBE, SPAMMY, make_server, message, send
from tests.e2e.test_webmail_features import png
from tests.e2e.webmail_browser import Guarded, browser, login, row, submit, wait_for

__all__ = ["browser"]

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    for user in (ALICE, BOB, CAROL):
        srv.add_user(user)
    srv.start()
    wait_port(srv.http_port)  # the HTTP listener starts after SMTP's
    yield srv
    srv.stop()


def test_changes_from_imap_and_another_browser_show_live(server: Server,
                                                         browser: Browser) -> None:
    api = Jmap(server, ALICE)
    api.call("Mailbox/set", create={"l": {"name": "Projects"}})
    submit(server, BOB, ALICE, "Live one", "First.\n")
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    live = row(page, "Live one")
    live.wait_for()
    page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads
    expect(live).to_have_class(re.compile(r"\bunread\b"))
    expect(live.locator(".star.on")).to_have_count(0)
    inbox_count = page.locator(".box", has_text="Inbox").locator(".count")
    expect(inbox_count).to_have_text("1")

    with imaplib.IMAP4("127.0.0.1", server.imap_port) as imap:
        imap.login(ALICE, PASSWORD)
        imap.select("INBOX")
        typ, _ = imap.store("1", "+FLAGS", r"(\Flagged)")
        assert typ == "OK"
        expect(live.locator(".star.on")).to_have_count(1)
        imap.store("1", "+FLAGS", r"(\Seen)")
        expect(live).not_to_have_class(re.compile(r"\bunread\b"))
        expect(inbox_count).to_have_count(0)  # no unread left
        typ, _ = imap.copy("1", "Projects")  # a label, as Gmail's IMAP gives one
        assert typ == "OK"
        expect(live.locator(".chip")).to_have_text(["Projects"])
        raw = (f"From: Carol <{CAROL}>\r\nTo: {ALICE}\r\nSubject: Appended live\r\n"
               f"Message-ID: <appended@example.test>\r\n\r\nOver IMAP.\r\n").encode()
        imap.append("INBOX", "", imaplib.Time2Internaldate(2_000_000_000), raw)
        appended = row(page, "Appended live")
        expect(appended).to_have_count(1)
        expect(appended).to_have_class(re.compile(r"\bunread\b"))
        # The row: sender's name, subject, snippet, date.
        expect(appended.locator(".from")).to_have_text("Carol")
        expect(appended.locator(".subject b")).to_have_text("Appended live")
        expect(appended.locator(".preview")).to_contain_text("Over IMAP.")
        expect(appended.locator("time")).to_have_attribute("datetime", "2033-05-18T03:33:20Z")
        expect(appended.locator("time")).to_have_text(re.compile(r"2033"))

    # A second browser on the same account: its star and its archive show in the first.
    other = Guarded(browser, server)
    login(other.page, ALICE)
    row(other.page, "Appended live").click()
    tools = other.page.get_by_role("toolbar", name="Actions")
    tools.get_by_role("button", name="Star", exact=True).click()
    expect(row(page, "Appended live").locator(".star.on")).to_have_count(1)
    expect(row(page, "Appended live")).not_to_have_class(re.compile(r"\bunread\b"))
    tools.get_by_role("button", name="Archive", exact=True).click()
    expect(row(page, "Appended live")).to_have_count(0)
    expect(page.locator(".paging")).to_have_text("1 conversation")
    assert page.evaluate("window.__sameDocument") is True
    assert alice.errors == [] and other.errors == []
    assert alice.remote == [] and other.remote == []
    alice.close()
    other.close()


def test_login_with_an_app_token(server: Server, browser: Browser) -> None:
    submit(server, BOB, ALICE, "Token view", "Seen through a token.\n")
    out = server.cli("token", "create", ALICE, "--name", "laptop").stdout.decode()
    [token] = re.findall(r"myt1\.\S+", out)
    alice = Guarded(browser, server)
    page = alice.page
    page.goto("/")
    page.get_by_role("button", name="Use an app token").click()
    page.get_by_label("App token").fill(token + "x")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong address, password or token.")
    # The refused login's 401 is the only error the page logs.
    assert [e for e in alice.errors if "401" not in e] == []
    alice.errors.clear()
    page.get_by_label("App token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.locator(".me", has_text=ALICE).wait_for()
    row(page, "Token view").click()
    expect(page.locator("article.message pre.text")).to_contain_text("Seen through a token.")
    [cookie] = [c for c in alice.context.cookies() if c["name"] == "__Host-mailyard-session"]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()  # the session is gone
    assert alice.errors == [] and alice.remote == []
    alice.close()


class Pixels(BaseHTTPRequestHandler):
    asked: list[str] = []
    PNG = png(2, 2)

    def do_GET(self) -> None:
        Pixels.asked.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.PNG)))
        self.end_headers()
        self.wfile.write(self.PNG)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def pixels() -> Iterator[int]:
    """An image host other than the server: `localhost`, which the page never asks of itself."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Pixels)
    Pixels.asked = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


def test_remote_images_for_a_message_or_a_sender(server: Server, browser: Browser,
                                                 pixels: int) -> None:
    def img(name: str) -> str:
        return f'<p>{name}</p><img src="http://localhost:{pixels}/{name}.png" alt="{name}">'

    submit(server, BOB, ALICE, "Images one", "one\n", html=img("one"))
    submit(server, BOB, ALICE, "Images two", "two\n", html=img("two"))
    submit(server, BOB, ALICE, "Images three", "three\n", html=img("three"))
    submit(server, CAROL, ALICE, "Images carol", "carol\n", html=img("carol"))
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    tools = page.get_by_role("toolbar", name="Actions")
    frame = page.frame_locator("iframe.body")

    def open_message(subject: str) -> None:
        if page.locator("article.message").count():
            tools.get_by_role("button", name="←").click()
        row(page, subject).click()
        frame.locator("p").wait_for()

    open_message("Images one")
    notice = page.locator("p.images")
    expect(notice).to_contain_text("Remote images are hidden.")
    page.wait_for_timeout(500)
    assert Pixels.asked == [] and alice.remote == []
    notice.get_by_role("button", name="Show images", exact=True).click()
    wait_for(lambda: Pixels.asked == ["/one.png"], what="the image asked for once shown")
    expect(notice).to_have_count(0)

    # Shown for that message only: the sender's next one is hidden again.
    open_message("Images two")
    expect(notice).to_contain_text("Remote images are hidden.")
    page.wait_for_timeout(500)
    assert Pixels.asked == ["/one.png"]
    notice.get_by_role("button", name=f"Always show images from {BOB}").click()
    wait_for(lambda: Pixels.asked[-1:] == ["/two.png"], what="the second image")

    # From then on, that sender's images show at once; another sender's stay hidden.
    open_message("Images three")
    wait_for(lambda: Pixels.asked[-1:] == ["/three.png"], what="the trusted sender's image")
    expect(notice).to_have_count(0)
    open_message("Images carol")
    expect(notice).to_contain_text("Remote images are hidden.")
    page.wait_for_timeout(500)
    assert "/carol.png" not in Pixels.asked
    assert sorted(alice.remote) == sorted(f"http://localhost:{pixels}/{n}.png"
                                          for n in ("one", "two", "three"))
    assert alice.errors == []
    alice.close()


def where(api: Jmap, subject: str) -> str | None:
    """The role (or name) of the mailbox the one email with `subject` is in, once there."""
    ids = api.call("Email/query", filter={"subject": subject})["ids"]
    if not ids:
        return None
    [email] = api.call("Email/get", ids=ids, properties=["mailboxIds"])["list"]
    names = {b["id"]: b["role"] or b["name"] for b in api.call("Mailbox/get", ids=None)["list"]}
    [box] = [names[i] for i in email["mailboxIds"] if names[i] != "all"]
    return str(box)


def test_spam_and_not_spam_in_the_page_train_the_filter(tmp_path: Path,
                                                        browser: Browser) -> None:
    srv = make_server(tmp_path, (ALICE,), min_spam=1, min_ham=1)
    try:
        wait_port(srv.http_port)
        api = Jmap(srv, ALICE)
        send(srv, "friend@sender.test", message("friend@sender.test", "Test 1", f"x {GTUBE}"))
        send(srv, "deals@shop.test", message("deals@shop.test", "Replica watches", SPAMMY))
        assert wait_for(lambda: where(api, "Test 1"), what="Test 1") == "junk"
        # Nothing learnt yet: the offer is in the Inbox.
        assert wait_for(lambda: where(api, "Replica watches"), what="offer") == "inbox"

        alice = Guarded(browser, srv)
        page = alice.page
        login(page, ALICE)
        tools = page.get_by_role("toolbar", name="Actions")
        row(page, "Replica watches").click()
        tools.get_by_role("button", name="Spam", exact=True).click()
        page.locator(".box", has_text="Spam").click()
        row(page, "Test 1").click()
        tools.get_by_role("button", name="Not spam", exact=True).click()
        wait_for(lambda: where(api, "Test 1") == "inbox", what="not spam")

        # The lessons are learnt in the background: each probe is a new similar mail, until
        # one is filed by them (a bounded wait, not a fixed sleep).
        probes: list[str] = []

        def filed(sender: str, subject: str, body: str, box: str) -> bool:
            name = f"{subject} {len(probes)}"
            probes.append(name)
            send(srv, sender, message(sender, name, body))
            return bool(wait_for(lambda: where(api, name), what=name) == box)

        wait_for(lambda: filed("offers@outlet.test", "Designer handbags",
                               SPAMMY.replace("90%", "85%"), "junk"),
                 timeout=90, what="a similar offer filed in Junk")
        # The sender marked not spam is let in, spam-like content and all.
        wait_for(lambda: filed("friend@sender.test", "Test 2", f"again {GTUBE}", "inbox"),
                 timeout=90, what="the friend's next mail in the Inbox")
        assert alice.errors == [] and alice.remote == []
        alice.close()
    finally:
        srv.stop()
