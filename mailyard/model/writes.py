"""The MailStore port's writes (store.ports.MailStore), each one model function run in one
write transaction of the engine, written once.

An engine's MailStore inherits `ModelWrites` and gives it three ways to open a transaction
(`write_mail` on one account's rows, `write_accounts`, `write_domains`); which model
function answers which port method, and with which arguments, is decided here, so an engine
writes no mail rule and no shell around one. The sharded store takes `MailWrites` and
`DomainWrites` alone: it routes an account's transaction to the account's shard and the
domains' to its first, and writes accounts through its directory. What an engine still
writes is its reads and its primitives (its MailTx), listed in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from mailyard.core.ids import new_id
from mailyard.model import (
    accounts,
    delivery,
    domains,
    keywords,
    labels,
    mailboxes,
    maintenance,
    objects,
)
from mailyard.store.ports import (
    Account,
    AccountTx,
    DeliveryResult,
    DKIMKeyRecord,
    DomainTx,
    Expunged,
    ImportWrite,
    KeywordUpdate,
    Mailbox,
    MailboxCounters,
    NewEmail,
    QuotaExceeded,
    StoreTx,
)

R = TypeVar("R")


class MailWrites(ABC):
    """The writes of one account's mail, over the engine's transactions on its rows."""

    @abstractmethod
    async def write_mail(self, account_id: str,
                         step: Callable[[StoreTx], Coroutine[Any, Any, R]]) -> R:
        """Run `step` on the account's rows in one write transaction: committed when it
        returns, rolled back when it raises."""

    # ------------------------------------------------------------------ mailboxes

    async def create_mailbox(self, account_id: str, name: str,
                             role: str | None = None) -> Mailbox:
        return await self.write_mail(account_id, lambda tx: mailboxes.create(
            tx, new_id("m"), name, role))

    async def delete_mailbox(self, account_id: str, mailbox_id: str, *,
                             remove_emails: bool = False) -> list[str]:
        return await self.write_mail(account_id, lambda tx: mailboxes.destroy(
            tx, mailbox_id, remove_emails=remove_emails))

    async def rename_mailbox(self, account_id: str, mailbox_id: str, name: str) -> None:
        await self.write_mail(account_id, lambda tx: mailboxes.rename(tx, mailbox_id, name))

    async def set_subscribed(self, account_id: str, mailbox_id: str, subscribed: bool) -> None:
        await self.write_mail(account_id, lambda tx: mailboxes.set_subscribed(
            tx, mailbox_id, subscribed))

    # ------------------------------------------------------------------ emails

    async def deliver(self, email: NewEmail) -> DeliveryResult:
        return await self.write_mail(email.account_id, lambda tx: delivery.deliver(tx, email))

    async def store_imports(self, account_id: str, writes: Sequence[ImportWrite]
                            ) -> list[tuple[str, bool] | QuotaExceeded]:
        return await self.write_mail(account_id, lambda tx: delivery.store_imports(
            tx, account_id, writes))

    async def set_keywords(self, account_id: str, email_ids: Sequence[str], *,
                           add: Sequence[str] = (), remove: Sequence[str] = (),
                           replace: Sequence[str] | None = None,
                           unchanged_since: int | None = None) -> KeywordUpdate:
        return await self.write_mail(account_id, lambda tx: keywords.set_keywords(
            tx, email_ids, add=add, remove=remove, replace=replace,
            unchanged_since=unchanged_since))

    async def add_to_mailbox(self, account_id: str, email_ids: Sequence[str],
                             mailbox_id: str, *, fresh_only: bool = False,
                             source_id: str | None = None) -> dict[str, int]:
        return await self.write_mail(account_id, lambda tx: labels.add_to_mailbox(
            tx, email_ids, mailbox_id, fresh_only=fresh_only, source_id=source_id))

    async def remove_from_mailbox(self, account_id: str, mailbox_id: str,
                                  email_ids: Sequence[str], *,
                                  if_keyword: str | None = None) -> list[int]:
        return (await self.expunge(account_id, mailbox_id, email_ids,
                                   if_keyword=if_keyword)).uids

    async def expunge(self, account_id: str, mailbox_id: str, email_ids: Sequence[str], *,
                      if_keyword: str | None = None, orphans: bool = False) -> Expunged:
        return await self.write_mail(account_id, lambda tx: labels.remove_from_mailbox(
            tx, mailbox_id, email_ids, if_keyword=if_keyword, orphans=orphans))

    async def destroy_emails(self, account_id: str, email_ids: Sequence[str]) -> list[str]:
        return await self.write_mail(account_id,
                                     lambda tx: labels.destroy_emails(tx, email_ids))

    async def move(self, account_id: str, email_ids: Sequence[str], source_id: str,
                   target_id: str, *, fresh_only: bool = False) -> dict[str, tuple[int, int]]:
        return await self.write_mail(account_id, lambda tx: labels.move(
            tx, email_ids, source_id, target_id, fresh_only=fresh_only))

    # ------------------------------------------------------------------ objects

    async def put_object(self, account_id: str, kind: str, object_id: str,
                         data: dict[str, Any], *, log: bool = True) -> int:
        return await self.write_mail(account_id, lambda tx: objects.put(
            tx, kind, object_id, data, log=log))

    async def delete_object(self, account_id: str, kind: str, object_id: str, *,
                            log: bool = True) -> int:
        return await self.write_mail(account_id, lambda tx: objects.delete(
            tx, kind, object_id, log=log))

    # ------------------------------------------------------------------ maintenance

    async def set_counters(self, account_id: str, *, modseq: int, used: int,
                           mailboxes: Sequence[MailboxCounters]) -> bool:
        """ports.Maintenance: fsck's compare-and-set of the counters."""
        return await self.write_mail(account_id, lambda tx: maintenance.set_counters(
            tx, modseq=modseq, used=used, mailboxes=mailboxes))


class AccountWrites(ABC):
    """The writes of the accounts table."""

    @abstractmethod
    async def write_accounts(self, step: Callable[[AccountTx], Coroutine[Any, Any, R]]) -> R:
        """Run `step` on the accounts table in one write transaction."""

    async def create_account(self, address: str, password_hash: str, quota: int, *,
                             account_id: str | None = None) -> Account:
        """`account_id` is given by a sharded store, which records it in its directory before
        the account exists; otherwise a new one is made."""
        return await self.write_accounts(lambda tx: accounts.create(
            tx, account_id or new_id("a"), address, password_hash, quota))

    async def delete_account(self, address: str) -> None:
        await self.write_accounts(lambda tx: accounts.delete(tx, address))

    async def set_password(self, address: str, password_hash: str) -> None:
        await self.write_accounts(lambda tx: accounts.set_password(tx, address, password_hash))

    async def set_quota(self, address: str, quota: int) -> None:
        await self.write_accounts(lambda tx: accounts.set_quota(tx, address, quota))



class DomainWrites(ABC):
    """The writes of the installation's domains and DKIM keys."""

    @abstractmethod
    async def write_domains(self, step: Callable[[DomainTx], Coroutine[Any, Any, R]]) -> R:
        """Run `step` on the domains and DKIM keys in one write transaction."""

    async def add_domain(self, name: str) -> None:
        await self.write_domains(lambda tx: domains.add(tx, name))

    async def remove_domain(self, name: str) -> None:
        await self.write_domains(lambda tx: domains.remove(tx, name))

    async def add_dkim_key(self, key: DKIMKeyRecord) -> None:
        await self.write_domains(lambda tx: domains.add_dkim_key(tx, key))

    async def retire_dkim_key(self, domain: str, selector: str) -> None:
        await self.write_domains(lambda tx: domains.retire_dkim_key(tx, domain, selector))


class ModelWrites(MailWrites, AccountWrites, DomainWrites, ABC):
    """Every write of the MailStore port, for an engine of one database (the sharded store
    routes MailWrites by account and DomainWrites to its first shard, and writes accounts
    through its directory)."""
