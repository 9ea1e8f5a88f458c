"""Read rules of the mail model (model/) on every engine: each engine reads its rows, the
model decides what a request means."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailyard.store.ports import Account, NewEmail
from tests.contract.test_mailstore import deliver

NewEmailFactory = Callable[..., NewEmail]


async def test_a_mailbox_is_named_in_any_case_beyond_ascii(mailstore: Any, account: Account,
                                                          new_email: NewEmailFactory) -> None:
    box = await mailstore.create_mailbox(account.id, "Ärger")
    email = new_email(account.id)
    await deliver(mailstore, email)
    await mailstore.add_to_mailbox(account.id, [email.email_id], box.id)
    await deliver(mailstore, new_email(account.id))
    for spelling in ("Ärger", "äRGER", "ÄRGER"):
        listed = await mailstore.list_emails(account.id, mailbox=spelling)
        assert [r.id for r in listed] == [email.email_id], spelling
    assert await mailstore.list_emails(account.id, mailbox="Arger") == []
