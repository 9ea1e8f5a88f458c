"""Debian's chromium driven by Playwright for the webmail tests (never a downloaded browser),
with a guard that records every request leaving for a host other than the loopback one and
every error the page logs."""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.e2e.jmapclient import PASSWORD
from tests.e2e.server import Server

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LOCAL_SCHEMES = ("data:", "about:", "blob:", "chrome-extension:", "chrome:")
"""Served by the browser itself (chrome-extension: is its built-in PDF viewer), never the
network."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        found = p.chromium.launch(executable_path=CHROMIUM)
        yield found
        found.close()


class Guarded:
    """A browser context on the server whose outgoing requests and page errors are recorded."""

    def __init__(self, browser: Browser, server: Server, width: int = 1280,
                 height: int = 800) -> None:
        self.base = f"https://127.0.0.1:{server.http_port}"
        self.context: BrowserContext = browser.new_context(
            ignore_https_errors=True, base_url=self.base,  # the server's self-signed certificate
            viewport={"width": width, "height": height}, accept_downloads=True)
        self.remote: list[str] = []
        self.errors: list[str] = []
        self.context.on("request", self._request)
        self.context.on("page", self._watch)
        self.page: Page = self.context.new_page()

    def _request(self, request: Any) -> None:
        url = request.url
        if url.startswith(LOCAL_SCHEMES):
            return
        if urlsplit(url).hostname != "127.0.0.1":
            self.remote.append(url)

    def _watch(self, page: Page) -> None:
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}")
                if m.type == "error" else None)

    def close(self) -> None:
        self.context.close()


def login(page: Page, user: str, password: str = PASSWORD) -> None:
    page.goto("/")
    page.get_by_label("Address").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.locator(".me", has_text=user).wait_for(state="attached")
    page.locator(".box.current").wait_for(state="attached")


def row(page: Page, subject: str) -> Any:
    return page.locator(".row", has_text=subject)


def submit(server: Server, sender: str, to: str, subject: str, body: str = "Hello.\n",
           html: str | None = None, extra: Callable[[EmailMessage], None] | None = None) -> None:
    """`sender` sends over the submission port (STARTTLS, AUTH), as a mail client would."""
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, to, subject
    m.set_content(body)
    if html is not None:
        m.add_alternative(html, subtype="html")
    if extra is not None:
        extra(m)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", server.submission_port) as smtp:
        smtp.starttls(context=context)
        smtp.login(sender, PASSWORD)
        smtp.send_message(m)


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def shot(page: Page, name: str) -> None:
    """A screenshot for the README, taken by the test that shows the view."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))
