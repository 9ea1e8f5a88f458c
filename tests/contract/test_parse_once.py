"""The worker parses a queued message once: the spam placement scores that parse, and the copy
it stores (with the X-Spam-* fields the score added) is described by that parse, moved, exactly
as a parse of the stored octets describes it. The real embedded runtime (SQLite store and
queue, files, FTS) and its real worker; the items are queued as the code before typed work
items wrote them, so an item waiting in the queue across the upgrade is delivered."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from mailyard.app import Runtime
from mailyard.config import Config
from mailyard.core import mime
from mailyard.core.ids import new_id
from mailyard.core.workitems import INBOUND
from mailyard.services.delivery import spool_id

TRACE = b"Received: from mx.remote.test by mx.example.test; Mon, 1 Jan 2029 00:00:00 +0000\r\n"


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = Runtime.open(Config(data_dir=tmp_path, domains=("example.test",)))
    await rt.store.create_account("alice@example.test", "x", 10**9)
    await rt.store.create_account("bob@example.test", "x", 10**9)
    yield rt
    rt.close()


@contextmanager
def counting_parses() -> Iterator[list[int]]:
    """How often core.mime parses a whole message (its `_parse`), in this thread and in the
    threads of a fresh default executor (where asyncio.to_thread runs the parse)."""
    calls: list[int] = []
    code = mime._parse.__code__

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is code:
            calls.append(len(calls))

    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(4)
    threading.setprofile(profile)  # type: ignore[arg-type]
    sys.setprofile(profile)  # type: ignore[arg-type]
    loop.set_default_executor(executor)
    try:
        yield calls
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
        loop.set_default_executor(ThreadPoolExecutor())
        executor.shutdown(wait=False)


def message(subject: str) -> bytes:
    html = "".join(f"<p>paragraph {n} of {subject}</p>" for n in range(50))
    return (f"From: Sender <s@remote.test>\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@remote.test>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
            f"Content-Type: text/plain\r\n\r\nplain text of {subject}\r\n--b\r\n"
            f"Content-Type: text/html\r\n\r\n{html}\r\n--b--\r\n").encode()


async def queue_as_before(rt: Runtime, raw: bytes, verdict: dict[str, Any] | None,
                          recipients: list[str]) -> str:
    """What DeliveryService.accept wrote before the items were typed, byte for byte."""
    queue_id = new_id("q")
    await rt.blobs.put(spool_id(queue_id), raw)
    payload: dict[str, Any] = {"verdict": verdict} if verdict is not None else {}
    payload |= {"spool": spool_id(queue_id), "mail_from": "s@remote.test",
                "recipients": recipients, "trace_length": len(TRACE),
                "received_at": 1_800_000_000_000, "peer": "192.0.2.1",
                "helo": "mx.remote.test"}
    await rt.queue.enqueue(INBOUND, payload, item_id=queue_id)
    return queue_id


UNSCORED = {"action": "accept", "reason": "", "score": 0.0, "symbols": {},
            "data": {"spam": {"sender": "s@remote.test", "scored": False},
                     "auth": {"dmarc": "pass"}}}
"""The content check left the score to the pipeline (no reject threshold, no rspamd)."""


async def test_scored_and_stored_from_one_parse(runtime: Runtime) -> None:
    rt = runtime
    raw = TRACE + message("once")
    await queue_as_before(rt, raw, UNSCORED, ["alice@example.test", "bob@example.test"])
    items = await rt.queue.lease([INBOUND], 10, 60.0)
    with counting_parses() as parses:
        await rt.worker().handle(items)
    assert len(parses) == 1, "one parse for the score and the store, for both recipients"
    for address in ("alice@example.test", "bob@example.test"):
        account = await rt.mailbox.account(address)
        [email] = await rt.mailbox.emails(account, "inbox", 10)
        stored = await rt.mailbox.raw(account, email.id)
        assert stored.startswith(TRACE + b"X-Spam-Score: ")
        assert stored.endswith(message("once"))
        fresh = mime.parse_message(stored)
        record = await rt.mailbox.email(account, email.id)
        assert record.parts == fresh.root.to_json()
        assert (record.bodystructure, record.size) == (fresh.bodystructure, len(stored))
    assert (await rt.queue.stats()).ready == 0


async def test_an_item_the_checks_scored_already_is_parsed_once_too(runtime: Runtime) -> None:
    rt = runtime
    scored = {**UNSCORED, "data": {"spam": {"sender": "s@remote.test", "fingerprint": "f"}}}
    for verdict in (scored, None):
        await queue_as_before(rt, TRACE + message(f"v{verdict is None}"), verdict,
                              ["alice@example.test"])
    items = await rt.queue.lease([INBOUND], 10, 60.0)
    with counting_parses() as parses:
        await rt.worker().handle(items)
    assert len(parses) == 2
    account = await rt.mailbox.account("alice@example.test")
    emails = await rt.mailbox.emails(account, "inbox", 10)
    assert {e.subject for e in emails} == {"vFalse", "vTrue"}
    for e in emails:
        assert b"X-Spam-Score" not in await rt.mailbox.raw(account, e.id)


async def test_a_payload_that_is_no_item_goes_to_the_dead_letters(runtime: Runtime) -> None:
    rt = runtime
    await rt.queue.enqueue(INBOUND, {"spool": "s1", "recipients": "alice@example.test"},
                           item_id="q-bad")
    await rt.worker().handle(await rt.queue.lease([INBOUND], 10, 60.0))
    [dead] = await rt.queue.dead_letters()
    assert dead.id == "q-bad" and "'recipients'" in dead.error and dead.attempts == 1
