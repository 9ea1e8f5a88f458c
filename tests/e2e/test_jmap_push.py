"""JMAP push over EventSource (RFC 8620 §7.3) against a real server: a delivery over SMTP and a
flag change over IMAP each reach an open event stream within milliseconds."""

from __future__ import annotations

import imaplib
import json
import smtplib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import Server, wait_port

ALICE, PASSWORD = "alice@example.test", "secret-password"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    srv.add_user(ALICE)
    srv.add_user("bob@example.test")
    srv.start()
    wait_port(srv.http_port)  # the HTTP listener starts after SMTP's
    yield srv
    srv.stop()


class Listener:
    """An EventSource client on its own thread, recording (arrival time, event, data)."""

    def __init__(self, server: Server, query: str, user: str = ALICE) -> None:
        self.events: list[tuple[float, str, Any]] = []
        self.ended = threading.Event()
        self.opened = threading.Event()
        self.url = f"https://127.0.0.1:{server.http_port}/jmap/eventsource?{query}"
        self.user = user
        threading.Thread(target=self._run, daemon=True).start()
        assert self.opened.wait(10)

    def _run(self) -> None:
        try:
            with httpx.stream("GET", self.url, auth=(self.user, PASSWORD), timeout=30,
                              verify=False) as r:  # the server's self-signed certificate
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                self.opened.set()
                event = ""
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        self.events.append((time.monotonic(), event, json.loads(line[6:])))
        except httpx.RemoteProtocolError:
            pass  # the server stopped at the end of the test with the stream open
        self.ended.set()

    def wait(self, count: int, timeout: float = 10.0) -> list[tuple[float, str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        return list(self.events)


def deliver(server: Server, subject: str, to: str = ALICE) -> float:
    """Send one message; the time its 250 arrived."""
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail("carol@remote.test", [to],
                      f"From: carol@remote.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nhi\r\n")
        return time.monotonic()


def account_id(server: Server) -> str:
    r = httpx.get(f"https://127.0.0.1:{server.http_port}/jmap/session", auth=(ALICE, PASSWORD),
                  verify=False)
    return str(r.json()["primaryAccounts"]["urn:ietf:params:jmap:core"])


def test_delivery_and_imap_flag_change_push_state_changes(server: Server) -> None:
    listener = Listener(server, "types=*&closeafter=no&ping=0")
    accepted = deliver(server, "pushed")
    [(arrived, event, data)] = listener.wait(1)
    assert event == "state" and data["@type"] == "StateChange"
    me = account_id(server)
    [state] = {data["changed"][me][t] for t in ("Email", "Mailbox", "Thread")}
    latency = (arrived - accepted) * 1000
    print(f"push latency from SMTP 250 to the StateChange: {latency:.1f} ms")
    assert latency < 5000  # the pipeline runs between the 250 and the event
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
    imap.login(ALICE, PASSWORD)
    imap.select("INBOX")
    sent = time.monotonic()
    imap.store("1", "+FLAGS", "(\\Flagged)")
    events = listener.wait(2)
    assert len(events) >= 2
    later = events[-1]
    assert int(later[2]["changed"][me]["Email"]) > int(state)
    print(f"push latency from IMAP STORE to the StateChange: {(later[0] - sent) * 1000:.1f} ms")
    imap.logout()


def test_only_the_owner_is_told(server: Server) -> None:
    alice = Listener(server, "types=Email&closeafter=no&ping=0")
    bob = Listener(server, "types=*&closeafter=no&ping=0", user="bob@example.test")
    deliver(server, "for alice only")
    [(_, _, data)] = alice.wait(1)
    [changed] = data["changed"].values()
    assert list(changed) == ["Email"], "only the types asked for"
    time.sleep(0.5)
    assert bob.events == []


def test_closeafter_state_and_ping(server: Server) -> None:
    once = Listener(server, "types=*&closeafter=state&ping=0")
    deliver(server, "one")
    assert once.ended.wait(10), "closeafter=state ends the stream after the first change"
    pinged = Listener(server, "types=*&closeafter=no&ping=1")
    events = pinged.wait(2, timeout=5)
    assert [e[1] for e in events[:2]] == ["ping", "ping"]
    assert events[0][2] == {"interval": 1}


def test_event_source_needs_credentials_and_valid_parameters(server: Server) -> None:
    base = f"https://127.0.0.1:{server.http_port}/jmap/eventsource"
    assert httpx.get(f"{base}?types=*&closeafter=no&ping=0", verify=False).status_code == 401
    r = httpx.get(f"{base}?types=*&closeafter=sometimes&ping=0", auth=(ALICE, PASSWORD),
                  verify=False)
    assert r.status_code == 400
