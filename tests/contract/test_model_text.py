"""Text is stored the same on every engine (store.ports.stored_text): a NUL (which
PostgreSQL's text cannot hold) becomes U+FFFD and a lone surrogate (which is not UTF-8) '?',
on SQLite as on PostgreSQL, whether it came in a parsed message or from a client."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from mailyard.store.ports import Account, NewEmail
from tests.contract.test_mailstore import deliver

NewEmailFactory = Callable[..., NewEmail]


async def test_nul_and_surrogates_are_stored_alike(mailstore: Any, account: Account,
                                                   new_email: NewEmailFactory) -> None:
    email = new_email(account.id, subject="Re: a\x00b \udcff", message_id="<n\x00ul@x>",
                      content=b"Subject: a\r\n\r\nbody\r\n",
                      in_reply_to=["<pa\x00rent@x>"])
    email = dataclasses.replace(email, preview="pre\x00view",
                                from_=[{"name": "Ev\x00e", "email": "eve@example.test"}])
    assert email.subject == "Re: a\ufffdb ?"
    await deliver(mailstore, email)
    stored = await mailstore.get_email(account.id, email.email_id)
    assert stored.subject == "Re: a\ufffdb ?"
    assert stored.message_id == "<n\ufffdul@x>"
    assert stored.preview == "pre\ufffdview"
    assert stored.from_[0]["name"] == "Ev\ufffde"
    box = await mailstore.create_mailbox(account.id, "Wo\x00rk \udcff")
    assert box.name == "Wo\ufffdrk ?"
    await mailstore.rename_mailbox(account.id, box.id, "Jo\x00bs")
    names = {b.id: b.name for b in await mailstore.list_mailboxes(account.id)}
    assert names[box.id] == "Jo\ufffdbs"
