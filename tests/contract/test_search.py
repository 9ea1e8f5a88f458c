"""SearchIndex contract: full text of subject, addresses, body, attachment names and text;
queries are core.query trees of Text / And / Or / Not."""

from __future__ import annotations

from typing import Any

import pytest

from mailyard.core import query as q
from mailyard.core.ids import new_id
from mailyard.store.ports import IndexDocument
from tests.contract.conftest import Engine

ALICE = "a-alice"
BOB = "a-bob"
_clock = iter(range(1_790_000_000_000, 1_800_000_000_000, 1000))


def doc(account_id: str = ALICE, *, subject: str = "", addresses: str = "", body: str = "",
        attachment_names: str = "", email_id: str | None = None,
        received_at: int | None = None, attachment_text: str = "") -> IndexDocument:
    return IndexDocument(account_id=account_id, email_id=email_id or new_id("e"),
                         received_at=received_at or next(_clock),
                         subject=subject, from_=addresses, body=body,
                         filenames=attachment_names, attachment_text=attachment_text)


async def search(index: Any, account_id: str, text: str, limit: int | None = None) -> list[str]:
    """Every word must match, anywhere (the index's half of a Gmail query)."""
    node = q.And(tuple(q.Text(w) for w in text.split()))
    if not node.items:
        return []
    return list((await index.query(account_id, node, limit=limit)).ids)


@pytest.fixture
async def report(search_index: Any) -> IndexDocument:
    """One indexed email of Alice's, and an unrelated one."""
    document = doc(subject="Quarterly report for the board",
                   addresses="Carol Jones <carol.jones@example.test>, dave@partner.test",
                   body="Please find the budget spreadsheet attached. Regards",
                   attachment_names="figures-q3.xlsx")
    other = doc(subject="Lunch", addresses="eve@example.test", body="pizza at noon")
    await search_index.index([document, other])
    return document


async def test_search_by_subject_word(search_index: Any, report: IndexDocument) -> None:
    assert await search(search_index, ALICE, "quarterly") == [report.email_id]
    assert await search(search_index, ALICE, "QUARTERLY") == [report.email_id]


async def test_search_by_body_word(search_index: Any, report: IndexDocument) -> None:
    assert await search(search_index, ALICE, "spreadsheet") == [report.email_id]


async def test_search_by_address_word(search_index: Any, report: IndexDocument) -> None:
    assert await search(search_index, ALICE, "carol") == [report.email_id]
    assert await search(search_index, ALICE, "partner") == [report.email_id]
    assert await search(search_index, ALICE, "dave@partner.test") == [report.email_id]


async def test_search_by_attachment_name(search_index: Any, report: IndexDocument) -> None:
    assert await search(search_index, ALICE, "figures") == [report.email_id]


async def test_all_words_must_match(search_index: Any, report: IndexDocument) -> None:
    assert await search(search_index, ALICE, "budget quarterly") == [report.email_id]
    assert await search(search_index, ALICE, "budget pizza") == []
    assert await search(search_index, ALICE, "nonexistentword") == []


async def test_search_is_diacritic_insensitive(search_index: Any) -> None:
    accented = doc(subject="Rendez-vous au café", body="Crème brûlée à Zürich")
    plain = doc(subject="Meet at the cafe", body="creme brulee in Zurich")
    await search_index.index([accented, plain])
    both = {accented.email_id, plain.email_id}
    assert set(await search(search_index, ALICE, "cafe")) == both
    assert set(await search(search_index, ALICE, "café")) == both
    assert set(await search(search_index, ALICE, "CAFÉ")) == both
    assert set(await search(search_index, ALICE, "brulee")) == both
    assert set(await search(search_index, ALICE, "zürich")) == both


async def test_accounts_are_isolated(search_index: Any, report: IndexDocument) -> None:
    bobs = doc(BOB, subject="Quarterly numbers", body="budget")
    await search_index.index([bobs])
    assert await search(search_index, BOB, "spreadsheet") == []
    assert await search(search_index, BOB, "carol") == []
    assert await search(search_index, BOB, "quarterly") == [bobs.email_id]
    assert await search(search_index, ALICE, "quarterly") == [report.email_id]
    assert await search(search_index, "a-nobody", "quarterly") == []
    assert await search_index.count(BOB) == 1
    assert await search_index.count(ALICE) == 2


async def test_same_email_id_in_two_accounts(search_index: Any) -> None:
    shared = new_id("e")
    await search_index.index([doc(ALICE, subject="apples", email_id=shared),
                              doc(BOB, subject="oranges", email_id=shared)])
    assert await search(search_index, ALICE, "apples") == [shared]
    assert await search(search_index, ALICE, "oranges") == []
    assert await search(search_index, BOB, "oranges") == [shared]
    await search_index.delete(ALICE, [shared])
    assert await search(search_index, BOB, "oranges") == [shared]
    assert await search_index.count(BOB) == 1


async def test_indexing_twice_is_one_document(search_index: Any) -> None:
    document = doc(subject="idempotent indexing")
    await search_index.index([document])
    await search_index.index([document])
    await search_index.index([document, document])
    assert await search_index.count(ALICE) == 1
    assert await search(search_index, ALICE, "idempotent") == [document.email_id]


async def test_delete(search_index: Any, report: IndexDocument) -> None:
    await search_index.delete(ALICE, [report.email_id])
    assert await search(search_index, ALICE, "quarterly") == []
    assert await search_index.count(ALICE) == 1
    await search_index.delete(ALICE, [report.email_id, "e-never-indexed"])  # no error
    await search_index.delete(ALICE, [])
    assert await search_index.count(ALICE) == 1
    # Deleted then indexed again (a reindex): found again.
    await search_index.index([report])
    assert await search(search_index, ALICE, "quarterly") == [report.email_id]


async def test_delete_in_other_account_removes_nothing(search_index: Any,
                                                       report: IndexDocument) -> None:
    await search_index.delete(BOB, [report.email_id])
    assert await search(search_index, ALICE, "quarterly") == [report.email_id]


async def test_count(search_index: Any) -> None:
    assert await search_index.count(ALICE) == 0
    await search_index.index([doc(subject=f"mail {n}") for n in range(7)])
    assert await search_index.count(ALICE) == 7
    assert await search_index.count(BOB) == 0


async def test_limit(search_index: Any) -> None:
    await search_index.index([doc(subject="newsletter") for _ in range(5)])
    assert len(await search(search_index, ALICE, "newsletter")) == 5
    assert len(await search(search_index, ALICE, "newsletter", limit=2)) == 2


async def test_empty_query_returns_nothing(search_index: Any, report: IndexDocument) -> None:
    assert await search(search_index, ALICE, "") == []
    assert await search(search_index, ALICE, "   \t ") == []


HOSTILE_QUERIES = [
    '"', '""', '"""', '"budget', 'budget"', '"budget spreadsheet"', "budget's", "'",
    "NEAR", "budget NEAR spreadsheet", "NEAR(budget spreadsheet)", "NEAR(budget spreadsheet, 2)",
    "AND", "OR", "NOT", "budget AND", "OR budget", "NOT budget", "budget NOT",
    "*", "bud*", "*get", "budget*", "(", ")", "(budget", "budget)", "((budget))", "()",
    "subject:budget", "{subject body}: budget", "-budget", "+budget", "^budget", "budget^",
    ":", "\\", "\\\"", "%", "_", "@", "a@b", "\x00", "budget\x00", "\u200b", "🙂",
    "' OR 1=1 --", "budget; DROP TABLE docs; --",
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
async def test_query_syntax_in_user_input_never_raises(search_index: Any, report: IndexDocument,
                                                       query: str) -> None:
    for node in (q.Text(query), q.Text(query, phrase=True), q.Text(query, field="subject"),
                 q.Not(q.Text(query)), q.Or((q.Text(query), q.Text("lunch")))):
        hits = await search_index.query(ALICE, node, total=True)
        assert hits.total == len(hits.ids)
    results = await search(search_index, ALICE, query)
    assert isinstance(results, list)
    assert set(results) <= {report.email_id} | set(await search(search_index, ALICE, "lunch"))


@pytest.mark.parametrize("query", ['"budget"', "(budget", "budget)", "budget,", "budget!"])
async def test_punctuation_around_a_word_still_finds_it(search_index: Any, report: IndexDocument,
                                                        query: str) -> None:
    assert await search(search_index, ALICE, query) == [report.email_id]


async def test_index_survives_reopen(search_engine: Engine) -> None:
    first = await search_engine.open()
    document = doc(subject="persistent")
    await first.index([document])
    await search_engine.close(first)
    second = await search_engine.open()
    assert await search(second, ALICE, "persistent") == [document.email_id]
    assert await second.count(ALICE) == 1


async def test_substring_search_is_case_insensitive_and_per_account(search_index: Any) -> None:
    from mailyard.store.ports import IndexDocument

    await search_index.index([
        IndexDocument("acct-a", "e1", 1, "Quarterly Report", "Ann ann@x.test",
                      body="Revenue grew"),
        IndexDocument("acct-b", "e2", 2, "quarterly report", "Bo bo@y.test",
                      body="revenue fell"),
    ])
    assert await search_index.substring("acct-a", "subject", "TERLY REP") == {"e1"}
    assert await search_index.substring("acct-a", "body", "enue gr") == {"e1"}
    assert await search_index.substring("acct-a", "body", "fell") == set()
    assert await search_index.substring("acct-b", None, "bo@y") == {"e2"}
    assert await search_index.substring("acct-a", "addresses", 'ann"x') == set()  # no FTS5 syntax
    assert await search_index.substring("acct-a", "body", "gr") is None  # too short to index


# ------------------------------------------------------------------ the query trees


async def test_fields_phrases_and_boolean_trees(search_index: Any) -> None:
    a = doc(subject="Invoice for March", addresses="Ann Lee ann.lee@shop.test ann.lee shop.test",
            body="the total amount is due", attachment_names="invoice-march.pdf",
            attachment_text="line items and totals")
    b = doc(subject="Re: lunch plans", addresses="Bob bob@home.test", body="amount of pizza due")
    await search_index.index([a, b])

    async def ids(node: q.Node) -> set[str]:
        return set((await search_index.query(ALICE, node)).ids)

    assert await ids(q.Text("invoice", field="subject")) == {a.email_id}
    assert await ids(q.Text("invoice", field="body")) == set()
    assert await ids(q.Text("ann.lee@shop.test", field="from")) == {a.email_id}
    assert await ids(q.Text("shop.test", field="from")) == {a.email_id}
    assert await ids(q.Text("pdf", field="filename")) == {a.email_id}
    assert await ids(q.Text("totals")) == {a.email_id}, "attachment text is searched"
    assert await ids(q.Text("amount due", phrase=True)) == set()
    assert await ids(q.Text("amount is due", phrase=True)) == {a.email_id}
    assert await ids(q.Text("amount due")) == {a.email_id, b.email_id}
    assert await ids(q.Or((q.Text("pizza"), q.Text("march")))) == {a.email_id, b.email_id}
    assert await ids(q.And((q.Text("amount"), q.Not(q.Text("pizza"))))) == {a.email_id}
    assert await ids(q.Not(q.Text("pizza"))) == {a.email_id}
    assert await ids(q.Not(q.Not(q.Text("pizza")))) == {b.email_id}
    assert await ids(q.And(())) == {a.email_id, b.email_id}
    assert await ids(q.Or(())) == set()
    assert await ids(q.Text("!!!")) == {a.email_id, b.email_id}, "no word: no condition"


async def test_order_pages_total_and_among(search_index: Any) -> None:
    docs = [doc(subject="weekly digest", received_at=1_700_000_000_000 + n * 1000)
            for n in range(7)]
    docs.append(doc(subject="weekly digest", received_at=1_700_000_000_000 + 3 * 1000))  # a tie
    await search_index.index(docs[::-1])
    node = q.Text("digest")
    newest = await search_index.query(ALICE, node, total=True)
    assert newest.total == 8 and len(newest.ids) == 8
    assert newest.ids[0] == docs[6].email_id and newest.ids[-1] == docs[0].email_id
    oldest = await search_index.query(ALICE, node, order="oldest")
    assert oldest.ids[0] == docs[0].email_id
    page = await search_index.query(ALICE, node, limit=3, position=2, total=True)
    assert page.ids == newest.ids[2:5] and page.total == 8
    among = [docs[1].email_id, docs[5].email_id, "e-unknown"]
    hits = await search_index.query(ALICE, node, among=among, total=True)
    assert hits.ids == [docs[5].email_id, docs[1].email_id] and hits.total == 2
    assert (await search_index.query(BOB, node, among=among)).ids == []
    relevance = await search_index.query(ALICE, node, order="relevance")
    assert set(relevance.ids) == set(newest.ids)


async def test_among_many_candidates(search_index: Any) -> None:
    """More candidates than one statement names (IMAP SEARCH over a big mailbox): the same
    answer, in order, another account's matches never among them."""
    docs = [doc(subject=f"{'rare' if n % 3 == 0 else 'common'} note {n}",
                received_at=1_700_000_000_000 + n * 1000) for n in range(1500)]
    await search_index.index([*docs, doc(BOB, subject="rare note for bob")])
    among = [d.email_id for n, d in enumerate(docs) if n % 2 == 0] + ["e-unknown"]
    hits = await search_index.query(ALICE, q.Text("rare"), among=among, total=True)
    expected = [d.email_id for n, d in enumerate(docs) if n % 6 == 0][::-1]
    assert hits.ids == expected and hits.total == len(expected) == 250
    page = await search_index.query(ALICE, q.Text("rare"), among=among, order="oldest",
                                    limit=10, position=5)
    assert page.ids == expected[::-1][5:15]


async def test_snippets_mark_matches_and_escape_html(search_index: Any) -> None:
    a = doc(subject="Budget <draft> review", body="We reviewed the budget & the <b>plan</b>.")
    await search_index.index([a, doc(subject="other", body="nothing")])
    [s] = await search_index.snippets(ALICE, q.Text("budget"), [a.email_id])
    assert s.subject == "<mark>Budget</mark> &lt;draft&gt; review"
    assert s.preview is not None and "<mark>budget</mark> &amp; the &lt;b&gt;plan" in s.preview
    [none] = await search_index.snippets(ALICE, q.Text("review", field="subject"),
                                         [a.email_id])
    assert none.preview is None and none.subject is not None
    [bob] = await search_index.snippets(BOB, q.Text("budget"), [a.email_id])
    assert bob.subject is None and bob.preview is None


async def test_clear_forgets_one_account(search_index: Any, report: IndexDocument) -> None:
    await search_index.index([doc(BOB, subject="quarterly")])
    await search_index.clear(ALICE)
    assert await search_index.count(ALICE) == 0
    assert await search(search_index, BOB, "quarterly") != []
    await search_index.index([report])
    assert await search(search_index, ALICE, "quarterly") == [report.email_id]


async def test_more_documents_in_one_millisecond_than_its_slot_holds(search_index: Any) -> None:
    """An mbox import whose 3,000 messages share one Date: every one indexed, found, in
    order, and a message of the next millisecond indexed before or after them too."""
    at = 1_700_000_000_000
    later = doc(subject="sametime later", received_at=at + 1)
    await search_index.index([later])
    docs = [doc(subject=f"sametime {n}", received_at=at) for n in range(3000)]
    for start in range(0, len(docs), 500):
        await search_index.index(docs[start:start + 500])
    after = doc(subject="sametime after", received_at=at + 1)
    await search_index.index([after])
    hits = await search_index.query(ALICE, q.Text("sametime"), total=True)
    assert hits.total == 3002
    assert set(hits.ids) == {d.email_id for d in [*docs, later, after]}


@pytest.mark.parametrize("word", ["alice", "ALICE", "a", "Àlice", "x-alice",
                                  "\uff41\uff4c\uff49\uff43\uff45"])  # full width
async def test_words_of_the_account_id_match_text_only(search_index: Any, word: str) -> None:
    """A word that is also a token of the account's id (the index keeps it in every one of
    the account's documents) finds only the documents whose text holds it, alone in the
    index or not, in a count, a page, a phrase and under NOT."""
    named = doc(subject="note", body=f"ask {word} today")
    other = doc(subject="note", body="nothing here")
    await search_index.index([named, other])
    for node in (q.Text(word), q.Text(f"ask {word}", phrase=True),
                 q.And((q.Text("note"), q.Text(word)))):
        hits = await search_index.query(ALICE, node, total=True)
        assert (hits.ids, hits.total) == ([named.email_id], 1), q.format(node)
    hits = await search_index.query(ALICE, q.And((q.Text("note"), q.Not(q.Text(word)))),
                                    total=True)
    assert (hits.ids, hits.total) == ([other.email_id], 1)
