"""The checks' verdict, recorded in the queue item at DATA, decides where the pipeline puts the
message: the real embedded runtime (SQLite store and queue, files, FTS) and its real worker.

Quarantine is asked for by content checks only (a virus from clamd), which over SMTP needs a
clamd; here the queue item carries the verdict as `DeliveryService.accept` records it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailyard.app import Runtime
from mailyard.config import Config
from mailyard.core.ids import new_id
from mailyard.core.workitems import INBOUND, Action, Verdict


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = Runtime.open(Config(data_dir=tmp_path, domains=("example.test",)))
    await rt.store.create_account("alice@example.test", "x", 10**9)
    yield rt
    rt.close()


async def deliver(rt: Runtime, subject: str, verdict: Verdict | None) -> str:
    queue_id = new_id("q")
    raw = (f"From: a@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject}@remote.test>\r\n\r\nbody\r\n").encode()
    await rt.delivery.accept(queue_id=queue_id, mail_from="a@remote.test",
                             recipients=["alice@example.test"], raw=raw, trace_length=0,
                             received_at=1_800_000_000_000, verdict=verdict)
    await rt.worker().handle(await rt.queue.lease([INBOUND], 10, 60.0))
    return queue_id


async def test_junk_goes_to_junk_and_quarantine_to_the_dead_letters(runtime: Runtime) -> None:
    rt = runtime
    await deliver(rt, "q1clean", Verdict())
    await deliver(rt, "q2junk", Verdict(Action.JUNK, "DMARC quarantine policy"))
    virus = await deliver(rt, "q3virus", Verdict(Action.QUARANTINE, "virus: Eicar-Test",
                                                 virus="Eicar-Test"))
    await deliver(rt, "q4none", None)  # a queue item written before verdicts existed
    account = await rt.mailbox.account("alice@example.test")
    inbox = {e.subject for e in await rt.mailbox.emails(account, "inbox", 100)}
    junk = await rt.mailbox.emails(account, "junk", 100)
    assert inbox == {"q1clean", "q4none"}
    assert [e.subject for e in junk] == ["q2junk"]
    assert "$junk" in junk[0].keywords
    [dead] = await rt.queue.dead_letters()
    assert dead.id == virus
    assert dead.error == "virus: Eicar-Test", "buried at once, with the verdict's reason"
    assert dead.attempts == 1
