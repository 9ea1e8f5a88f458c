"""Webmail benchmark: time to the first thread list and to an open conversation, in Debian's
chromium (Playwright, /usr/bin/chromium), on a mailbox bench/search.py loaded.

A `mailyard serve` runs on the loaded data directory (me@bench.example). Each run opens a new
browser context, logs in (not timed), then times:
- list: a fresh load of `/` (the app shell, its modules, /web/session, the JMAP session,
  Mailbox/get, Identity/get, then Email/query with collapseThreads + Email/get + Thread/get for the
  first 50 threads of the Inbox) until the first row is in the page;
- open: a click on the Nth row until its conversation's last message is shown (Thread/get and
  Email/get with bodies; an HTML body's frame is sanitised on the server and loaded);
- jump: the list scrolled at once to its middle (row total/2 + 100 n, thousands of threads
  down) until that row is in the page (the page of 50 it falls in fetched: Email/query at that
  position + Email/get + Thread/get);
- frame: a fast scroll of 40 animation frames, 1,000 px (27 rows) each, from the top: the
  median and the longest interval between frames (16.7 ms is 60 frames a second);
- fcp: the browser's own first-contentful-paint of that fresh load (the "Loading…" shell), for
  comparison with "list", the first useful paint.
A jump whose row is not in the page within 60 s is counted as failed (and its run left out of
"jump") rather than ending the benchmark.
Prints p50 and max of --repeat runs after one warm-up, the load averages, the message count.
("frame" shows the p50 of the runs' median frame and the max of the runs' longest.)

    .venv/bin/python bench/search.py --messages 100000 --data-dir /tmp/mailyard-bench-100k
    .venv/bin/python bench/webmail.py --data-dir /tmp/mailyard-bench-100k --repeat 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.server import Server, wait_port  # noqa: E402

USER, PASSWORD = "me@bench.example", "bench-password-123"


FLICK = """s => new Promise((done) => {
    const gaps = [];
    let last = performance.now();
    const step = (now) => {
        gaps.push(now - last);
        last = now;
        if (gaps.length > 40) { done(gaps.slice(1)); return; }
        s.scrollTop += 1000;
        requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
})"""


def run(port: int, repeat: int) -> dict[str, list[float]]:
    base = f"https://127.0.0.1:{port}"
    times: dict[str, list[float]] = {"list": [], "fcp": [], "open": [], "jump": [],
                                     "frame": [], "frame max": []}
    failed_jumps = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            for n in range(repeat + 1):
                context = browser.new_context(ignore_https_errors=True, base_url=base,
                                              viewport={"width": 1280, "height": 800})
                page = context.new_page()
                page.goto("/")
                page.get_by_label("Address").fill(USER)
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Log in").click()
                page.locator(".row").first.wait_for(timeout=120_000)

                t0 = time.perf_counter()
                page.goto("/")
                page.locator(".row").first.wait_for(timeout=120_000)
                listed = time.perf_counter() - t0
                fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')"
                                    ".map(e => e.startTime)[0] || 0") / 1000

                t0 = time.perf_counter()
                page.locator(".row").nth(n % 20).click()
                page.locator("article.message").last.locator("pre.text, iframe.body").wait_for(
                    timeout=120_000)
                opened = time.perf_counter() - t0

                page.get_by_role("toolbar", name="Actions").get_by_role(
                    "button", name="←").click()
                scroller = page.locator(".scroller")
                total = int(scroller.locator("ul").get_attribute("aria-rowcount") or 0)
                target = min(total - 1, total // 2 + 100 * n)
                page.locator(".row").first.wait_for()
                t0 = time.perf_counter()
                scroller.evaluate("(s, y) => { s.scrollTop = y; }", target * 37)
                try:
                    page.locator(f'.row[aria-rowindex="{target + 1}"]').wait_for(timeout=60_000)
                    jumped: float | None = time.perf_counter() - t0
                except PlaywrightTimeout:
                    jumped = None
                    failed_jumps += 1
                    print(f"run {n}: the jump to row {target + 1} never showed it", flush=True)

                scroller.evaluate("s => { s.scrollTop = 0; }")
                page.locator('.row[aria-rowindex="1"]').wait_for()
                frames = scroller.evaluate(FLICK)
                context.close()
                if n:  # the first run warms the caches
                    times["list"].append(listed)
                    times["fcp"].append(fcp)
                    times["open"].append(opened)
                    if jumped is not None:
                        times["jump"].append(jumped)
                    times["frame"].append(statistics.median(frames) / 1000)
                    times["frame max"].append(max(frames) / 1000)
        finally:
            browser.close()
    print(f"failed jumps: {failed_jumps} of {repeat + 1}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="a mailbox bench/search.py loaded")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-webmail-") as tmp:
        root = Path(tmp)
        (root / "data").symlink_to(Path(args.data_dir).resolve())
        server = Server(root, domains=("bench.example",))
        server.start()
        wait_port(server.http_port)
        try:
            print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {args.data_dir},"
                  f" load averages before {os.getloadavg()}", flush=True)
            times = run(server.http_port, args.repeat)
            print(f"load averages after {os.getloadavg()}")
            for name, values in times.items():
                if not values:
                    continue
                print(f"{name:<9} p50 {statistics.median(values) * 1000:7.1f} ms"
                      f"   max {max(values) * 1000:7.1f} ms   ({len(values)} runs)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
