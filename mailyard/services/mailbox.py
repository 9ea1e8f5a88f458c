"""The mailbox service: the one place protocols and the CLI read mailboxes through."""

from __future__ import annotations

from mailyard.core import skeleton
from mailyard.store.ports import Account, BlobStore, EmailRecord, Mailbox, MailStore


class MailboxService:
    def __init__(self, store: MailStore, blobs: BlobStore) -> None:
        self.store = store
        self.blobs = blobs

    async def account(self, address: str) -> Account:
        return await self.store.get_account(address)

    async def mailboxes(self, account: Account) -> list[Mailbox]:
        return await self.store.list_mailboxes(account.id)

    async def emails(self, account: Account, label: str | None = None,
                     limit: int = 100) -> list[EmailRecord]:
        return await self.store.list_emails(account.id, label, limit)

    async def email(self, account: Account, email_id: str) -> EmailRecord:
        return await self.store.get_email(account.id, email_id)

    async def raw(self, account: Account, email_id: str) -> bytes:
        """The message octets exactly as stored at delivery, re-assembled from its skeleton."""
        record = await self.store.get_email(account.id, email_id)
        skel = await self.blobs.get(record.blob_id)
        parts = {ref: await self.blobs.get(ref) for ref in skeleton.blob_refs(skel)}
        return skeleton.assemble(skel, parts.__getitem__)
