"""The MailStore port's reads of accounts, domains, deliveries, listed emails and account
objects, each rule written once over one narrow read per engine.

Rules, once for every engine:
- An account is looked up by its address as stored (accounts.stored_address) or by its id;
  one the store does not hold is NotFound. Accounts are listed by address (as Python orders
  text: the same on every engine, whatever a database's collation says).
- A domain's DKIM keys are read under its name as stored (domains.domain_name), newest
  first, then by selector.
- A delivery key is looked up as stored (stored_text), as the delivery wrote it.
- A mailbox by name: mailboxes.lookup (exactly the name, "INBOX" in any case the inbox), one
  row read by the engine's index.
- Listed emails (`mail list`): newest first (arrival, then id), at most `limit`, of the
  account or of the mailboxes a name names (mailboxes.named: any case, or the role); a name
  that names none lists nothing. They are a query like any other (query_emails), so their
  order is the search's.
- Account objects: kind and ids as stored (stored_text), each id once, all of the kind when
  no ids are given, in id order.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

from mailyard.core import query as q
from mailyard.core.query import Node
from mailyard.model import accounts, domains, mailboxes
from mailyard.model.query import EmailQueries
from mailyard.store.ports.errors import NotFound
from mailyard.store.ports.records import (
    Account,
    DKIMKeyRecord,
    EmailRecord,
    Mailbox,
    StoredObject,
)
from mailyard.store.ports.text import stored_text

if TYPE_CHECKING:
    pass

AccountKey = Literal["address", "id"]


def by_address(found: Iterable[Account]) -> list[Account]:
    """Accounts in the order every listing gives them (the sharded store's too)."""
    return sorted(found, key=lambda a: a.address)


class StoreReads(EmailQueries):
    """The reads above and the queries (model/query.py), for an engine of one database: it
    gives the narrow reads (rows by key, as stored, in any order) and the query reads."""

    # ------------------------------------------------------------------ the engine's reads

    @abstractmethod
    async def account_rows(self, key: AccountKey | None = None, value: str = ""
                           ) -> list[Account]:
        """The accounts whose `key` column is `value` (at most one), or every account."""

    @abstractmethod
    async def dkim_rows(self, domain: str) -> list[DKIMKeyRecord]:
        """The keys stored under the domain name, in any order."""

    @abstractmethod
    async def delivery_exists(self, account_id: str, delivery_key: str) -> bool:
        """Whether an email of the account is stored under the key, as given."""

    @abstractmethod
    async def object_rows(self, account_id: str, kind: str, ids: Sequence[str] | None
                          ) -> list[StoredObject]:
        """The account's objects of `kind` among `ids` (or all), as given, in any order."""

    @abstractmethod
    async def list_mailboxes(self, account_id: str) -> list[Mailbox]: ...

    @abstractmethod
    async def mailbox_rows(self, account_id: str, key: mailboxes.MailboxKey, value: str
                           ) -> list[Mailbox]:
        """The account's mailboxes whose `key` column is `value` (at most one: both are
        unique per account), read by an index."""

    @abstractmethod
    async def get_emails(self, account_id: str, email_ids: Sequence[str], *,
                         brief: bool = False) -> list[EmailRecord]: ...

    # ------------------------------------------------------------------ the rules

    async def get_account(self, address: str) -> Account:
        return await self._account("address", accounts.stored_address(address), address)

    async def get_account_by_id(self, account_id: str) -> Account:
        return await self._account("id", account_id, account_id)

    async def _account(self, key: AccountKey, value: str, asked: str) -> Account:
        found = await self.account_rows(key, value)
        if not found:
            raise NotFound(f"no account {asked}")
        return found[0]

    async def find_mailbox(self, account_id: str, name: str) -> Mailbox | None:
        found = await self.mailbox_rows(account_id, *mailboxes.lookup(name))
        return found[0] if found else None

    async def list_accounts(self) -> list[Account]:
        return by_address(await self.account_rows())

    async def dkim_keys(self, domain: str) -> list[DKIMKeyRecord]:
        return sorted(await self.dkim_rows(domains.domain_name(domain)),
                      key=lambda k: (-k.created_at, k.selector))

    async def has_delivery(self, account_id: str, delivery_key: str) -> bool:
        return await self.delivery_exists(account_id, stored_text(delivery_key))

    async def list_emails(self, account_id: str, mailbox: str | None = None,
                          limit: int = 100) -> list[EmailRecord]:
        node: Node = q.And(())
        if mailbox is not None:
            named = mailboxes.named(await self.list_mailboxes(account_id), mailbox)
            node = q.Or(tuple(q.Mailbox(mailbox_id, by_id=True) for mailbox_id in named))
        ids = (await self.query_emails(account_id, node, limit=limit)).ids
        by_id = {e.id: e for e in await self.get_emails(account_id, ids)}
        return [by_id[i] for i in ids if i in by_id]

    async def get_objects(self, account_id: str, kind: str,
                          ids: Sequence[str] | None = None) -> list[StoredObject]:
        wanted = None if ids is None else list(dict.fromkeys(stored_text(i) for i in ids))
        if wanted == []:
            return []
        found = await self.object_rows(account_id, stored_text(kind), wanted)
        return sorted((StoredObject(kind, o.id, o.data, o.modseq) for o in found),
                      key=lambda o: o.id)
