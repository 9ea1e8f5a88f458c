"""Sieve for every account: scripts managed (ManageSieve, the CLI), checked on upload, and run
per recipient by the inbound pipeline after spam placement (pipeline/inbound.py `Filters`).

What a run decides becomes the recipient's `Target` (which mailboxes, which keywords, an
edited header block, or nothing for discard), plus effects outside the mailbox, each queued
under a key derived from the delivery's so that a retried delivery queues nothing twice:
redirect (the message to another address, local or remote, with the original envelope
sender), reject/ereject (a delivery report to the envelope sender, through the same queue as
every bounce), vacation (handed to services/vacation.py, the one responder), and the
duplicate test's memory (recorded once the email is stored, RFC 7352 §3).

A script that fails at run time, or runs out of its budget, leaves the message where the
spam placement put it (the Inbox, or Junk): mail is never lost to a script. The error is
logged with the account and script name. So does a redirect or rejection report that cannot
be queued.

Abuse limits, since a script's effects reach other people:
- redirect targets are resolved by the routing rules (aliases, alias domains, catch-alls
  expand; remote copies leave from an SRS address) and queued through DeliveryService, as
  if the message had been sent to the target; a local address no rule accepts is refused at
  the script (the message kept, a log line), never dead-lettered later;
- a message that went through MAX_HOPS Sieve redirects (our trace fields, whoever's) is not
  redirected again, and one message may be redirected MAX_REDIRECTS times in all, across
  hops: each redirected copy carries what is left of that budget in our trace field, split
  between the copies; a redirect refused by either limit keeps the message (implicit keep);
- a message the spam placement put in Junk is not redirected at all (the redirect is
  refused and the message stays in Junk): spam is never forwarded, by an alias
  (services/routing_delivery.py) or by a script, and a local target would get it without
  the spam verdict. A script that takes it out of Junk itself (an explicit `fileinto
  "INBOX"`, the webmail's "never spam") has said it is not spam, and its redirects go;
- a rejection report after acceptance goes only to a sender the MX authenticated (SPF pass,
  or DMARC pass with the MAIL FROM domain aligned) or an account that submitted it; any
  other reject discards silently (RFC 5429 §2.1), so forged senders get no backscatter.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING

from mailyard.core import dsn
from mailyard.core.addresses import domain_of, normalize
from mailyard.core.sieve import (
    Budget,
    Envelope,
    Environment,
    Keep,
    Redirect,
    Reject,
    Result,
    Script,
    SieveMessage,
    SieveRuntimeError,
    Vacation,
    parse,
    run,
)
from mailyard.core.sieve.interp import MAX_REDIRECTS
from mailyard.core.workitems import InboundItem, MessageLoader
from mailyard.services.accounts import RecipientStatus
from mailyard.store.ports import (
    Account,
    BlobStore,
    MailStore,
    Queue,
    SieveScriptRecord,
    SieveScriptStore,
)

if TYPE_CHECKING:
    from mailyard.pipeline.inbound import Target
    from mailyard.services.delivery import DeliveryService
    from mailyard.services.mailbox import MailboxService
    from mailyard.services.routing import RoutingService
    from mailyard.services.vacation import VacationResponder

log = logging.getLogger("mailyard.sieve")

MAX_NAME = 128
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f\u0080-\u009f\u2028\u2029/]")
"""RFC 5804 §1.6: no control characters, no line or paragraph separators; "/" too, since
names are shown as paths by some clients."""
_SYSTEM_FLAGS = {"\\seen": "$seen", "\\flagged": "$flagged", "\\answered": "$answered",
                 "\\draft": "$draft", "\\deleted": "$deleted"}


class ScriptRefused(ValueError):
    """A script or name the service will not store; `code` is RFC 5804's response code."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class SieveLimits:
    max_script_bytes: int = 64 * 1024
    max_scripts: int = 32
    max_steps: int = 1_000_000
    max_seconds: float = 2.0


def keywords(flags: Sequence[str]) -> list[str]:
    """IMAP flags (RFC 5232) as JMAP keywords: \\Seen is $seen; other system flags dropped."""
    out: list[str] = []
    for flag in flags:
        low = flag.lower()
        if low.startswith("\\"):
            if low in _SYSTEM_FLAGS:
                out.append(_SYSTEM_FLAGS[low])
        else:
            out.append(flag)
    return out


MAX_HOPS = 2
"""Sieve redirects (ours, for any recipient) a message may have been through and still be
redirected again: RFC 5228 §4.2 leaves the loop limit to the implementation."""
MAX_RECEIVED = 50
_TRACE = b"(Mailyard Sieve redirect)"
_LEFT = re.compile(rb"\(Mailyard Sieve redirect\)[^\r\n]*?\(redirects left ([0-9]{1,3})\)",
                   re.IGNORECASE)


class SieveService:
    def __init__(self, scripts: SieveScriptStore, store: MailStore, blobs: BlobStore,
                 queue: Queue, *, hostname: str, limits: SieveLimits | None = None,
                 routing: Callable[[], RoutingService] | None = None,
                 delivery: Callable[[], DeliveryService] | None = None,
                 mailbox: Callable[[], MailboxService] | None = None,
                 vacation: Callable[[], VacationResponder] | None = None) -> None:
        """`routing`, `delivery`, `mailbox` and `vacation` are asked for when a run first
        needs them (the composition root builds them then): managing scripts (the CLI,
        ManageSieve) needs none of them."""
        self.scripts = scripts
        self.store = store
        self.blobs = blobs
        self.queue = queue
        self.hostname = hostname
        self.limits = limits or SieveLimits()
        self.routing = routing
        """Where a redirect target's mail goes (RoutingService.resolve): refused at the
        script when no rule accepts it."""
        self.delivery = delivery
        """The durable hand-off redirected copies and rejection reports go through
        (DeliveryService.accept: a copy per account, forwards with SRS, loop stops)."""
        self.mailbox = mailbox
        self.vacation = vacation
        self._compiled: OrderedDict[str, Script] = OrderedDict()
        """Parsed scripts by the SHA-256 of their text: the active script is read per
        delivery (cheap, and right in every process), parsed once."""
        self._lock = threading.Lock()
        """The cache is shared by the parses running in worker threads."""

    # ----------------------------------------------------------------------------------------
    # Management (RFC 5804's operations)

    @staticmethod
    def check_name(name: str) -> None:
        if not name or len(name) > MAX_NAME or _BAD_NAME.search(name):
            raise ScriptRefused(f"bad script name {name!r}")

    def check(self, content: str) -> Script:
        """Raises SieveSyntaxError (the message names the line). Parses in the caller's
        thread: from the event loop, `validate` parses in a worker thread instead."""
        self._check_size(content)
        return self.compile(content)

    async def validate(self, content: str) -> Script:
        """`check` with the parse off the event loop (a 64 KB script takes a few hundred ms
        to parse, which no other session should wait for)."""
        self._check_size(content)
        return await self._compile_off_loop(content)

    def _check_size(self, content: str) -> None:
        if len(content.encode()) > self.limits.max_script_bytes:
            raise ScriptRefused(f"script larger than {self.limits.max_script_bytes} octets",
                                "QUOTA/MAXSIZE")

    def compile(self, content: str) -> Script:
        key = hashlib.sha256(content.encode()).hexdigest()
        with self._lock:
            script = self._compiled.get(key)
            if script is not None:
                self._compiled.move_to_end(key)
                return script
        script = parse(content)
        with self._lock:
            self._compiled[key] = script
            if len(self._compiled) > 512:
                self._compiled.popitem(last=False)
        return script

    async def _compile_off_loop(self, content: str) -> Script:
        key = hashlib.sha256(content.encode()).hexdigest()
        with self._lock:
            script = self._compiled.get(key)
            if script is not None:
                self._compiled.move_to_end(key)
                return script
        return await asyncio.to_thread(self.compile, content)

    async def have_space(self, account: Account, name: str, size: int) -> None:
        """Raises ScriptRefused (QUOTA/...) when a script of `size` octets would not fit."""
        if size > self.limits.max_script_bytes:
            raise ScriptRefused(f"script larger than {self.limits.max_script_bytes} octets",
                                "QUOTA/MAXSIZE")
        names = {s.name for s in await self.scripts.list_scripts(account.id)}
        if name not in names and len(names) >= self.limits.max_scripts:
            raise ScriptRefused(f"at most {self.limits.max_scripts} scripts",
                                "QUOTA/MAXSCRIPTS")

    async def put(self, account: Account, name: str, content: str) -> None:
        """Check and store (replacing a script of that name)."""
        self.check_name(name)
        await self.have_space(account, name, len(content.encode()))
        await self.validate(content)
        await self.scripts.put_script(account.id, name, content)

    async def list(self, account: Account) -> list[SieveScriptRecord]:
        return await self.scripts.list_scripts(account.id)

    async def get(self, account: Account, name: str) -> SieveScriptRecord:
        return await self.scripts.get_script(account.id, name)

    async def activate(self, account: Account, name: str | None) -> None:
        """`None` or "" deactivates (RFC 5804 SETACTIVE "")."""
        await self.scripts.set_active(account.id, name or None)

    async def delete(self, account: Account, name: str) -> None:
        script = await self.scripts.get_script(account.id, name)
        if script.active:
            raise ScriptRefused(f"script {name!r} is active", "ACTIVE")
        await self.scripts.delete_script(account.id, name)

    async def rename(self, account: Account, old: str, new: str) -> None:
        self.check_name(new)
        await self.scripts.rename_script(account.id, old, new)

    # ----------------------------------------------------------------------------------------
    # Filing (the inbound pipeline)

    async def file(self, target: Target, recipient: str, mail_from: str,
                   message: MessageLoader, delivery_key: str, *,
                   item: InboundItem | None = None) -> Target:
        """Run the recipient's active script and say where the message goes. `item` is the
        queue item (whether its sender was authenticated decides a rejection report)."""
        active = await self.scripts.get_active(target.account_id)
        if active is None:
            return target
        try:
            script = await self._compile_off_loop(active.content)
        except Exception as e:  # stored before a stricter check: keep the mail
            log.error("sieve script %r of account %s does not parse any more: %s",
                      active.name, target.account_id, e,
                      extra={"account_id": target.account_id})
            return target
        raw, parsed = await message()
        boxes = await self.store.list_mailboxes(target.account_id)
        names = {b.name for b in boxes} | {"INBOX"}
        loop = asyncio.get_running_loop()
        account_id = target.account_id

        def seen(key: str) -> bool:
            fut = asyncio.run_coroutine_threadsafe(
                self.scripts.duplicate_seen(account_id, _hash(key), time.time()), loop)
            return fut.result(timeout=30)

        env = Environment(now=datetime.now(UTC), mailbox_exists=lambda n: n in names,
                          duplicate_seen=seen)
        budget = Budget(self.limits.max_steps, self.limits.max_seconds)
        sieve_message = SieveMessage.from_bytes(raw, parsed)
        started = time.monotonic()
        try:
            result = await asyncio.to_thread(run, script, sieve_message,
                                             Envelope(mail_from, recipient), env, budget)
        except SieveRuntimeError as e:
            log.error("sieve script %r of account %s failed, message kept where the spam"
                      " placement put it: %s", active.name, account_id, e,
                      extra={"account_id": account_id, "queue_id": delivery_key})
            return target
        log.debug("sieve %r for %s: %s in %.1f ms (%d steps)", active.name, account_id,
                  result.actions, (time.monotonic() - started) * 1000, result.steps)
        carried = await self._allowed_redirects(result, raw, mail_from, recipient,
                                                  f"script {active.name!r} of account"
                                                  f" {account_id}", delivery_key,
                                                  spam=_spam(target, result))
        try:
            await self._effects(result, carried, raw, mail_from, recipient, account_id,
                                delivery_key, item)
        except Exception as e:  # a copy that cannot be queued: as if the script failed
            log.error("sieve script %r of account %s: its redirect or report could not be"
                      " queued, message kept where the spam placement put it: %s",
                      active.name, account_id, e,
                      extra={"account_id": account_id, "queue_id": delivery_key})
            return target
        return await self._target(target, result, raw, mail_from, boxes, message)

    async def _allowed_redirects(self, result: Result, raw: bytes, mail_from: str,
                                 recipient: str, who: str, delivery_key: str, *,
                                 spam: bool = False) -> int:
        """How many copies each of the run's redirects may carry on (the budget each
        redirected copy gets), after refusing those over the limits, and all of them for
        `spam`: a refused redirect keeps the message (implicit keep), logged."""
        redirects = [i for i, a in enumerate(result.actions) if isinstance(a, Redirect)]
        if not redirects:
            return 0
        head = _head(raw)
        hops = head.lower().count(_TRACE.lower())
        left = _budget(head)
        refused: dict[int, str] = {}
        if spam:
            refused = dict.fromkeys(redirects, "spam is not forwarded (it is in Junk)")
        elif _looping(head, recipient):
            refused = dict.fromkeys(redirects, "a loop: this recipient redirected it before")
        elif hops >= MAX_HOPS:
            refused = dict.fromkeys(redirects, f"it was redirected {hops} times already")
        else:
            refused = dict.fromkeys(redirects[max(left, 0):], f"at most {MAX_REDIRECTS}"
                                    f" redirects of one message across hops ({left} left)")
        routing = self.routing() if self.routing is not None else None
        for i in redirects:
            action = result.actions[i]
            assert isinstance(action, Redirect)
            if i in refused:
                continue
            if routing is None or self.delivery is None:
                refused[i] = "no delivery service to redirect through"
                continue
            resolution = await routing.resolve(action.address)
            if resolution.status is RecipientStatus.NOT_LOCAL:
                continue
            if resolution.status is not RecipientStatus.OK or (resolution.bounce and mail_from):
                refused[i] = f"no such recipient here ({resolution.status.name.lower()})"
        if refused:
            for i, why in sorted(refused.items()):
                address = getattr(result.actions[i], "address", "")
                log.warning("sieve %s: redirect to <%s> refused, message kept: %s", who,
                            address, why, extra={"queue_id": delivery_key})
            result.actions = [a for i, a in enumerate(result.actions) if i not in refused]
            result.implicit_keep = True
        sent = len(redirects) - len(refused)
        return (left - sent) // sent if sent else 0

    async def _effects(self, result: Result, budget: int, raw: bytes, mail_from: str,
                       recipient: str, account_id: str, delivery_key: str,
                       item: InboundItem | None) -> None:
        """Queue what leaves the account: redirected copies and rejection reports, each
        under an id derived from the delivery's (a retry queues nothing twice)."""
        for n, action in enumerate(result.actions):
            if isinstance(action, Redirect):
                trace = (f"Received: by {self.hostname} (Mailyard Sieve redirect) for"
                         f" <{recipient}> (redirects left {budget});"
                         f" {format_datetime(datetime.now(UTC))}\r\n").encode("utf-8", "replace")
                await self._accept(child_id(delivery_key, f"{account_id}/r{n}"), mail_from,
                                   action.address, trace + _without_return_path(raw),
                                   len(trace))
            elif isinstance(action, Reject):
                await self._reject(child_id(delivery_key, f"{account_id}/j{n}"), mail_from,
                                   recipient, raw, action, item)

    async def _target(self, target: Target, result: Result, raw: bytes, mail_from: str,
                      boxes: Sequence[object], message: MessageLoader) -> Target:
        account_id = target.account_id
        by_name = {getattr(b, "name", ""): getattr(b, "id", "") for b in boxes}
        roles: list[str] = []
        ids: list[str] = []
        kws = list(target.keywords)
        for d in result.deliveries():
            kws += keywords(d.flags)
            if not isinstance(d, Keep) and d.mailbox.upper() == "INBOX" \
                    and "junk" in target.mailbox_roles:
                # An explicit fileinto "INBOX" (a "never spam" filter) overrides the spam
                # placement; `keep` means "where it would have gone", Junk included.
                roles += [] if "inbox" in roles else ["inbox"]
                if "$junk" in kws:
                    kws.remove("$junk")
                continue
            if isinstance(d, Keep) or d.mailbox.upper() == "INBOX":
                roles += [r for r in target.mailbox_roles if r not in roles]
                ids += [i for i in target.mailbox_ids if i not in ids]
                continue
            box_id = by_name.get(d.mailbox)
            if box_id is None and d.create and self.mailbox is not None:
                try:
                    account = await self.store.get_account_by_id(account_id)
                    box_id = (await self.mailbox().create_mailbox(account, d.mailbox)).id
                except Exception as e:
                    log.warning("sieve fileinto :create %r for account %s failed: %s",
                                d.mailbox, account_id, e)
            if box_id is None:
                log.warning("sieve fileinto %r: no such mailbox in account %s; kept in the"
                            " default mailbox instead", d.mailbox, account_id)
                roles += [r for r in target.mailbox_roles if r not in roles]
                ids += [i for i in target.mailbox_ids if i not in ids]
            elif box_id not in ids:
                ids.append(box_id)
                if "junk" in target.mailbox_roles and "$junk" in kws:
                    kws.remove("$junk")  # filed out of Junk by the user's own rule
        vacation = next((a for a in result.actions if isinstance(a, Vacation)), None)
        if vacation is not None and not roles and not ids and _spam(target, result):
            # Spam discarded: no reply (the sender is most likely forged: backscatter), as
            # the responder gives none to what it finds stored in Junk.
            log.info("sieve vacation for account %s: no reply to spam from <%s>",
                     account_id, mail_from)
            vacation = None
        if vacation is not None and not roles and not ids and self.vacation is not None:
            # Nothing is stored, so no after-delivery hook: answer from the parse now.
            _, parsed = await message()
            await self.vacation().answer_unstored(
                account_id, vacation, mail_from, raw[:parsed.root.body_start],
                [a.email for a in (*parsed.to, *parsed.cc)], parsed.subject,
                parsed.message_id, parsed.references)
        after = _After(self, account_id, result.duplicates, vacation, mail_from)
        new = replace(target, mailbox_roles=roles, mailbox_ids=ids,
                      keywords=list(dict.fromkeys(kws)), head=result.edited_head,
                      discard=not roles and not ids, after=after.delivered)
        return new

    async def _accept(self, item_id: str, mail_from: str, recipient: str, raw: bytes,
                      trace_length: int) -> None:
        """Hand `raw` to DeliveryService as if it had been sent to `recipient`: the routing
        rules expand it (a copy per account, remote copies from an SRS address);
        idempotent by `item_id` (the queue ignores an id it has)."""
        if self.delivery is None:
            raise RuntimeError("no delivery service to queue a Sieve copy through")
        await self.delivery().accept(queue_id=item_id, mail_from=mail_from,
                                     recipients=[recipient], raw=raw,
                                     trace_length=trace_length,
                                     received_at=int(time.time() * 1000))
        log.info("sieve queued %s for %s", item_id, recipient, extra={"queue_id": item_id})

    async def _reject(self, item_id: str, mail_from: str, recipient: str, raw: bytes,
                      action: Reject, item: InboundItem | None) -> None:
        """A delivery report saying the recipient refused the message (RFC 5429 §2.1 allows
        a DSN); never to the null sender or about a report. The message was accepted with a
        250 already, so its envelope sender may be forged: the report goes only to a sender
        that was authenticated (`sender_verified`); for any other the reject is a silent
        discard, which §2.1 allows ("MAY ... discard"), so that spam with a forged sender
        makes no backscatter."""
        if not mail_from or dsn.is_bounce(raw):
            log.info("sieve reject for %s: no report to <%s>", recipient, mail_from)
            return
        if not sender_verified(item, mail_from):
            log.info("sieve reject for %s: sender <%s> not authenticated (no SPF pass, no"
                     " aligned DMARC pass); discarded without a report", recipient, mail_from,
                     extra={"queue_id": item_id})
            return
        reason = " ".join(action.reason.split())[:900] or "rejected"
        status = dsn.RecipientStatus(recipient=recipient, action="failed", status="5.7.1",
                                     diagnostic=f"smtp; 550 5.7.1 {reason}")
        report = dsn.build_dsn(raw, reporting_mta=self.hostname, sender=mail_from,
                               postmaster=f"postmaster@{self.hostname}", recipients=[status],
                               arrival=datetime.now(UTC), message_id_domain=self.hostname)
        await self._accept(item_id, "", mail_from, report, 0)


def sender_verified(item: InboundItem | None, mail_from: str) -> bool:
    """Whether the envelope sender of `item` was authenticated, so that a report to it
    reaches who sent the message: an account submitted it, or the MX's checks found SPF
    pass for MAIL FROM, or DMARC pass (an aligned DKIM signature) for a From domain that
    MAIL FROM's domain is aligned with (relaxed, RFC 7489 §3.1)."""
    if item is None:
        return False
    if item.account_id:
        return True
    if item.verdict is None:
        return False
    auth = item.verdict.notes.get("auth")
    if not isinstance(auth, dict):
        return False
    spf = auth.get("spf")
    if isinstance(spf, dict) and spf.get("mailfrom") == "pass":
        return True
    from_domain = auth.get("from_domain")
    if auth.get("dmarc") == "pass" and isinstance(from_domain, str) and from_domain:
        from mailyard.services.checks.auth import aligned

        return aligned(domain_of(normalize(mail_from)), from_domain, "r")
    return False


def child_id(parent: str, suffix: str) -> str:
    """The queue id of a copy a Sieve run sends: the original message's id (what the logs
    group by) and a hash of the whole parent id with `suffix`, so a chain of redirects
    keeps the id at a fixed length (blob ids are at most 128 characters)."""
    root = re.sub(r"[^A-Za-z0-9]", "", parent.partition(".")[0])[:32] or "Q"
    return f"{root}.s{hashlib.sha256(f'{parent}/{suffix}'.encode()).hexdigest()[:20]}"


def _spam(target: Target, result: Result) -> bool:
    """Whether the message is spam for this recipient once the script has run: the spam
    placement put it in Junk, and the script did not take it out with an explicit
    `fileinto "INBOX"` (which `_target` honours the same way)."""
    if "junk" not in target.mailbox_roles:
        return False
    return not any(not isinstance(d, Keep) and d.mailbox.upper() == "INBOX"
                   for d in result.deliveries())


def _head(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    return raw[:end + 2] if end >= 0 else raw


def _budget(head: bytes) -> int:
    """Redirects left to a message: MAX_REDIRECTS, or less as our trace fields say (the
    least of them: a forged field can only lower it)."""
    return min([MAX_REDIRECTS, *(int(m) for m in _LEFT.findall(head))])


def _without_return_path(raw: bytes) -> bytes:
    """The copy to redirect: without the Return-Path our MX put first, which only the final
    delivery writes (RFC 5321 §4.4)."""
    if raw[:12].lower() == b"return-path:":
        end = raw.find(b"\n") + 1
        if end > 0:
            return raw[end:]
    return raw


def _looping(head: bytes, recipient: str) -> bool:
    """Whether redirecting again would loop (RFC 5228 §4.2): our redirect trace for this
    recipient is in its header already, or it has been relayed too often."""
    mark = _TRACE + b" for <" + recipient.encode("utf-8", "replace") + b">"
    return mark.lower() in head.lower() or len(re.findall(rb"(?im)^received:", head)) > \
        MAX_RECEIVED


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class _After:
    """What is done once the email is stored: the duplicate ids remembered, the vacation
    action handed to the responder."""

    def __init__(self, service: SieveService, account_id: str,
                 duplicates: list[tuple[str, int, bool]], vacation: Vacation | None,
                 mail_from: str) -> None:
        self.service = service
        self.account_id = account_id
        self.duplicates = duplicates
        self.vacation = vacation
        self.mail_from = mail_from

    async def delivered(self, email_id: str) -> None:
        now = time.time()
        for key, seconds, last in self.duplicates:
            await self.service.scripts.record_duplicate(self.account_id, _hash(key),
                                                        now + seconds, last=last)
        if self.service.vacation is not None:
            self.service.vacation().expect(self.account_id, email_id, self.vacation)
