"""The storage ports: what the services need from an engine, and nothing about how.

Each port is a `typing.Protocol`; every adapter (sqlite/, fs/, local/ embedded; postgres/, s3/,
nats/, redis/ scaled out) passes the same contract suite in tests/contract, so the modes cannot
drift apart. Every method is async: engines are I/O, and callers live on an event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mailyard.core.emailsort import SortKey

if TYPE_CHECKING:
    from mailyard.core.query import Node
    from mailyard.core.spam import Counts


class StoreError(Exception):
    """Base of the errors a port may raise on purpose."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    """A uniqueness rule would be broken (an address or a domain that already exists)."""


class QuotaExceeded(StoreError):
    """Storing this would take the account over its quota."""


class QueryTimeout(StoreError):
    """A read ran past its time budget and was cancelled (a search over a huge mailbox): the
    protocols answer it with their own "too much" error (IMAP NO [LIMIT], JMAP
    serverUnavailable)."""


# --------------------------------------------------------------------------- BlobStore


class BlobStore(Protocol):
    """Immutable byte objects by id: raw spooled messages, message bodies (skeletons) as
    ``bodies/YYYY/MM/DD/<sha256>`` by the day received, attachments and uploads by SHA-256; the
    id forms and why are in core/blobkeys.py, and no other form is accepted.

    `put` returns only once the object is durable (fsync'd / acknowledged by the engine); writing
    the same id twice is harmless, which is what makes pipeline steps safe to repeat.
    """

    async def put(self, blob_id: str, data: bytes) -> None: ...

    async def put_many(self, items: dict[str, bytes]) -> None: ...

    async def get(self, blob_id: str) -> bytes: ...

    async def exists(self, blob_id: str) -> bool: ...

    async def delete(self, blob_id: str) -> None: ...

    async def usage(self) -> int:
        """Bytes held by all objects together."""
        ...

    async def inventory(self) -> list[BlobInfo]:
        """Every object held, with its size and when it was written (for `mailyard gc`,
        which must leave alone what an in-flight delivery wrote a moment ago)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BlobInfo:
    blob_id: str
    size: int
    written_at: float
    """Seconds since the epoch."""


# --------------------------------------------------------------------------- Queue


@dataclass(slots=True)
class QueueItem:
    id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    lease_token: str = ""
    last_error: str | None = None
    created_at: float = 0.0


@dataclass(slots=True)
class NewItem:
    """One item of an atomic `enqueue_many`."""

    kind: str
    payload: dict[str, Any]
    item_id: str | None = None
    delay: float = 0.0


@dataclass(slots=True)
class PendingItem:
    """An item waiting in the queue (for `mailyard queue list` and the owner of a held send)."""

    id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    available_at: float
    leased: bool
    last_error: str | None
    created_at: float


@dataclass(slots=True)
class DeadLetter:
    id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    error: str
    created_at: float
    died_at: float


@dataclass(slots=True)
class QueueStats:
    ready: int = 0
    leased: int = 0
    delayed: int = 0
    dead: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Queue(Protocol):
    """Durable work items with leases, attempts and a dead-letter queue (at-least-once).

    A leased item is invisible to other workers until its lease runs out; a worker that dies
    simply lets it run out and another takes the item. `ack` and `fail` carry the lease token so a
    worker that lost its lease cannot disturb the worker that took it over.
    """

    async def enqueue(
        self, kind: str, payload: dict[str, Any], *, item_id: str | None = None,
        delay: float = 0.0,
    ) -> str: ...

    async def enqueue_many(self, items: Sequence[NewItem]) -> list[str]:
        """All or none: a submission's local and per-domain items appear together, so a
        crash can never deliver to some recipients of a message the client saw refused."""
        ...

    async def lease(
        self, kinds: Sequence[str], limit: int, lease_seconds: float
    ) -> list[QueueItem]: ...

    async def ack(self, item: QueueItem) -> bool: ...

    async def retry(self, item: QueueItem, error: str, delay: float, *,
                    payload: dict[str, Any] | None = None) -> bool:
        """Release the item until `delay` has passed; `payload` replaces its payload (the
        recipients still to do, say)."""
        ...

    async def bury(self, item: QueueItem, error: str, *,
                   payload: dict[str, Any] | None = None) -> bool:
        """Move the item to the dead-letter queue (with `payload` instead of its own)."""
        ...

    async def pending(self, kinds: Sequence[str] = (), *, prefix: str = "",
                      limit: int = 1000) -> list[PendingItem]:
        """Items not yet done, oldest first; only `kinds` (all when empty), only ids that
        start with `prefix`."""
        ...

    async def cancel(self, item_id: str) -> bool:
        """Delete a waiting item; False if a worker holds it now (it is being sent)."""
        ...

    async def stats(self) -> QueueStats: ...

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    async def dead_letter(self, item_id: str) -> DeadLetter: ...

    async def revive(self, item_id: str | None = None) -> int:
        """Put one dead letter (or all when None) back in the queue with a fresh retry budget."""
        ...

    async def drop(self, item_id: str) -> None: ...

    async def release(self, item_id: str, items: Sequence[NewItem]) -> None:
        """Replace a dead letter by `items` (held spam an admin releases, turned into the
        sends it would have been): NotFound when there is no such dead letter, so a second release
        does nothing. The items' ids are the caller's (derived from the letter's), so a
        release repeated after a crash queues each once."""
        ...

    async def expire_dead(self, before: float) -> int:
        """Delete the dead letters that died before `before` (epoch seconds): the retention
        `mailyard gc` applies (`[queue] dead_letter_days`). How many went."""
        ...

    async def release_leases(self) -> int:
        """Make every leased item available now: at start-up, when no worker of a previous run
        can still hold one (the previous process is gone), so they need not wait out a lease."""
        ...

    async def wait(self, timeout: float) -> None:
        """Return when new work may be available, or after `timeout` seconds."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- MailStore


@dataclass(slots=True)
class DKIMKeyRecord:
    """A domain's DKIM signing key as stored (shared by every node that sends)."""

    domain: str
    selector: str
    algorithm: str
    private_key: bytes
    created_at: float = 0.0
    active: bool = True


@dataclass(slots=True)
class Account:
    id: str
    address: str
    password_hash: str
    quota: int
    used: int
    modseq: int


@dataclass(slots=True)
class Mailbox:
    id: str
    account_id: str
    name: str
    role: str | None
    uidvalidity: int
    uidnext: int
    total: int = 0
    unread: int = 0
    subscribed: bool = True
    highest_modseq: int = 0
    size: int = 0
    """Sum of the sizes of the emails in it (IMAP STATUS=SIZE)."""


@dataclass(slots=True)
class NewEmail:
    """Everything the pipeline computed for one delivery, written in one transaction."""

    account_id: str
    email_id: str
    delivery_key: str
    """Makes a redelivery of the same queue item to the same account a no-op."""
    content_sha256: str
    """Hash of the message as the client sent it (before our trace headers): with message_id,
    it recognises the same message arriving twice."""
    blob_id: str
    size: int
    received_at: int
    sent_at: int | None
    message_id: str | None
    in_reply_to: list[str]
    references: list[str]
    subject: str
    thread_subject: str
    from_: list[dict[str, str]]
    to: list[dict[str, str]]
    cc: list[dict[str, str]]
    bcc: list[dict[str, str]]
    reply_to: list[dict[str, str]]
    sender: list[dict[str, str]]
    preview: str
    has_attachment: bool
    attachments: list[dict[str, Any]]
    envelope: bytes
    bodystructure: bytes
    body: bytes
    parts: dict[str, Any]
    mailbox_roles: list[str]
    """Where the email goes by role ("inbox"); every email is also in the "all" mailbox."""
    keywords: list[str] = field(default_factory=list)
    blob_refs: list[str] = field(default_factory=list)
    mailbox_ids: list[str] = field(default_factory=list)
    """Where the email goes by id (IMAP APPEND, JMAP Email/import), besides the roles."""
    head: bytes = b""
    """The top-level header block as received (through the empty line): kept beside the
    metadata, like Dovecot's cache, so the header FETCH every client runs on a mailbox opens
    no blob."""
    same_content_is_same_email: bool = True
    """Whether a stored email of the account with the same Message-ID and content is this
    message arriving again (SMTP: a sender's retry after a lost 250). False for a client's
    explicit APPEND, COPY or import of a copy: it asked for a new message (RFC 3501 §6.3.11),
    and answering with the old one hands back its flags and UID."""

    def __post_init__(self) -> None:
        # Text as every engine stores it (stored_text), once here for every field a parsed
        # message fills from its headers.
        self.keywords = stored_keywords(self.keywords)
        self.delivery_key = stored_text(self.delivery_key)
        self.message_id = stored_text_opt(self.message_id)
        self.in_reply_to = [stored_text(k) for k in self.in_reply_to]
        self.references = [stored_text(k) for k in self.references]
        self.subject = stored_text(self.subject)
        self.thread_subject = stored_text(self.thread_subject)
        self.preview = stored_text(self.preview)
        self.from_, self.to, self.cc, self.bcc, self.reply_to, self.sender = (
            [_stored_values(a) for a in addresses] for addresses in
            (self.from_, self.to, self.cc, self.bcc, self.reply_to, self.sender))
        self.attachments = [_stored_values(a) for a in self.attachments]


def stored_text(value: str) -> str:
    """Text as every engine stores it: no NUL (which PostgreSQL's text refuses) and no lone
    surrogate (which is not UTF-8, so no engine can encode it). Parsed mail can carry either
    in an encoded word, a client in a name; a NUL becomes U+FFFD, a surrogate '?'. The mail
    model and NewEmail apply it to what they write, so SQLite and PostgreSQL store the same;
    PostgreSQL's adapter applies it as well to every text it is asked to look up."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def stored_text_opt(value: str | None) -> str | None:
    return None if value is None else stored_text(value)


def _stored_values(item: dict[str, Any]) -> dict[str, Any]:
    return {k: stored_text(v) if isinstance(v, str) else v for k, v in item.items()}


def stored_keywords(keywords: Iterable[str]) -> list[str]:
    """Keywords as every engine stores them: lowercase (IMAP and JMAP keywords are
    case-insensitive, RFC 3501 §2.3.2, RFC 8621 §4.1.1), each once, in the order given, as
    stored_text makes them, so that SQLite and PostgreSQL keep the same list for the same
    delivery."""
    return list(dict.fromkeys(stored_text(k.lower()) for k in keywords))


@dataclass(slots=True)
class DeliveryResult:
    email_id: str
    thread_id: str
    created: bool
    """False when the delivery key or (message-id, content) was already there."""
    modseq: int
    uids: dict[str, int] = field(default_factory=dict)
    """Mailbox id -> the UID the email got there, as written in the same transaction (empty
    when not created): read back later, a concurrent EXPUNGE may already have taken it."""


@dataclass(slots=True)
class EmailRecord:
    id: str
    account_id: str
    thread_id: str
    blob_id: str
    size: int
    received_at: int
    sent_at: int | None
    message_id: str | None
    subject: str
    from_: list[dict[str, str]]
    to: list[dict[str, str]]
    cc: list[dict[str, str]]
    preview: str
    has_attachment: bool
    attachments: list[dict[str, Any]]
    keywords: list[str]
    mailboxes: dict[str, int]
    """Mailbox name -> this email's UID in that mailbox."""
    in_reply_to: list[str]
    references: list[str]
    envelope: bytes
    bodystructure: bytes
    modseq: int
    body: bytes = b""
    """IMAP BODY (the non-extensible BODYSTRUCTURE)."""
    parts: dict[str, Any] = field(default_factory=dict)
    """The MIME part tree with byte offsets (core.mime.Part.to_json)."""


@dataclass(slots=True)
class EmailHead:
    """What an IMAP message-list FETCH reads: the header block and a few numbers."""

    id: str
    thread_id: str
    size: int
    received_at: int
    modseq: int
    head: bytes


@dataclass(slots=True)
class MailboxEntry:
    """One email as one mailbox sees it: the row of an IMAP session's UID map."""

    uid: int
    email_id: str
    keywords: list[str]
    modseq: int


@dataclass(slots=True)
class MailboxSnapshot:
    mailbox: Mailbox
    entries: list[MailboxEntry]
    """Ordered by UID: position + 1 is the IMAP message sequence number."""


@dataclass(slots=True)
class MailboxDelta:
    """What changed in a mailbox after a modseq: for IMAP QRESYNC and session updates."""

    highest_modseq: int
    changed: list[MailboxEntry]
    vanished: list[int]
    """UIDs expunged after the modseq."""


@dataclass(slots=True)
class KeywordUpdate:
    updated: list[tuple[str, list[str], int]]
    """(email_id, keywords, modseq) of each email whose keywords were written."""
    conflicts: list[str]
    """Emails left alone because they changed after UNCHANGEDSINCE."""


@dataclass(slots=True)
class Expunged:
    uids: list[int]
    """The UIDs taken out of the mailbox, ascending."""
    destroyed: list[str]
    """The emails destroyed by it (they left the search index's concern too)."""


@dataclass(slots=True)
class Change:
    modseq: int
    kind: str
    object_id: str
    op: str


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A small per-account object with no table of its own (JMAP Identity, EmailSubmission,
    VacationResponse, API tokens, uploads): JSON data under (kind, id), changed through the
    account's change log like everything else, so JMAP states and /changes cover it."""

    kind: str
    id: str
    data: dict[str, Any]
    modseq: int


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
    async def thread_counts(self, account_id: str) -> dict[str, tuple[int, int]]:
        """Mailbox id -> (its threads: distinct thread ids among its emails, RFC 8621 §2
        totalThreads; those of them with an email in it that lacks $seen), for every
        mailbox holding an email; one grouped read, not a query per mailbox."""
        ...
    async def deliver(self, email: NewEmail) -> DeliveryResult: ...
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


# --------------------------------------------------------------------------- MailTx


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

    async def mailbox_role(self, mailbox_id: str) -> str | None:
        """The account's mailbox's role (None: it has none); NotFound when there is no such
        mailbox."""
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

    async def mailboxes_by_role(self, roles: Sequence[str]) -> dict[str, str]:
        """Role -> the account's mailbox id, for those of `roles` it has."""
        ...


class MailboxTx(MailTx, Protocol):
    """The primitives of mailbox writes beyond MailTx (mailyard/model/mailboxes.py)."""

    async def mailbox_named(self, name: str) -> str | None:
        """The id of the account's mailbox of that exact name."""
        ...

    async def role_taken(self, role: str) -> bool: ...

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


# --------------------------------------------------------------------------- SearchIndex


@dataclass(slots=True)
class IndexDocument:
    """The searchable text of one email in one account (core.indextext.IndexText)."""

    account_id: str
    email_id: str
    received_at: int
    """Milliseconds; the index keeps documents in this order so "newest first" is a scan."""
    subject: str = ""
    from_: str = ""
    to: str = ""
    cc: str = ""
    bcc: str = ""
    body: str = ""
    filenames: str = ""
    attachment_text: str = ""
    list_id: str = ""
    part_headers: str = ""
    """MIME part headers (core.indextext.IndexText.part_headers): for IMAP BODY/TEXT only."""


@dataclass(slots=True)
class Hits:
    """One page of a query's answer: email ids in order, and the total when it was asked for."""

    ids: list[str]
    total: int | None = None


@dataclass(slots=True)
class Snippet:
    """JMAP SearchSnippet: HTML-escaped text with the matched terms in <mark></mark>."""

    email_id: str
    subject: str | None
    preview: str | None


Order = Literal["newest", "oldest", "relevance"]


class SearchIndex(Protocol):
    """Full text of subject, addresses, body text, attachment names and attachment text.

    Queries are trees of core.query nodes made only of Text, And, Or and Not (the text half of
    a search; the mail store answers the rest). Every call is scoped to one account.
    """

    async def index(self, documents: Sequence[IndexDocument]) -> None:
        """Add documents; one already indexed for (account, email) is replaced."""
        ...

    async def query(self, account_id: str, node: Node, *, among: Sequence[str] | None = None,
                    order: Order = "newest", limit: int | None = None, position: int = 0,
                    total: bool = False,
                    received: tuple[int | None, int | None] = (None, None),
                    outside: Iterable[str] = ()) -> Hits:
        """Emails matching `node` (restricted to `among` when given), in `order`; `received`
        narrows to arrival times (ms) in [low, high) when the caller knows such bounds.
        The emails of `outside` are left out of the page and the count: Gmail's Spam and
        Trash, so that a count of a scoped word query is one read of the word's matches."""
        ...

    async def snippets(self, account_id: str, node: Node,
                       email_ids: Sequence[str]) -> list[Snippet]: ...

    async def substring(self, account_id: str, field: str | None,
                        needle: str) -> set[str] | None:
        """Emails whose field ("subject", "addresses", "body"; None for all) contains `needle`,
        case-insensitively (IMAP's SEARCH semantics); None when the index cannot answer (too
        short a needle), and the caller must look at the messages themselves."""
        ...

    async def delete(self, account_id: str, email_ids: Sequence[str]) -> None: ...

    async def clear(self, account_id: str) -> None:
        """Forget every document of the account (before a reindex)."""
        ...

    async def count(self, account_id: str) -> int: ...

    async def indexed_ids(self, account_id: str) -> set[str]:
        """The email ids the account has documents for (`mailyard fsck` compares them with
        the stored emails: a missing document is a message search cannot find)."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- EventBus


class EventBus(Protocol):
    """Fan-out of "account X changed to state S" to IDLE, push and the web."""

    async def publish(self, account_id: str, state: int) -> None: ...

    def subscribe(self, account_id: str) -> Subscription:
        """Registered when this returns: nothing published afterwards is missed."""
        ...

    def subscribe_all(self, group: str) -> ChangeFeed:
        """Every account's changes, each handed to one subscriber of `group` in the whole
        cluster (one per node would make every node do the work once more): work that must
        happen once per change, as a Web Push request does."""
        ...


class ChangeFeed(Protocol):
    """(account id, state) pairs; a busy reader gets the newest state of each account."""

    def __aiter__(self) -> AsyncIterator[tuple[str, int]]: ...

    async def __anext__(self) -> tuple[str, int]: ...

    def cancel(self) -> None: ...


class NodeEventBus(EventBus, Protocol):
    """An EventBus as the server's processes on one node hold it: the listener process is the
    hub (`listen` on the node's socket, which also proves no other server runs on this
    data_dir), the others `relay_to` it, and the hub forwards to each `add_peer`. A bus that
    already reaches every process (NATS) takes these as no-ops beyond its own checks."""

    async def listen(self, address: str) -> None: ...

    def relay_to(self, address: str) -> None: ...

    def add_peer(self, address: str) -> None: ...

    def close(self) -> None: ...


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[int]: ...

    async def __anext__(self) -> int: ...

    def drain(self) -> bool: ...

    def cancel(self) -> None: ...

    async def aclose(self) -> None: ...


# --------------------------------------------------------------------------- Counters


class Counters(Protocol):
    """Events counted in a sliding window per key, shared by every process that opens the same
    store (DESIGN: rate limits; one SQLite file per node, Redis in a cluster)."""

    async def hit(self, key: str, window: float, now: float) -> int:
        """Record one event for `key` at `now`; the events in (now - window, now] after it."""
        ...

    async def count(self, key: str, window: float, now: float) -> int:
        """The events of `key` in (now - window, now], recording none."""
        ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- SpamModel


class SpamModel(Protocol):
    """What the content classifier learns: token counts of the global model (model "") and of
    each account (model = account id), the senders each account said are not spam, and the
    reports of many users against one sender or one content (collaborative filtering).

    Tokens are the signed 64-bit ids of core.spam. `learn` is idempotent per (account, message):
    the same lesson twice changes nothing, and the opposite lesson first takes the earlier one
    back, so a user who moves a mail into Junk and out again leaves the model as a single ham
    lesson would, whatever the protocol retried.
    """

    async def counts(self, model: str, tokens: Sequence[int]) -> Counts:
        """The model's totals and the counts of those of `tokens` it has seen."""
        ...

    async def totals(self, model: str) -> tuple[float, float]:
        """(spam, ham) messages the model has learnt."""
        ...

    async def learn(self, account_id: str, message_key: str, tokens: Sequence[int],
                    is_spam: bool, *, global_weight: float) -> bool:
        """Teach the account's model (weight 1) and the global one (`global_weight`) in one
        transaction; returns False when this lesson was already learnt."""
        ...

    async def report(self, kind: str, key: str, account_id: str, at: float) -> None:
        """Account says `key` (a sender address, a content fingerprint) is spam."""
        ...

    async def retract(self, kind: str, key: str, account_id: str) -> None: ...

    async def reporters(self, kind: str, key: str, since: float) -> int:
        """How many distinct accounts reported `key` at or after `since`."""
        ...

    async def allow_sender(self, account_id: str, sender: str) -> None: ...

    async def disallow_sender(self, account_id: str, sender: str) -> None: ...

    async def sender_allowed(self, account_id: str, sender: str) -> bool: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- PushSubscriptions


@dataclass(frozen=True, slots=True)
class PushSubscriptionRecord:
    """A JMAP PushSubscription (RFC 8620 §7.2): where to POST StateChanges for one device.

    It belongs to the credentials that made it (here: the account they log in to), not to an
    account's data, so it has no place in the change log: creating one changes no JMAP state.
    `verification_code` is the server's secret; `verified` turns true once the client has
    echoed it back, and only then does the subscription receive StateChanges."""

    id: str
    account_id: str
    device_client_id: str
    url: str
    keys: dict[str, str] | None
    """{"p256dh": ..., "auth": ...} base64url, for RFC 8291 encryption; None sends plaintext."""
    verification_code: str
    verified: bool
    expires: float
    """Seconds since the epoch; the server clamps every subscription to a maximum life."""
    types: tuple[str, ...] | None
    """The data types the client wants StateChanges for; None: all of them."""


class PushSubscriptionStore(Protocol):
    """The push subscriptions of every account, durable across restarts."""

    async def put(self, record: PushSubscriptionRecord) -> None:
        """Create or replace (by id)."""
        ...

    async def get(self, account_id: str, ids: Sequence[str] | None = None
                  ) -> list[PushSubscriptionRecord]:
        """The account's subscriptions (those of `ids` that exist, or all), in id order;
        another account's ids are simply not found."""
        ...

    async def delete(self, account_id: str, subscription_id: str) -> None:
        """Raises NotFound when the account has no such subscription."""
        ...

    async def verified(self, now: float) -> list[PushSubscriptionRecord]:
        """Every verified, unexpired subscription of every account (the deliverer's start)."""
        ...

    async def delete_expired(self, now: float) -> int:
        """Drop the subscriptions whose `expires` has passed; returns how many."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- Sieve scripts


@dataclass(frozen=True, slots=True)
class SieveScriptRecord:
    """One of an account's Sieve scripts (RFC 5804's model: named scripts, at most one
    active); the content is stored as the user wrote it, checked by services/sieve.py."""

    account_id: str
    name: str
    content: str
    active: bool
    updated_at: float
    id: str = ""
    """Given when the script is first stored and kept through replacing and renaming
    (JMAP's immutable id, RFC 9661); "" only from an engine that predates it."""


class SieveScriptStore(Protocol):
    """Each account's Sieve scripts and the duplicate test's memory (RFC 7352)."""

    async def put_script(self, account_id: str, name: str, content: str) -> None:
        """Create or replace; a replaced script keeps its active flag and its id."""
        ...

    async def list_scripts(self, account_id: str) -> list[SieveScriptRecord]:
        """By name."""
        ...

    async def get_script(self, account_id: str, name: str) -> SieveScriptRecord:
        """Raises NotFound."""
        ...

    async def get_active(self, account_id: str) -> SieveScriptRecord | None: ...

    async def set_active(self, account_id: str, name: str | None) -> None:
        """Make `name` the one active script (None: none); raises NotFound."""
        ...

    async def rename_script(self, account_id: str, old: str, new: str) -> None:
        """Raises NotFound for `old`, Conflict when `new` exists; the script keeps its id."""
        ...

    async def delete_script(self, account_id: str, name: str) -> None:
        """Raises NotFound."""
        ...

    async def duplicate_seen(self, account_id: str, key: str, now: float) -> bool:
        """Whether `key` was recorded and has not expired at `now`."""
        ...

    async def record_duplicate(self, account_id: str, key: str, expires: float, *,
                               last: bool) -> None:
        """Remember `key` until `expires`; an unexpired record keeps its expiry unless
        `last` (RFC 7352 §3.3 :last: the period counts from the latest message)."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- Maintenance


@dataclass(frozen=True, slots=True)
class MailboxCounters:
    """One mailbox's derived numbers as `mailyard fsck` counted them from its rows."""

    mailbox_id: str
    total: int
    unseen: int
    size: int
    uidnext: int
    """Only ever raised: the engine keeps the larger of this and what it holds, so a UID that
    was given once is never given again."""


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


RouteKind = Literal["alias", "domain", "catchall"]
"""alias: an address to a target address (several rows: several targets); domain: every
address at a domain to the same local part at the target domain; catchall: any address at a
domain that nothing else accepts, to one target address."""


@dataclass(frozen=True, slots=True)
class RouteRow:
    """One routing rule as stored: addresses and domains lower case, IDNs as A-labels."""

    kind: RouteKind
    source: str
    target: str


class RoutingStore(Protocol):
    """The routing rules (services/routing.py reads and keeps them): global, like domains,
    so one table of rows on every engine (on sharded PostgreSQL, in the directory shard)."""

    async def add_route(self, row: RouteRow) -> None:
        """Conflict when that very row exists."""
        ...

    async def remove_routes(self, kind: RouteKind, source: str,
                            target: str | None = None) -> int:
        """Remove the source's rows of that kind (only the one to `target`, if given); how
        many were removed."""
        ...

    async def targets(self, kind: RouteKind, source: str) -> list[str]:
        """The targets of one source, in the order they were added."""
        ...

    async def routes(self, kind: RouteKind | None = None) -> list[RouteRow]:
        """Every row (of one kind), by kind, source, then the order added."""
        ...

    def close(self) -> None: ...
