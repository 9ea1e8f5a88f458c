"""SpamModel contract: token counts per model, idempotent lessons that can be taken back,
collaborative reports in a window, per-account allowed senders; durable across a reopen."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mailyard.core import spam
from tests.contract.conftest import Engine


@pytest.fixture
async def model(spam_engine: Engine) -> Any:
    return await spam_engine.open()


TOKENS = [spam.token_id(w) for w in ("viagra", "cheap", "meds", "hello")]
MIN_I64, MAX_I64 = -(2**63), 2**63 - 1


async def test_empty_model_knows_nothing(model: Any) -> None:
    counts = await model.counts("", TOKENS)
    assert (counts.nspam, counts.nham, counts.tokens) == (0.0, 0.0, {})
    assert await model.totals("acct-a") == (0.0, 0.0)


async def test_learn_counts_user_and_global_weighted(model: Any) -> None:
    assert await model.learn("acct-a", "e1", TOKENS[:3], True, global_weight=0.5)
    user = await model.counts("acct-a", TOKENS)
    glob = await model.counts("", TOKENS)
    assert (user.nspam, user.nham) == (1.0, 0.0)
    assert user.tokens == {t: (1.0, 0.0) for t in TOKENS[:3]}
    assert (glob.nspam, glob.nham) == (0.5, 0.0)
    assert glob.tokens == {t: (0.5, 0.0) for t in TOKENS[:3]}
    assert await model.counts("acct-b", TOKENS) == spam.Counts()


async def test_same_lesson_twice_is_learnt_once(model: Any) -> None:
    assert await model.learn("acct-a", "e1", TOKENS, True, global_weight=1.0)
    assert not await model.learn("acct-a", "e1", TOKENS, True, global_weight=1.0)
    assert await model.totals("acct-a") == (1.0, 0.0)
    assert (await model.counts("", TOKENS)).tokens[TOKENS[0]] == (1.0, 0.0)


async def test_opposite_lesson_takes_the_first_back(model: Any) -> None:
    await model.learn("acct-a", "e1", TOKENS, True, global_weight=0.5)
    assert await model.learn("acct-a", "e1", TOKENS[1:], False, global_weight=0.5)
    user = await model.counts("acct-a", TOKENS)
    assert (user.nspam, user.nham) == (0.0, 1.0)
    assert TOKENS[0] not in user.tokens  # its only count was taken back
    assert user.tokens[TOKENS[1]] == (0.0, 1.0)
    glob = await model.counts("", TOKENS)
    assert (glob.nspam, glob.nham) == (0.0, 0.5)
    assert glob.tokens[TOKENS[2]] == (0.0, 0.5)


async def test_duplicate_and_extreme_token_ids(model: Any) -> None:
    tokens = [MIN_I64, MAX_I64, 0, MAX_I64]
    await model.learn("acct-a", "e1", tokens, False, global_weight=1.0)
    counts = await model.counts("acct-a", tokens)
    assert counts.tokens == {MIN_I64: (0.0, 1.0), MAX_I64: (0.0, 1.0), 0: (0.0, 1.0)}


async def test_many_tokens_in_one_lookup(model: Any) -> None:
    tokens = [spam.token_id(f"w{n}") for n in range(2500)]
    await model.learn("acct-a", "big", tokens, True, global_weight=1.0)
    counts = await model.counts("", [*tokens, spam.token_id("unseen")])
    assert len(counts.tokens) == 2500


async def test_reports_count_distinct_accounts_in_window(model: Any) -> None:
    for account, at in (("a", 100.0), ("b", 200.0), ("c", 300.0), ("a", 310.0)):
        await model.report("sender", "spammer@example.test", account, at)
    assert await model.reporters("sender", "spammer@example.test", 0.0) == 3
    assert await model.reporters("sender", "spammer@example.test", 250.0) == 2  # a moved on
    assert await model.reporters("content", "spammer@example.test", 0.0) == 0
    await model.retract("sender", "spammer@example.test", "c")
    assert await model.reporters("sender", "spammer@example.test", 250.0) == 1


async def test_allowed_senders_are_per_account_and_case_blind(model: Any) -> None:
    await model.allow_sender("acct-a", "Friend@Example.TEST")
    assert await model.sender_allowed("acct-a", "friend@example.test")
    assert await model.sender_allowed("acct-a", "<FRIEND@example.test>")
    assert not await model.sender_allowed("acct-b", "friend@example.test")
    await model.disallow_sender("acct-a", "friend@example.test")
    assert not await model.sender_allowed("acct-a", "friend@example.test")


async def test_survives_reopen(spam_engine: Engine) -> None:
    first = await spam_engine.open()
    await first.learn("acct-a", "e1", TOKENS, True, global_weight=1.0)
    await first.allow_sender("acct-a", "friend@example.test")
    await spam_engine.close(first)
    second = await spam_engine.open()
    assert await second.totals("") == (1.0, 0.0)
    assert await second.sender_allowed("acct-a", "friend@example.test")
    assert not await second.learn("acct-a", "e1", TOKENS, True, global_weight=1.0)


async def test_one_lesson_from_two_processes_at_once_is_learnt_once(
        spam_engine: Engine) -> None:
    """Two adapters on one store (two nodes of a cluster) applying the same lesson at the same
    time, as a retried protocol command on another node may: it counts once."""
    one, other = await spam_engine.open(), await spam_engine.open()
    for n in range(5):  # the first round may find the adapters' connections still opening
        results = await asyncio.gather(*(
            adapter.learn("acct-a", f"e{n}", TOKENS, True, global_weight=1.0)
            for adapter in (one, other, one, other)))
        assert sorted(results) == [False, False, False, True]
    assert await other.totals("acct-a") == (5.0, 0.0)
    assert await one.totals("") == (5.0, 0.0)
    assert (await other.counts("", TOKENS)).tokens[TOKENS[0]] == (5.0, 0.0)


async def test_concurrent_lessons_over_shared_tokens_all_count(spam_engine: Engine) -> None:
    """Lessons of many accounts and messages at once over the same tokens of the global model,
    some taking an earlier lesson back: every one counts, none is lost to a lock conflict."""
    one, other = await spam_engine.open(), await spam_engine.open()
    words = [spam.token_id(f"shared{n}") for n in range(200)]
    for n in range(4):  # lessons to take back below: spam first, then ham
        await one.learn(f"acct-{n}", "m0", words[::-1], True, global_weight=1.0)
    await asyncio.gather(*(
        (one if n % 2 else other).learn(f"acct-{n}", f"m{k}", words if k % 2 else words[::-1],
                                         False, global_weight=1.0)
        for n in range(4) for k in range(3)))
    assert await one.totals("") == (0.0, 12.0)
    counts = await other.counts("", words)
    assert counts.tokens[words[0]] == (0.0, 12.0)
    for n in range(4):
        assert await other.totals(f"acct-{n}") == (0.0, 3.0)
