"""SearchIndex contract: full text of subject, addresses, body and attachment names."""

from __future__ import annotations

from typing import Any

import pytest

from mailyard.core.ids import new_id
from mailyard.store.ports import IndexDocument
from tests.contract.conftest import Engine

ALICE = "a-alice"
BOB = "a-bob"


def doc(account_id: str = ALICE, *, subject: str = "", addresses: str = "", body: str = "",
        attachment_names: str = "", email_id: str | None = None) -> IndexDocument:
    return IndexDocument(account_id=account_id, email_id=email_id or new_id("e"),
                         subject=subject, addresses=addresses, body=body,
                         attachment_names=attachment_names)


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
    assert await search_index.search(ALICE, "quarterly") == [report.email_id]
    assert await search_index.search(ALICE, "QUARTERLY") == [report.email_id]


async def test_search_by_body_word(search_index: Any, report: IndexDocument) -> None:
    assert await search_index.search(ALICE, "spreadsheet") == [report.email_id]


async def test_search_by_address_word(search_index: Any, report: IndexDocument) -> None:
    assert await search_index.search(ALICE, "carol") == [report.email_id]
    assert await search_index.search(ALICE, "partner") == [report.email_id]
    assert await search_index.search(ALICE, "dave@partner.test") == [report.email_id]


async def test_search_by_attachment_name(search_index: Any, report: IndexDocument) -> None:
    assert await search_index.search(ALICE, "figures") == [report.email_id]


async def test_all_words_must_match(search_index: Any, report: IndexDocument) -> None:
    assert await search_index.search(ALICE, "budget quarterly") == [report.email_id]
    assert await search_index.search(ALICE, "budget pizza") == []
    assert await search_index.search(ALICE, "nonexistentword") == []


async def test_search_is_diacritic_insensitive(search_index: Any) -> None:
    accented = doc(subject="Rendez-vous au café", body="Crème brûlée à Zürich")
    plain = doc(subject="Meet at the cafe", body="creme brulee in Zurich")
    await search_index.index([accented, plain])
    both = {accented.email_id, plain.email_id}
    assert set(await search_index.search(ALICE, "cafe")) == both
    assert set(await search_index.search(ALICE, "café")) == both
    assert set(await search_index.search(ALICE, "CAFÉ")) == both
    assert set(await search_index.search(ALICE, "brulee")) == both
    assert set(await search_index.search(ALICE, "zürich")) == both


async def test_accounts_are_isolated(search_index: Any, report: IndexDocument) -> None:
    bobs = doc(BOB, subject="Quarterly numbers", body="budget")
    await search_index.index([bobs])
    assert await search_index.search(BOB, "spreadsheet") == []
    assert await search_index.search(BOB, "carol") == []
    assert await search_index.search(BOB, "quarterly") == [bobs.email_id]
    assert await search_index.search(ALICE, "quarterly") == [report.email_id]
    assert await search_index.search("a-nobody", "quarterly") == []
    assert await search_index.count(BOB) == 1
    assert await search_index.count(ALICE) == 2


async def test_same_email_id_in_two_accounts(search_index: Any) -> None:
    shared = new_id("e")
    await search_index.index([doc(ALICE, subject="apples", email_id=shared),
                              doc(BOB, subject="oranges", email_id=shared)])
    assert await search_index.search(ALICE, "apples") == [shared]
    assert await search_index.search(ALICE, "oranges") == []
    assert await search_index.search(BOB, "oranges") == [shared]
    await search_index.delete(ALICE, [shared])
    assert await search_index.search(BOB, "oranges") == [shared]
    assert await search_index.count(BOB) == 1


async def test_indexing_twice_is_one_document(search_index: Any) -> None:
    document = doc(subject="idempotent indexing")
    await search_index.index([document])
    await search_index.index([document])
    await search_index.index([document, document])
    assert await search_index.count(ALICE) == 1
    assert await search_index.search(ALICE, "idempotent") == [document.email_id]


async def test_delete(search_index: Any, report: IndexDocument) -> None:
    await search_index.delete(ALICE, [report.email_id])
    assert await search_index.search(ALICE, "quarterly") == []
    assert await search_index.count(ALICE) == 1
    await search_index.delete(ALICE, [report.email_id, "e-never-indexed"])  # no error
    await search_index.delete(ALICE, [])
    assert await search_index.count(ALICE) == 1
    # Deleted then indexed again (a reindex): found again.
    await search_index.index([report])
    assert await search_index.search(ALICE, "quarterly") == [report.email_id]


async def test_delete_in_other_account_removes_nothing(search_index: Any,
                                                       report: IndexDocument) -> None:
    await search_index.delete(BOB, [report.email_id])
    assert await search_index.search(ALICE, "quarterly") == [report.email_id]


async def test_count(search_index: Any) -> None:
    assert await search_index.count(ALICE) == 0
    await search_index.index([doc(subject=f"mail {n}") for n in range(7)])
    assert await search_index.count(ALICE) == 7
    assert await search_index.count(BOB) == 0


async def test_limit(search_index: Any) -> None:
    await search_index.index([doc(subject="newsletter") for _ in range(5)])
    assert len(await search_index.search(ALICE, "newsletter")) == 5
    assert len(await search_index.search(ALICE, "newsletter", limit=2)) == 2


async def test_empty_query_returns_nothing(search_index: Any, report: IndexDocument) -> None:
    assert await search_index.search(ALICE, "") == []
    assert await search_index.search(ALICE, "   \t ") == []


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
    results = await search_index.search(ALICE, query)
    assert isinstance(results, list)
    assert set(results) <= {report.email_id} | set(await search_index.search(ALICE, "lunch"))


@pytest.mark.parametrize("query", ['"budget"', "(budget", "budget)", "budget,", "budget!"])
async def test_punctuation_around_a_word_still_finds_it(search_index: Any, report: IndexDocument,
                                                        query: str) -> None:
    assert await search_index.search(ALICE, query) == [report.email_id]


async def test_index_survives_reopen(search_engine: Engine) -> None:
    first = await search_engine.open()
    document = doc(subject="persistent")
    await first.index([document])
    await search_engine.close(first)
    second = await search_engine.open()
    assert await second.search(ALICE, "persistent") == [document.email_id]
    assert await second.count(ALICE) == 1


async def test_substring_search_is_case_insensitive_and_per_account(search_index: Any) -> None:
    from mailyard.store.ports import IndexDocument

    await search_index.index([
        IndexDocument("acct-a", "e1", "Quarterly Report", "Ann ann@x.test", "Revenue grew",
                      ""),
        IndexDocument("acct-b", "e2", "quarterly report", "Bo bo@y.test", "revenue fell", ""),
    ])
    assert await search_index.substring("acct-a", "subject", "TERLY REP") == {"e1"}
    assert await search_index.substring("acct-a", "body", "enue gr") == {"e1"}
    assert await search_index.substring("acct-a", "body", "fell") == set()
    assert await search_index.substring("acct-b", None, "bo@y") == {"e2"}
    assert await search_index.substring("acct-a", "addresses", 'ann"x') == set()  # no FTS5 syntax
    assert await search_index.substring("acct-a", "body", "gr") is None  # too short to index
