"""The search planner (services/search) over each mail store and search index: whatever branch
it takes (one engine, probe-then-index, streamed pages, set algebra), its answer equals a plain
Python evaluation of the same query over the same emails."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from mailyard.core import query as q
from mailyard.services.search import SearchService
from mailyard.store.ports import Account, IndexDocument, NewEmail

NewEmailFactory = Callable[..., NewEmail]
WORDS = ["apple", "banana", "cherry", "delta", "echo", "falcon", "granite", "harbor"]
SENDERS = ["ann", "bob", "cyd"]
LABELS = ["Work", "Travel"]
KEYWORDS = ["$seen", "$flagged"]
T0 = 1_767_225_600_000  # 2026-01-01


@dataclass
class Mail:
    id: str
    subject: set[str]
    body: set[str]
    sender: str
    keywords: set[str]
    labels: set[str] = field(default_factory=set)
    size: int = 0
    received_at: int = 0
    has_attachment: bool = False


def matches(node: q.Node, m: Mail, label_ids: dict[str, str]) -> bool:
    if isinstance(node, q.And):
        return all(matches(n, m, label_ids) for n in node.items)
    if isinstance(node, q.Or):
        return any(matches(n, m, label_ids) for n in node.items)
    if isinstance(node, q.Not):
        return not matches(node.item, m, label_ids)
    if isinstance(node, q.Text):
        fields = {"subject": m.subject, "body": m.body, "from": {m.sender, "example"},
                  None: m.subject | m.body | {m.sender, "example"}}[node.field]
        return all(w in fields for w in node.value.split())
    if isinstance(node, q.Keyword):
        return node.keyword in m.keywords
    if isinstance(node, q.Mailbox):
        return any(label_ids[name] == node.name for name in m.labels)
    if isinstance(node, q.HasAttachment):
        return m.has_attachment
    if isinstance(node, q.Size):
        return m.size > node.size if node.op == "larger" else m.size < node.size
    if isinstance(node, q.Received):
        at = int(node.at.timestamp() * 1000)
        return m.received_at < at if node.op == "before" else m.received_at >= at
    raise AssertionError(node)


@pytest.fixture
async def corpus(mailstore: Any, search_index: Any, account: Account,
                 new_email: NewEmailFactory) -> tuple[list[Mail], dict[str, str]]:
    """Eighty emails with random words, senders, flags, labels, sizes and attachments."""
    rng = random.Random(7)
    mails: list[Mail] = []
    docs: list[IndexDocument] = []
    labels = {name: (await mailstore.create_mailbox(account.id, name)).id for name in LABELS}
    for n in range(80):
        subject = set(rng.sample(WORDS, 2))
        body = set(rng.sample(WORDS, 3))
        sender = rng.choice(SENDERS)
        keywords = {k for k in KEYWORDS if rng.random() < 0.4}
        email = new_email(account.id, subject=" ".join(sorted(subject)),
                          keywords=sorted(keywords), size=rng.randrange(100, 10_000),
                          received_at=T0 + n * 60_000)
        email.has_attachment = rng.random() < 0.3
        await mailstore.deliver(email)
        mail = Mail(email.email_id, subject, body, sender, keywords, size=email.size,
                    received_at=email.received_at, has_attachment=email.has_attachment)
        for name, box in labels.items():
            if rng.random() < 0.3:
                await mailstore.add_to_mailbox(account.id, [email.email_id], box)
                mail.labels.add(name)
        mails.append(mail)
        docs.append(IndexDocument(account.id, email.email_id, email.received_at,
                                  subject=" ".join(sorted(subject)),
                                  from_=f"{sender} {sender}@example.test {sender} example.test",
                                  body=" ".join(sorted(body))))
    await search_index.index(docs)
    return mails, {name: box for name, box in labels.items()}


def random_query(rng: random.Random, labels: dict[str, str], depth: int = 0) -> q.Node:
    """A random tree over every condition the corpus varies, up to three levels deep."""
    if depth < 3 and rng.random() < 0.5:
        kind = rng.choice(["and", "or", "not"])
        if kind == "not":
            return q.Not(random_query(rng, labels, depth + 1))
        items = tuple(random_query(rng, labels, depth + 1) for _ in range(rng.randint(1, 3)))
        return q.And(items) if kind == "and" else q.Or(items)
    return rng.choice([
        lambda: q.Text(rng.choice(WORDS), rng.choice([None, "subject", "body"])),
        lambda: q.Text(rng.choice(SENDERS), "from"),
        lambda: q.Keyword(rng.choice(KEYWORDS)),
        lambda: q.Mailbox(labels[rng.choice(LABELS)], by_id=True),
        lambda: q.HasAttachment(),
        lambda: q.Size(rng.choice(["larger", "smaller"]), rng.randrange(100, 10_000)),
        lambda: q.Received(rng.choice(["before", "after"]), datetime.fromtimestamp(
            (T0 + rng.randrange(0, 80) * 60_000) / 1000, UTC)),
    ])()


@pytest.mark.parametrize(("probe", "first_page"), [(2000, 500), (12, 2), (3, 2)],
                         ids=["probe-then-index", "text-probe", "streamed-pages"])
async def test_planner_agrees_with_a_plain_evaluation(
        mailstore: Any, search_index: Any, account: Account,
        corpus: tuple[list[Mail], dict[str, str]], probe: int, first_page: int) -> None:
    mails, labels = corpus
    service = SearchService(mailstore, search_index, probe=probe, first_page=first_page)
    newest = sorted(mails, key=lambda m: -m.received_at)
    rng = random.Random(probe)
    nonempty = 0
    for _ in range(150):
        node = random_query(rng, labels)
        expected = [m.id for m in newest if matches(node, m, labels)]
        hits = await service.search(account, node, limit=None, total=True, gmail_scope=False)
        assert hits.ids == expected, q.format(node)
        assert hits.total == len(expected)
        page = await service.search(account, node, limit=5, position=2, gmail_scope=False)
        assert page.ids == expected[2:7], q.format(node)
        nonempty += bool(expected)
    assert nonempty > 50, "the random queries must mostly find something to be a test"


@pytest.mark.parametrize("hidden_set", [5000, 0], ids=["subtracted", "as-a-condition"])
async def test_gmail_scope_agrees_with_a_plain_evaluation(
        mailstore: Any, search_index: Any, account: Account,
        corpus: tuple[list[Mail], dict[str, str]], hidden_set: int) -> None:
    """Gmail's scope (not in Spam, not in Trash) over random queries, pages and totals: the
    few hidden ids taken out of the query's hits, or the scope made part of the query."""
    mails, labels = corpus
    boxes = {b.role: b.id for b in await mailstore.list_mailboxes(account.id)}
    rng = random.Random(hidden_set)
    hidden: set[str] = set()
    for m in mails:
        if rng.random() < 0.2:
            role = rng.choice(["trash", "junk"])
            await mailstore.add_to_mailbox(account.id, [m.id], boxes[role])
            hidden.add(m.id)
    service = SearchService(mailstore, search_index, hidden_set=hidden_set)
    newest = sorted(mails, key=lambda m: -m.received_at)
    for _ in range(100):
        node = random_query(rng, labels)
        expected = [m.id for m in newest if m.id not in hidden and matches(node, m, labels)]
        hits = await service.search(account, node, limit=None, total=True)
        assert hits.ids == expected, q.format(node)
        assert hits.total == len(expected)
        page = await service.search(account, node, limit=5, position=2, total=True)
        assert page.ids == expected[2:7] and page.total == len(expected), q.format(node)


async def test_gmail_scope_hides_trash_and_spam_unless_named(
        mailstore: Any, search_index: Any, account: Account,
        new_email: NewEmailFactory) -> None:
    service = SearchService(mailstore, search_index)
    kept, trashed, spam = (new_email(account.id, subject=f"parcel {n}") for n in range(3))
    trashed.mailbox_roles, spam.mailbox_roles = ["trash"], ["junk"]
    for e in (kept, trashed, spam):
        await mailstore.deliver(e)
    await search_index.index([IndexDocument(account.id, e.email_id, e.received_at,
                                            subject=e.subject) for e in (kept, trashed, spam)])

    async def ids(text: str) -> set[str]:
        return set((await service.search(account, text, limit=None)).ids)

    assert await ids("parcel") == {kept.email_id}
    assert await ids("parcel in:trash") == {trashed.email_id}
    assert await ids("parcel in:spam") == {spam.email_id}
    assert await ids("parcel in:anywhere") == {e.email_id for e in (kept, trashed, spam)}
    assert await ids("in:inbox") == {kept.email_id}
    assert await ids("label:does-not-exist") == set()


async def test_ages_and_dates_resolve_against_now(mailstore: Any, search_index: Any,
                                                  account: Account,
                                                  new_email: NewEmailFactory) -> None:
    service = SearchService(mailstore, search_index)
    old = new_email(account.id, received_at=T0)  # 2026-01-01
    new = new_email(account.id, received_at=T0 + 40 * 86_400_000)  # 2026-02-10
    for e in (old, new):
        await mailstore.deliver(e)
    now = datetime(2026, 2, 11, tzinfo=UTC)

    async def ids(text: str) -> set[str]:
        return set((await service.search(account, text, limit=None, now=now)).ids)

    assert await ids("older_than:7d") == {old.email_id}
    assert await ids("newer_than:7d") == {new.email_id}
    assert await ids("newer_than:2m") == {old.email_id, new.email_id}
    assert await ids("before:2026/01/02") == {old.email_id}
    assert await ids("after:2026/01/02") == {new.email_id}
    assert await ids("after:2026/2/10") == {new.email_id}
    assert await ids("before:2026/2/10") == {old.email_id}


async def test_message_id_and_header_conditions(mailstore: Any, search_index: Any,
                                                account: Account,
                                                new_email: NewEmailFactory) -> None:
    service = SearchService(mailstore, search_index)
    email = new_email(account.id, message_id="abc.123@shop.test")  # stored bare, as parsed
    email.head = b"Subject: Hi\r\nX-Mailer: =?utf-8?q?Caf=C3=A9_Mailer?=\r\n\r\n"
    other = new_email(account.id)
    for e in (email, other):
        await mailstore.deliver(e)

    async def ids(node: q.Node | str) -> set[str]:
        return set((await service.search(account, node, limit=None)).ids)

    assert await ids("rfc822msgid:abc.123@shop.test") == {email.email_id}
    assert await ids("rfc822msgid:<abc.123@shop.test>") == {email.email_id}
    assert await ids(q.Header("x-mailer", "café")) == {email.email_id}
    assert await ids(q.Header("x-mailer", "")) == {email.email_id}
    assert await ids(q.Header("x-mailer", "outlook")) == set()
    assert re.fullmatch(r"e\w+", email.email_id)
