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
logged with the account and script name.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
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
from mailyard.core.workitems import INBOUND, OUTBOUND, InboundItem, MessageLoader, OutboundItem
from mailyard.services.delivery import spool_id
from mailyard.store.ports import (
    Account,
    BlobStore,
    MailStore,
    NewItem,
    Queue,
    SieveScriptRecord,
    SieveScriptStore,
)

if TYPE_CHECKING:
    from mailyard.pipeline.inbound import Target
    from mailyard.services.mailbox import MailboxService
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


class SieveService:
    def __init__(self, scripts: SieveScriptStore, store: MailStore, blobs: BlobStore,
                 queue: Queue, *, hostname: str, limits: SieveLimits | None = None,
                 is_local: Callable[[str], Awaitable[bool]] | None = None,
                 mailbox: Callable[[], MailboxService] | None = None,
                 vacation: Callable[[], VacationResponder] | None = None,
                 forward_sender: Callable[[str], Awaitable[str]] | None = None) -> None:
        """`mailbox` and `vacation` are asked for when a run first needs them (the
        composition root builds them then): managing scripts (the CLI, ManageSieve) needs
        neither."""
        self.scripts = scripts
        self.store = store
        self.blobs = blobs
        self.queue = queue
        self.hostname = hostname
        self.limits = limits or SieveLimits()
        self.is_local = is_local
        self.mailbox = mailbox
        self.vacation = vacation
        self.forward_sender = forward_sender
        """The envelope sender of a copy redirected to another domain (RoutingService's
        SRS rewriting, so the receiver's SPF check passes), as forwarding has it."""
        self._compiled: OrderedDict[str, Script] = OrderedDict()
        """Parsed scripts by the SHA-256 of their text: the active script is read per
        delivery (cheap, and right in every process), parsed once."""

    # ----------------------------------------------------------------------------------------
    # Management (RFC 5804's operations)

    @staticmethod
    def check_name(name: str) -> None:
        if not name or len(name) > MAX_NAME or _BAD_NAME.search(name):
            raise ScriptRefused(f"bad script name {name!r}")

    def check(self, content: str) -> Script:
        """Raises SieveSyntaxError (the message names the line)."""
        if len(content.encode()) > self.limits.max_script_bytes:
            raise ScriptRefused(f"script larger than {self.limits.max_script_bytes} octets",
                                "QUOTA/MAXSIZE")
        return self.compile(content)

    def compile(self, content: str) -> Script:
        key = hashlib.sha256(content.encode()).hexdigest()
        script = self._compiled.get(key)
        if script is None:
            script = parse(content)
            self._compiled[key] = script
            if len(self._compiled) > 512:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(key)
        return script

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
        self.check(content)
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
                   message: MessageLoader, delivery_key: str) -> Target:
        """Run the recipient's active script and say where the message goes."""
        active = await self.scripts.get_active(target.account_id)
        if active is None:
            return target
        try:
            script = self.compile(active.content)
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
        if any(isinstance(a, Redirect) for a in result.actions) and _looping(raw, recipient):
            log.warning("sieve script %r of account %s redirects a message it redirected"
                        " before (a loop): kept instead", active.name, account_id,
                        extra={"account_id": account_id, "queue_id": delivery_key})
            result.actions = [a for a in result.actions if not isinstance(a, Redirect)]
            result.implicit_keep = True
        return await self._target(target, result, raw, mail_from, recipient, delivery_key,
                                  boxes, message)

    async def _target(self, target: Target, result: Result, raw: bytes, mail_from: str,
                      recipient: str, delivery_key: str, boxes: Sequence[object],
                      message: MessageLoader) -> Target:
        account_id = target.account_id
        by_name = {getattr(b, "name", ""): getattr(b, "id", "") for b in boxes}
        roles: list[str] = []
        ids: list[str] = []
        kws = list(target.keywords)
        for d in result.deliveries():
            kws += keywords(d.flags)
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
        base = f"{delivery_key}.s{hashlib.sha256(account_id.encode()).hexdigest()[:8]}"
        for n, action in enumerate(result.actions):
            if isinstance(action, Redirect):
                trace = (f"Received: by {self.hostname} (Mailyard Sieve redirect) for"
                         f" <{recipient}>; {format_datetime(datetime.now(UTC))}\r\n")
                await self._send(f"{base}.r{n}", mail_from, [action.address],
                                 trace.encode("utf-8", "replace") + raw)
            elif isinstance(action, Reject):
                await self._reject(f"{base}.j{n}", mail_from, recipient, raw, action)
        vacation = next((a for a in result.actions if isinstance(a, Vacation)), None)
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

    async def _send(self, item_id: str, mail_from: str, recipients: Sequence[str],
                    raw: bytes) -> None:
        """Queue `raw` for `recipients`, local ones to the inbound pipeline, remote ones by
        domain to the outbound worker; idempotent by `item_id` (the queue ignores an id it
        has)."""
        local: list[str] = []
        remote: dict[str, list[str]] = {}
        for rcpt in recipients:
            if self.is_local is not None and await self.is_local(rcpt):
                local.append(rcpt)
            else:
                remote.setdefault(domain_of(normalize(rcpt)), []).append(rcpt)
        now = time.time()
        items: list[NewItem] = []
        groups: list[tuple[list[str], str | None]] = [(local, None)] if local else []
        groups += [(r, d) for d, r in sorted(remote.items())]
        for n, (rcpts, domain) in enumerate(groups, 1):
            iid = f"{item_id}.{n}"
            sender = mail_from
            if domain is not None and mail_from and self.forward_sender is not None:
                sender = await self.forward_sender(mail_from)
            spool = spool_id(iid)
            await self.blobs.put(spool, raw)
            if domain is None:
                kind, payload = INBOUND, InboundItem(
                    spool, sender, tuple(rcpts), 0, int(now * 1000)).to_json()
            else:
                kind, payload = OUTBOUND, OutboundItem(
                    spool, sender, tuple(rcpts), domain, now, iid).to_json()
            items.append(NewItem(kind, payload, item_id=iid))
        if items:
            await self.queue.enqueue_many(items)
            log.info("sieve queued %s for %s", item_id, ", ".join(recipients),
                     extra={"queue_id": item_id})

    async def _reject(self, item_id: str, mail_from: str, recipient: str, raw: bytes,
                      action: Reject) -> None:
        """A delivery report saying the recipient refused the message (RFC 5429 §2.1 allows
        a DSN); never to the null sender or about a report."""
        if not mail_from or dsn.is_bounce(raw):
            log.info("sieve reject for %s: no report to <%s>", recipient, mail_from)
            return
        reason = " ".join(action.reason.split())[:900] or "rejected"
        status = dsn.RecipientStatus(recipient=recipient, action="failed", status="5.7.1",
                                     diagnostic=f"smtp; 550 5.7.1 {reason}")
        report = dsn.build_dsn(raw, reporting_mta=self.hostname, sender=mail_from,
                               postmaster=f"postmaster@{self.hostname}", recipients=[status],
                               arrival=datetime.now(UTC), message_id_domain=self.hostname)
        await self._send(item_id, "", [mail_from], report)


MAX_RECEIVED = 50


def _looping(raw: bytes, recipient: str) -> bool:
    """Whether redirecting `raw` again would loop (RFC 5228 §4.2): our redirect trace for
    this recipient is in its header already, or it has been relayed too often."""
    head = raw[:raw.find(b"\r\n\r\n") + 2 if b"\r\n\r\n" in raw else len(raw)]
    mark = b"(Mailyard Sieve redirect) for <" + recipient.encode("utf-8", "replace") + b">"
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
