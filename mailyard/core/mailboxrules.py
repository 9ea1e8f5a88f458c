"""The rules of mailbox names and roles, written once for IMAP, JMAP, POP3, the CLI and import.

A mailbox is a label named by its path, levels separated by "/". Which names are allowed, which
roles a client may give, which mailboxes may never be renamed or destroyed: each is decided here
and nowhere else, so IMAP CREATE and JMAP Mailbox/set cannot disagree (they did: IMAP took a
1,024-octet level with control characters that JMAP then refused to rename). Each protocol maps a
`Refusal` to its own answer (an IMAP response code, a JMAP SetError type); the stores keep only
their uniqueness constraints, the guard against two sessions creating the same name at once.

The limits follow what clients and the reference servers accept: Dovecot refuses control
characters and empty levels in names; RFC 8621 §2 leaves the length to the server and 255
characters per level is what JMAP clients show; 1,024 octets for the whole path bounds what a
LIST pattern must walk.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Protocol

DELIMITER = "/"
"""The hierarchy delimiter of every mailbox path (IMAP LIST's delimiter, JMAP's parentId)."""
ROLES = ("inbox", "archive", "drafts", "sent", "junk", "trash", "all")
"""The roles we know, in the order clients that honour sortOrder show them (RFC 8621 §10.5
names; IMAP shows them as RFC 6154 special-use attributes)."""
FIXED_ROLES = frozenset({"inbox", "all"})
"""Every account has its inbox and All Mail from the start: no client may give either role to
another mailbox, and neither mailbox may be renamed, moved or destroyed."""
CREATABLE_ROLES = frozenset(r for r in ROLES if r not in FIXED_ROLES)
MAX_LEVEL_CHARS = 255
MAX_PATH_OCTETS = 1024


class Refusal(enum.Enum):
    """Why a mailbox operation is refused; protocols translate this, never the message text."""

    EXISTS = "exists"
    INBOX_NAME = "inbox name"
    BAD_NAME = "bad name"
    TOO_LONG = "too long"
    UNKNOWN_ROLE = "unknown role"
    ROLE_TAKEN = "role taken"
    FIXED = "fixed"
    BELOW_ITSELF = "below itself"


class MailboxRefused(ValueError):
    """A mailbox operation that breaks one of the rules; `reason` says which."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Box(Protocol):
    """What the rules need to know of an existing mailbox (the store's Mailbox is one)."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str | None: ...


def is_inbox_name(path: str) -> bool:
    """INBOX is case-insensitive (RFC 3501 §5.1) and names the inbox whatever its path."""
    return path.upper() == "INBOX"


def check_name(path: str) -> None:
    """A path any protocol may create or rename to; raises MailboxRefused otherwise."""
    levels = path.split(DELIMITER)
    if not path or any(not level.strip() for level in levels):
        raise MailboxRefused(Refusal.BAD_NAME, "a mailbox name cannot be empty or have a blank"
                                               f" level ({DELIMITER!r} twice, first or last)")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise MailboxRefused(Refusal.BAD_NAME, "a mailbox name cannot hold control characters")
    if any(len(level) > MAX_LEVEL_CHARS for level in levels):
        raise MailboxRefused(Refusal.TOO_LONG, "each level of a mailbox name is at most"
                                               f" {MAX_LEVEL_CHARS} characters")
    if len(path.encode()) > MAX_PATH_OCTETS:
        raise MailboxRefused(Refusal.TOO_LONG, f"mailbox names are at most {MAX_PATH_OCTETS}"
                                               " octets")
    if is_inbox_name(path):
        raise MailboxRefused(Refusal.INBOX_NAME, f"{path!r} is the name of the inbox")


def check_create(existing: Iterable[Box], path: str, role: str | None) -> None:
    """A new mailbox `path` with `role` (None for a plain label) beside `existing`."""
    check_name(path)
    boxes = list(existing)
    if any(b.name == path for b in boxes):
        raise MailboxRefused(Refusal.EXISTS, f"mailbox {path} exists")
    if role is None:
        return
    if role not in CREATABLE_ROLES:
        raise MailboxRefused(Refusal.UNKNOWN_ROLE, "the role must be one of "
                                                   + ", ".join(sorted(CREATABLE_ROLES)))
    if any(b.role == role for b in boxes):
        raise MailboxRefused(Refusal.ROLE_TAKEN, f"a mailbox with role {role} exists")


def check_rename(existing: Iterable[Box], box: Box, path: str) -> None:
    """`box` renamed (or moved) to `path`; its children follow it."""
    if box.role in FIXED_ROLES:
        raise MailboxRefused(Refusal.FIXED, f"the {box.role} mailbox cannot be renamed or moved")
    if path == box.name:
        return
    if path.startswith(box.name + DELIMITER):
        raise MailboxRefused(Refusal.BELOW_ITSELF, "a mailbox cannot move below itself")
    check_name(path)
    if any(b.name == path for b in existing):
        raise MailboxRefused(Refusal.EXISTS, f"mailbox {path} exists")


def check_destroy(box: Box) -> None:
    """Whether `box` may be destroyed at all (what happens to its mail is the protocol's)."""
    if box.role in FIXED_ROLES:
        raise MailboxRefused(Refusal.FIXED, f"the {box.role} mailbox cannot be destroyed")
