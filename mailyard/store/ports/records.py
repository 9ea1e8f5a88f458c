"""The mail store's typed records: what the MailStore port and the mail model read and write."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mailyard.store.ports.text import stored_keywords, stored_text, stored_text_opt, stored_values


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
            [stored_values(a) for a in addresses] for addresses in
            (self.from_, self.to, self.cc, self.bcc, self.reply_to, self.sender))
        self.attachments = [stored_values(a) for a in self.attachments]


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


@dataclass(frozen=True, slots=True)
class ImportWrite:
    """One imported message's part of a batch stored in one transaction
    (MailStore.store_imports): a delivery (`email`), or an email the same import stored
    already (`existing`); unless the delivery created the email, `mailboxes` and `keywords`
    are added to what is stored."""

    email: NewEmail | None
    existing: str | None
    mailboxes: Sequence[str]
    keywords: Sequence[str]


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
    modseq: int | None = None
    """The MODSEQ this write took; None when it changed nothing (every flag already as
    asked, or only conflicts): then there is no change to publish."""


@dataclass(slots=True)
class Expunged:
    uids: list[int]
    """The UIDs taken out of the mailbox, ascending."""
    destroyed: list[str]
    """The emails destroyed by it (they left the search index's concern too)."""
    modseq: int | None = None
    """The MODSEQ the expunge's transaction took: what the change is published with, so
    EXPUNGE needs no read of the account afterwards (MailboxService._changed)."""


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
