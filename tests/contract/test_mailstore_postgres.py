"""What only the PostgreSQL MailStore promises beyond the shared contract: several OS processes
writing one account at once (the scaled-out mode), migrations raced by processes starting
together, and text PostgreSQL cannot hold as-is."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import asyncpg
import pytest

from mailyard.store.ports import Change
from mailyard.store.postgres import schema
from mailyard.store.postgres.mailstore import PostgresMailStore
from tests.contract.conftest import make_new_email
from tests.pgserver import TestDatabase

WORKERS = 4
PER_WORKER = 30


@pytest.fixture
async def database() -> AsyncIterator[TestDatabase]:
    db = TestDatabase()
    try:
        yield db
    finally:
        await db.drop()


async def _append(dsn: str, account_id: str, worker: int, start_at: float
                  ) -> list[tuple[str, int]]:
    store = await PostgresMailStore.connect(dsn, max_size=2)
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))  # all four start together
        done = []
        for n in range(PER_WORKER):
            email = make_new_email(account_id, subject=f"worker {worker} mail {n}")
            result = await store.deliver(email)
            assert result.created
            done.append((result.email_id, result.modseq))
        return done
    finally:
        store.close()


def append_in_process(dsn: str, account_id: str, worker: int, start_at: float
                      ) -> list[tuple[str, int]]:
    """Runs in its own OS process: one pool, PER_WORKER deliveries to the INBOX, in order."""
    return asyncio.run(_append(dsn, account_id, worker, start_at))


def _gap_free(batch: list[Change], after: int) -> bool:
    """A read of the log after `after` shows every modseq from after+1 to its highest."""
    seen = sorted({c.modseq for c in batch})
    return seen == list(range(after + 1, after + 1 + len(seen)))


async def test_four_processes_appending_to_one_mailbox(database: TestDatabase) -> None:
    dsn = await database.dsn()
    store = await PostgresMailStore.connect(dsn)
    try:
        account = await store.create_account("alice@example.test", "h", 1 << 30)
        inbox = next(b for b in await store.list_mailboxes(account.id) if b.role == "inbox")
        start = account.modseq
        reads: list[tuple[int, list[Change]]] = []
        stop = asyncio.Event()

        async def watch() -> None:
            """A sync client reading the log while the writers commit."""
            last = start
            while not stop.is_set():
                batch = await store.changes_since(account.id, last)
                reads.append((last, batch))
                if batch:
                    last = batch[-1].modseq
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(WORKERS, mp_context=get_context("spawn")) as pool:
            start_at = time.time() + 3.0
            results = await asyncio.gather(*(
                loop.run_in_executor(pool, append_in_process, dsn, account.id, w, start_at)
                for w in range(WORKERS)))
        stop.set()
        await watcher

        total = WORKERS * PER_WORKER
        snap = await store.snapshot(account.id, inbox.id)
        assert [e.uid for e in snap.entries] == list(range(1, total + 1))
        assert snap.mailbox.uidnext == total + 1 and snap.mailbox.total == total
        # UIDs and modseqs were taken under one lock: in UID order the modseqs only grow.
        modseqs = [e.modseq for e in snap.entries]
        assert modseqs == sorted(modseqs) and len(set(modseqs)) == total
        uid_of = {e.email_id: e.uid for e in snap.entries}
        for done in results:
            assert [m for _, m in done] == sorted(m for _, m in done)
            uids = [uid_of[e] for e, _ in done]
            assert uids == sorted(uids), "one process's appends got UIDs out of its order"
        every = {m for done in results for _, m in done}
        assert every == set(range(start + 1, start + total + 1)), "modseqs lost or repeated"

        log = await store.changes_since(account.id, start)
        assert _gap_free(log, start) and log[-1].modseq == start + total
        created = [c.object_id for c in log if c.kind == "Email" and c.op == "created"]
        assert sorted(created) == sorted(uid_of)
        assert len(reads) > 3, "the watcher must have read while the writers ran"
        gaps = [(after, sorted({c.modseq for c in b})) for after, b in reads
                if not _gap_free(b, after)]
        assert gaps == [], "a reader saw a modseq before an earlier one had committed"
        assert (await store.get_account_by_id(account.id)).modseq == start + total

        # QRESYNC after any point of the run gives exactly what changed after it.
        mark = start + total // 2
        delta = await store.mailbox_delta(account.id, inbox.id, mark)
        assert sorted(e.modseq for e in delta.changed) == list(range(mark + 1,
                                                                    start + total + 1))
    finally:
        store.close()


async def test_processes_starting_together_migrate_once(database: TestDatabase) -> None:
    dsn = await database.dsn()
    stores = await asyncio.gather(*(PostgresMailStore.connect(dsn) for _ in range(4)))
    try:
        conn = await asyncpg.connect(dsn)
        try:
            version = await conn.fetchval(
                "SELECT version FROM schema_version WHERE component = 'mailstore'")
            assert version == len(schema.MIGRATIONS)
            assert await schema.migrate(conn) == version  # again: nothing to do
        finally:
            await conn.close()
        account = await stores[0].create_account("bob@example.test", "h", 1 << 20)
        assert (await stores[3].get_account("bob@example.test")).id == account.id
    finally:
        for store in stores:
            store.close()


async def test_text_postgres_cannot_hold_is_stored_replaced(database: TestDatabase) -> None:
    """An encoded word can decode to NUL or a lone surrogate; PostgreSQL's text refuses both,
    and a delivery must not fail for it (every engine stores them replaced alike:
    store.ports.stored_text, tests/contract/test_model_text.py)."""
    store = await PostgresMailStore.connect(await database.dsn())
    try:
        account = await store.create_account("carol@example.test", "h", 1 << 20)
        email = make_new_email(account.id, subject="a\x00b \udcff c", keywords=["x\x00"],
                               content=b"Subject: =?utf-8?q?a=00b?=\r\n\r\n")
        email = dataclasses.replace(email, preview="p\x00")
        result = await store.deliver(email)
        record = await store.get_email(account.id, result.email_id)
        assert record.subject == "a\ufffdb ? c"
        assert record.preview == "p\ufffd" and record.keywords == ["x\ufffd"]
        box = await store.create_mailbox(account.id, "odd\x00name")
        assert box.name == "odd\ufffdname"
    finally:
        store.close()
