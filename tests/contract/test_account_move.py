"""Sharded PostgreSQL: placing accounts and moving one between shards while mail arrives.

Writers are separate stores (their own pools and directory caches), in this process and in
other OS processes, as the nodes of an installation would be; the mover is one more. Nothing
is mocked: two real databases, real COPYs and row locks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from mailyard.store.ports import Account, NotFound
from mailyard.store.postgres.move import TABLES, move_account
from mailyard.store.postgres.sharded import ShardedMailStore
from tests.contract.conftest import make_new_email
from tests.pgserver import TestDatabase

ADDRESS = "mover@example.test"
TASKS = 3
PROCESSES = 2
MOST_PER_WRITER = 5000
"""A bound on each writer's deliveries, should the stop signal never come."""


@pytest.fixture
async def dsns() -> AsyncIterator[list[str]]:
    databases = [TestDatabase(), TestDatabase()]
    try:
        yield [await d.dsn() for d in databases]
    finally:
        for d in databases:
            await d.drop()


async def _rows_on(store: ShardedMailStore, shard: str, account_id: str) -> int:
    pool = await store.shards[shard].pool()
    total = 0
    for table, _ in TABLES:
        column = "id" if table == "accounts" else "account_id"
        total += await pool.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1",
                                     account_id)
    return int(total)


async def _deliver_many(dsns: list[str], account_id: str, writer: str, stop: str
                        ) -> tuple[list[tuple[str, str, float]], int]:
    """Deliveries through a store of its own until the file `stop` exists (the move is over),
    so that mail flows all through the move however fast or slow this machine runs it: (delivery
    key, email id, time delivered) of each, and how many were re-routed to the new shard."""
    store = await ShardedMailStore.connect(dsns, max_size=2)
    try:
        done = []
        for n in range(MOST_PER_WRITER):
            if Path(stop).exists():
                break
            email = make_new_email(account_id, subject=f"{writer} {n}",
                                   delivery_key=f"q-{writer}-{n}")
            result = await store.deliver(email)
            assert result.created
            done.append((email.delivery_key, result.email_id, time.monotonic()))
            await asyncio.sleep(0.005)
        return done, store.reroutes
    finally:
        store.close()


def deliver_in_process(dsns: list[str], account_id: str, writer: str, stop: str
                       ) -> tuple[list[tuple[str, str, float]], int]:
    return asyncio.run(_deliver_many(dsns, account_id, writer, stop))


async def _flip_keywords(dsns: list[str], account_id: str, email_ids: list[str],
                         stop: asyncio.Event) -> int:
    """Keyword writes on old mail throughout the move; how many were applied."""
    store = await ShardedMailStore.connect(dsns, max_size=2)
    applied = 0
    try:
        while not stop.is_set():
            for email_id in email_ids:
                result = await store.set_keywords(account_id, [email_id], add=["$flagged"]) \
                    if applied % 2 == 0 else \
                    await store.set_keywords(account_id, [email_id], remove=["$flagged"])
                assert [u[0] for u in result.updated] == [email_id]
                applied += 1
            await asyncio.sleep(0.01)
        return applied
    finally:
        store.close()


async def test_new_accounts_go_to_the_least_loaded_shard(dsns: list[str]) -> None:
    store = await ShardedMailStore.connect(dsns)
    try:
        made = [await store.create_account(f"u{n}@example.test", "h", 10**6) for n in range(4)]
        shards = [(await store.lookup(a.id, fresh=True)).shard for a in made]  # type: ignore[union-attr]
        assert sorted(shards) == ["0", "0", "1", "1"]
        # Each account's rows are on its shard alone.
        for account, shard in zip(made, shards, strict=True):
            other = "1" if shard == "0" else "0"
            assert await _rows_on(store, shard, account.id) > 0
            assert await _rows_on(store, other, account.id) == 0
        assert [a.address for a in await store.list_accounts()] == \
            [f"u{n}@example.test" for n in range(4)]
    finally:
        store.close()


async def test_shards_must_keep_their_order(dsns: list[str]) -> None:
    store = await ShardedMailStore.connect(dsns)
    store.close()
    with pytest.raises(RuntimeError, match="keep its order"):
        await ShardedMailStore.connect(list(reversed(dsns)))


async def test_move_while_mail_is_delivered(dsns: list[str], tmp_path: Path) -> None:
    mover = await ShardedMailStore.connect(dsns)
    reader = await ShardedMailStore.connect(dsns)
    try:
        account = await mover.create_account(ADDRESS, "h", 10**9)
        source = (await mover.lookup(account.id)).shard  # type: ignore[union-attr]
        target = "1" if source == "0" else "0"
        old = [await mover.deliver(make_new_email(account.id, subject=f"old {n}"))
               for n in range(30)]
        inbox = next(m for m in await mover.list_mailboxes(account.id) if m.role == "inbox")
        await mover.set_keywords(account.id, [old[0].email_id], add=["$seen"])
        await mover.put_object(account.id, "Identity", "i1", {"name": "Mover"})
        before = await reader.snapshot(account.id, inbox.id)  # the reader caches the route
        since = (await mover.get_account(ADDRESS)).modseq

        # After `since`: one email leaves the INBOX (QRESYNC must report its UID vanished).
        gone = old[1].email_id
        gone_uid = next(e.uid for e in before.entries if e.email_id == gone)
        await mover.remove_from_mailbox(account.id, inbox.id, [gone])

        stop_file = str(tmp_path / "moved")
        stop = asyncio.Event()
        flipper = asyncio.create_task(
            _flip_keywords(dsns, account.id, [e.email_id for e in old[2:5]], stop))
        writers = [f"task{n}" for n in range(TASKS)] + [f"proc{n}" for n in range(PROCESSES)]
        tasks = [asyncio.create_task(_deliver_many(dsns, account.id, w, stop_file))
                 for w in writers[:TASKS]]
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(PROCESSES, mp_context=get_context("spawn")) as pool:
            procs = [loop.run_in_executor(pool, deliver_in_process, dsns, account.id, w,
                                          stop_file) for w in writers[TASKS:]]
            # Mail is flowing from every writer (spawned processes take a while to start).
            deadline = time.monotonic() + 180
            for w in writers:
                while not await reader.has_delivery(account.id, f"q-{w}-0"):
                    assert time.monotonic() < deadline, f"{w} delivered nothing"
                    await asyncio.sleep(0.05)
            moving = time.monotonic()
            report = await move_account(mover, ADDRESS, target, batch=7)
            moved = time.monotonic()
            Path(stop_file).touch()
            results = await asyncio.gather(*tasks, *procs)
        delivered = [(key, email_id) for done, _ in results for key, email_id, _ in done]
        during = [t for done, _ in results for _, _, t in done if moving < t < moved]
        reroutes = sum(n for _, n in results)
        stop.set()
        flips = await flipper

        assert report.copied > 0 and report.source == source and report.target == target
        assert (await mover.lookup(account.id, fresh=True)).shard == target  # type: ignore[union-attr]
        assert all(0 < len(done) < MOST_PER_WRITER for done, _ in results)
        # Mail arrived during the move, and writers held by its final phase went on to the
        # new shard (in-process ones' clocks are comparable; process ones count re-routes).
        assert during and reroutes > 0 and flips > 0

        # Nothing of the account is left on the source.
        assert await _rows_on(mover, source, account.id) == 0
        assert await _rows_on(mover, target, account.id) > 0

        # Every delivery is there exactly once, with its own id.
        ids = await reader.email_ids(account.id, limit=10**6)
        expected = {e for _, e in delivered} | {r.email_id for r in old}
        assert len(ids) == len(set(ids)) and set(ids) == expected
        for key, _ in delivered:
            assert await reader.has_delivery(account.id, key)
        now = await reader.snapshot(account.id, inbox.id)
        uids = [e.uid for e in now.entries]
        assert uids == sorted(set(uids))
        assert {e.email_id for e in now.entries} == expected - {gone}
        assert now.mailbox.uidvalidity == before.mailbox.uidvalidity
        assert now.mailbox.total == len(expected) - 1

        # Old mail kept its UIDs; the new mail's UIDs all follow them.
        old_uids = {e.email_id: e.uid for e in before.entries}
        assert all(old_uids[e.email_id] == e.uid for e in now.entries if e.email_id in old_uids)
        new_uids = [e.uid for e in now.entries if e.email_id not in old_uids]
        assert min(new_uids) > max(old_uids.values())

        # The change log is whole: every modseq from 1 to the account's is there, once each.
        account_now: Account = await reader.get_account(ADDRESS)
        log = await reader.changes_since(account.id, 0)
        assert sorted({c.modseq for c in log}) == list(range(1, account_now.modseq + 1))
        created = [c.object_id for c in log if c.kind == "Email" and c.op == "created"]
        assert sorted(created) == sorted(expected)

        # A QRESYNC-style delta from before the move, answered by the new shard.
        delta = await reader.mailbox_delta(account.id, inbox.id, since)
        assert delta.vanished == [gone_uid]
        assert delta.highest_modseq == now.mailbox.highest_modseq
        changed = {e.email_id for e in delta.changed}
        assert changed == {e.email_id for e in now.entries if e.modseq > since}
        assert {e for _, e in delivered} <= changed
        assert {e.email_id for e in old[2:5]} <= changed  # the flipped keywords
        assert old[0].email_id not in changed  # $seen was set before `since`

        # The rest of the account came along: objects, and new mailboxes sort last.
        [identity] = await reader.get_objects(account.id, "Identity")
        assert identity.data == {"name": "Mover"}
        made = await reader.create_mailbox(account.id, "After the move")
        assert (await reader.list_mailboxes(account.id))[-1].id == made.id
    finally:
        mover.close()
        reader.close()


async def test_move_there_and_back_keeps_everything(dsns: list[str]) -> None:
    store = await ShardedMailStore.connect(dsns)
    try:
        account = await store.create_account(ADDRESS, "h", 10**9)
        home = (await store.lookup(account.id)).shard  # type: ignore[union-attr]
        away = "1" if home == "0" else "0"
        first = await store.deliver(make_new_email(account.id, subject="hello",
                                                   keywords=["$seen"]))
        await store.deliver(make_new_email(account.id, subject="Re: hello",
                                           in_reply_to=["<x@y>"]))
        archive = next(m for m in await store.list_mailboxes(account.id) if m.role == "archive")
        await store.add_to_mailbox(account.id, [first.email_id], archive.id)
        boxes = await store.list_mailboxes(account.id)
        snaps = [await store.snapshot(account.id, m.id) for m in boxes]
        records = await store.get_emails(account.id, await store.email_ids(account.id))
        log = await store.changes_since(account.id, 0)

        await move_account(store, ADDRESS, away)
        again = await move_account(store, ADDRESS, away)  # already there: nothing to do
        assert again.copied == 0 and again.cleaned == 0
        await move_account(store, ADDRESS, home)

        assert await store.list_mailboxes(account.id) == boxes
        assert [await store.snapshot(account.id, m.id) for m in boxes] == snaps
        assert await store.get_emails(account.id, await store.email_ids(account.id)) == records
        assert await store.changes_since(account.id, 0) == log
        assert await _rows_on(store, away, account.id) == 0
        with pytest.raises(NotFound):
            await move_account(store, "nobody@example.test", away)
        with pytest.raises(NotFound):
            await move_account(store, ADDRESS, "7")
    finally:
        store.close()


async def test_a_store_that_lost_its_listen_connection_does_not_trust_its_cache(
        dsns: list[str]) -> None:
    """No NOTIFY can reach a store whose LISTEN connection died: it must not answer from
    the shard its cache names after the account has moved."""
    mover = await ShardedMailStore.connect(dsns)
    other = await ShardedMailStore.connect(dsns)
    try:
        account = await mover.create_account(ADDRESS, "h", 10**9)
        home = (await mover.lookup(account.id)).shard  # type: ignore[union-attr]
        away = "1" if home == "0" else "0"
        assert len(await other.list_mailboxes(account.id)) == 7  # `other` caches the route
        pool = await other.directory_pool()
        killed = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'")
        assert killed == 2  # both stores' listeners
        deadline = time.monotonic() + 60
        while other._listener is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await move_account(mover, ADDRESS, away, grace=0)
        assert len(await other.list_mailboxes(account.id)) == 7
    finally:
        mover.close()
        other.close()
