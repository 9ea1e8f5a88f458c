"""MailboxService over the mail model, on the embedded runtime: MOVE onto a mailbox that
already holds the email, and destroyed emails leaving the search index (the store answers
which were destroyed; the service holds no role list of its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailyard.app import Runtime
from mailyard.config import Config
from mailyard.store.ports import NotFound


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = Runtime.open(Config(data_dir=tmp_path, domains=("example.test",)))
    await rt.store.create_account("alice@example.test", "x", 10**9)
    yield rt
    rt.close()


def message(word: str) -> bytes:
    return (f"From: s@remote.test\r\nTo: alice@example.test\r\nSubject: {word}\r\n"
            f"Message-ID: <{word}@remote.test>\r\n\r\nthe {word} body\r\n").encode()


async def test_move_onto_a_mailbox_holding_the_email(runtime: Runtime) -> None:
    rt = runtime
    alice = await rt.store.get_account("alice@example.test")
    boxes = {b.name: b for b in await rt.mailbox.mailboxes(alice)}
    inbox = boxes["INBOX"]
    work = await rt.mailbox.create_mailbox(alice, "Work")
    emails = [(await rt.mailbox.append(alice, inbox, message(w))).email_id
              for w in ("alpha", "beta")]
    await rt.mailbox.copy(alice, emails[:1], work)  # alpha: now in INBOX and Work
    before = (await rt.store.get_account_by_id(alice.id)).modseq
    moved = await rt.mailbox.move(alice, emails, inbox, work)
    assert set(moved) == set(emails)
    assert (await rt.mailbox.snapshot(alice, inbox)).entries == []
    in_work = [e.email_id for e in (await rt.mailbox.snapshot(alice, work)).entries]
    assert len(in_work) == 3 and emails[0] in in_work and emails[1] in in_work
    assert (await rt.store.get_account_by_id(alice.id)).modseq > before


async def test_destroyed_emails_leave_the_index(runtime: Runtime) -> None:
    rt = runtime
    alice = await rt.store.get_account("alice@example.test")
    boxes = {b.name: b for b in await rt.mailbox.mailboxes(alice)}
    ids = {w: (await rt.mailbox.append(alice, boxes["INBOX"], message(w))).email_id
           for w in ("gamma", "delta", "omega")}
    for word in ids:
        assert await rt.mailbox.substring(alice, None, word) == {ids[word]}
    assert await rt.mailbox.destroy(alice, [ids["gamma"]]) == [ids["gamma"]]
    assert await rt.mailbox.delete_from(alice, boxes["INBOX"], [ids["delta"]]) == [ids["delta"]]
    await rt.mailbox.move(alice, [ids["omega"]], boxes["INBOX"], boxes["Trash"])
    await rt.mailbox.expunge(alice, boxes["Trash"], [ids["omega"]])
    for word, email_id in ids.items():
        assert not await rt.mailbox.substring(alice, None, word), word
        with pytest.raises(NotFound):
            await rt.store.get_email(alice.id, email_id)
