"""Sending: what happens to a message a user submits (SMTP submission, JMAP, the webmail).

`submit` makes every part durable before it returns, so the caller may say 250: the Sent copy
is stored (threaded, indexed, counted in the quota), and one queue item per destination —
local recipients together, then one per remote domain — is enqueued in one atomic write. A
crash before that write leaves nothing queued (the client saw no 250 and sends again); a crash
after it loses nothing. Held sends (scheduled, or undo-send) are the same items with a delay,
and `cancel` takes them back while no worker holds them.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mailyard import metrics
from mailyard.core.addresses import domain_of, normalize
from mailyard.core.dates import header_date
from mailyard.core.ids import new_id
from mailyard.core.mime import ParsedMessage, parse_message, top_fields
from mailyard.core.ratelimit import Ledger, LocalLedger
from mailyard.core.workitems import INBOUND, OUTBOUND, InboundItem, OutboundItem
from mailyard.services.accounts import AccountService, RecipientStatus
from mailyard.services.delivery import spool_id
from mailyard.services.mailbox import MailboxService
from mailyard.services.routing import RoutingService
from mailyard.store.ports import (
    Account,
    BlobStore,
    Mailbox,
    NewItem,
    NotFound,
    PendingItem,
    Queue,
)


def _work(item: PendingItem) -> InboundItem | OutboundItem:
    """A submission's queued item, read as the work item its kind says."""
    if item.kind == OUTBOUND:
        return OutboundItem.from_json(item.payload)
    return InboundItem.from_json(item.payload)


MAX_HOLD = 30 * 86400
"""FUTURERELEASE (RFC 4865): the longest a message may be held, in seconds."""

log = logging.getLogger("mailyard.submission")


def release_time(key: str, value: str) -> float | None:
    """HOLDFOR=seconds or HOLDUNTIL=RFC 3339 time: when the held message may leave."""
    now = time.time()
    if key == "HOLDFOR":
        if not value.isdigit() or int(value) > MAX_HOLD:
            return None
        return now + int(value)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    return when if when <= now + MAX_HOLD else None


class Refusal(enum.Enum):
    """Why a submission is refused, for a protocol to say in its own terms (JMAP's SetError
    types, RFC 8621 §7.5) without reading the SMTP reply."""

    SENDER_NOT_YOURS = "sender not yours"
    """An address in MAIL FROM, From or Sender the account may not send as."""
    RATE_LIMITED = "rate limited"
    TOO_MANY_RECIPIENTS = "too many recipients"
    BAD_RECIPIENT = "bad recipient"
    """A recipient address that is no address."""
    NO_SUCH_USER = "no such user"
    """A local recipient that does not exist."""
    MAILBOX_FULL = "mailbox full"
    """A local recipient over quota."""
    NO_FROM = "no From"
    AUTHOR_FIELDS = "author fields"
    """From or Sender more than once, or a Sender that names no single mailbox."""


class SubmissionRefused(Exception):
    """The message cannot be sent as it is; `reply` is the SMTP answer ("553 5.7.1 ..."),
    `refusal` why, for the protocols that do not speak SMTP."""

    def __init__(self, reply: str, refusal: Refusal) -> None:
        super().__init__(reply)
        self.reply = reply
        self.refusal = refusal


@dataclass(frozen=True)
class SubmissionPolicy:
    hostname: str
    messages_per_hour: int = 500
    recipients_per_message: int = 100
    undo_seconds: int = 0


@dataclass
class Submitted:
    id: str
    """The submission: its queue items are `{id}.{n}`."""
    email_id: str
    """The Sent copy."""
    items: list[str] = field(default_factory=list)
    send_at: float = 0.0


def _header_block(raw: bytes) -> tuple[bytes, bytes]:
    end = raw.find(b"\r\n\r\n")
    return (raw[:end + 2], raw[end + 2:]) if end >= 0 else (raw, b"")


def strip_bcc(raw: bytes) -> bytes:
    """The copy that travels: without Bcc (RFC 5322 §3.6.3), which stays in the Sent copy."""
    head, rest = _header_block(raw)
    out: list[bytes] = []
    dropping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                out.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower() == b"bcc"
        if not dropping:
            out.append(line)
    return b"".join(out) + rest


def _field_counts(raw: bytes, names: Sequence[bytes]) -> dict[bytes, int]:
    """How often each named field occurs in the top-level header block."""
    counts = dict.fromkeys(names, 0)
    for key, _ in top_fields(raw):
        if key in counts:
            counts[key] += 1
    return counts


class SubmissionService:
    def __init__(self, accounts: AccountService, mailbox: MailboxService, blobs: BlobStore,
                 queue: Queue, policy: SubmissionPolicy, *,
                 ledger: Ledger | None = None) -> None:
        self.accounts = accounts
        self.mailbox = mailbox
        self.blobs = blobs
        self.queue = queue
        self.policy = policy
        self.ledger = ledger if ledger is not None else LocalLedger()
        """Where each account's messages of the last hour are counted: this process, or
        (Redis) every node, so a cluster's limit is the configured one, not N times it."""
        self.routing: RoutingService | None = None
        """The routing rules (set by the composition root): local recipients are expanded
        to accounts, alias forwards join the remote ones."""

    def senders(self, account: Account) -> set[str]:
        """Addresses the account may send as (its own; aliases when the store has them)."""
        return {normalize(account.address)}

    def may_send_as(self, account: Account, address: str) -> bool:
        """The one rule of identity for every way of sending: an authenticated user acts only
        as one of their own addresses: the envelope sender, the From and Sender header
        fields, SMTP AUTH's authorization identity, a JMAP Identity."""
        return bool(address) and normalize(address) in self.senders(account)

    def check_sender(self, account: Account, mail_from: str) -> None:
        if mail_from and not self.may_send_as(account, mail_from):
            raise SubmissionRefused(
                f"553 5.7.1 Sender address <{mail_from}> is not yours to send as",
                Refusal.SENDER_NOT_YOURS)

    async def allow_message(self, account: Account) -> None:
        """Checked at MAIL; a message counts once it is accepted (an aborted one does not)."""
        if await self.ledger.exhausted(f"submit:{account.id}", self.policy.messages_per_hour,
                                       3600.0):
            raise SubmissionRefused(
                f"450 4.7.1 Sending limit of {self.policy.messages_per_hour} messages per hour"
                " reached; try again later", Refusal.RATE_LIMITED)

    async def check_recipient(self, count_so_far: int, address: str) -> None:
        if count_so_far >= self.policy.recipients_per_message:
            raise SubmissionRefused(
                f"452 4.5.3 Too many recipients (at most"
                f" {self.policy.recipients_per_message} per message)",
                Refusal.TOO_MANY_RECIPIENTS)
        if "@" not in address or not address.partition("@")[0]:
            raise SubmissionRefused("501 5.1.3 Bad recipient address syntax",
                                    Refusal.BAD_RECIPIENT)
        status = await self.accounts.check_recipient(address)
        if status is RecipientStatus.UNKNOWN_USER:
            raise SubmissionRefused("550 5.1.1 No such user here", Refusal.NO_SUCH_USER)
        if status is RecipientStatus.OVER_QUOTA:
            raise SubmissionRefused("452 4.2.2 The recipient's mailbox is full",
                                    Refusal.MAILBOX_FULL)

    async def submit(self, account: Account, mail_from: str, recipients: Sequence[str],
                     raw: bytes, *, send_at: float | None = None, peer: str = "",
                     helo: str = "", protocol: str = "ESMTPSA",
                     file_in_sent: bool = True) -> Submitted:
        """Store the Sent copy (unless told not to: automatic replies) and queue the message
        for every recipient, durably."""
        self.check_sender(account, mail_from)
        # Parsing the message is CPU work proportional to it (14 MB): never on the event loop.
        raw, wire = await asyncio.to_thread(self._prepare, account, raw)
        now = time.time()
        sub_id = new_id("q")
        sent_id = ""
        if file_in_sent:
            # The server's own filing: a draft of the same message becomes the Sent copy.
            appended = await self.mailbox.append(account, await self._sent(account), raw,
                                                 keywords=["$seen"],
                                                 received_at=int(now * 1000),
                                                 new_message=False)
            sent_id = appended.email_id
        trace = self._received(sub_id, peer, helo, protocol, now)
        delay = max(0.0, (send_at or 0.0) - now, float(self.policy.undo_seconds))
        local: list[str] = []
        remote: dict[str, list[str]] = {}
        if self.routing is not None:  # aliases expanded: each account once, forwards out
            plan = await self.routing.plan(recipients)
            local = [t.recipient for t in plan.local]
            for target in plan.remote:
                remote.setdefault(domain_of(target.address), []).append(target.address)
        for rcpt in dict.fromkeys(recipients) if self.routing is None else ():
            status = await self.accounts.check_recipient(rcpt)
            if status is RecipientStatus.NOT_LOCAL:
                remote.setdefault(domain_of(normalize(rcpt)), []).append(rcpt)
            else:
                local.append(rcpt)
        items: list[NewItem] = []
        data = trace + wire
        groups: list[tuple[list[str], str | None]] = [(local, None)] if local else []
        groups += [(rcpts, domain) for domain, rcpts in sorted(remote.items())]
        for n, (rcpts, domain) in enumerate(groups, 1):
            item_id = f"{sub_id}.{n}"
            spool = spool_id(item_id)
            await self.blobs.put(spool, data)
            if domain is None:
                kind, payload = INBOUND, InboundItem(
                    spool, mail_from, tuple(rcpts), len(trace), int(now * 1000), peer, helo,
                    account_id=account.id, submission=sub_id).to_json()
            else:
                kind, payload = OUTBOUND, OutboundItem(
                    spool, mail_from, tuple(rcpts), domain, now, sub_id, len(trace),
                    int(now * 1000), peer, helo, account.id).to_json()
            items.append(NewItem(kind, payload, item_id=item_id, delay=delay))
        ids = await self.queue.enqueue_many(items)
        await self.ledger.admit(f"submit:{account.id}", self.policy.messages_per_hour, 3600.0)
        metrics.mail("accepted")
        for item_id in ids:
            log.info("submission %s queued as %s", sub_id, item_id,
                     extra={"queue_id": item_id, "account_id": account.id})
        return Submitted(sub_id, sent_id, ids, now + delay)

    async def cancel(self, account: Account, submission_id: str) -> int:
        """Take back a held submission; how many of its items were still waiting. Raises
        NotFound when nothing of it is queued for this account."""
        pending = await self.queued(account, submission_id)
        if not pending:
            raise NotFound(f"no queued submission {submission_id}")
        cancelled = 0
        for item in pending:
            if await self.queue.cancel(item.id):
                cancelled += 1
                await self.blobs.delete(_work(item).spool)
        return cancelled

    async def queued(self, account: Account, submission_id: str) -> list[PendingItem]:
        """The submission's items still in the queue (held, waiting or being retried)."""
        return [p for p in await self.queue.pending(prefix=submission_id + ".")
                if _work(p).account_id == account.id]

    async def _sent(self, account: Account) -> Mailbox:
        for box in await self.mailbox.mailboxes(account):
            if box.role == "sent":
                return box
        raise NotFound(f"account {account.address} has no Sent mailbox")

    def _prepare(self, account: Account, raw: bytes) -> tuple[bytes, bytes]:
        """In a thread: the completed message (the Sent copy) and the copy that travels."""
        raw = self._complete(account, raw)
        return raw, strip_bcc(raw)

    def _complete(self, account: Account, raw: bytes) -> bytes:
        """Date and Message-ID added when missing (RFC 6409 §8.2-8.3); the author fields must
        name the account (`check_authors`)."""
        parsed = parse_message(raw)
        self.check_authors(account, raw, parsed)
        added = b""
        if parsed.date is None:
            added += f"Date: {header_date()}\r\n".encode()
        if not parsed.message_id:
            domain = domain_of(normalize(account.address))
            added += f"Message-ID: <{new_id('m')}@{domain}>\r\n".encode()
        return added + raw

    def check_authors(self, account: Account, raw: bytes, parsed: ParsedMessage) -> None:
        """Exactly one From field and at most one Sender field (RFC 5322 §3.6: a message with
        two is malformed, and a reader shows only one of them), and every address in them one
        of the account's own (`may_send_as`)."""
        counts = _field_counts(raw, (b"from", b"sender"))
        if counts[b"from"] == 0 or not parsed.from_:
            raise SubmissionRefused("550 5.6.0 The message has no From header", Refusal.NO_FROM)
        for name, count in counts.items():
            if count > 1:
                field_name = name.decode().capitalize()
                raise SubmissionRefused(
                    f"554 5.6.0 The message has {count} {field_name} header fields;"
                    " RFC 5322 section 3.6 allows one", Refusal.AUTHOR_FIELDS)
        for address in parsed.from_:
            if not self.may_send_as(account, address.email):
                raise SubmissionRefused(
                    f"553 5.7.1 From address <{address.email}> is not yours to send as",
                    Refusal.SENDER_NOT_YOURS)
        if counts[b"sender"] and len(parsed.sender) != 1:
            raise SubmissionRefused(
                "554 5.6.0 The Sender header field must name one mailbox (RFC 5322"
                " section 3.6.2)", Refusal.AUTHOR_FIELDS)
        for address in parsed.sender:
            if not self.may_send_as(account, address.email):
                raise SubmissionRefused(
                    f"550 5.7.1 Sender address <{address.email}> is not yours to send as:"
                    " From and Sender name your own addresses", Refusal.SENDER_NOT_YOURS)

    def _received(self, sub_id: str, peer: str, helo: str, protocol: str, now: float) -> bytes:
        helo = "".join(c for c in helo if c.isprintable())[:200] or "unknown"
        date = header_date(now)
        source = f"from {helo} ([{peer}])\r\n\t" if peer else ""
        return (f"Received: {source}by {self.policy.hostname} (Mailyard) with {protocol}"
                f" id {sub_id};\r\n\t{date}\r\n").encode()
