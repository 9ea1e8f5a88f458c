"""The maildrop of one POP3 session (RFC 1939 §5, §6): a numbered snapshot of the Inbox.

Message numbers, sizes and unique-ids are fixed at login; DELE only marks, RSET unmarks, and
nothing reaches the store before QUIT enters the UPDATE state. A dropped connection therefore
changes nothing. The unique-id (UIDL) is the email id, the same one JMAP and IMAP (EMAILID)
show, so it is stable across sessions and restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailyard.services.mailbox import MailboxService
from mailyard.store.ports import Account, Mailbox


@dataclass
class Maildrop:
    inbox: Mailbox
    email_ids: list[str]
    sizes: list[int]
    deleted: set[int] = field(default_factory=set)
    """0-based indexes marked by DELE."""
    retrieved: set[int] = field(default_factory=set)
    """0-based indexes sent whole by RETR: marked $seen at UPDATE."""

    @classmethod
    async def load(cls, mailbox: MailboxService, account: Account) -> Maildrop:
        inbox = await mailbox.mailbox(account, "INBOX")
        snap = await mailbox.snapshot(account, inbox)
        ids = [e.email_id for e in snap.entries]
        records = {r.id: r.size for r in await mailbox.get_emails(account, ids, brief=True)}
        present = [i for i in ids if i in records]
        return cls(inbox, present, [records[i] for i in present])

    def index(self, number: int) -> int | None:
        """The 0-based index of message `number`, or None if there is none or it is deleted."""
        if 1 <= number <= len(self.email_ids) and number - 1 not in self.deleted:
            return number - 1
        return None

    def live(self) -> list[int]:
        return [i for i in range(len(self.email_ids)) if i not in self.deleted]

    @property
    def count(self) -> int:
        return len(self.email_ids) - len(self.deleted)

    @property
    def octets(self) -> int:
        return sum(self.sizes[i] for i in self.live())

    async def update(self, mailbox: MailboxService, account: Account, dele: str) -> None:
        """The UPDATE state (RFC 1939 §6): remove the marked messages, then flag the retrieved
        ones as seen. `dele` is "trash" (move to the trash-role mailbox) or "expunge"."""
        gone = [self.email_ids[i] for i in sorted(self.deleted)]
        if gone:
            if dele == "trash":
                trash = [b for b in await mailbox.mailboxes(account) if b.role == "trash"]
                if trash:
                    await mailbox.move(account, gone, self.inbox, trash[0])
                else:
                    await mailbox.delete_from(account, self.inbox, gone)
            else:
                await mailbox.delete_from(account, self.inbox, gone)
        seen = [self.email_ids[i] for i in sorted(self.retrieved - self.deleted)]
        if seen:
            await mailbox.set_keywords(account, seen, add=["$seen"])
