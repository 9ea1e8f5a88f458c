"""The webmail from the keyboard and for assistive technology, in Debian's chromium against a
real server: every shortcut the issue lists (j/k, o, e, #, r, a, f, c, /, ?; and s, x, u,
Enter, Escape) does its action, checked in the page and in the store; every control has an
accessible name, Tab walks the page in reading order with a visible focus ring, text meets
WCAG AA contrast, and at a phone's width nothing spills sideways."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.jmapclient import Jmap
from tests.e2e.server import Server, wait_port
from tests.e2e.webmail_browser import Guarded, browser, login, row, shot, submit, wait_for

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


def mail(api: Jmap, subject: str) -> list[dict[str, Any]]:
    ids = api.call("Email/query", filter={"subject": subject})["ids"]
    found: list[dict[str, Any]] = api.call(
        "Email/get", ids=ids, properties=["mailboxIds", "keywords"])["list"]
    return found


def test_every_keyboard_shortcut(server: Server, browser: Browser) -> None:
    submit(server, BOB, ALICE, "Key one", "The first.\n")
    submit(server, BOB, f"{ALICE}, {CAROL}", "Key two", "The second.\n")
    api = Jmap(server, ALICE)
    wait_for(lambda: mail(api, "Key one") and mail(api, "Key two"), what="delivery")
    boxes = api.boxes()
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    row(page, "Key one").wait_for()
    selected = page.locator(".row.selected")
    expect(selected).to_contain_text("Key two")  # the newest first

    # ? shows the help, which names every shortcut; ? or Escape hides it.
    page.keyboard.press("?")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(help_dialog).to_be_visible()
    for key in ("j / k", "o, Enter", "e", "#", "s", "r", "a", "f", "c", "/", "?", "x", "u, Esc"):
        expect(help_dialog.locator("dt", has_text=re.compile(f"^{re.escape(key)}$"))
               ).to_have_count(1)
    shot(page, "shortcuts")
    page.keyboard.press("?")
    expect(help_dialog).to_have_count(0)
    page.keyboard.press("?")
    page.keyboard.press("Escape")
    expect(help_dialog).to_have_count(0)

    # j and k move the highlighted row.
    page.keyboard.press("j")
    expect(selected).to_contain_text("Key one")
    page.keyboard.press("k")
    expect(selected).to_contain_text("Key two")

    # o opens; r, a, f answer the open conversation; u goes back; Enter opens too.
    page.keyboard.press("o")
    expect(page.locator("article.message pre.text")).to_contain_text("The second.")
    composer = page.locator("form.composer")
    page.keyboard.press("r")
    expect(composer.get_by_label("Subject")).to_have_value("Re: Key two")
    expect(composer.get_by_role("combobox", name="To")).to_have_value(BOB)
    expect(composer.get_by_role("combobox", name="Cc")).to_have_value("")
    composer.get_by_role("button", name="Discard").click()
    expect(composer).to_have_count(0)
    page.keyboard.press("a")
    expect(composer.get_by_label("Subject")).to_have_value("Re: Key two")
    expect(composer.get_by_role("combobox", name="To")).to_have_value(BOB)
    expect(composer.get_by_role("combobox", name="Cc")).to_have_value(CAROL)  # not Alice
    composer.get_by_role("button", name="Discard").click()
    page.keyboard.press("f")
    expect(composer.get_by_label("Subject")).to_have_value("Fwd: Key two")
    expect(composer.get_by_role("combobox", name="To")).to_have_value("")
    expect(composer.get_by_label("Message")).to_have_value(re.compile("Forwarded message"))
    composer.get_by_role("button", name="Discard").click()
    page.keyboard.press("u")
    expect(page.locator("article.message")).to_have_count(0)
    page.keyboard.press("Enter")
    expect(page.locator("article.message pre.text")).to_contain_text("The second.")
    page.keyboard.press("Escape")
    expect(page.locator("article.message")).to_have_count(0)

    # c composes a new message, the cursor in To; the shortcuts sleep while it is open.
    page.keyboard.press("c")
    expect(composer.get_by_role("combobox", name="To")).to_be_focused()
    expect(composer.get_by_label("Subject")).to_have_value("")
    composer.get_by_label("Subject").focus()
    page.keyboard.press("e")  # typed into the subject, archives nothing
    expect(composer.get_by_label("Subject")).to_have_value("e")
    composer.get_by_role("button", name="Discard").click()
    expect(composer).to_have_count(0)
    assert all(boxes["inbox"]["id"] in m["mailboxIds"] for m in mail(api, "Key"))

    # s stars the highlighted conversation, x ticks it.
    page.keyboard.press("s")
    wait_for(lambda: mail(api, "Key two")[0]["keywords"].get("$flagged"), what="s starred")
    expect(row(page, "Key two").locator(".star.on")).to_have_count(1)
    page.keyboard.press("x")
    expect(row(page, "Key two").get_by_role("checkbox")).to_be_checked()
    page.keyboard.press("x")
    expect(row(page, "Key two").get_by_role("checkbox")).not_to_be_checked()

    # / goes to the search box; Escape leaves it.
    page.keyboard.press("/")
    search = page.get_by_label("Search mail")
    expect(search).to_be_focused()
    page.keyboard.type("subject:one")
    page.keyboard.press("Enter")
    expect(page.locator(".row")).to_have_count(1)
    expect(row(page, "Key one")).to_have_count(1)
    page.keyboard.press("Escape")
    expect(search).not_to_be_focused()

    # e archives the highlighted conversation, # deletes one.
    page.keyboard.press("e")
    wait_for(lambda: all(boxes["inbox"]["id"] not in m["mailboxIds"]
                         for m in mail(api, "Key one")), what="e archived")
    page.locator(".box", has_text="Inbox").click()
    expect(page.locator(".row")).to_have_count(1)
    expect(selected).to_contain_text("Key two")
    page.keyboard.press("#")
    wait_for(lambda: all(set(m["mailboxIds"]) - {boxes["all"]["id"]} == {boxes["trash"]["id"]}
                         for m in mail(api, "Key two")), what="# deleted")
    expect(page.locator(".list .empty")).to_have_text("No conversations.")
    assert alice.errors == [] and alice.remote == []
    alice.close()


UNNAMED = re.compile(r"^\s*- (button|link|textbox|combobox|checkbox|searchbox|listbox|radio"
                     r"|spinbutton|slider|switch|menuitem|tab|option)( \[[^\]]*\])?:?$")

CONTRAST = """() => {
    const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
        const f = (v) => {
            v /= 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        };
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
        for (let n = el; n; n = n.parentElement) {
            const c = rgb(getComputedStyle(n).backgroundColor);
            if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
        }
        return [255, 255, 255];
    };
    const bad = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let t = walker.nextNode(); t; t = walker.nextNode()) {
        const text = t.nodeValue.trim();
        const el = t.parentElement;
        if (!text || !el || el.closest('[disabled], option, script, style')) continue;
        const box = el.getBoundingClientRect();
        const style = getComputedStyle(el);
        if (!box.width || !box.height || style.visibility === 'hidden'
            || Number(style.opacity) === 0) continue;
        const fg = rgb(style.color).slice(0, 3);
        const [a, b] = [lum(fg), lum(background(el))];
        const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        const size = parseFloat(style.fontSize);
        const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
        // WCAG 2.1 AA: 4.5:1 for text, 3:1 for large text and for a symbol standing for a control
        // or a state (1.4.11).
        const symbol = !/[\\p{L}\\p{N}]/u.test(text);
        const need = large || symbol ? 3 : 4.5;
        const what = `${text.slice(0, 30)} (${el.className || el.tagName})`;
        if (ratio < need) bad.push(`${what}: ${ratio.toFixed(2)}`);
    }
    return bad;
}"""

FOCUS = """() => {
    const el = document.activeElement;
    const s = getComputedStyle(el);
    const r = el.getBoundingClientRect();
    return {name: el.getAttribute('aria-label') || el.innerText?.trim().slice(0, 40) || el.name
                  || el.placeholder || el.tagName,
            tag: el.tagName, top: r.top, left: r.left,
            ring: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0
                  || s.boxShadow !== 'none'};
}"""


def unnamed_controls(page: Page) -> list[str]:
    snapshot = page.locator("body").aria_snapshot()
    return [line for line in snapshot.splitlines() if UNNAMED.match(line)]


def test_accessible_names_focus_order_contrast_and_phone(server: Server,
                                                         browser: Browser) -> None:
    submit(server, BOB, ALICE, "Access check", "Readable.\n")
    api = Jmap(server, ALICE)
    api.call("Mailbox/set", create={"l": {"name": "Receipts"}})
    alice = Guarded(browser, server)
    page = alice.page
    page.goto("/")
    page.get_by_role("button", name="Log in").wait_for()
    assert unnamed_controls(page) == []
    assert page.evaluate(CONTRAST) == []
    login(page, ALICE)
    row(page, "Access check").wait_for()

    # Every control of each main view has a name, and every text its contrast.
    assert unnamed_controls(page) == [], page.locator("body").aria_snapshot()
    assert page.evaluate(CONTRAST) == []
    row(page, "Access check").click()
    page.locator("article.message pre.text").wait_for()
    assert unnamed_controls(page) == []
    assert page.evaluate(CONTRAST) == []
    page.get_by_role("button", name="Reply", exact=True).click()
    assert unnamed_controls(page) == []
    assert page.evaluate(CONTRAST) == []
    page.locator("form.composer").get_by_role("button", name="Discard").click()
    page.get_by_role("button", name="Settings").click()
    page.get_by_role("region", name="Settings").locator(".quota").wait_for()
    assert unnamed_controls(page) == []
    assert page.evaluate(CONTRAST) == []
    page.locator(".box", has_text="Inbox").click()
    row(page, "Access check").wait_for()

    # Tab walks the page in reading order: the header, the mailboxes, the actions, the list;
    # each stop shows a focus ring.
    page.locator("body").click(position={"x": 5, "y": 5})
    stops: list[dict[str, Any]] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        stop = page.evaluate(FOCUS)
        if stop["tag"] == "BODY":
            break
        stops.append(stop)
    names = [s["name"] for s in stops]
    assert all(s["ring"] for s in stops), [s for s in stops if not s["ring"]]

    def at(name: str) -> int:
        found = [i for i, n in enumerate(names) if n.split("\n")[0] == name]
        assert found, (name, names)
        return found[0]

    order = [at("Search mail"), at("Settings"), at("Log out"), at("Compose"), at("Inbox"),
             at("Edit label Receipts"), at("New label"), at("Mark read"), at("Move to"),
             at("Select Access check")]
    assert order == sorted(order), names
    header = stops[: at("Compose")]
    assert all(s["top"] < 60 for s in header), header

    # A phone's width: the mailboxes behind the menu button, nothing wider than the screen, and
    # the composer and the settings fit it too.
    phone = Guarded(browser, server, width=360, height=740)
    small = phone.page
    login(small, ALICE)
    row(small, "Access check").wait_for()
    wide = "() => document.scrollingElement.scrollWidth - window.innerWidth"
    assert small.evaluate(wide) <= 0
    assert unnamed_controls(small) == []
    assert small.evaluate(CONTRAST) == []
    menu = small.get_by_role("button", name="Mailboxes")
    expect(menu).to_have_attribute("aria-expanded", "false")
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    small.get_by_role("navigation", name="Mailboxes").get_by_role(
        "button", name="Compose").click()
    composer = small.locator("form.composer")
    box = composer.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360, box
    composer.get_by_role("button", name="Discard").click()
    small.get_by_role("button", name="Settings").click()
    small.get_by_role("region", name="Settings").locator(".quota").wait_for()
    assert small.evaluate(wide) <= 0
    assert small.evaluate("() => { const m = document.querySelector('main');"
                          " return m.scrollWidth - m.clientWidth; }") <= 0
    assert small.evaluate(CONTRAST) == []
    small.get_by_role("button", name="Mailboxes").click()
    small.locator(".box", has_text="Inbox").click()
    row_box = row(small, "Access check").bounding_box()
    assert row_box is not None and row_box["height"] >= 44  # a finger-sized target
    assert alice.errors == [] and phone.errors == []
    assert alice.remote == [] and phone.remote == []
    alice.close()
    phone.close()
