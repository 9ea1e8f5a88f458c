"""MailStore contract: query_emails with a JMAP sort (RFC 8621 §4.4.2, core.emailsort) and
collapsed threads, on every engine: each property ascending and descending, several
properties, ties (newest first), the first email of each thread, pages, totals, `among`.

The expected orders come from a small model written here (plain Python sorts over the
emails as the test made them), and the first cases from lists spelt out by hand."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import pytest

from mailyard.core import query as q
from mailyard.core.emailsort import SortKey
from mailyard.store.ports import Account, NewEmail

NewEmailFactory = Callable[..., NewEmail]
T0 = 1_700_000_000_000


@dataclasses.dataclass
class Made:
    name: str
    id: str
    thread: str
    received: int
    size: int
    sent: int | None
    subject: str
    from_name: str
    to: str
    keywords: list[str]


SPECS: list[dict[str, Any]] = [
    # name, size, sent, subject, from, to, keywords, parent (reply to)
    dict(name="a", size=300, sent=5, subject="Lunch", frm="zoe", to="bob",
         kw=["$seen"], parent=None),
    dict(name="b", size=100, sent=None, subject="Re: lunch", frm="Adam", to="Carl",
         kw=[], parent="a"),
    dict(name="c", size=200, sent=9, subject="budget", frm="", to="dan@x.test",
         kw=["$flagged", "$seen"], parent=None),
    dict(name="d", size=100, sent=1, subject="Fwd: Budget", frm="bea", to="",
         kw=["$flagged"], parent="c"),
    dict(name="e", size=400, sent=7, subject="Alpha", frm="Adam", to="amy",
         kw=["$seen"], parent=None),
    dict(name="f", size=100, sent=7, subject="re: alpha", frm="carl", to="Bob",
         kw=["$seen"], parent="e"),
]
"""Three threads (a-b, c-d, e-f), arriving a to f; sizes and sentAt with ties, an email
without a date, a From without a name (its email is its key), an empty To."""


async def _deliver(mailstore: Any, account: Account, new_email: NewEmailFactory
                   ) -> dict[str, Made]:
    made: dict[str, Made] = {}
    for n, spec in enumerate(SPECS):
        parent = made[spec["parent"]] if spec["parent"] else None
        email = new_email(account.id, subject=spec["subject"], keywords=spec["kw"],
                          received_at=T0 + n * 1000,
                          in_reply_to=[f"<{parent.id}@example.test>"] if parent else None)
        sender = spec["frm"] or "nameless@x.test"
        to = spec["to"]
        email = dataclasses.replace(
            email, size=spec["size"], sent_at=None if spec["sent"] is None else T0 + spec[
                "sent"] * 60_000,
            from_=[{"name": spec["frm"], "email": "nameless@x.test" if not spec["frm"]
                    else f"{spec['frm'].lower()}@x.test"}],
            to=[] if not to else [{"name": "" if "@" in to else to,
                                   "email": to if "@" in to else f"{to.lower()}@x.test"}])
        result = await mailstore.deliver(email)
        made[spec["name"]] = Made(spec["name"], result.email_id, result.thread_id,
                                  T0 + n * 1000, spec["size"],
                                  None if spec["sent"] is None else T0 + spec["sent"] * 60_000,
                                  spec["subject"], sender, to, spec["kw"])
    assert made["a"].thread == made["b"].thread and made["c"].thread == made["d"].thread
    assert made["e"].thread == made["f"].thread and made["a"].thread != made["e"].thread
    return made


def _base(subject: str) -> str:
    s = subject.lower()
    for prefix in ("re: ", "fwd: "):
        s = s.removeprefix(prefix)
    return s


def _model(made: dict[str, Made], sort: list[SortKey], collapse: bool = False) -> list[str]:
    """The order §4.4.2 asks for, from the emails as made: ties newest first."""
    emails = sorted(made.values(), key=lambda m: m.received, reverse=True)
    threads: dict[str, list[Made]] = {}
    for m in made.values():
        threads.setdefault(m.thread, []).append(m)

    def value(m: Made, key: SortKey) -> Any:
        prop = key.property
        if prop == "receivedAt":
            return m.received
        if prop == "size":
            return m.size
        if prop == "sentAt":
            return -(2 ** 63) if m.sent is None else m.sent
        if prop == "subject":
            return _base(m.subject)
        if prop == "from":
            return m.from_name.lower()
        if prop == "to":
            return m.to.lower()
        if prop == "hasKeyword":
            return key.keyword in m.keywords
        members = threads[m.thread]
        if prop == "someInThreadHaveKeyword":
            return any(key.keyword in t.keywords for t in members)
        return all(key.keyword in t.keywords for t in members)

    def compare(x: Made, y: Made) -> int:
        for key in sort:
            a, b = value(x, key), value(y, key)
            if a != b:
                return (-1 if a < b else 1) * (1 if key.ascending else -1)
        return 0

    ordered = sorted(emails, key=functools.cmp_to_key(compare))  # stable: newest first
    if collapse:
        seen: set[str] = set()
        ordered = [m for m in ordered if not (m.thread in seen or seen.add(m.thread))]
    return [m.name for m in ordered]


async def _names(mailstore: Any, account: Account, made: dict[str, Made],
                 sort: list[SortKey], **kwargs: Any) -> list[str]:
    by_id = {m.id: n for n, m in made.items()}
    hits = await mailstore.query_emails(account.id, kwargs.pop("node", q.And(())), sort=sort,
                                        **kwargs)
    return [by_id[i] for i in hits.ids]


PROPERTIES = ["receivedAt", "size", "sentAt", "subject", "from", "to"]
KEYWORD_SORTS = ["hasKeyword", "someInThreadHaveKeyword", "allInThreadHaveKeyword"]


async def test_sorts_spelt_out(mailstore: Any, account: Account,
                               new_email: NewEmailFactory) -> None:
    made = await _deliver(mailstore, account, new_email)

    async def names(*sort: SortKey, **kwargs: Any) -> list[str]:
        return await _names(mailstore, account, made, list(sort), **kwargs)

    # Ties (b, d, f are all 100 bytes) newest first.
    assert await names(SortKey("size")) == ["f", "d", "b", "c", "a", "e"]
    assert await names(SortKey("size", False)) == ["e", "a", "c", "f", "d", "b"]
    # No Date comes first ascending; e and f share a date.
    assert await names(SortKey("sentAt")) == ["b", "d", "a", "f", "e", "c"]
    # Base subjects: alpha (f, e), budget (d, c), lunch (b, a).
    assert await names(SortKey("subject")) == ["f", "e", "d", "c", "b", "a"]
    # Names, else the email: adam (f? no: e, b), bea, carl, nameless@x.test, zoe.
    assert await names(SortKey("from")) == ["e", "b", "d", "f", "c", "a"]
    assert await names(SortKey("hasKeyword", False, "$flagged"), SortKey("size")) == [
        "d", "c", "f", "b", "a", "e"]
    assert await names(SortKey("allInThreadHaveKeyword", False, "$seen")) == [
        "f", "e", "d", "c", "b", "a"]
    assert await names(SortKey("someInThreadHaveKeyword", False, "$flagged"),
                       collapse_threads=True) == ["d", "f", "b"]
    assert await names(SortKey("size"), collapse_threads=True) == ["f", "d", "b"]


@pytest.mark.parametrize("ascending", [True, False], ids=["asc", "desc"])
async def test_each_property(mailstore: Any, account: Account, new_email: NewEmailFactory,
                             ascending: bool) -> None:
    made = await _deliver(mailstore, account, new_email)
    for prop in PROPERTIES:
        sort = [SortKey(prop, ascending)]
        assert await _names(mailstore, account, made, sort) == _model(made, sort), prop
    for prop in KEYWORD_SORTS:
        for keyword in ("$seen", "$flagged", "absent"):
            sort = [SortKey(prop, ascending, keyword)]
            assert await _names(mailstore, account, made, sort) == _model(made, sort), (
                prop, keyword)


async def test_several_properties_collapse_pages_totals_and_among(
        mailstore: Any, account: Account, new_email: NewEmailFactory) -> None:
    made = await _deliver(mailstore, account, new_email)
    sorts = [
        [SortKey("size"), SortKey("sentAt", False)],
        [SortKey("hasKeyword", True, "$seen"), SortKey("subject", False)],
        [SortKey("someInThreadHaveKeyword", False, "$flagged"), SortKey("from"),
         SortKey("size", False)],
        [SortKey("to", False), SortKey("receivedAt")],
        [SortKey("allInThreadHaveKeyword", True, "$seen"), SortKey("size")],
        # Arrival, newest first: a collapsed page read from the arrival index until full.
        [SortKey("receivedAt", False)],
    ]
    for sort in sorts:
        for collapse in (False, True):
            expected = _model(made, sort, collapse)
            assert await _names(mailstore, account, made, sort,
                                collapse_threads=collapse) == expected, (sort, collapse)
            for position in range(len(expected) + 1):
                hits = await mailstore.query_emails(
                    account.id, q.And(()), sort=sort, collapse_threads=collapse,
                    position=position, limit=2, total=True)
                assert [i for i in hits.ids] == [made[n].id for n in
                                                 expected[position:position + 2]]
                assert hits.total == len(expected)
        # A filter, and the same emails given by id, agree with the model over them.
        seen = {n: m for n, m in made.items() if "$seen" in m.keywords}
        assert await _names(mailstore, account, made, sort, node=q.Keyword("$seen")) == [
            n for n in _model(made, sort) if n in seen]
        some = [made[n].id for n in ("a", "d", "f", "b")]
        assert await _names(mailstore, account, made, sort, among=some) == [
            n for n in _model(made, sort) if n in "adfb"]


async def test_collapse_without_a_sort_is_newest_per_thread(
        mailstore: Any, account: Account, new_email: NewEmailFactory) -> None:
    made = await _deliver(mailstore, account, new_email)
    hits = await mailstore.query_emails(account.id, q.And(()), collapse_threads=True,
                                        sort=[SortKey("receivedAt", False)], total=True)
    assert hits.ids == [made[n].id for n in ("f", "d", "b")] and hits.total == 3


async def test_arrival_order_ties_pages_and_among_without_a_sort(
        mailstore: Any, account: Account, new_email: NewEmailFactory) -> None:
    """model/query.py without a sort: newest first is (arrival, id) descending, oldest first
    both ascending, emails given by id alike; a page is `limit` from `position`, the total
    all matches; collapsed threads with a page of none read none but still count."""
    made = [new_email(account.id, received_at=T0 + n // 2) for n in range(6)]
    for email in made:
        await mailstore.deliver(email)
    newest = [e.email_id for e in sorted(made, key=lambda e: (e.received_at, e.email_id),
                                         reverse=True)]
    every: q.Node = q.And(())
    assert (await mailstore.query_emails(account.id, every)).ids == newest
    assert (await mailstore.query_emails(account.id, every, order="oldest")).ids == newest[::-1]
    some = newest[1:5]
    for order, expected in (("newest", some), ("oldest", some[::-1])):
        hits = await mailstore.query_emails(account.id, every, among=some[::-1], order=order,
                                            position=1, limit=2, total=True)
        assert (hits.ids, hits.total) == (expected[1:3], 4), order
    hits = await mailstore.query_emails(account.id, every, order="oldest", position=4,
                                        limit=5, total=True)
    assert (hits.ids, hits.total) == (newest[::-1][4:], 6)
    nothing = await mailstore.query_emails(account.id, every, collapse_threads=True, limit=0,
                                           total=True)
    assert (nothing.ids, nothing.total) == ([], 6)
