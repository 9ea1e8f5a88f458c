"""EventSource resume (RFC 8620 §7.3): every StateChange event has an `id:` (the state), and a
reconnect with Last-Event-ID hears at once of what changed while it was away, against a real
`mailyard serve` over HTTPS."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.jmapclient import PASSWORD, Jmap
from tests.e2e.server import Server, wait_port

ALICE = "alice@example.test"


@dataclass
class Event:
    event: str
    id: str | None
    data: Any


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jmap]:
    srv = Server(Path(tmp_path_factory.mktemp("jmap-push-resume")))
    srv.add_user(ALICE)
    srv.start()
    wait_port(srv.http_port)
    yield Jmap(srv, ALICE)
    srv.stop()


class Stream:
    """One EventSource connection read on its own thread, event by event (SSE fields)."""

    def __init__(self, j: Jmap, query: str, last_event_id: str | None = None) -> None:
        self.events: list[Event] = []
        self.arrived = threading.Condition()
        self.ended = False
        self.opened = threading.Event()
        headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
        self._client = httpx.Client(verify=False, auth=(ALICE, PASSWORD), timeout=30)
        self._response = self._client.send(self._client.build_request(
            "GET", f"https://127.0.0.1:{j.server.http_port}/jmap/eventsource?{query}",
            headers=headers), stream=True)
        assert self._response.status_code == 200
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        fields: dict[str, str] = {}
        try:
            for line in self._response.iter_lines():
                if line == "":
                    if fields:
                        with self.arrived:
                            self.events.append(Event(fields.get("event", "message"),
                                                     fields.get("id"),
                                                     json.loads(fields.get("data", "null"))))
                            self.arrived.notify_all()
                    fields = {}
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
        except httpx.HTTPError:
            pass  # closed by the test
        with self.arrived:
            self.ended = True
            self.arrived.notify_all()

    def next(self, n: int, timeout: float = 20.0) -> Event:
        """The n-th event (from 0), waiting for it."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.events) > n or self.ended, timeout)
            assert len(self.events) > n, f"the stream ended after {self.events}"
            return self.events[n]

    def until(self, state: str, timeout: float = 20.0) -> Event:
        """The state event whose id is `state` (a JMAP call can step the state more than
        once, each step an event)."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: any(
                e.id == state for e in self.events) or self.ended, timeout), self.events
            found = [e for e in self.events if e.id == state]
            assert found, f"no event {state} in {self.events}"
            return found[0]

    def wait_end(self, timeout: float = 20.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: self.ended, timeout)

    def close(self) -> None:
        """Shut the socket down (the reader thread wakes to its end), then close: closing
        it under the reader would free its descriptor while that thread still reads it,
        and the next stream's socket could get the same number."""
        sock = self._response.extensions["network_stream"].get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        self.wait_end()
        self._response.close()
        self._client.close()


def _change(j: Jmap, name: str) -> None:
    assert j.call("Mailbox/set", create={"m": {"name": name}})["created"]


def test_events_have_ids_and_a_reconnect_resumes(alice: Jmap) -> None:
    live = Stream(alice, "types=*&closeafter=no&ping=0")
    _change(alice, "First")
    first = live.until(alice.state())
    live.close()
    assert first.event == "state"
    assert all(e.event == "state" and e.id == e.data["changed"][alice.account_id]["Mailbox"]
               for e in live.events)
    state = first.data["changed"][alice.account_id]["Mailbox"]

    # Away: two changes nobody hears of.
    _change(alice, "Second")
    _change(alice, "Third")
    now = alice.state()
    assert int(now) > int(state)

    # Back with the last id: the missed state comes first, without waiting for a change or
    # for the ping.
    resumed = Stream(alice, "types=Mailbox,Email&closeafter=no&ping=60", last_event_id=state)
    missed = resumed.next(0)
    assert (missed.event, missed.id) == ("state", now)
    assert missed.data == {"@type": "StateChange", "changed": {alice.account_id: {
        "Email": now, "Mailbox": now}}}
    _change(alice, "Fourth")  # and then live events as before, with their ids
    after = resumed.until(alice.state())
    assert int(after.id or 0) > int(now)
    assert [e.id for e in resumed.events] == sorted(
        {e.id for e in resumed.events}, key=lambda i: int(i or 0))  # none twice
    resumed.close()


def test_a_reconnect_that_missed_nothing_hears_nothing_new(alice: Jmap) -> None:
    now = alice.state()
    stream = Stream(alice, "types=*&closeafter=no&ping=1", last_event_id=now)
    first = stream.next(0)
    assert (first.event, first.id, first.data) == ("ping", None, {"interval": 1})
    _change(alice, "Fifth")
    assert stream.until(alice.state()).event == "state"
    assert all(int(e.id) > int(now) for e in stream.events if e.id is not None)
    stream.close()


def test_resume_with_closeafter_state_and_a_foreign_id(alice: Jmap) -> None:
    for last_id in ("1", "not-a-state-of-ours"):
        stream = Stream(alice, "types=*&closeafter=state&ping=0", last_event_id=last_id)
        only = stream.next(0)
        assert (only.event, only.id) == ("state", alice.state())
        stream.wait_end()
        assert len(stream.events) == 1
        stream.close()
