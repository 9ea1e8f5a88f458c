"""A mailbox as a session sees it: the whole view on SELECT, and what changed since a MODSEQ
on every later look (IMAP's UID map, CONDSTORE and QRESYNC).

Rules, once for every engine:
- A view is the mailbox's counters and state with its emails by ascending UID (position + 1
  is the message sequence number), read at one moment.
- An email asked for by id that the account does not have is NotFound.
- What changed since MODSEQ N is, read at one moment: the mailbox's MODSEQ (the new
  HIGHESTMODSEQ), its emails whose MODSEQ is above N (flags or labels changed, or new),
  and the UIDs that left it above N (VANISHED). An email moved out and back in shows as
  both: its old UID vanished, its new one changed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from mailyard.store.ports.errors import NotFound
from mailyard.store.ports.mailtx import MailReader
from mailyard.store.ports.records import EmailRecord, MailboxDelta, MailboxSnapshot

R = TypeVar("R")


async def snapshot(rd: MailReader, mailbox_id: str) -> MailboxSnapshot:
    return MailboxSnapshot(mailbox=await rd.mailbox(mailbox_id),
                           entries=await rd.entries(mailbox_id))


async def delta(rd: MailReader, mailbox_id: str, since: int) -> MailboxDelta:
    mailbox = await rd.mailbox(mailbox_id)
    return MailboxDelta(highest_modseq=mailbox.highest_modseq,
                        changed=await rd.entries(mailbox_id, changed_since=since),
                        vanished=await rd.vanished(mailbox_id, since))


class MailReads(ABC):
    """The MailStore port's mailbox views and single emails, over the engine's reads."""

    @abstractmethod
    async def read_mail(self, account_id: str,
                        step: Callable[[MailReader], Coroutine[Any, Any, R]]) -> R:
        """Run `step` on the account's rows as they are at one moment."""

    async def snapshot(self, account_id: str, mailbox_id: str) -> MailboxSnapshot:
        return await self.read_mail(account_id, lambda rd: snapshot(rd, mailbox_id))

    async def mailbox_delta(self, account_id: str, mailbox_id: str, since: int
                            ) -> MailboxDelta:
        return await self.read_mail(account_id, lambda rd: delta(rd, mailbox_id, since))

    @abstractmethod
    async def get_emails(self, account_id: str, email_ids: Sequence[str], *,
                         brief: bool = False) -> list[EmailRecord]:
        """The account's emails among `email_ids` (unknown ids left out)."""

    async def get_email(self, account_id: str, email_id: str) -> EmailRecord:
        found = await self.get_emails(account_id, [email_id])
        if not found:
            raise NotFound(f"no email {email_id}")
        return found[0]
