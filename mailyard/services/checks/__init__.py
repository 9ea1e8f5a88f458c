"""Inbound checks: what the MX asks of a message before it answers DATA.

The checks run at the end of DATA, before the message is made durable, because only then can a
verdict still be a rejection (DMARC p=reject, a spam score over the reject threshold, a listed
IP): after `250` the mail is ours and is never dropped silently. Each check reads the SMTP
envelope and the parsed message and adds to one `Verdict`: symbols with scores, header fields to
prepend (Authentication-Results, X-Spam-*), and the strongest action asked for. The verdict is
recorded in the queue item, so the pipeline places the message (Junk, quarantine) per recipient,
where each user's own allow list and model can still change the outcome.

Connection-time policy (allow/deny lists, blocklists, greylisting) uses the same `Verdict` in
`connect`/`mail_from`/`rcpt_to` hooks, so a rejection reads the same at every stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from mailyard.core import workitems
from mailyard.core.mime import ParsedMessage
from mailyard.core.workitems import Action, SpamFacts

__all__ = ["Action", "Check", "CheckChain", "SMTPEnvelope", "Verdict"]


@dataclass(slots=True)
class SMTPEnvelope:
    """What the SMTP conversation told us about a message (RFC 5321 terms)."""

    peer: str                   # client IP address
    helo: str
    mail_from: str              # reverse-path, "" for the null sender
    recipients: list[str]
    tls: bool = False
    authenticated: str = ""     # the submitting account, for mail that came in with AUTH
    state: dict[str, Any] = field(default_factory=dict)
    """Per-transaction scratch space of the checks (a lookup started at MAIL FROM and awaited
    at DATA); the same envelope object goes to every hook of one transaction; never stored."""


@dataclass(slots=True)
class Verdict:
    """What the checks of one message add up, while they run; `record` is what the queue item
    keeps of it (core.workitems.Verdict)."""

    action: Action = Action.ACCEPT
    reason: str = ""            # the text of the SMTP reply or the dead-letter reason
    reply: str = ""             # a full SMTP reply, when a check wants a specific code
    score: float = 0.0
    symbols: dict[str, float] = field(default_factory=dict)
    headers: list[tuple[str, str]] = field(default_factory=list)  # prepended, in this order
    spam: SpamFacts | None = None
    """The content check's facts for the pipeline's per-recipient placement."""
    virus: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    """The other checks' records, kept with the queue item (workitems.Verdict.notes)."""

    def add(self, symbol: str, score: float = 0.0) -> None:
        self.symbols[symbol] = self.symbols.get(symbol, 0.0) + score
        self.score += score

    def ask(self, action: Action, reason: str, reply: str = "") -> None:
        """Raise the verdict to `action` (never lower it); the first reason at a level wins."""
        if action > self.action:
            self.action, self.reason, self.reply = action, reason, reply

    def record(self) -> workitems.Verdict:
        return workitems.Verdict(action=self.action, reason=self.reason, score=self.score,
                                 symbols=dict(self.symbols), spam=self.spam, virus=self.virus,
                                 notes=dict(self.data))

    @classmethod
    def from_record(cls, value: workitems.Verdict) -> Verdict:
        """The verdict a queue item carries, for the checks the pipeline finishes."""
        return cls(action=value.action, reason=value.reason, score=value.score,
                   symbols=dict(value.symbols), spam=value.spam, virus=value.virus,
                   data=dict(value.notes))


class Check(Protocol):
    """One layer of the inbound policy. Hooks that a check does not need may be omitted from
    the class; `CheckChain` calls only those that exist."""

    name: str

    async def check(self, envelope: SMTPEnvelope, raw: bytes, parsed: ParsedMessage,
                    verdict: Verdict) -> None:
        """At the end of DATA; `raw` is the message as the client sent it (no trace headers),
        `parsed` its top-level header block (`core.mime.parse_head`): a check that reads the
        body parses `raw` itself, so the listener pays for a full parse only when asked."""


class CheckChain:
    """Runs the configured checks in order; stops early once a check rejects."""

    def __init__(self, checks: list[Check]) -> None:
        self.checks = checks

    async def connect(self, peer: str, verdict: Verdict) -> None:
        for c in self.checks:
            hook = getattr(c, "connect", None)
            if hook is not None:
                await hook(peer, verdict)
                if verdict.action >= Action.TEMPFAIL:
                    return

    async def mail_from(self, envelope: SMTPEnvelope, verdict: Verdict) -> None:
        for c in self.checks:
            hook = getattr(c, "mail_from", None)
            if hook is not None:
                await hook(envelope, verdict)
                if verdict.action >= Action.TEMPFAIL:
                    return

    async def rcpt_to(self, envelope: SMTPEnvelope, recipient: str, verdict: Verdict) -> None:
        for c in self.checks:
            hook = getattr(c, "rcpt_to", None)
            if hook is not None:
                await hook(envelope, recipient, verdict)
                if verdict.action >= Action.TEMPFAIL:
                    return

    async def data(self, envelope: SMTPEnvelope, raw: bytes, parsed: ParsedMessage) -> Verdict:
        verdict = Verdict()
        for c in self.checks:
            await c.check(envelope, raw, parsed, verdict)
            if verdict.action >= Action.TEMPFAIL:
                break
        return verdict
