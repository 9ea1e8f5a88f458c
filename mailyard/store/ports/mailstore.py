"""The MailStore port (accounts, mailboxes, email metadata, the change log) and its maintenance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mailyard.core.emailsort import SortKey
    from mailyard.core.query import Node
    from mailyard.store.ports.errors import QuotaExceeded
    from mailyard.store.ports.records import (
        Account,
        Change,
        DeliveryResult,
        DKIMKeyRecord,
        EmailHead,
        EmailRecord,
        Expunged,
        ImportWrite,
        KeywordUpdate,
        Mailbox,
        MailboxCounters,
        MailboxDelta,
        MailboxSnapshot,
        NewEmail,
        StoredObject,
    )
    from mailyard.store.ports.search import Hits, Order


class MailStore(Protocol):
    """Accounts, mailboxes (labels), email metadata, threads, UIDs and the change log."""

    # domains
    async def add_domain(self, name: str) -> None: ...
    async def remove_domain(self, name: str) -> None: ...
    async def list_domains(self) -> list[str]: ...
    async def add_dkim_key(self, key: DKIMKeyRecord) -> None:
        """Conflict when the domain already has that selector."""
        ...
    async def dkim_keys(self, domain: str) -> list[DKIMKeyRecord]:
        """Every key of the domain, newest first; signing uses the active ones."""
        ...
    async def retire_dkim_key(self, domain: str, selector: str) -> None: ...

    # accounts
    async def create_account(self, address: str, password_hash: str, quota: int) -> Account: ...
    async def get_account(self, address: str) -> Account: ...
    async def get_account_by_id(self, account_id: str) -> Account: ...
    async def list_accounts(self) -> list[Account]: ...
    async def delete_account(self, address: str) -> None: ...
    async def set_password(self, address: str, password_hash: str) -> None: ...
    async def set_quota(self, address: str, quota: int) -> None: ...

    # mailboxes and email
    async def list_mailboxes(self, account_id: str) -> list[Mailbox]: ...
    async def find_mailbox(self, account_id: str, name: str) -> Mailbox | None:
        """The mailbox of exactly this name, where "INBOX" in any case is the inbox-role
        mailbox (RFC 3501 §5.1); None when there is none. One indexed read, not a listing
        (IMAP looks a mailbox up by name on every SELECT, STATUS and APPEND)."""
        ...
    async def thread_counts(self, account_id: str) -> dict[str, tuple[int, int]]:
        """Mailbox id -> (its threads: distinct thread ids among its emails, RFC 8621 §2
        totalThreads; those of them with an email in it that lacks $seen), for every
        mailbox holding an email; one grouped read, not a query per mailbox."""
        ...
    async def deliver(self, email: NewEmail) -> DeliveryResult: ...
    async def store_imports(self, account_id: str, writes: Sequence[ImportWrite]
                            ) -> list[tuple[str, bool] | QuotaExceeded]:
        """An import batch in ONE write transaction, in order (UIDs follow it): each write's
        (email id, created), or the QuotaExceeded its delivery was refused with (raised
        before that delivery wrote anything, so the rest go on). Any other error rolls the
        whole batch back and is raised. One transaction, not one per message: SQLite wrote
        the pages each delivery touches to its WAL once per message (issue 18)."""
        ...
    async def has_delivery(self, account_id: str, delivery_key: str) -> bool: ...
    async def list_emails(
        self, account_id: str, mailbox: str | None = None, limit: int = 100
    ) -> list[EmailRecord]: ...
    async def get_email(self, account_id: str, email_id: str) -> EmailRecord: ...
    async def changes_since(self, account_id: str, modseq: int) -> list[Change]: ...

    # mailboxes as labels: the operations IMAP, JMAP and the web share
    async def create_mailbox(self, account_id: str, name: str,
                             role: str | None = None) -> Mailbox: ...
    async def delete_mailbox(self, account_id: str, mailbox_id: str, *,
                             remove_emails: bool = False) -> list[str]:
        """Deletes the mailbox; its emails stay (All Mail holds them), except with
        `remove_emails` those in no other mailbox but All Mail, which are destroyed in the
        same transaction. Returns the ids destroyed."""
        ...
    async def rename_mailbox(self, account_id: str, mailbox_id: str, name: str) -> None:
        """Renames the mailbox and every mailbox below it (name + "/")."""
        ...
    async def put_object(self, account_id: str, kind: str, object_id: str,
                         data: dict[str, Any], *, log: bool = True) -> int:
        """Create or replace; returns the account's new modseq. With log=False the change is
        not in the change log (objects no client syncs, such as tokens and uploads)."""
        ...
    async def get_objects(self, account_id: str, kind: str,
                          ids: Sequence[str] | None = None) -> list[StoredObject]:
        """The objects of `kind` (those of `ids` that exist, or all), in id order."""
        ...
    async def delete_object(self, account_id: str, kind: str, object_id: str, *,
                            log: bool = True) -> int:
        """Raises NotFound when there is no such object."""
        ...
    async def set_subscribed(self, account_id: str, mailbox_id: str, subscribed: bool
                             ) -> None: ...
    async def snapshot(self, account_id: str, mailbox_id: str) -> MailboxSnapshot: ...
    async def mailbox_delta(self, account_id: str, mailbox_id: str, since: int
                            ) -> MailboxDelta: ...
    async def get_emails(self, account_id: str, email_ids: Sequence[str], *,
                         brief: bool = False) -> list[EmailRecord]:
        """`brief` leaves out the IMAP structures and the part tree (for search and sort)."""
        ...
    async def get_heads(self, account_id: str, email_ids: Sequence[str]) -> list[EmailHead]:
        """Header blocks without the rest of the record; unknown ids are left out."""
        ...
    async def query_emails(self, account_id: str, node: Node, *,
                           among: Sequence[str] | None = None, order: Order = "newest",
                           limit: int | None = None, position: int = 0,
                           total: bool = False, sort: Sequence[SortKey] = (),
                           collapse_threads: bool = False) -> Hits:
        """Emails matching a core.query tree without Text nodes (keywords, mailboxes by id,
        dates, sizes, attachments, Message-ID, headers, thread keywords), from the store's own
        columns, newest (or oldest) first; restricted to `among` when given. A `sort` (JMAP's,
        core.emailsort) replaces `order`, ties newest first; `collapse_threads` keeps the
        first email of each thread in that order (the total counts those)."""
        ...
    async def thread_emails(self, account_id: str,
                            thread_ids: Sequence[str]) -> dict[str, list[str]]:
        """Thread id -> its email ids, oldest first; unknown threads are left out."""
        ...
    async def email_ids(self, account_id: str, *, after: str = "",
                        limit: int = 1000) -> list[str]:
        """Every email of the account in id order, a page at a time (for reindexing)."""
        ...
    async def set_keywords(self, account_id: str, email_ids: Sequence[str], *,
                           add: Sequence[str] = (), remove: Sequence[str] = (),
                           replace: Sequence[str] | None = None,
                           unchanged_since: int | None = None) -> KeywordUpdate: ...
    async def add_to_mailbox(self, account_id: str, email_ids: Sequence[str],
                             mailbox_id: str, *, fresh_only: bool = False,
                             source_id: str | None = None) -> dict[str, int]:
        """Label the emails (IMAP COPY); returns email id -> UID in the target. An email
        already there keeps its UID; with `fresh_only` it is left out of the answer (seen
        inside the transaction: IMAP COPY must then make a copy, not name an old UID). With
        `source_id`, an email no longer in that mailbox is left alone (another session
        expunged it: copied now, it would come back to a mailbox under a new UID)."""
        ...
    async def remove_from_mailbox(self, account_id: str, mailbox_id: str,
                                  email_ids: Sequence[str], *,
                                  if_keyword: str | None = None) -> list[int]:
        """Take the label off (IMAP EXPUNGE); returns the expunged UIDs. Removing from the
        "all" or "trash" mailbox an email with no other label destroys it. `if_keyword`:
        only the emails that carry it inside the same transaction (EXPUNGE removes what is
        \\Deleted now, not what was when the session last looked: another session may have
        taken the flag off meanwhile)."""
        ...
    async def expunge(self, account_id: str, mailbox_id: str, email_ids: Sequence[str], *,
                      if_keyword: str | None = None, orphans: bool = False) -> Expunged:
        """remove_from_mailbox, answering the emails destroyed as well as the UIDs; with
        `orphans`, an email left in no mailbox but All Mail is destroyed whatever the
        mailbox's role (POP3 DELE in expunge mode)."""
        ...
    async def destroy_emails(self, account_id: str, email_ids: Sequence[str]) -> list[str]:
        """Destroy the emails (out of every mailbox, off the quota) in one transaction and
        one MODSEQ; unknown ids are skipped. Returns the ids destroyed."""
        ...
    async def move(self, account_id: str, email_ids: Sequence[str], source_id: str,
                   target_id: str, *, fresh_only: bool = False) -> dict[str, tuple[int, int]]:
        """In one transaction: email id -> (old UID in source, new UID in target). With
        `fresh_only`, an email the target (another mailbox) already holds is not moved and
        is left out of the answer (see add_to_mailbox)."""
        ...


class Maintenance(Protocol):
    """What `mailyard fsck --repair` and `mailyard gc` need of a MailStore beyond the MailStore
    port, implemented by every engine (store/*/maintenance.py). The engine only reads and
    writes rows: what a counter should be is decided once, in services/fsck.py, from what the
    MailStore port reads, so no engine can count by a rule of its own."""

    async def blob_refs(self, account_id: str,
                        email_ids: Sequence[str]) -> dict[str, list[str]]:
        """Email id -> the attachment blob ids its row records (what `mailyard gc` keeps);
        unknown ids are left out."""
        ...

    async def set_blob_refs(self, account_id: str, email_id: str, refs: Sequence[str]) -> None:
        """Replace the references the email's row records; NotFound when there is no such
        email."""
        ...

    async def set_counters(self, account_id: str, *, modseq: int, used: int,
                           mailboxes: Sequence[MailboxCounters]) -> bool:
        """Compare-and-set: when the account's MODSEQ is still `modseq` (no write has changed
        it since the numbers were counted: every write that moves a counter takes a MODSEQ),
        set its quota usage to `used` and the given mailboxes' counters, in one transaction,
        and return True. The mailboxes written get a new MODSEQ and a "Mailbox updated" change
        (JMAP clients cache the counts by state). False, writing nothing, when the account
        changed meanwhile; NotFound when it is gone."""
        ...


class MaintainedMailStore(MailStore, Maintenance, Protocol):
    """A MailStore that can be checked and repaired: every engine's."""

    def close(self) -> None: ...
