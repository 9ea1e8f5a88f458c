"""The Maintenance port on every MailStore engine, and `mailyard fsck --repair` and `mailyard gc`
over it: derived data (quota usage, mailbox counters, UIDNEXT, recorded attachment references)
broken behind the store's back with the engine's own SQL, found, repaired, and found sound.

The damage is done the way a crash, a bug or a careless hand would do it: straight on the
engine's tables (the world outside the store), never through the port under test.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailyard.pipeline.inbound import InboundPipeline
from mailyard.services import gc
from mailyard.services.fsck import Fsck, Report
from mailyard.services.mailbox import MailboxService
from mailyard.store.fs.blobstore import FsBlobStore
from mailyard.store.local.eventbus import LocalEventBus
from mailyard.store.ports import Account, Mailbox, MailboxCounters, NotFound
from mailyard.store.sqlite.queue import SqliteQueue
from mailyard.store.sqlite.search import SqliteSearchIndex
from tests.contract.conftest import Engine

ATTACHMENT = bytes(range(256)) * 32


def message(word: str, attachment: bytes | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "carol@elsewhere.test"
    msg["To"] = "alice@example.test"
    msg["Subject"] = word.title()
    msg["Message-ID"] = f"<{word}@elsewhere.test>"
    msg.set_content(f"The word of the day is {word}.\n")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream",
                           filename=f"{word}.bin")
    return msg.as_bytes(policy=policy.SMTP)


class Tables:
    """The engine's own tables of the store under test. SQL is written with `?` and given
    PostgreSQL's `$n` when the engine is PostgreSQL (the statements are the same on both:
    the two schemas share the column names and types this test touches)."""

    def __init__(self, engine: Engine, store: Any, tmp_path: Path) -> None:
        self.engine, self.store, self.path = engine, store, tmp_path / "mail.db"

    async def execute(self, account_id: str, sql: str, *args: Any) -> None:
        if self.engine.name == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.path)
            with conn:
                assert conn.execute(sql, args).rowcount == 1, sql
            conn.close()
            return
        for n in range(1, len(args) + 1):
            sql = sql.replace("?", f"${n}", 1)
        store = self.store
        if self.engine.name == "postgres-sharded":
            entry = await store.lookup(account_id)
            store = store.shards[entry.shard]
        pool: asyncpg.Pool = await store.pool()
        assert await pool.execute(sql, *args) == "UPDATE 1", sql


@dataclass
class World:
    """A mail store with three messages in INBOX (one with an attachment, one seen), the
    services fsck works through, and the engine's tables to damage."""

    store: Any
    mailbox: MailboxService
    tables: Tables
    inbox: Mailbox
    ids: dict[str, str]


@pytest.fixture
async def world(mailstore: Any, mail_engine: Engine, account: Account,
                tmp_path: Path) -> AsyncIterator[World]:
    blobs = FsBlobStore(tmp_path / "blobs")
    index = SqliteSearchIndex(tmp_path / "search.db")
    bus = LocalEventBus()
    service = MailboxService(mailstore, blobs, index, bus, InboundPipeline(mailstore, blobs))
    inbox = next(b for b in await mailstore.list_mailboxes(account.id) if b.role == "inbox")
    ids = {}
    for word, keywords, attachment in (("zanzibar", [], None),
                                       ("quokka", [], ATTACHMENT),
                                       ("marmalade", ["$seen"], None)):
        appended = await service.append(account, inbox, message(word, attachment),
                                        keywords=keywords)
        ids[word] = appended.email_id
    try:
        yield World(mailstore, service, Tables(mail_engine, mailstore, tmp_path), inbox, ids)
    finally:
        for adapter in (index, blobs, bus):
            adapter.close()


async def fsck(world: World, account: Account, *, repair: bool = False) -> Report:
    return await Fsck(world.mailbox, world.store, repair=repair).run([account])


async def box(store: Any, account: Account, mailbox: Mailbox) -> Mailbox:
    return next(b for b in await store.list_mailboxes(account.id) if b.id == mailbox.id)


async def test_clean_store_has_no_problem(world: World, account: Account) -> None:
    report = await fsck(world, account)
    assert (report.accounts, report.emails, report.problems) == (1, 3, [])
    refs = await world.store.blob_refs(account.id, list(world.ids.values()))
    assert refs[world.ids["quokka"]] == [hashlib.sha256(ATTACHMENT).hexdigest()]
    assert refs[world.ids["zanzibar"]] == refs[world.ids["marmalade"]] == []


async def test_fsck_finds_and_repairs_counters_uidnext_and_refs(world: World,
                                                               account: Account) -> None:
    store, ids, inbox = world.store, world.ids, world.inbox
    sizes = {r.id: r.size for r in await store.get_emails(account.id, list(ids.values()))}
    quokka, attachment = ids["quokka"], hashlib.sha256(ATTACHMENT).hexdigest()
    await world.tables.execute(account.id, "UPDATE accounts SET used = ? WHERE id = ?",
                               12345, account.id)
    await world.tables.execute(
        account.id, "UPDATE mailboxes SET total = ?, unseen = ?, bytes = ?, uidnext = ?"
        " WHERE account_id = ? AND id = ?", 99, 0, 1, 2, account.id, inbox.id)
    await world.tables.execute(account.id, "UPDATE emails SET blob_refs = ?"
                               " WHERE account_id = ? AND id = ?", b"[]", account.id, quokka)

    report = await fsck(world, account)
    kinds = sorted(p.kind for p in report.problems)
    assert kinds == ["mailbox-counters", "missing-attachment-ref", "quota-usage", "uidnext"]
    assert all(p.repairable and not p.repaired for p in report.problems)
    assert (await store.get_account_by_id(account.id)).used == 12345, "a check writes nothing"

    before = (await store.get_account_by_id(account.id)).modseq
    report = await fsck(world, account, repair=True)
    assert sorted(p.kind for p in report.problems) == kinds
    assert report.unresolved == []

    assert (await fsck(world, account)).problems == []
    after = await store.get_account_by_id(account.id)
    assert after.used == sum(sizes.values())
    repaired = await box(store, account, inbox)
    assert (repaired.total, repaired.unread, repaired.size, repaired.uidnext) == (
        3, 2, sum(sizes.values()), 4)
    assert (await store.blob_refs(account.id, [quokka]))[quokka] == [attachment]
    # JMAP clients cache the counts by state: the repaired mailbox changed.
    assert after.modseq > before and repaired.highest_modseq == after.modseq
    changes = await store.changes_since(account.id, before)
    assert ("Mailbox", inbox.id, "updated") in {(c.kind, c.object_id, c.op) for c in changes}


async def test_extra_recorded_ref_is_repaired_and_gc_keeps_recorded_refs(
        world: World, account: Account, tmp_path: Path) -> None:
    """gc trusts what a row records (besides the skeleton): a ref recorded there is kept."""
    store, zanzibar = world.store, world.ids["zanzibar"]
    extra = "ab" * 32
    await world.tables.execute(account.id, "UPDATE emails SET blob_refs = ?"
                               " WHERE account_id = ? AND id = ?",
                               f'["{extra}"]'.encode(), account.id, zanzibar)
    queue = SqliteQueue(tmp_path / "queue.db")
    try:
        kept = await gc.referenced(store, world.mailbox.blobs, queue)
        assert extra in kept
        assert hashlib.sha256(ATTACHMENT).hexdigest() in kept
        records = await store.get_emails(account.id, list(world.ids.values()), brief=True)
        assert {r.blob_id for r in records} <= kept

        report = await fsck(world, account, repair=True)
        assert [(p.kind, p.repaired) for p in report.problems] == [
            ("extra-attachment-ref", True)]
        assert (await store.blob_refs(account.id, [zanzibar]))[zanzibar] == []
        assert extra not in await gc.referenced(store, world.mailbox.blobs, queue)
    finally:
        queue.close()


async def test_set_counters_is_a_compare_and_set_on_the_account_modseq(
        world: World, account: Account) -> None:
    store, inbox = world.store, world.inbox
    seen = await store.get_account_by_id(account.id)
    wrong = MailboxCounters(inbox.id, total=7, unseen=7, size=7, uidnext=1)
    await store.set_keywords(account.id, [world.ids["zanzibar"]], add=["$flagged"])
    assert not await store.set_counters(account.id, modseq=seen.modseq, used=1,
                                        mailboxes=[wrong])
    now = await store.get_account_by_id(account.id)
    assert now.used == seen.used, "nothing written when the account moved on"
    assert (await box(store, account, inbox)).total == 3

    assert await store.set_counters(account.id, modseq=now.modseq, used=1, mailboxes=[wrong])
    written = await box(store, account, inbox)
    assert (written.total, written.unread, written.size) == (7, 7, 7)
    assert written.uidnext == inbox.uidnext + 3, "UIDNEXT is never lowered"
    assert (await store.get_account_by_id(account.id)).used == 1
    # Usage alone moves no MODSEQ (no object a client syncs changed).
    now = await store.get_account_by_id(account.id)
    assert await store.set_counters(account.id, modseq=now.modseq, used=2, mailboxes=[])
    assert (await store.get_account_by_id(account.id)).modseq == now.modseq

    with pytest.raises(NotFound):
        await store.set_counters("a-nobody", modseq=0, used=0, mailboxes=[])
    with pytest.raises(NotFound):
        await store.set_blob_refs(account.id, "e-nothing", [])
    assert await store.blob_refs(account.id, ["e-nothing"]) == {}


class BlobsWithAVisitor(FsBlobStore):
    """The world's blob store, where another client appends a message while fsck reads its
    first blob: a write after fsck read the account and before it repairs the counters."""

    def __init__(self, root: Path, visit: Callable[[], Awaitable[object]]) -> None:
        super().__init__(root)
        self.visit: Callable[[], Awaitable[object]] | None = visit

    async def get(self, blob_id: str) -> bytes:
        if self.visit is not None:
            visit, self.visit = self.visit, None
            await visit()
        return await super().get(blob_id)


async def test_fsck_counts_again_when_a_write_comes_between(world: World, account: Account,
                                                           tmp_path: Path) -> None:
    """The counts of the first pass are stale by the time they would be written: the
    compare-and-set refuses them, and fsck counts again instead of writing 3 for 4."""
    store, inbox = world.store, world.inbox
    await world.tables.execute(account.id, "UPDATE mailboxes SET total = ?"
                               " WHERE account_id = ? AND id = ?", 99, account.id, inbox.id)
    blobs = BlobsWithAVisitor(tmp_path / "blobs", lambda: world.mailbox.append(
        account, inbox, message("wombat")))
    try:
        checking = MailboxService(store, blobs, world.mailbox.index, world.mailbox.bus,
                                  world.mailbox.pipeline)
        report = await Fsck(checking, store, repair=True).run([account])
    finally:
        blobs.close()
    assert blobs.visit is None, "the visitor came"
    # Nothing the visitor did is taken for damage (an email or a mailbox MODSEQ above the
    # account's first read, usage off by the new email), and the damage is mended.
    assert [(p.kind, p.repaired) for p in report.problems] == [
        ("mailbox-counters", True)], "\n".join(map(str, report.problems))
    repaired = await box(store, account, inbox)
    assert (repaired.total, repaired.unread) == (4, 3)
    assert (await fsck(world, account)).problems == []


class IndexWithAVisitor(SqliteSearchIndex):
    """The world's search index, where another client appends a message just before fsck
    lists the indexed documents: the new email's document is there, its row was not when
    fsck read the emails."""

    def __init__(self, path: Path, visit: Callable[[], Awaitable[object]]) -> None:
        super().__init__(path)
        self.visit: Callable[[], Awaitable[object]] | None = visit

    async def indexed_ids(self, account_id: str) -> set[str]:
        if self.visit is not None:
            visit, self.visit = self.visit, None
            await visit()
        return await super().indexed_ids(account_id)


async def test_repair_keeps_the_document_of_an_email_delivered_meanwhile(
        world: World, account: Account, tmp_path: Path) -> None:
    appended: list[str] = []

    async def append() -> None:
        appended.append((await world.mailbox.append(account, world.inbox,
                                                    message("wombat"))).email_id)

    index = IndexWithAVisitor(tmp_path / "search.db", append)
    try:
        checking = MailboxService(world.store, world.mailbox.blobs, index, world.mailbox.bus,
                                  world.mailbox.pipeline)
        report = await Fsck(checking, world.store, repair=True).run([account])
    finally:
        index.close()
    assert appended and report.problems == [], "\n".join(map(str, report.problems))
    assert appended[0] in await world.mailbox.index.indexed_ids(account.id)
