"""The narrow transactional port the mail model (mailyard/model) decides over: the
primitives an engine implements, with no rule of mail in them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mailyard.core.emailsort import SortKey
    from mailyard.store.ports.records import (
        Account,
        DeliveryResult,
        DKIMKeyRecord,
        Mailbox,
        MailboxCounters,
        MailboxEntry,
        NewEmail,
    )
    from mailyard.store.ports.search import Order


@dataclass(frozen=True, slots=True)
class EmailFlags:
    """What the mail model reads of a stored email (keywords, labels, destroy)."""

    keywords: Sequence[str]
    modseq: int
    size: int = 0
    received_at: int = 0


@dataclass(frozen=True, slots=True)
class CountChange:
    """How a mailbox's counters move (total messages, unread, octets): the model decides,
    the engine adds."""

    total: int
    unread: int
    size: int


@dataclass(frozen=True, slots=True)
class RemovedEmail:
    """What a destroyed email's row held that the model still needs."""

    size: int
    thread_id: str


class MailReader(Protocol):
    """One consistent read of one account's rows (SQLite: its reading connection;
    PostgreSQL: one REPEATABLE READ snapshot), for the model's read rules
    (mailyard/model/views.py). Every MailTx can read this way too."""

    account_id: str

    async def mailbox(self, mailbox_id: str) -> Mailbox:
        """NotFound when the account has no such mailbox."""
        ...

    async def entries(self, mailbox_id: str, *, changed_since: int | None = None
                      ) -> list[MailboxEntry]:
        """The mailbox's emails by ascending UID: all, or those whose MODSEQ is above
        `changed_since` (read from the account's recent changes, not a walk of the
        mailbox)."""
        ...

    async def vanished(self, mailbox_id: str, since: int) -> list[int]:
        """The UIDs that left the mailbox at a MODSEQ above `since`, ascending."""
        ...


KeyRow = tuple[Any, ...]
"""One match of a query as the model orders it: (email id, thread id, received time, then one
stored value per SortKey: the subject, the first From/To address's name or else its email,
the sentAt (None when no Date), a number, or a keyword test)."""


class EmailQuery(Protocol):
    """One account's emails that match one query (a core.query tree without Text nodes, and
    among the given ids when the query has them), read at one moment: the narrow reads the
    model's query plan (mailyard/model/query.py) picks from. The engine compiles the
    condition and reads by its indexes; which read answers a request, the order of ties,
    collations and pages are the model's."""

    orders_among: bool
    """Whether `page` and `count` answer a query with ids too (one statement over them);
    when not, the model asks only `rows` of such a query and orders them itself."""

    async def page(self, sort: Sequence[SortKey], *, then: Order, collapse: bool,
                   limit: int | None, position: int) -> list[str]:
        """The ids ordered by `sort` (numbers and keyword tests only), ties by arrival
        (received time, then id) `then`; with `collapse`, the first of each thread in that
        order; `limit` of them (all when None) from `position`."""
        ...

    async def count(self, *, threads: bool) -> int:
        """How many match (how many threads have a match, with `threads`)."""
        ...

    async def rows(self, sort: Sequence[SortKey]) -> list[KeyRow]:
        """Every match as a KeyRow for `sort`: newest first when the query has no ids to
        look among (the arrival index's order), in any order when it has."""
        ...

    async def threads(self, take: Callable[[str, str], bool]) -> None:
        """(email id, thread id) of the matches, newest first, handed to `take` until it
        answers False or they run out."""
        ...


class MailTx(MailReader, Protocol):
    """One write transaction on one account's rows: the narrow port the mail model
    (mailyard/model) decides over. Every method is a primitive of the engine's tables, with
    no rule of mail in it; the model says what to read and write and when. An engine opens
    the transaction, hands this to a model function, and commits when it returns (rolls
    back when it raises).

    Writers of one account are serialised (SQLite: the one writer; PostgreSQL: the
    account's row lock, taken by `lock_account` or `next_modseq` and held to the commit), so
    MODSEQs are handed out in commit order."""

    account_id: str

    async def lock_account(self) -> None:
        """Hold the account against other writers until the commit; NotFound when it is gone
        (deleted, or moved to another shard while this waited)."""
        ...

    async def next_modseq(self) -> int:
        """The account's next MODSEQ (one step), for every change of this transaction."""
        ...

    def log(self, modseq: int, kind: str, object_id: str, op: str) -> None:
        """Append to the change log: `kind` ("Email", "Mailbox", "Thread") `object_id` was
        `op` ("created", "updated", "destroyed") at `modseq`. The last op of the same
        (modseq, kind, object) wins."""
        ...

    async def email_flags(self, email_ids: Sequence[str]) -> dict[str, EmailFlags]:
        """The account's emails among `email_ids` (unknown ids left out)."""
        ...

    async def write_keywords(self, email_id: str, keywords: Sequence[str]) -> None: ...

    async def add_unread(self, email_id: str, change: int) -> None:
        """Add `change` to the unread counter of every mailbox holding the email."""
        ...

    async def stamp_email(self, email_id: str, modseq: int) -> None:
        """Set the MODSEQ of the email and of every mailbox holding it."""
        ...

    async def mailboxes_by_role(self, roles: Sequence[str]) -> dict[str, str]:
        """Role -> the account's mailbox id, for those of `roles` it has."""
        ...

    async def uids(self, mailbox_id: str, email_ids: Sequence[str]) -> dict[str, int]:
        """The UID of each of `email_ids` the mailbox holds (the others left out)."""
        ...

    async def holders(self, email_id: str) -> dict[str, str | None]:
        """Every mailbox holding the email: mailbox id -> its role."""
        ...

    async def insert_label(self, mailbox_id: str, email_id: str, modseq: int,
                           received_at: int, counts: CountChange) -> int | None:
        """Put the email in the mailbox under the mailbox's next UID (returned), add `counts`
        to the mailbox's counters and give it `modseq`; None when there is no such mailbox."""
        ...

    async def delete_label(self, mailbox_id: str, email_id: str, modseq: int,
                           counts: CountChange) -> int | None:
        """Take the email out of the mailbox, remember its UID as vanished at `modseq`
        (QRESYNC), add `counts` to the mailbox's counters and give it `modseq`; the UID, or
        None (and nothing written) when the mailbox did not hold the email."""
        ...

    async def delete_email(self, email_id: str) -> RemovedEmail | None:
        """Delete the email's row (its blobs stay, for `mailyard gc`); None when gone."""
        ...

    async def release_quota(self, size: int) -> None:
        """Take `size` octets off the account's usage (never below 0)."""
        ...

    async def thread_exists(self, thread_id: str) -> bool:
        """Whether any email of the account is still in the thread."""
        ...

    async def delete_thread_keys(self, thread_id: str) -> None:
        """Forget the Message-IDs that led to the thread (it has no email left)."""
        ...


class DeliveryTx(MailTx, Protocol):
    """The primitives a delivery needs beyond MailTx (mailyard/model/delivery.py)."""

    async def lock_usage(self) -> tuple[int, int] | None:
        """Hold the account against other writers until the commit, as lock_account; its
        (quota, used) octets, or None when there is no such account."""
        ...

    async def find_delivery(self, delivery_key: str) -> DeliveryResult | None:
        """The account's email stored under this delivery key (created False)."""
        ...

    async def find_same_content(self, message_id: str, content_sha256: str
                                ) -> DeliveryResult | None:
        """An email of the account with this Message-ID and content (created False)."""
        ...

    async def add_usage(self, size: int) -> None: ...

    async def threads_of_keys(self, keys: Sequence[str]) -> set[str]:
        """The threads any of these Message-ID keys lead to."""
        ...

    async def latest_thread_by_subject(self, thread_subject: str, after: int) -> str | None:
        """The thread of the latest email with this base subject received after `after`."""
        ...

    async def merge_thread(self, source: str, target: str, modseq: int) -> list[str]:
        """Move the emails (they take `modseq`) and the keys of thread `source` to `target`;
        the ids of the emails moved."""
        ...

    async def put_thread_keys(self, keys: Sequence[str], thread_id: str) -> None:
        """Let these keys lead to the thread (replacing where they led before)."""
        ...

    async def insert_email(self, email: NewEmail, thread_id: str, modseq: int) -> None:
        """Write the email's row as given (its keywords already as stored_keywords makes
        them)."""
        ...


class MailboxTx(MailTx, Protocol):
    """The primitives of mailbox writes beyond MailTx (mailyard/model/mailboxes.py)."""

    async def mailbox_named(self, name: str) -> str | None:
        """The id of the account's mailbox of that exact name."""
        ...

    async def new_uidvalidity(self) -> int:
        """A UIDVALIDITY the account never gave before (core.ids.next_uidvalidity)."""
        ...

    async def insert_mailboxes(self, rows: Sequence[tuple[str, str, str | None]],
                               uidvalidity: int, modseq: int) -> None:
        """New mailboxes (id, name, role), empty, all with this UIDVALIDITY and MODSEQ."""
        ...

    async def mailboxes_below(self, prefix: str) -> list[tuple[str, str]]:
        """(id, name) of the account's mailboxes whose name starts with `prefix`."""
        ...

    async def rename_mailboxes(self, names: dict[str, str], modseq: int) -> None:
        """Mailbox id -> its new name, all at once; each takes `modseq`."""
        ...

    async def write_subscribed(self, mailbox_id: str, subscribed: bool) -> None: ...

    async def mailbox_email_ids(self, mailbox_id: str) -> list[str]: ...

    async def delete_mailbox(self, mailbox_id: str) -> None:
        """Delete the mailbox's row and its memberships (the emails stay)."""
        ...


class AccountTx(Protocol):
    """One write transaction on the accounts table (mailyard/model/accounts.py): accounts by
    normalised address, and the MailboxTx of one account for what a new account holds."""

    async def insert_account(self, account_id: str, address: str, password_hash: str,
                             quota: int, created_at: float) -> bool:
        """A new account row (nothing used, MODSEQ 0); False (and nothing written) when the
        address is taken."""
        ...

    async def account_id(self, address: str) -> str | None: ...

    async def account(self, account_id: str) -> Account: ...

    async def update_account(self, account_id: str, *, password_hash: str | None = None,
                             quota: int | None = None) -> None:
        """Write the fields given."""
        ...

    async def delete_account(self, account_id: str) -> None:
        """Delete the account's rows in every table (the engine's cascades or not), waiting
        for its other writers first."""
        ...

    def mail(self, account_id: str) -> MailboxTx:
        """The account's mail primitives inside this transaction."""
        ...


class DomainTx(Protocol):
    """One write transaction on the installation's domains and DKIM keys
    (mailyard/model/domains.py); names come as the model stores them."""

    async def insert_domain(self, name: str, created_at: float) -> bool:
        """A new domain row; False (and nothing written) when the name is taken."""
        ...

    async def delete_domain(self, name: str) -> bool:
        """Whether there was such a domain (now deleted)."""
        ...

    async def insert_dkim_key(self, key: DKIMKeyRecord) -> bool:
        """A new key row as given; False (and nothing written) when the domain has the
        selector."""
        ...

    async def retire_dkim_key(self, domain: str, selector: str) -> bool:
        """Mark the key inactive; whether the domain has that selector."""
        ...


class CounterTx(MailTx, Protocol):
    """The primitives of a counter repair beyond MailTx (mailyard/model/maintenance.py)."""

    async def current_modseq(self) -> int:
        """The account's MODSEQ, holding the account against other writers as lock_account
        does; NotFound when it is gone."""
        ...

    async def write_usage(self, used: int) -> None: ...

    async def write_counters(self, mailboxes: Sequence[MailboxCounters], modseq: int
                             ) -> list[str]:
        """Set each mailbox's total, unseen and octets, raise its UIDNEXT to at least the one
        given, and give it `modseq`; the ids of the account's mailboxes written."""
        ...


class ObjectTx(MailTx, Protocol):
    """The primitives of account objects beyond MailTx (mailyard/model/objects.py)."""

    async def upsert_object(self, kind: str, object_id: str, data: dict[str, Any],
                            modseq: int) -> bool:
        """Create or replace the object's row with `modseq`; whether it existed."""
        ...

    async def delete_object(self, kind: str, object_id: str) -> bool:
        """Delete the object's row; whether there was one."""
        ...


class StoreTx(DeliveryTx, MailboxTx, CounterTx, ObjectTx, Protocol):
    """Every primitive of one account's write transaction: what an engine's MailTx offers,
    for each model function (mailyard/model/writes.py runs them all on it)."""
