"""Outbound delivery: one queue item per (submission, remote domain), sent by MX (RFC 5321 §5).

For each item: find the domain's MX hosts (implicit MX from A/AAAA when there is none, never
to a null MX, RFC 7505), try them in preference order over one connection per host, STARTTLS
whenever offered (opportunistic, RFC 7435: the certificate is not checked unless policy asks),
MAIL and every RCPT pipelined when the server offers PIPELINING (RFC 2920), DATA once for all
accepted recipients. The message is DKIM-signed with the sender domain's active keys at that
moment, so a key rotation applies to mail still in the queue. A domain that publishes an MTA-STS
policy in enforce mode (RFC 8461) is sent to only through MX hosts its policy names, over
STARTTLS with a certificate valid for that host; in testing mode, mismatches are logged.

Each recipient ends in one of three states. Delivered: dropped from the item. Temporary (4xx,
no answer, DNS trouble): the item is retried with only those recipients, on the configured
schedule; after `delay_notice_after` the sender gets one "delayed" DSN, after `give_up_after`
they fail. Permanent (5xx, expiry, null MX): the sender gets a "failed" DSN (RFC 3464) in their
Inbox, and when the item is done it goes to the dead-letter queue with the failed recipients
and the remote server's answers, where `mailyard dlq retry` can send it again.

The queue is at-least-once: a crash after the remote 250 and before our ack sends that message
again on restart. The window is one round trip; it cannot be closed without the remote's help.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from mailyard import metrics
from mailyard.core import dsn
from mailyard.core.addresses import domain_of, normalize
from mailyard.core.dkim import DKIMKey, sign, to_crlf
from mailyard.core.ratelimit import Ledger, LocalLedger
from mailyard.core.smarthost import Relay
from mailyard.core.workitems import OUTBOUND, BadItem, FailedRecipient, OutboundItem
from mailyard.dns import NullMX, PermanentDNSError, Resolver, TemporaryDNSError
from mailyard.mtasts import MTASTS
from mailyard.pipeline.smtpclient import UNSAFE, Broken, SmtpClient
from mailyard.store.ports import BlobStore, MailStore, NotFound, Queue, QueueItem

log = logging.getLogger("mailyard.outbound")


class Acceptor(Protocol):
    """Where a DSN goes: the one durable hand-off of a new message for local recipients
    (services/delivery.py DeliveryService.accept, given by the composition root)."""

    async def accept(self, *, queue_id: str, mail_from: str, recipients: Sequence[str],
                     raw: bytes, trace_length: int, received_at: int) -> object: ...


@dataclass(frozen=True)
class OutboundPolicy:
    hostname: str
    retry_schedule: tuple[float, ...] = (300.0, 600.0, 1200.0, 2400.0, 4800.0, 9600.0, 14400.0)
    give_up_after: float = 5 * 86400.0
    delay_notice_after: float = 4 * 3600.0
    per_domain_per_minute: int = 600
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    port: int = 25
    require_tls: bool = False
    cafile: str | None = None
    """Trusted CAs for verified TLS (MTA-STS); None: the system's."""
    relayhost: Relay | None = None
    """A smarthost for every sender (core/smarthost.py); None: by MX."""
    relays: Mapping[str, Relay] = field(default_factory=dict)
    """Smarthosts per sender domain, before `relayhost`."""
    concurrency: int = 16
    lease_seconds: float = 600.0


@dataclass
class Reply:
    """The answer one recipient got (or the reason there was none)."""

    code: int
    text: str
    host: str | None = None

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def status(self) -> str:
        """The enhanced status code in the reply, or one made from the reply class."""
        first = self.text.split(" ", 1)[0]
        parts = first.split(".")
        if len(parts) == 3 and all(p.isdigit() for p in parts) and first[0] in "245":
            return first
        return f"{str(self.code)[0]}.0.0"

    def diagnostic(self) -> str:
        return f"smtp; {self.code} {' '.join(self.text.split())}"


@dataclass
class Attempt:
    delivered: list[str] = field(default_factory=list)
    temporary: dict[str, Reply] = field(default_factory=dict)
    permanent: dict[str, Reply] = field(default_factory=dict)


class _NoConnection(Exception):
    pass


def _opportunistic_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class OutboundWorker:
    def __init__(self, queue: Queue, blobs: BlobStore, store: MailStore, resolver: Resolver,
                 delivery: Acceptor, policy: OutboundPolicy,
                 mta_sts: MTASTS | None = None, ledger: Ledger | None = None) -> None:
        self.mta_sts = mta_sts
        # `per_domain_per_minute` is counted in the ledger: with `[store] counters` (Redis)
        # over every worker of every node, so N nodes together send a domain at most the
        # limit; without it (or while Redis is away) in this process alone.
        self.ledger = ledger if ledger is not None else LocalLedger()
        self.queue = queue
        self.blobs = blobs
        self.store = store
        self.resolver = resolver
        self.delivery = delivery
        self.policy = policy
        self.delivered = 0
        self._tls = _opportunistic_tls()
        self._verified = ssl.create_default_context(cafile=policy.cafile)

    async def run(self, stop: asyncio.Event) -> None:
        busy: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            room = self.policy.concurrency - len(busy)
            items = await self.queue.lease([OUTBOUND], room, self.policy.lease_seconds) \
                if room > 0 else []
            for item in items:
                task = asyncio.create_task(self.handle(item))
                busy.add(task)
                task.add_done_callback(busy.discard)
            if not items:
                await self.queue.wait(1.0)
        for task in busy:
            task.cancel()

    async def handle(self, item: QueueItem) -> None:
        try:
            await self._handle(item)
        except Exception as e:  # a bug or a store outage: try again later, never lose it
            log.exception("outbound item %s failed", item.id)
            await self.queue.retry(item, f"{type(e).__name__}: {e}", 60.0)

    async def _handle(self, item: QueueItem) -> None:
        try:
            p = OutboundItem.from_json(item.payload)
        except BadItem as e:
            await self.queue.bury(item, f"not an outbound item: {e}")
            return
        domain = p.domain
        now = time.time()
        if not await self.ledger.admit(f"outbound-domain:{domain}",
                                       self.policy.per_domain_per_minute, 60.0):
            await self.queue.retry(item, f"rate limit for {domain}", 5.0)
            return
        try:
            raw = await self.blobs.get(p.spool)
        except NotFound:
            await self.queue.bury(item, f"spooled message {p.spool} is missing")
            return
        attempt = await self.attempt(domain, p.mail_from, list(p.recipients),
                                     await self._signed(p.mail_from, raw))
        self.delivered += len(attempt.delivered)
        metrics.mail("delivered", len(attempt.delivered))
        if attempt.delivered:
            log.info("item %s: delivered to %s", item.id, ", ".join(attempt.delivered),
                     extra={"queue_id": item.id})
        expired = now - p.submitted_at >= self.policy.give_up_after
        if expired:
            for rcpt, reply in attempt.temporary.items():
                attempt.permanent[rcpt] = Reply(reply.code, (
                    f"4.4.7 Gave up after {self.policy.give_up_after / 3600:g} h; last"
                    f" answer: {reply.text}"), reply.host)
            attempt.temporary.clear()
        failed = (*p.failed, *(FailedRecipient(r, f"{x.code} {x.text}", x.host)
                               for r, x in attempt.permanent.items()))
        if attempt.permanent:
            await self._notify(item, p, "failed", attempt.permanent, raw)
        if attempt.temporary:
            notified = p.delay_notified
            if not notified and now - p.submitted_at >= self.policy.delay_notice_after:
                await self._notify(item, p, "delayed", attempt.temporary, raw)
                notified = True
            schedule = self.policy.retry_schedule
            delay = schedule[min(item.attempts - 1, len(schedule) - 1)]
            error = "; ".join(f"{r}: {x.code} {x.text}" for r, x in attempt.temporary.items())
            await self.queue.retry(item, error[:2000], delay, payload=replace(
                p, recipients=tuple(attempt.temporary), failed=failed,
                delay_notified=notified).to_json())
            metrics.mail("deferred", len(attempt.temporary))
            log.info("item %s: deferred, retry in %.0fs: %s", item.id, delay, error[:500],
                     extra={"queue_id": item.id})
            return
        if failed:
            error = "; ".join(f"{f.recipient}: {f.reply}" for f in failed)
            await self.queue.bury(item, error[:4000], payload=replace(
                p, recipients=tuple(f.recipient for f in failed), failed=failed).to_json())
            metrics.mail("dead_lettered")
            log.warning("item %s: failed for good: %s", item.id, error[:500],
                        extra={"queue_id": item.id})
            return  # the spool stays for `mailyard dlq retry`
        await self.queue.ack(item)
        await self.blobs.delete(p.spool)

    # ------------------------------------------------------------------ sending

    async def attempt(self, domain: str, mail_from: str, recipients: list[str],
                      message: bytes) -> Attempt:
        """One delivery attempt of `message` to the recipients at `domain`."""
        relay = self._relay(mail_from)
        if relay is not None:
            return await self._via_relay(relay, mail_from, recipients, message)
        result = Attempt()
        try:
            hosts = await self.resolver.mx(domain)
        except NullMX:
            return _all(recipients, Reply(556, f"5.1.10 {domain} accepts no mail (null MX)"))
        except PermanentDNSError as e:
            return _all(recipients, Reply(550, f"5.1.2 No mail server for {domain}: {e}"))
        except TemporaryDNSError as e:
            return _all(recipients, Reply(451, f"4.4.3 DNS lookup for {domain} failed: {e}"),
                        temporary=True)
        sts = await self.mta_sts.policy(domain) if self.mta_sts else None
        enforce = sts is not None and sts.mode == "enforce"
        if enforce:
            assert sts is not None
            allowed = [mx for mx in hosts if sts.matches(mx.host)]
            if not allowed:  # RFC 8461 §5.1: no MX fits the policy, so none may be used
                return _all(recipients, Reply(451, f"4.7.5 No MX of {domain} matches its"
                                                   " MTA-STS policy"), temporary=True)
            hosts = allowed
        elif sts is not None and sts.mode == "testing":
            for mx in hosts:
                if not sts.matches(mx.host):
                    log.warning("MTA-STS testing: MX %s of %s is not in its policy", mx.host,
                                domain)
        last = Reply(451, f"4.4.1 No mail server of {domain} answered")
        for mx in hosts:
            try:
                addresses = await self.resolver.addresses(mx.host)
            except (PermanentDNSError, TemporaryDNSError) as e:
                last = Reply(451, f"4.4.3 Cannot resolve {mx.host}: {e}", mx.host)
                continue
            for address in addresses:
                try:
                    return await self._session(mx.host, address, mail_from, recipients,
                                               message, verify=enforce)
                except _NoConnection as e:
                    last = Reply(451, f"4.4.1 {mx.host} [{address}]: {e}", mx.host)
                    log.info("%s", last.text)
        result.temporary = {r: last for r in recipients}
        return result

    def _relay(self, mail_from: str) -> Relay | None:
        domain = domain_of(normalize(mail_from)) if "@" in mail_from else ""
        return self.policy.relays.get(domain, self.policy.relayhost)

    async def _via_relay(self, relay: Relay, mail_from: str, recipients: list[str],
                         message: bytes) -> Attempt:
        """One attempt through a smarthost: TLS (implicit, or STARTTLS required) with its
        certificate checked, AUTH PLAIN when configured, then the one transaction. A refused
        login is temporary: it is the admin's to fix, not the sender's to be told."""
        client = SmtpClient(self.policy.command_timeout)
        where = f"smarthost {relay.host}:{relay.port}"
        try:
            try:
                answer = await client.connect(
                    relay.host, relay.port, self.policy.connect_timeout,
                    tls=self._verified if relay.implicit_tls else None,
                    server_hostname=relay.host)
                if answer.code != 220:
                    raise _NoConnection(f"greeting: {answer.code} {answer.text}")
                answer = await client.hello(self.policy.hostname)
                if answer.code != 250:
                    raise _NoConnection(f"EHLO: {answer.code} {answer.text}")
                if not relay.implicit_tls and not relay.insecure:
                    if not client.supports("STARTTLS"):
                        raise _NoConnection("offers no STARTTLS and TLS is required")
                    answer = await client.starttls(self._verified, relay.host)
                    if answer.code != 220:
                        raise _NoConnection(f"STARTTLS: {answer.code} {answer.text}")
                    answer = await client.hello(self.policy.hostname)
                    if answer.code != 250:
                        raise _NoConnection(f"EHLO after STARTTLS: {answer.code}"
                                            f" {answer.text}")
                if relay.username:
                    answer = await client.auth_plain(relay.username, relay.password)
                    if answer.code != 235:
                        raise _NoConnection(f"AUTH refused: {answer.code} {answer.text}")
            except Broken as e:
                raise _NoConnection(str(e)) from None
            try:
                return await self._transaction(client, relay.host, mail_from, recipients,
                                               message)
            except Broken as e:
                return _all(recipients, Reply(451, f"4.4.2 {where}: connection lost: {e}",
                                              relay.host), temporary=True)
        except _NoConnection as e:
            log.warning("%s: %s", where, e)
            return _all(recipients, Reply(451, f"4.4.1 {where}: {e}", relay.host),
                        temporary=True)
        finally:
            await client.quit()

    async def _session(self, host: str, address: str, mail_from: str, recipients: list[str],
                       message: bytes, *, verify: bool = False) -> Attempt:
        """One SMTP session; `verify` (an enforced MTA-STS policy) demands STARTTLS with a
        certificate valid for the MX host name."""
        client = SmtpClient(self.policy.command_timeout)
        try:
            try:
                await self._open(client, host, address, verify)
            except Broken as e:
                raise _NoConnection(str(e)) from None
            try:
                return await self._transaction(client, host, mail_from, recipients, message)
            except Broken as e:
                # Lost mid-transaction: nothing was accepted (a 250 to DATA ends it).
                return _all(recipients, Reply(451, f"4.4.2 {host}: connection lost: {e}",
                                              host), temporary=True)
        finally:
            await client.quit()

    async def _open(self, client: SmtpClient, host: str, address: str, verify: bool) -> None:
        """Greeting, EHLO, and STARTTLS when offered (then EHLO again, RFC 3207 §4.2)."""
        answer = await client.connect(address, self.policy.port, self.policy.connect_timeout)
        if answer.code != 220:
            raise _NoConnection(f"greeting: {answer.code} {answer.text}")
        answer = await client.hello(self.policy.hostname)
        if answer.code != 250:
            raise _NoConnection(f"EHLO: {answer.code} {answer.text}")
        if client.supports("STARTTLS"):
            answer = await client.starttls(self._verified if verify else self._tls, host)
            if answer.code != 220:
                raise _NoConnection(f"STARTTLS: {answer.code} {answer.text}")
            answer = await client.hello(self.policy.hostname)
            if answer.code != 250:
                raise _NoConnection(f"EHLO after STARTTLS: {answer.code} {answer.text}")
        elif self.policy.require_tls or verify:
            raise _NoConnection("offers no STARTTLS and TLS is required")

    async def _transaction(self, client: SmtpClient, host: str, mail_from: str,
                           recipients: list[str], message: bytes) -> Attempt:
        result = Attempt()
        if UNSAFE.intersection(mail_from):
            return _all(recipients, Reply(501, "5.1.7 Bad sender address syntax"))
        for rcpt in recipients:
            if UNSAFE.intersection(rcpt):
                result.permanent[rcpt] = Reply(501, "5.1.3 Bad recipient address syntax")
        recipients = [r for r in recipients if r not in result.permanent]
        if not recipients:
            return result
        options = [f"SIZE={len(message)}"] if client.supports("SIZE") else []
        if client.supports("8BITMIME") and any(b > 127 for b in message):
            options.append("BODY=8BITMIME")
        if client.supports("SMTPUTF8") and not all(a.isascii() for a in [mail_from,
                                                                          *recipients]):
            options.append("SMTPUTF8")  # RFC 6531 §3.4: internationalized addresses
        mail = f"MAIL FROM:<{mail_from}>" + "".join(f" {o}" for o in options)
        rcpts = [f"RCPT TO:<{r}>" for r in recipients]
        if client.supports("PIPELINING"):
            replies = await client.pipeline([mail, *rcpts])
        else:
            replies = [await client.command(mail)]
            if replies[0].code == 250:
                replies += [await client.command(c) for c in rcpts]
        if replies[0].code != 250:
            failed = _all(recipients, Reply(replies[0].code, replies[0].text, host),
                          temporary=replies[0].code < 500)
            result.temporary.update(failed.temporary)
            result.permanent.update(failed.permanent)
            return result
        accepted: list[str] = []
        for rcpt, reply in zip(recipients, replies[1:], strict=True):
            if reply.code in (250, 251):
                accepted.append(rcpt)
            else:
                target = result.permanent if reply.code >= 500 else result.temporary
                target[rcpt] = Reply(reply.code, reply.text, host)
        if not accepted:
            await client.command("RSET")
            return result
        answer = await client.data(message)
        if answer.code != 250:
            target = result.permanent if answer.code >= 500 else result.temporary
            for rcpt in accepted:
                target[rcpt] = Reply(answer.code, answer.text, host)
            return result
        result.delivered = accepted
        return result

    # ------------------------------------------------------------------ DKIM and DSNs

    async def _signed(self, mail_from: str, raw: bytes) -> bytes:
        domain = domain_of(normalize(mail_from)) if "@" in mail_from else ""
        if not domain:
            return raw
        keys = [DKIMKey(k.domain, k.selector, k.algorithm, k.private_key)  # type: ignore[arg-type]
                for k in await self.store.dkim_keys(domain) if k.active]
        if not keys:
            return raw
        try:
            return sign(raw, keys) + to_crlf(raw)
        except Exception:
            log.exception("DKIM signing for %s failed; sending unsigned", domain)
            return raw

    async def _notify(self, item: QueueItem, p: OutboundItem, action: str,
                      replies: dict[str, Reply], raw: bytes) -> None:
        """A DSN to the sender's Inbox, through the inbound pipeline like any local mail.
        Its queue id is derived from the item, so a retried attempt never sends it twice."""
        sender = p.mail_from
        if not sender or dsn.is_bounce(raw[p.trace_length:]):
            return  # never a DSN about a DSN, nor to the null sender
        now = datetime.now(UTC)
        until = datetime.fromtimestamp(p.submitted_at + self.policy.give_up_after, UTC)
        statuses = [dsn.RecipientStatus(
            recipient=rcpt, action=action,  # type: ignore[arg-type]
            status=reply.status, remote_mta=reply.host, diagnostic=reply.diagnostic(),
            last_attempt=now, will_retry_until=until if action == "delayed" else None)
            for rcpt, reply in replies.items()]
        report = dsn.build_dsn(
            raw[p.trace_length:], reporting_mta=self.policy.hostname, sender=sender,
            postmaster=f"postmaster@{self.policy.hostname}", recipients=statuses,
            arrival=datetime.fromtimestamp(p.submitted_at, UTC), envelope_id=p.submission,
            now=now, message_id_domain=self.policy.hostname)
        suffix = "delay" if action == "delayed" else f"fail{item.attempts}"
        if action == "failed":
            metrics.mail("bounced", len(replies))
        await self.delivery.accept(
            queue_id=f"{item.id}.{suffix}", mail_from="", recipients=[sender], raw=report,
            trace_length=0, received_at=int(time.time() * 1000))


def _all(recipients: list[str], reply: Reply, *, temporary: bool = False) -> Attempt:
    result = Attempt()
    target = result.temporary if temporary or not reply.permanent else result.permanent
    for rcpt in recipients:
        target[rcpt] = reply
    return result
