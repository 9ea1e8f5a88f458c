"""Issue 19 in the webmail: a search whose operator value cannot be read says so, in the
server's words ('before: cannot read "notadate", ...'), and the list stays as it was, instead
of a text search for "before:notadate" that finds nothing and does not say why; older_than:
and newer_than: are read, not searched as text. A real server and Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.server import Server, wait_port
from tests.e2e.webmail_browser import Guarded, browser, login, row, submit

__all__ = ["browser"]

ALICE, BOB = "alice@example.test", "bob@example.test"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("websearch"))
    srv.add_user(ALICE)
    srv.add_user(BOB)
    srv.start()
    wait_port(srv.http_port)
    submit(srv, BOB, ALICE, "Quarterly figures", "The budget numbers are in.\n")
    yield srv
    srv.stop()


@pytest.mark.parametrize(("query", "said"), [
    ("before:notadate", 'before: cannot read "notadate", expected a date'),
    ("budget after:2026-13-45", 'after: cannot read "2026-13-45"'),
    ("larger:huge", 'larger: cannot read "huge", expected a size'),
    ("older_than:xyz", 'older_than: cannot read "xyz", expected a number of days'),
    ("is:bogus", 'is: cannot read "bogus", expected one of unread'),
])
def test_an_unreadable_operator_value_is_said(server: Server, browser: Browser, query: str,
                                              said: str) -> None:
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    row(page, "Quarterly figures").wait_for()
    search = page.get_by_label("Search mail")
    search.fill(query)
    search.press("Enter")
    expect(page.get_by_role("status")).to_contain_text(said)
    expect(row(page, "Quarterly figures")).to_have_count(1)  # the inbox, not an empty result
    assert alice.errors == [] and alice.remote == []
    alice.close()


def test_newer_than_and_older_than_are_read(server: Server, browser: Browser) -> None:
    alice = Guarded(browser, server)
    page = alice.page
    login(page, ALICE)
    row(page, "Quarterly figures").wait_for()
    search = page.get_by_label("Search mail")
    search.fill("budget older_than:1d")
    search.press("Enter")
    expect(page.locator(".row")).to_have_count(0)
    search.fill("budget newer_than:1d")
    search.press("Enter")
    expect(row(page, "Quarterly figures").locator(".preview mark")).to_have_text(
        [re.compile("budget")])
    assert alice.errors == [] and alice.remote == []
    alice.close()
