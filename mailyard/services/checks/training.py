"""Layer 4: users correct the filter, and the filter learns from them.

A mail moved into Junk (or flagged $Junk) is a spam lesson for that user's model and, weighted,
for the global one; its sender and content are reported for collaborative filtering and the
sender leaves the user's allow list. A mail moved out of Junk (or flagged $NotJunk) is a ham
lesson, withdraws those reports, and allow-lists the sender, so their next mail reaches the
Inbox whatever it scores.

The work (read the raw message, parse, tokenize, write a few thousand counts) runs in a
background task, off the IMAP MOVE or JMAP request that caused it. When a lesson has been
learnt, the email gets the matching keyword ($Junk or $NotJunk, RFC 5788), which is what mail
clients show and what tells a watching client that the lesson is in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailyard.core import spam
from mailyard.core.mime import parse_message
from mailyard.core.spampolicy import SpamPolicy
from mailyard.services.checks.content import sender_of
from mailyard.store.ports import Account, NotFound, SpamModel

if TYPE_CHECKING:
    from mailyard.services.mailbox import MailboxService

log = logging.getLogger("mailyard.checks.training")

JUNK, NOT_JUNK = "$junk", "$notjunk"


class SpamTrainer:
    def __init__(self, model: SpamModel, mailbox: MailboxService, policy: SpamPolicy) -> None:
        self.model = model
        self.mailbox = mailbox
        self.policy = policy
        self._tasks: set[asyncio.Task[None]] = set()

    def junk_changed(self, account: Account, email_ids: Sequence[str], is_spam: bool) -> None:
        """The MailboxService observer: called on the request path, returns at once."""
        task = asyncio.get_running_loop().create_task(
            self._learn_all(account, list(email_ids), is_spam))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait for the lessons in progress (shutdown, tests in-process)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _learn_all(self, account: Account, email_ids: list[str], is_spam: bool) -> None:
        learnt: list[str] = []
        for email_id in email_ids:
            try:
                if await self.learn(account, email_id, is_spam):
                    learnt.append(email_id)
            except NotFound:
                continue  # destroyed meanwhile
            except Exception:
                log.exception("learning %s as %s failed", email_id, "spam" if is_spam else "ham")
        if learnt:
            keyword, other = (JUNK, NOT_JUNK) if is_spam else (NOT_JUNK, JUNK)
            await self.mailbox.set_keywords(account, learnt, add=[keyword], remove=[other])

    async def learn(self, account: Account, email_id: str, is_spam: bool) -> bool:
        """One lesson; False when this user had already taught this about this email."""
        raw = await self.mailbox.raw(account, email_id)

        def analyse() -> tuple[list[int], str, str]:
            parsed = parse_message(raw, text_limit=spam.MAX_TEXT)
            c = spam.content(raw, parsed)
            return spam.token_ids(c), spam.fingerprint(c), sender_of(parsed)

        ids, fingerprint, sender = await asyncio.to_thread(analyse)
        changed = await self.model.learn(account.id, email_id, ids, is_spam,
                                         global_weight=self.policy.global_weight)
        reports = [("content", fingerprint)] + ([("sender", sender)] if sender else [])
        if is_spam:
            for kind, key in reports:
                await self.model.report(kind, key, account.id, time.time())
            if sender:
                await self.model.disallow_sender(account.id, sender)
        else:
            for kind, key in reports:
                await self.model.retract(kind, key, account.id)
            if sender:
                await self.model.allow_sender(account.id, sender)
        log.info("learnt %s as %s for %s%s", email_id, "spam" if is_spam else "ham",
                 account.address, "" if changed else " (already)")
        return changed
