"""Counting every match (JMAP calculateTotal, the CLI's count) over each mail store and search
index: the count is the length of the list the same query returns, and both are what a plain
Python evaluation finds, for the shapes of bench/search.py's 20 queries, with Gmail's scope
(Spam and Trash subtracted, or made a condition) and without it, on every planner branch."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from mailyard.core import query as q
from mailyard.services.search import SearchService
from mailyard.store.ports import Account, IndexDocument, NewEmail
from tests.contract.conftest import Engine

NewEmailFactory = Callable[..., NewEmail]
BODY_WORDS = [("omni", 0.95), ("plura", 0.6), ("medi", 0.35), ("raro", 0.08), ("unico", 0.02)]
"""Body words and the share of emails holding each: one in nearly every email, as the
benchmark's common word (rank 3) is in 98 % of its mailbox."""
SUBJECT_WORDS = ["quarterly", "invoice", "lunch", "travel"]
SENDERS = ["ann", "bob", "cyd", "dee"]
T0 = 1_767_225_600_000  # 2026-01-01
DAY = 86_400_000
COUNT = 160


@dataclass
class Mail:
    id: str
    subject: str
    body: list[str]
    sender: str
    keywords: set[str]
    labels: set[str]
    role: str
    size: int
    received_at: int
    has_attachment: bool


def matches(node: q.Node, m: Mail, label_ids: dict[str, str]) -> bool:
    """The benchmark's query shapes evaluated on one email."""
    if isinstance(node, q.And):
        return all(matches(n, m, label_ids) for n in node.items)
    if isinstance(node, q.Or):
        return any(matches(n, m, label_ids) for n in node.items)
    if isinstance(node, q.Not):
        return not matches(node.item, m, label_ids)
    if isinstance(node, q.Text):
        if node.field == "from":
            return node.value in (m.sender, f"{m.sender}@example.test")
        if node.field == "subject":
            return node.value in m.subject.split()
        if node.phrase:
            words = node.value.split()
            return any(m.body[i:i + len(words)] == words for i in range(len(m.body)))
        return all(w in m.body or w in m.subject.split() for w in node.value.split())
    if isinstance(node, q.Keyword):
        return node.keyword in m.keywords
    if isinstance(node, q.Mailbox):
        return any(label_ids[name] == node.name for name in m.labels) or \
            label_ids.get(m.role) == node.name
    if isinstance(node, q.HasAttachment):
        return m.has_attachment
    if isinstance(node, q.Size):
        return m.size > node.size if node.op == "larger" else m.size < node.size
    if isinstance(node, q.Received):
        at = int(node.at.timestamp() * 1000)
        return m.received_at < at if node.op == "before" else m.received_at >= at
    raise AssertionError(node)


@pytest.fixture
async def mailbox(mailstore: object, search_index: object, account: Account,
                  new_email: NewEmailFactory) -> tuple[list[Mail], dict[str, str]]:
    """COUNT emails over COUNT days: Zipf-like body words, four senders (one sends half),
    labels, flags, sizes, attachments; a few in Trash and Spam, some in the Inbox."""
    store: object = mailstore
    rng = random.Random(18)
    labels = {name: (await store.create_mailbox(account.id, name)).id  # type: ignore[attr-defined]
              for name in ("Work", "Receipts")}
    boxes = {b.role: b.id for b in await store.list_mailboxes(account.id)  # type: ignore[attr-defined]
             if b.role}
    mails: list[Mail] = []
    docs: list[IndexDocument] = []
    for n in range(COUNT):
        body = [w for w, share in BODY_WORDS if rng.random() < share] + ["filler"]
        rng.shuffle(body)
        subject = " ".join(rng.sample(SUBJECT_WORDS, 2))
        sender = SENDERS[0] if rng.random() < 0.5 else rng.choice(SENDERS[1:])
        keywords = {k for k, share in (("$seen", 0.7), ("$flagged", 0.1)) if rng.random() < share}
        r = rng.random()
        role = "junk" if r < 0.04 else "trash" if r < 0.08 else "inbox" if r < 0.3 else \
            "archive"
        email = new_email(account.id, subject=subject, keywords=sorted(keywords),
                          size=rng.randrange(100, 10_000), received_at=T0 + n * DAY,
                          mailbox_roles=[role])
        email.has_attachment = rng.random() < 0.2
        await store.deliver(email)  # type: ignore[attr-defined]
        mail = Mail(email.email_id, subject, body, sender, keywords, set(), role, email.size,
                    email.received_at, email.has_attachment)
        for name, box in labels.items():
            if rng.random() < 0.3:
                await store.add_to_mailbox(account.id, [email.email_id], box)  # type: ignore[attr-defined]
                mail.labels.add(name)
        mails.append(mail)
        docs.append(IndexDocument(account.id, email.email_id, email.received_at,
                                  subject=subject, from_=f"{sender} {sender}@example.test",
                                  body=" ".join(body)))
    await search_index.index(docs)  # type: ignore[attr-defined]
    return mails, {**labels, **{role: boxes[role] for role in ("inbox", "junk", "trash")}}


def bench_shapes(labels: dict[str, str]) -> list[q.Node]:
    """bench/search.py's 20 queries, over this mailbox's words, and two label counts."""
    def text(value: str, field: str | None = None, phrase: bool = False) -> q.Text:
        return q.Text(value, field, phrase=phrase)

    def box(name: str) -> q.Mailbox:
        return q.Mailbox(labels[name], by_id=True)

    def at(day: int) -> datetime:
        return datetime.fromtimestamp((T0 + day * DAY) / 1000, UTC)

    return [
        text("unico"),
        text("omni"),
        text("plura medi", phrase=True),
        q.And((text(f"{SENDERS[0]}@example.test", "from"), text("medi"))),
        q.And((q.HasAttachment(), q.Received("before", at(100)))),
        q.And((box("Work"), q.Not(q.Keyword("$seen")))),
        q.Or((text("raro"), text("unico"), text("medi"))),
        q.Or((text("raro"), text("medi"))),
        q.And((text("plura"), q.Not(text("medi")))),
        text("invoice", "subject"),
        q.Size("larger", 8000),
        q.Keyword("$flagged"),
        q.And((q.Received("before", at(120)), text("plura"))),
        box("inbox"),
        text(f"{SENDERS[3]}@example.test", "from"),
        text("qzxjvwk"),
        q.Received("after", at(COUNT - 30)),
        q.And((q.Not(q.Keyword("$seen")), box("Receipts"))),
        q.And((text("raro"), text("unico"))),
        q.And((text("omni"), text("plura"), q.Keyword("$seen"))),
        # A label alone: counted from the mailbox's total less its emails also in Spam or
        # Trash (labels are given to some of those here); a hidden mailbox named alone
        box("Work"),
        box("trash"),
    ]


@pytest.mark.parametrize(("probe", "first_page", "hidden_set"),
                         [(2000, 500, 5000), (2000, 500, 0), (12, 4, 5000), (12, 4, 0)],
                         ids=["subtracted", "as-a-condition", "streamed-subtracted",
                              "streamed-as-a-condition"])
async def test_count_is_the_length_of_the_list(
        mailstore: object, search_index: object, account: Account,
        mailbox: tuple[list[Mail], dict[str, str]], probe: int, first_page: int,
        hidden_set: int) -> None:
    mails, labels = mailbox
    service = SearchService(mailstore, search_index, probe=probe,  # type: ignore[arg-type]
                            first_page=first_page, hidden_set=hidden_set)
    newest = sorted(mails, key=lambda m: -m.received_at)
    big = 0
    for node in bench_shapes(labels):
        for gmail in (True, False):
            expected = [m.id for m in newest if matches(node, m, labels)
                        and not (gmail and m.role in ("junk", "trash"))]
            big += len(expected) > COUNT // 2
            where = f"{q.format(node)} (gmail scope {gmail})"
            listed = await service.search(account, node, limit=None, total=True,
                                          gmail_scope=gmail)
            assert listed.ids == expected, where
            assert listed.total == len(expected), where
            counted = await service.search(account, node, limit=0, total=True,
                                           gmail_scope=gmail)
            assert counted.ids == [] and counted.total == len(expected), where
            page = await service.search(account, node, limit=5, position=3, total=True,
                                        gmail_scope=gmail)
            assert page.ids == expected[3:8] and page.total == len(expected), where
    assert big >= 2, "some queries must match most of the mailbox, as the common word does"


async def test_counts_follow_writes_from_another_process(search_engine: Engine) -> None:
    """A count and a many-candidate intersection asked again after another adapter on the same
    index (another process) indexed or deleted a matching document, or cleared the account:
    the answers are those of the index as it is now, never remembered ones."""
    reader, writer = await search_engine.open(), await search_engine.open()
    word = q.Text("omni")
    docs = [IndexDocument("a-alice", f"e-{n}", T0 + n * 1000, subject=f"omni {n}")
            for n in range(600)]
    await writer.index(docs)
    among = [d.email_id for d in docs]  # more than one statement names: the MATCH runs once

    async def answers() -> tuple[int | None, int | None]:
        counted = await reader.query("a-alice", word, limit=0, total=True)
        found = await reader.query("a-alice", word, among=among, total=True)
        return counted.total, found.total

    assert await answers() == (600, 600)
    assert await answers() == (600, 600)  # asked again, nothing written
    await writer.index([IndexDocument("a-alice", "e-600", T0 + 600_000, subject="omni new")])
    among.append("e-600")
    assert await answers() == (601, 601)
    await writer.delete("a-alice", ["e-3", "e-4"])
    assert await answers() == (599, 599)
    await writer.index([IndexDocument("a-bob", "e-bob", T0, subject="omni for bob")])
    assert await answers() == (599, 599)
    await writer.index([IndexDocument("a-alice", "e-5", T0 + 5000, subject="changed")])
    assert await answers() == (598, 598)
    await writer.clear("a-alice")
    assert await answers() == (0, 0)


async def test_words_among_a_whole_mailbox_of_candidates(search_index: object) -> None:
    """IMAP SEARCH of a word over a big mailbox: the candidates are most of the account's
    documents. A rare word (few hits: its hits are looked up) and a common one (the candidates
    are): the same answers as a plain evaluation, another account's documents never among
    them."""
    index: Any = search_index
    docs = [IndexDocument("a-alice", f"e-{n:05d}", T0 + n * 1000,
                          subject=("rara " if n % 1000 == 7 else "") + f"omni {n}")
            for n in range(6000)]
    await index.index([*docs, IndexDocument("a-bob", "e-00007", T0, subject="rara omni")])
    among = [d.email_id for n, d in enumerate(docs) if n % 10 != 3] + ["e-unknown"]
    kept = set(among)
    for word in ("rara", "omni"):
        expected = [d.email_id for d in reversed(docs)
                    if word in d.subject.split() and d.email_id in kept]
        found = await index.query("a-alice", q.Text(word), among=among, total=True)
        assert found.ids == expected and found.total == len(expected), word
        again = await index.query("a-alice", q.Text(word), among=among, order="oldest",
                                  limit=3, position=1)
        assert again.ids == expected[::-1][1:4], word
    assert len(expected) > 4000
