"""The MX role: SMTP inbound on aiosmtpd (RFC 5321), accepting mail for local users only.

`InboundSMTP` is aiosmtpd's SMTP protocol with the policies a public MX needs (per-IP connection
and message limits, enhanced status codes); `InboundHandler` holds the mail rules (who may
receive, size and quota, trace headers) and hands accepted mail to the delivery service. The
reply to DATA is sent only after `DeliveryService.accept` returns, i.e. after the message and its
queue item are on disk.

The inbound checks (services/checks, `CheckChain`) run at the stage each needs: `connect` before
the greeting (its refusal is given at MAIL FROM), `mail_from`, `rcpt_to`, and `data` at the end
of DATA, before anything is durable, so that a refusal (DMARC p=reject, a listed client) is an
SMTP reply and never a message dropped after 250. The verdict's header fields
(Authentication-Results, ...) go between our trace fields and the client's octets, after any
Authentication-Results that claims our hostname is removed (RFC 8601 §5); the verdict itself goes
into the queue item, where the pipeline places the message (Junk, quarantine).

SMTP smuggling (a DATA end other than CRLF.CRLF) is closed by aiosmtpd itself since 1.4.5: it
splits DATA only at CRLF, so a bare LF or CR around the dot is just message content. Lines over
998 octets are taken byte-exact, as Postfix takes them; only a line over `[limits]
smtp_line_octets` makes the whole message fail with 500 5.5.2 after the data is drained.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailyard.config import Limits
from mailyard.core.addresses import normalize
from mailyard.core.authresults import strip_ours
from mailyard.core.dates import header_date
from mailyard.core.ids import new_id
from mailyard.core.mime import ParsedMessage, parse_head
from mailyard.core.ratelimit import Ledger, LocalLedger
from mailyard.protocols.smtp.base import (
    MAX_HEADER_BLOCK,
    EnhancedSMTP,
    close,
    header_safe,
    message_problem,
    peer_ip,
)
from mailyard.services.accounts import AccountService, RecipientStatus
from mailyard.services.checks import Action, CheckChain, SMTPEnvelope, Verdict
from mailyard.services.delivery import DeliveryService

log = logging.getLogger("mailyard.smtp")

IDENT = "Mailyard ESMTP"


@dataclass(frozen=True)
class InboundPolicy:
    hostname: str
    message_size: int
    recipients_per_message: int
    connections_per_ip: int
    messages_per_ip_per_minute: int
    timeout: float = 300.0
    line_octets: int = Limits.smtp_line_octets


class InboundHandler:
    """aiosmtpd handler hooks for the MX role."""

    def __init__(self, accounts: AccountService, delivery: DeliveryService,
                 policy: InboundPolicy, checks: CheckChain | None = None,
                 ledger: Ledger | None = None) -> None:
        self.accounts = accounts
        self.delivery = delivery
        self.policy = policy
        self.checks = checks if checks is not None else CheckChain([])
        self.ledger = ledger if ledger is not None else LocalLedger()
        """The per-IP counts: this process's, or (Redis) every node's."""

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        # The MX role takes no AUTH (that is submission's job): never advertise it here.
        responses = [r for r in responses if not r.startswith("250-AUTH")]
        last = responses.pop()  # "250 HELP"
        responses += ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"]
        responses.append(last)
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        ip = peer_ip(session)
        if not await self.ledger.admit(f"smtp-mail:{ip}",
                                       self.policy.messages_per_ip_per_minute, 60.0):
            log.warning("message rate limit for %s", ip)
            asyncio.get_running_loop().call_soon(close, server)
            return "421 4.7.0 Too many messages from your address, try again later"
        declared = 0
        for option in mail_options:
            key, _, value = option.partition("=")
            if key.upper() == "SIZE" and value.isdigit():
                declared = int(value)
            elif key.upper() == "BODY" and value.upper() not in ("7BIT", "8BITMIME"):
                return f"501 5.5.4 Unsupported BODY type {value}"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        session.declared_size = declared  # type: ignore[attr-defined]
        refusal = await self._check_mail(session, address)
        if refusal:
            envelope.mail_from = None
            return refusal
        return "250 2.1.0 Sender OK"

    async def _check_mail(self, session: Session, address: str) -> str:
        """The connection's verdict, then the checks' MAIL FROM hooks; a reply to refuse."""
        connected: Verdict = getattr(session, "connect_verdict", None) or Verdict()
        if connected.action >= Action.TEMPFAIL:
            return _reply(connected)
        env = SMTPEnvelope(peer=peer_ip(session), helo=session.host_name or "",
                           mail_from=address or "", recipients=[], tls=session.ssl is not None,
                           state=dict(connected.data))
        session.checks_envelope = env  # type: ignore[attr-defined]
        if not self.checks.checks:
            return ""
        verdict = Verdict()
        await self.checks.mail_from(env, verdict)
        return _reply(verdict) if verdict.action >= Action.TEMPFAIL else ""

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.policy.recipients_per_message:
            return "452 4.5.3 Too many recipients"
        if not address or "@" not in address:
            return "501 5.1.3 Bad recipient address syntax"
        size = getattr(session, "declared_size", 0)
        # aiosmtpd keeps the null reverse-path as "<>"; the services know it as ""
        sender = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        status = await self.accounts.check_recipient(address, size, sender)
        if status is RecipientStatus.NOT_LOCAL:
            return await _refused(server, session,
                                  "550 5.7.1 Relaying denied: not a local domain and no "
                                  "authentication")
        if status is RecipientStatus.UNKNOWN_USER:
            return await _refused(server, session, "550 5.1.1 No such user here")
        if status is RecipientStatus.BOUNCES_ONLY:
            return await _refused(server, session,
                                  "550 5.7.1 This address takes bounces only (null sender)")
        if status is RecipientStatus.NO_POSTMASTER:
            log.warning("mail to %s refused for now: set [addresses] postmaster", address)
            return "451 4.3.0 Postmaster mailbox not configured, try again later"
        if status is RecipientStatus.OVER_QUOTA:
            return "452 4.2.2 Mailbox full, try again later"
        env: SMTPEnvelope | None = getattr(session, "checks_envelope", None)
        if env is not None and self.checks.checks:
            verdict = Verdict()
            await self.checks.rcpt_to(env, address, verdict)
            if verdict.action >= Action.TEMPFAIL:
                return _reply(verdict)
        if normalize(address) not in (normalize(r) for r in envelope.rcpt_tos):
            if env is not None:
                env.recipients.append(address)
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if len(content) > self.policy.message_size:
            return "552 5.3.4 Message too big for this system"
        # Every look at the octets (line lengths, the header block) that could be long runs in
        # a thread: a 14 MB header folded over 16,000 lines must not stall the other
        # connections. A message whose looks are bounded is prepared here: the thread's hop
        # cost more than the work (issue 24).
        checked = bool(self.checks.checks)
        if _bounded(content, self.policy):
            prepared = _prepare(content, self.policy, checked)
        else:
            prepared = await asyncio.to_thread(_prepare, content, self.policy, checked)
        if isinstance(prepared, str):
            return prepared
        content, parsed = prepared
        verdict = await self._check_data(session, envelope, content, parsed)
        if verdict.action >= Action.TEMPFAIL:
            log.info("refused at DATA from %s: %s", peer_ip(session), verdict.reason)
            return _reply(verdict)
        added = b"".join(f"{name}: {value}\r\n".encode("utf-8", "surrogateescape")
                         for name, value in verdict.headers)
        queue_id = new_id("q")
        received_at = time.time()
        trace = self._trace_headers(server, session, envelope, queue_id, received_at)
        # A fault here (the store or queue down) is answered 451 by EnhancedSMTP, logged once.
        await self.delivery.accept(
            queue_id=queue_id, mail_from=envelope.mail_from or "",
            recipients=envelope.rcpt_tos, raw=trace + added + content,
            trace_length=len(trace) + len(added),
            received_at=int(received_at * 1000), peer=peer_ip(session),
            helo=session.host_name or "",
            verdict=verdict.record() if self.checks.checks else None,
        )
        return f"250 2.0.0 OK queued as {queue_id}"

    async def _check_data(self, session: Session, envelope: Envelope, content: bytes,
                          parsed: ParsedMessage | None) -> Verdict:
        """The checks' verdict on the message as the client sent it (none configured: accept)."""
        if parsed is None:
            return Verdict()
        env: SMTPEnvelope | None = getattr(session, "checks_envelope", None)
        if env is None:
            env = SMTPEnvelope(peer=peer_ip(session), helo=session.host_name or "",
                               mail_from=envelope.mail_from or "", recipients=[],
                               tls=session.ssl is not None)
        env.recipients = list(envelope.rcpt_tos)
        try:
            return await self.checks.data(env, content, parsed)
        except Exception:
            # A check's bug must not lose mail or end the session: accept unchecked, loudly.
            log.exception("inbound checks failed; accepting the message unchecked")
            return Verdict()

    def _trace_headers(self, server: SMTP, session: Session, envelope: Envelope,
                       queue_id: str, received_at: float) -> bytes:
        """Return-Path and a Received line (RFC 5321 §4.4) in front of the client's octets."""
        helo = header_safe(session.host_name or "unknown")
        ip = peer_ip(session)
        with_ = "ESMTP" if session.extended_smtp else "SMTP"
        if session.ssl is not None:
            with_ += "S"
        recipient = header_safe(envelope.rcpt_tos[0]) if len(envelope.rcpt_tos) == 1 else ""
        date = header_date(received_at)
        received = (f"Received: from {helo} ([{ip}])\r\n\tby {self.policy.hostname} (Mailyard)"
                    f" with {with_} id {queue_id}\r\n\t"
                    + (f"for <{recipient}>; " if recipient else "") + f"{date}\r\n")
        return_path = f"Return-Path: <{header_safe(envelope.mail_from or '')}>\r\n"
        return (return_path + received).encode("utf-8", "surrogateescape")


REFUSED_RECIPIENTS = 20
"""Recipients one connection may have refused with 550; the next ends it with 421 4.7.0, as
Postfix's smtpd_hard_error_limit (20) would: guessing addresses (user names, SRS hashes) then
costs a connection per 20 guesses, and the per-IP connection limits apply."""


async def _refused(server: SMTP, session: Session, reply: str) -> str:
    """`reply` to a refused RCPT, counted; past REFUSED_RECIPIENTS the connection is closed
    (the reply is then not sent: the 421 was)."""
    count = getattr(session, "refused_recipients", 0) + 1
    session.refused_recipients = count  # type: ignore[attr-defined]
    if count > REFUSED_RECIPIENTS and isinstance(server, EnhancedSMTP):
        log.info("%s: %d recipients refused, closing", peer_ip(session), count)
        await server._hang_up()
    return reply


class InboundSMTP(EnhancedSMTP):
    """aiosmtpd's protocol with per-IP connection limits and enhanced status codes."""

    def __init__(self, handler: InboundHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.inbound = handler

    async def _handle_client(self) -> None:
        assert self.session is not None
        ip = peer_ip(self.session)
        ledger = self.inbound.ledger
        connection = await ledger.hold(f"smtp-conn:{ip}", self.inbound.policy.connections_per_ip)
        if connection is None:
            log.warning("connection limit for %s", ip)
            await super().push("421 4.7.0 Too many connections from your address")
            close(self)
            return
        try:
            if self.inbound.checks.checks:
                verdict = Verdict()
                try:
                    await self.inbound.checks.connect(ip, verdict)
                except Exception:
                    # Before the greeting there is no command to answer: the session goes
                    # on and answers 451 at MAIL FROM (the verdict's TEMPFAIL).
                    log.exception("connect checks failed for %s", ip)
                    verdict.ask(Action.TEMPFAIL, "Temporary local problem, try again later",
                                "451 4.3.0 Temporary local problem, try again later")
                self.session.connect_verdict = verdict  # type: ignore[attr-defined]
            await super()._handle_client()
        finally:
            await ledger.release(connection)


INLINE_HEAD = 8 * 1024
"""A header block ending within this many octets is read on the event loop (`_bounded`): the
checks' head parse of 8 KiB of the costliest shape (one To field of thousands of addresses)
takes ~5 ms here, about one GIL switch interval, which a thread would not have spared the loop
either; an ordinary header block of a few KiB takes ~0.1 ms, less than the thread's hop."""


def _bounded(content: bytes, policy: InboundPolicy) -> bool:
    """Whether `_prepare` of `content` is short work whatever its shape, so it may run on the
    event loop: no line can be over the limit (the line check is then one comparison), and the
    header block, which the checks' parse and the Authentication-Results removal read, ends
    within INLINE_HEAD octets. Everything else after the header block is only searched by
    `bytes.find` (C, linear, no regex)."""
    return (len(content) <= policy.line_octets and len(content) <= MAX_HEADER_BLOCK
            and content.find(b"\r\n\r\n", 0, INLINE_HEAD) >= 0)


def _prepare(content: bytes, policy: InboundPolicy, checked: bool
             ) -> str | tuple[bytes, ParsedMessage | None]:
    """In a thread: a reply refusing the message for its shape; else the client's octets
    without any Authentication-Results claiming our hostname, and their header block for the
    checks (None when no check is configured)."""
    problem = message_problem(content, policy.line_octets)
    if problem:
        return problem
    if not checked:
        return content, None
    content = strip_ours(content, policy.hostname)
    return content, parse_head(content)


def _reply(verdict: Verdict) -> str:
    """The SMTP reply of a refusing verdict: the check's own, or the generic 5.7.1/4.7.1."""
    if verdict.reply:
        return verdict.reply
    if verdict.action is Action.TEMPFAIL:
        return f"451 4.7.1 {verdict.reason or 'Try again later'}"
    return f"554 5.7.1 {verdict.reason or 'Message refused by policy'}"


async def start_inbound(handler: InboundHandler, host: str, port: int,
                        tls: ssl.SSLContext | None, *, reuse_port: bool = False
                        ) -> asyncio.Server:
    """Listen for SMTP on host:port; STARTTLS is offered when a TLS context is given.
    `reuse_port`: other processes listen on the same port too (`[smtp] processes`)."""
    policy = handler.policy

    def factory() -> InboundSMTP:
        return InboundSMTP(
            handler, hostname=policy.hostname, ident=IDENT, data_size_limit=policy.message_size,
            enable_SMTPUTF8=True, decode_data=False, tls_context=tls, require_starttls=False,
            timeout=policy.timeout, auth_required=False, auth_require_tls=True,
            line_octets=policy.line_octets,
        )

    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, host=host, port=port, reuse_address=True,
                                    reuse_port=reuse_port or None, family=socket.AF_UNSPEC)
