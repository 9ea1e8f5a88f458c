"""Each way the submission service refuses a message says why as a Refusal, beside the SMTP
reply the submission listener sends as it is: the real embedded runtime's SubmissionService."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailyard.app import Runtime
from mailyard.config import Config
from mailyard.services.submission import Refusal, SubmissionRefused
from mailyard.store.ports import Account


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = Runtime.open(Config(data_dir=tmp_path, domains=("example.test",)))
    await rt.store.create_account("alice@example.test", "x", 10**9)
    yield rt
    rt.close()


def message(head: str) -> bytes:
    return (head + "To: bob@remote.test\r\nSubject: s\r\n\r\nbody\r\n").encode()


@pytest.mark.parametrize(("head", "refusal", "reply"), [
    ("", Refusal.NO_FROM, "550 5.6.0"),
    ("From: mallory@example.test\r\n", Refusal.SENDER_NOT_YOURS, "553 5.7.1"),
    ("From: alice@example.test\r\nFrom: alice@example.test\r\n", Refusal.AUTHOR_FIELDS,
     "554 5.6.0"),
    ("From: alice@example.test\r\nSender: a@example.test, b@example.test\r\n",
     Refusal.AUTHOR_FIELDS, "554 5.6.0"),
    ("From: alice@example.test\r\nSender: mallory@example.test\r\n",
     Refusal.SENDER_NOT_YOURS, "550 5.7.1"),
])
async def test_a_message_refused_says_why(runtime: Runtime, head: str, refusal: Refusal,
                                          reply: str) -> None:
    alice = await account(runtime)
    with pytest.raises(SubmissionRefused) as refused:
        await runtime.submission.submit(alice, "alice@example.test", ["bob@remote.test"],
                                        message(head))
    assert (refused.value.refusal, refused.value.reply[:9]) == (refusal, reply)


async def account(rt: Runtime) -> Account:
    return await rt.store.get_account("alice@example.test")


async def test_an_envelope_refused_says_why(runtime: Runtime) -> None:
    rt = runtime
    alice = await account(rt)
    cases: list[tuple[Refusal, str]] = []
    for check in (lambda: rt.submission.check_recipient(0, "no-at-sign"),
                  lambda: rt.submission.check_recipient(0, "nobody@example.test"),
                  lambda: rt.submission.check_recipient(100, "bob@remote.test")):
        with pytest.raises(SubmissionRefused) as refused:
            await check()
        cases.append((refused.value.refusal, refused.value.reply[:3]))
    with pytest.raises(SubmissionRefused) as sender:
        rt.submission.check_sender(alice, "mallory@example.test")
    cases.append((sender.value.refusal, sender.value.reply[:3]))
    assert cases == [(Refusal.BAD_RECIPIENT, "501"), (Refusal.NO_SUCH_USER, "550"),
                     (Refusal.TOO_MANY_RECIPIENTS, "452"), (Refusal.SENDER_NOT_YOURS, "553")]
