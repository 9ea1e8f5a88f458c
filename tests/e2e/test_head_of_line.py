"""No request may stall another (issue 18): while one client runs the slowest search the suite
can make, SMTP EHLO, IMAP NOOP and a JMAP Email/get on other connections keep answering.

The slow search is JMAP SearchSnippet/get of an OR of 300 words over 500 emails of a 1,000
message mailbox: highlighting is the index's costliest work, seconds here, and with the
server's query budget set to BUDGET it runs exactly that long on any machine before it is
cancelled with serverUnavailable (the other half of the rule: every query has a budget). An
IMAP X-GM-RAW SEARCH of the same words runs beside it. The probes' latencies with no slow
query running are measured first, in the same test: a probe must stay within what the machine
gives them anyway, never within the seconds the search holds.
"""

from __future__ import annotations

import imaplib
import random
import smtplib
import statistics
import string
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.jmapclient import Jmap
from tests.e2e.server import Server

USER = "hol@example.test"
PASSWORD = "secret-password"
BUDGET = 1.5
MESSAGES = 1000


def _words() -> list[str]:
    rng = random.Random(18)
    return ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 9)))
            for _ in range(2000)]


def _mbox(path: Path, words: list[str]) -> None:
    rng = random.Random(19)
    with path.open("w") as f:
        for n in range(MESSAGES):
            f.write(f"From sender@example.org Mon Jan  1 00:00:00 2024\nFrom: s{n}@example.org\n"
                    f"To: {USER}\nSubject: note {n}\nMessage-ID: <hol-{n}@example.org>\n\n")
            for _ in range(60):
                f.write(" ".join(rng.choice(words) for _ in range(10)) + "\n")
            f.write("\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("hol")
    srv = Server(root, limits={"query_seconds": BUDGET})
    srv.add_user(USER, PASSWORD)
    _mbox(root / "seed.mbox", _words())
    srv.cli("import", USER, str(root / "seed.mbox"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class Probes:
    """Three connections that stay open, each timed on one small request."""

    def __init__(self, srv: Server) -> None:
        self.smtp = smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=60)
        self.imap = imaplib.IMAP4("127.0.0.1", srv.imap_port, timeout=60)
        self.imap.login(USER, PASSWORD)
        self.imap.select("INBOX")
        self.jmap = Jmap(srv, USER)
        self.email_id = self.jmap.call("Email/query", limit=1)["ids"][0]

    def _ehlo(self) -> None:
        assert self.smtp.ehlo("probe.test")[0] == 250

    def _noop(self) -> None:
        assert self.imap.noop()[0] == "OK"

    def _get(self) -> None:
        assert self.jmap.call("Email/get", ids=[self.email_id], properties=["subject"])["list"]

    def each(self) -> dict[str, Callable[[], None]]:
        return {"smtp EHLO": self._ehlo, "imap NOOP": self._noop, "jmap Email/get": self._get}

    def round(self) -> dict[str, float]:
        out = {}
        for name, probe in self.each().items():
            started = time.monotonic()
            probe()
            out[name] = time.monotonic() - started
        return out

    def close(self) -> None:
        self.smtp.quit()
        self.imap.logout()


def test_probes_answer_while_the_slowest_search_runs(server: Server) -> None:
    words = _words()[:300]
    probes = Probes(server)
    try:
        baseline: dict[str, list[float]] = {name: [] for name in probes.each()}
        for _ in range(15):
            for name, took in probes.round().items():
                baseline[name].append(took)
            time.sleep(0.05)

        jmap = Jmap(server, USER)
        ids = jmap.call("Email/query", limit=500)["ids"]
        assert len(ids) == 500
        answers: dict[str, object] = {}
        slow_time: dict[str, float] = {}

        def snippets() -> None:
            started = time.monotonic()
            answers["jmap"] = jmap.calls(("SearchSnippet/get", {
                "filter": {"operator": "OR", "conditions": [{"text": w} for w in words]},
                "emailIds": ids}))
            slow_time["jmap"] = time.monotonic() - started

        def x_gm_raw() -> None:
            imap = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=300)
            imap.login(USER, PASSWORD)
            imap.select("INBOX")
            started = time.monotonic()
            answers["imap"] = imap.uid("SEARCH", "X-GM-RAW", '"' + " OR ".join(words) + '"')
            slow_time["imap"] = time.monotonic() - started
            imap.logout()

        slow = [threading.Thread(target=snippets), threading.Thread(target=x_gm_raw)]
        for t in slow:
            t.start()
        during: dict[str, list[float]] = {name: [] for name in probes.each()}
        while slow[0].is_alive():
            for name, took in probes.round().items():
                during[name].append(took)
            time.sleep(0.1)
        for t in slow:
            t.join(300)
    finally:
        probes.close()

    # The slow search really was slow, and ended by its budget with JMAP's temporary refusal.
    [[kind, result, _]] = answers["jmap"]  # type: ignore[misc]
    assert kind == "error" and result["type"] == "serverUnavailable", result
    assert slow_time["jmap"] >= BUDGET
    assert answers["imap"][0] == "OK"  # type: ignore[index]
    assert len(during["imap NOOP"]) >= 5, "too few probes while the search ran"
    for name, times in during.items():
        base = baseline[name]
        typical = max(0.1, 3 * statistics.median(base))
        worst = max(0.25, 5 * max(base))
        assert statistics.median(times) <= typical, (name, times, base)
        assert max(times) <= worst, (name, max(times), base)
