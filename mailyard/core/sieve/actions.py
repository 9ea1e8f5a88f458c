"""What a Sieve script decided for one message and one recipient: typed actions, in the
order the script gave them, for the pipeline to carry out (pipeline/inbound.py)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Keep:
    """File into the Inbox (`keep`, or the implicit keep), with these IMAP flags."""

    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FileInto:
    mailbox: str
    flags: tuple[str, ...] = ()
    copy: bool = False
    create: bool = False
    """RFC 5490 :create: make the mailbox if it does not exist (else: the Inbox)."""


@dataclass(frozen=True, slots=True)
class Redirect:
    address: str
    copy: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    reason: str
    extended: bool = False
    """ereject (RFC 5429 §2.1): refuse at SMTP time where possible; after acceptance both
    become a rejection message (an MDN-style bounce) to the envelope sender."""


@dataclass(frozen=True, slots=True)
class Discard:
    pass


@dataclass(frozen=True, slots=True)
class Vacation:
    reason: str
    subject: str | None = None
    from_: str | None = None
    addresses: tuple[str, ...] = ()
    seconds: int = 7 * 86400
    mime: bool = False
    handle: str = ""
    """Names the response for the once-per-sender memory (RFC 5230 §4.2); by default the
    reason and subject, so a changed text is sent anew."""


@dataclass(frozen=True, slots=True)
class AddHeader:
    name: str
    value: str
    last: bool = False


@dataclass(frozen=True, slots=True)
class DeleteHeader:
    name: str


Action = Keep | FileInto | Redirect | Reject | Discard | Vacation


@dataclass(slots=True)
class Result:
    actions: list[Action] = field(default_factory=list)
    implicit_keep: bool = True
    flags: tuple[str, ...] = ()
    """The internal flags variable at the end: the implicit keep's flags (RFC 5232 §3)."""
    duplicates: list[tuple[str, int, bool]] = field(default_factory=list)
    """(id, seconds, last) the duplicate tests looked up, to record once delivered (RFC 7352
    §3: an id is remembered only if the message is delivered)."""
    edited_head: bytes | None = None
    """editheader's header block, when the script changed the fields."""
    steps: int = 0

    def deliveries(self) -> list[Keep | FileInto]:
        """Where the message is stored: the script's keeps and fileintos, plus the implicit
        keep, each mailbox once (RFC 5228 §2.10.3)."""
        out: list[Keep | FileInto] = []
        seen: set[str] = set()
        for a in [*self.actions, *([Keep(self.flags)] if self.implicit_keep else [])]:
            if isinstance(a, Keep | FileInto):
                name = "INBOX" if isinstance(a, Keep) else a.mailbox
                key = "inbox" if name.upper() == "INBOX" else name
                if key not in seen:
                    seen.add(key)
                    out.append(a)
        return out
