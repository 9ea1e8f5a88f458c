"""The work items the queue carries: a message accepted for local delivery, one to send to a
remote domain, and the inbound checks' verdict on a message.

Producers (the SMTP listener through DeliveryService, submission, the outbound worker's DSNs)
build these and enqueue `to_json()`; the pipeline reads them back with `from_json`. The queue
stores the JSON as it is (store/ports.py Queue: a payload is a JSON object), so the field names
below are the stored format: `from_json` reads what older code queued (fields added since have
defaults), and `to_json` writes nothing an older worker could not read.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailyard.core.mime import ParsedMessage

INBOUND = "inbound"
"""Queue kind of an `InboundItem`."""
OUTBOUND = "outbound"
"""Queue kind of an `OutboundItem`."""


class BadItem(ValueError):
    """A payload that is no work item of its kind (a missing or mistyped field): retrying
    cannot help."""


class Action(enum.IntEnum):
    """Ordered by strength: the chain keeps the strongest action any check asked for."""

    ACCEPT = 0
    JUNK = 1          # deliver, but to the Junk mailbox
    QUARANTINE = 2    # accept, never deliver: dead-letter queue with the reason (viruses)
    TEMPFAIL = 3      # 450/451 4.7.1: try again later (greylisting, DNS trouble)
    REJECT = 4        # 550/554 5.7.1


@dataclass(frozen=True, slots=True)
class SpamFacts:
    """What the content check leaves the pipeline: who sent it (for the user's allow list),
    and, once scored, the classifier's part of the score (for the user's own model)."""

    sender: str = ""
    scored: bool = True
    """False: the check left the score to the pipeline (`SpamPlacement.complete`)."""
    fingerprint: str = ""
    p: float | None = None
    """The global classifier's spam probability; None while it has not learnt enough."""
    bayes: float = 0.0
    """The score that probability added (BAYES), replaced by the user's own."""

    def to_json(self) -> dict[str, Any]:
        if not self.scored:
            return {"sender": self.sender, "scored": False}
        out: dict[str, Any] = {"fingerprint": self.fingerprint, "sender": self.sender}
        if self.p is not None:
            out["p"], out["bayes"] = self.p, self.bayes
        return out

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SpamFacts:
        p = value.get("p")
        return cls(sender=str(value.get("sender", "")), scored=bool(value.get("scored", True)),
                   fingerprint=str(value.get("fingerprint", "")),
                   p=None if p is None else float(p), bayes=float(value.get("bayes", 0.0)))


@dataclass(frozen=True, slots=True)
class Verdict:
    """The inbound checks' verdict as recorded at DATA, read by the pipeline to place the
    message per recipient (services/checks Verdict.record builds it)."""

    action: Action = Action.ACCEPT
    reason: str = ""
    score: float = 0.0
    symbols: Mapping[str, float] = field(default_factory=dict)
    spam: SpamFacts | None = None
    virus: str | None = None
    """The virus clamd named (QUARANTINE)."""
    notes: Mapping[str, Any] = field(default_factory=dict)
    """The other checks' records (authentication results, a policy allow), kept with the item
    for whoever reads it in the dead-letter queue; the pipeline reads none of them."""

    def to_json(self) -> dict[str, Any]:
        data = dict(self.notes)
        if self.spam is not None:
            data["spam"] = self.spam.to_json()
        if self.virus is not None:
            data["virus"] = self.virus
        return {"action": self.action.name.lower(), "reason": self.reason, "score": self.score,
                "symbols": dict(self.symbols), "data": data}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Verdict:
        data = dict(value.get("data") or {})
        spam = data.pop("spam", None)
        virus = data.pop("virus", None)
        try:
            action = Action[str(value.get("action", "accept")).upper()]
        except KeyError:
            raise BadItem(f"verdict: unknown action {value.get('action')!r}") from None
        return cls(action=action, reason=str(value.get("reason", "")),
                   score=float(value.get("score", 0.0)),
                   symbols={str(k): float(v) for k, v in (value.get("symbols") or {}).items()},
                   spam=None if spam is None else SpamFacts.from_json(spam),
                   virus=None if virus is None else str(virus), notes=data)


def _field(payload: Mapping[str, Any], name: str, kind: type) -> Any:
    """A field every item of its kind has (an int may stand for a float)."""
    try:
        value = payload[name]
    except KeyError:
        raise BadItem(f"queue item has no {name!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BadItem(f"queue item's {name!r} is {type(value).__name__}, not {kind.__name__}")
    return value


def _recipients(payload: Mapping[str, Any]) -> tuple[str, ...]:
    value = _field(payload, "recipients", list)
    if not all(isinstance(r, str) for r in value):
        raise BadItem("queue item's 'recipients' are not all strings")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class InboundItem:
    """A message accepted for local recipients (queue kind INBOUND): its octets wait in the
    blob store under `spool` until every recipient has it."""

    spool: str
    mail_from: str
    recipients: tuple[str, ...]
    trace_length: int
    """How many leading octets are our own trace fields; what follows is the message as the
    client sent it, which duplicate detection compares."""
    received_at: int
    """Milliseconds since the epoch."""
    peer: str = ""
    helo: str = ""
    verdict: Verdict | None = None
    """None: no inbound checks ran (submission, DSNs, items queued before checks existed)."""
    account_id: str = ""
    """The sending account, for a submission's local recipients."""
    submission: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.verdict is None else {"verdict": self.verdict.to_json()}
        out |= {"spool": self.spool, "mail_from": self.mail_from,
                "recipients": list(self.recipients), "trace_length": self.trace_length,
                "received_at": self.received_at, "peer": self.peer, "helo": self.helo}
        if self.submission:
            out |= {"account_id": self.account_id, "submission": self.submission}
        return out

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> InboundItem:
        verdict = payload.get("verdict")
        return cls(spool=_field(payload, "spool", str),
                   mail_from=str(payload.get("mail_from", "")),
                   recipients=_recipients(payload),
                   trace_length=_field(payload, "trace_length", int),
                   received_at=_field(payload, "received_at", int),
                   peer=str(payload.get("peer", "")), helo=str(payload.get("helo", "")),
                   verdict=Verdict.from_json(verdict) if verdict else None,
                   account_id=str(payload.get("account_id", "")),
                   submission=str(payload.get("submission", "")))


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    """A recipient a remote server refused for good, and its answer."""

    recipient: str
    reply: str
    """The remote answer as "550 5.1.1 text"."""
    host: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"recipient": self.recipient, "reply": self.reply, "host": self.host}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> FailedRecipient:
        host = value.get("host")
        return cls(str(value["recipient"]), str(value.get("reply", "")),
                   None if host is None else str(host))


@dataclass(frozen=True, slots=True)
class OutboundItem:
    """A submitted message for the recipients at one remote domain (queue kind OUTBOUND).
    A retry keeps the recipients still to do, and those refused for good so far."""

    spool: str
    mail_from: str
    recipients: tuple[str, ...]
    domain: str
    submitted_at: float
    """Seconds since the epoch: the delay notice and giving up count from it."""
    submission: str
    trace_length: int = 0
    received_at: int = 0
    peer: str = ""
    helo: str = ""
    account_id: str = ""
    delay_notified: bool = False
    failed: tuple[FailedRecipient, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mail_from": self.mail_from, "received_at": self.received_at, "peer": self.peer,
            "helo": self.helo, "account_id": self.account_id, "submission": self.submission,
            "spool": self.spool, "recipients": list(self.recipients),
            "trace_length": self.trace_length, "domain": self.domain,
            "submitted_at": self.submitted_at, "delay_notified": self.delay_notified}
        if self.failed:
            out["failed"] = [f.to_json() for f in self.failed]
        return out

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> OutboundItem:
        try:
            failed = tuple(FailedRecipient.from_json(f) for f in payload.get("failed") or ())
        except (KeyError, TypeError, AttributeError) as e:
            raise BadItem(f"queue item's 'failed' is malformed: {e}") from None
        return cls(spool=_field(payload, "spool", str),
                   mail_from=str(payload.get("mail_from", "")),
                   recipients=_recipients(payload), domain=_field(payload, "domain", str),
                   submitted_at=_field(payload, "submitted_at", float),
                   submission=str(payload.get("submission", "")),
                   trace_length=int(payload.get("trace_length", 0)),
                   received_at=int(payload.get("received_at", 0)),
                   peer=str(payload.get("peer", "")), helo=str(payload.get("helo", "")),
                   account_id=str(payload.get("account_id", "")),
                   delay_notified=bool(payload.get("delay_notified", False)), failed=failed)


Message = tuple[bytes, "ParsedMessage"]
"""A queued message's octets and their one parse (core.mime.parse_message)."""

MessageLoader = Callable[[], Awaitable[Message]]
"""Reads and parses an item's spooled message on the first call, and gives the same parse to
every later one: the pipeline's placement and its ingest share it."""


WorkItem = InboundItem | OutboundItem


def decode(kind: str, payload: Mapping[str, Any]) -> WorkItem:
    """The typed item of a queued payload, for every reader of the queue (the pipeline, the
    CLI's listings, the garbage collector, JMAP's delivery status); BadItem for a payload no
    producer writes, so a reader never guesses at string keys."""
    if kind == INBOUND:
        return InboundItem.from_json(payload)
    if kind == OUTBOUND:
        return OutboundItem.from_json(payload)
    raise BadItem(f"no work item of kind {kind!r}")


def try_decode(kind: str, payload: Mapping[str, Any]) -> WorkItem | None:
    """decode, or None for a damaged item (listings show what they can of the others)."""
    try:
        return decode(kind, payload)
    except BadItem:
        return None
