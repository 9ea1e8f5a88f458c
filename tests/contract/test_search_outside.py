"""Leaving emails out of a text query (SearchIndex.query's `outside`: Gmail's Spam and Trash)
and the counts of Gmail-scoped searches while those mailboxes change, on every engine: the
page and the count are what a plain Python evaluation finds, whether the word has fewer hits
than there are emails left out (the hits are looked up) or many more (the left-out emails
are), with candidates, date bounds, both orders, another account's documents in the index,
and a second SearchService (another process) changing Spam and Trash under the first."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from mailyard.core import query as q
from mailyard.services.search import SearchService
from mailyard.store.ports import Account, IndexDocument, NewEmail
from tests.contract.test_search_counts import Mail, bench_shapes, mailbox, matches

__all__ = ["mailbox"]  # the fixture, used by name below

T0 = 1_767_225_600_000
SUBJECTS = ["invoice", "lunch", "travel"]
BODY = [("omni", 0.9), ("plura", 0.6), ("medi", 0.3), ("raro", 0.05), ("unico", 0.012)]


@dataclass
class Doc:
    id: str
    at: int
    subject: list[str]
    body: list[str]


def holds(node: q.Node, d: Doc) -> bool:
    """The text shapes below evaluated on one document (phrases only over body words)."""
    if isinstance(node, q.And):
        return all(holds(n, d) for n in node.items)
    if isinstance(node, q.Or):
        return any(holds(n, d) for n in node.items)
    if isinstance(node, q.Not):
        return not holds(node.item, d)
    assert isinstance(node, q.Text)
    if node.field == "subject":
        return node.value in d.subject
    if node.phrase:
        words = node.value.split()
        return any(d.body[i:i + len(words)] == words for i in range(len(d.body)))
    return all(w in d.body or w in d.subject for w in node.value.split())


SHAPES: list[q.Node] = [
    q.Text("omni"),
    q.Text("unico"),
    q.Text("raro"),
    q.Text("plura medi", phrase=True),
    q.And((q.Text("plura"), q.Not(q.Text("medi")))),
    q.Or((q.Text("raro"), q.Text("unico"))),
    q.Text("invoice", "subject"),
    q.Text("qzxjvwk"),
    q.And(()),
]


@pytest.fixture
async def docs(search_index: object) -> list[Doc]:
    """400 documents of one account, in arrival order, and 30 of another with the same words
    and some of the same email ids."""
    rng = random.Random(1818)
    out: list[Doc] = []
    written: list[IndexDocument] = []
    for n in range(400):
        body = [w for w, share in BODY if rng.random() < share] + ["filler"]
        rng.shuffle(body)
        d = Doc(f"e-{n:04d}", T0 + n * 60_000, rng.sample(SUBJECTS, 1), body)
        out.append(d)
        written.append(IndexDocument("a-alice", d.id, d.at, subject=" ".join(d.subject),
                                     body=" ".join(d.body)))
    written += [IndexDocument("a-bob", f"e-{n:04d}", T0 + n * 60_000 + 7, subject="invoice",
                              body="omni plura medi raro unico") for n in range(0, 300, 10)]
    await search_index.index(written)  # type: ignore[attr-defined]
    return out


async def test_outside_leaves_emails_out_of_page_and_count(
        search_index: object, docs: list[Doc]) -> None:
    index: Any = search_index
    rng = random.Random(7)
    every = [d.id for d in docs]
    outsides = {
        "none": set(),
        "few": set(rng.sample(every, 8)) | {"e-unknown", "e-9999"},
        "many": set(rng.sample(every, 150)),
        "all": set(every),
    }
    bounds = [(None, None), (T0 + 50 * 60_000, T0 + 300 * 60_000)]
    # Candidates named in the statement (up to 500), more than one statement names (the
    # rowid map), and so many that a rare word's hits are looked up instead: each with date
    # bounds too (the SQLite index ignored `received` with candidates).
    unknown = [f"e-x{n:05d}" for n in range(5200)]
    among_sets = [None, [d.id for d in docs if int(d.id[2:]) % 3 != 1] + ["e-unknown"],
                  [d.id for d in docs if int(d.id[2:]) % 5 != 2] + unknown[:300],
                  [d.id for d in docs] + unknown]
    few_hits = many_hits = 0
    for node in SHAPES:
        for name, outside in outsides.items():
            for low, high in bounds:
                for among in among_sets:
                    allowed = None if among is None else set(among)
                    newest = [d.id for d in reversed(docs) if holds(node, d)
                              and d.id not in outside
                              and (low is None or d.at >= low) and (high is None or d.at < high)
                              and (allowed is None or d.id in allowed)]
                    every_hit = sum(holds(node, d) for d in docs)
                    if outside and among is None:
                        few_hits += every_hit < len(outside) // 2
                        many_hits += every_hit > len(outside)
                    where = (f"{q.format(node)} outside={name} bounds={low, high}"
                             f" among={among is not None}")
                    for order, expected in (("newest", newest), ("oldest", newest[::-1])):
                        listed = await index.query("a-alice", node, order=order, total=True,
                                                   received=(low, high), among=among,
                                                   outside=outside)
                        assert listed.ids == expected, f"{where} {order}"
                        assert listed.total == len(expected), f"{where} {order}"
                        page = await index.query("a-alice", node, order=order, limit=4,
                                                 position=2, total=True, received=(low, high),
                                                 among=among, outside=outside)
                        assert page.ids == expected[2:6], f"{where} {order} page"
                        assert page.total == len(expected), f"{where} {order} page"
                    ranked = await index.query("a-alice", node, order="relevance", total=True,
                                               received=(low, high), among=among,
                                               outside=outside)
                    assert sorted(ranked.ids) == sorted(newest), f"{where} relevance"
                    assert ranked.total == len(newest), f"{where} relevance"
    assert few_hits and many_hits, "both ways of leaving emails out must be exercised"


async def test_outside_count_follows_writes(search_engine: Any) -> None:
    """The remembered count and left-out rowids of one index state are not those of the next:
    a left-out email indexed late (the index lags delivery), one deleted, one indexed
    again under another arrival time."""
    reader, writer = await search_engine.open(), await search_engine.open()
    await writer.index([IndexDocument("a-alice", f"e-{n}", T0 + n * 1000, subject="omni")
                        for n in range(20)])
    outside = {f"e-{n}" for n in range(0, 20, 4)} | {"e-late"}

    async def counted() -> int | None:
        return (await reader.query("a-alice", q.Text("omni"), limit=1, total=True,
                                   outside=outside)).total

    assert await counted() == 15
    assert await counted() == 15
    await writer.index([IndexDocument("a-alice", "e-late", T0 + 50_000, subject="omni")])
    assert await counted() == 15
    await writer.delete("a-alice", ["e-1"])
    assert await counted() == 14
    await writer.index([IndexDocument("a-alice", "e-4", T0 + 99_000, subject="omni")])
    assert await counted() == 14
    outside.discard("e-4")
    assert await counted() == 15


NewEmailFactory = Callable[..., NewEmail]


async def test_scoped_totals_follow_spam_and_trash(
        mailstore: Any, search_index: Any, account: Account,
        mailbox: tuple[list[Mail], dict[str, str]]) -> None:
    """Counts of Gmail-scoped searches on a service that has read Spam and Trash, after a
    second service (another process) moved emails into and out of them and emptied one from
    Trash: every count and page is what a plain evaluation of the mailbox as it is finds."""
    mails, labels = mailbox
    first = SearchService(mailstore, search_index)
    second = SearchService(mailstore, search_index)

    async def agree(service: SearchService) -> None:
        newest = sorted(mails, key=lambda m: -m.received_at)
        for node in bench_shapes(labels):
            expected = [m.id for m in newest if matches(node, m, labels)
                        and m.role not in ("junk", "trash")]
            where = q.format(node)
            counted = await service.search(account, node, limit=10, total=True)
            assert counted.total == len(expected), where
            assert counted.ids == expected[:10], where
            listed = await service.search(account, node, limit=None, total=True)
            assert listed.ids == expected, where

    await agree(first)
    await agree(second)
    by_role: dict[str, list[Mail]] = {}
    for m in mails:
        by_role.setdefault(m.role, []).append(m)
    moves = [(by_role["inbox"][:4], "inbox", "trash"), (by_role["junk"][:2], "junk", "inbox"),
             (by_role["inbox"][4:6], "inbox", "junk")]
    for moved, source, target in moves:
        await mailstore.move(account.id, [m.id for m in moved], labels[source],
                             labels[target])
        for m in moved:
            m.role = target
        await agree(first)
    gone = by_role["trash"][0]
    await second.store.destroy_emails(account.id, [gone.id])
    await search_index.delete(account.id, [gone.id])
    mails.remove(gone)
    await agree(first)
    await agree(second)


async def test_many_matches_counted(search_engine: Any) -> None:
    """Counts of words with thousands of matches (the SQLite index reads them in pieces of the
    rowid range), with and without emails left out and date bounds, while another adapter
    (another process) indexes more matching documents one transaction at a time: each count
    is that of one state of the index, never a mix of two, and the last is the final one."""
    reader, writer = await search_engine.open(), await search_engine.open()
    n_docs = 2600
    docs = [IndexDocument("a-alice", f"e-{n:05d}", T0 + n * 60_000,
                          subject="omni" if n % 7 else "plura",
                          body="raro" if n % 3 == 0 else "medi") for n in range(n_docs)]
    await writer.index([*docs, *(IndexDocument("a-bob", f"e-{n:05d}", T0 + n, subject="omni")
                                 for n in range(0, n_docs, 50))])
    outside = {f"e-{n:05d}" for n in range(0, n_docs, 11)} | {"e-unknown"}
    low, high = T0 + 100 * 60_000, T0 + 2500 * 60_000

    def expected(word: str, left_out: set[str], bounds: tuple[int | None, int | None]) -> list[str]:
        return [d.email_id for d in reversed(docs)
                if word in (d.subject, d.body) and d.email_id not in left_out
                and (bounds[0] is None or d.received_at >= bounds[0])
                and (bounds[1] is None or d.received_at < bounds[1])]

    for word in ("omni", "raro", "medi"):
        for left_out in (set(), outside):
            for bounds in ((None, None), (low, high)):
                want = expected(word, left_out, bounds)
                got = await reader.query("a-alice", q.Text(word), limit=3, total=True,
                                         received=bounds, outside=left_out)
                assert (got.ids, got.total) == (want[:3], len(want)), (word, bounds, left_out)
    assert len(expected("omni", outside, (None, None))) > 2000

    base = len(expected("omni", outside, (None, None)))
    valid = [base]
    for k in range(12):
        valid.append(valid[-1] + (0 if k % 3 == 0 else 1))
    seen: list[int | None] = []
    outside |= {f"e-new-{k}" for k in range(0, 12, 3)}  # left out before they are indexed

    async def write() -> None:
        for k in range(12):
            email_id = f"e-new-{k}"
            await writer.index([IndexDocument("a-alice", email_id, T0 + (n_docs + k) * 60_000,
                                              subject="omni")])

    task = asyncio.create_task(write())
    while not task.done():
        seen.append((await reader.query("a-alice", q.Text("omni"), limit=1, total=True,
                                        outside=outside)).total)
    await task
    seen.append((await reader.query("a-alice", q.Text("omni"), limit=1, total=True,
                                    outside=outside)).total)
    assert set(seen) <= set(valid), (seen, valid)
    assert seen[-1] == valid[-1]
