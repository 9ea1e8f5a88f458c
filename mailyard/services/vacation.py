"""The vacation auto-reply (JMAP VacationResponse, RFC 8621 §8), sent by the inbound pipeline.

One engine for both the JMAP VacationResponse and Sieve's vacation action (RFC 5230):
`VacationResponder` below. The rules are RFC 3834's for automatic responses, with the
once-per-sender memory of Sieve's vacation extension (RFC 5230 §4.1, seven days by
default): never answer an automatic message, a mailing list, bulk mail, a message the
user was not named in (To/Cc), mail filed as Junk, or the null sender; answer from the null
reverse-path with Auto-Submitted: auto-replied, so that two responders cannot talk to each
other for ever.

A reply is recorded before it is queued, so a retried delivery never answers twice (a crash in
between loses one auto-reply, which is the side to err on). The record is read and written
in the MailStore, which two deliveries from one sender on two nodes at once could both read as
"not yet answered": a claim in the `Ledger` (Redis in a cluster) before it makes the one
answer atomic, whichever node delivers.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

from mailyard.core.addresses import normalize
from mailyard.core.mime import header_text
from mailyard.core.ratelimit import Ledger, LocalLedger
from mailyard.core.sections import header_fields
from mailyard.core.sieve.actions import Vacation
from mailyard.services.submission import SubmissionRefused, SubmissionService
from mailyard.store.ports import Account, MailStore, NotFound

log = logging.getLogger("mailyard.vacation")

KIND = "VacationResponse"
SINGLETON = "singleton"
REPLIED = "VacationReplied"
DEFAULT = {"isEnabled": False, "fromDate": None, "toDate": None, "subject": None,
           "textBody": None, "htmlBody": None}
_NEVER_ANSWER = ("mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply",
                 "do-not-reply", "listserv", "majordomo")


def _parse_date(value: str | None) -> float | None:
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


_LIST_FIELDS = ("list-id", "list-unsubscribe", "list-post", "x-auto-response-suppress")
_FIELDS = ("auto-submitted", "precedence", *_LIST_FIELDS)
_FIELD_BREAK = re.compile(rb"\r?\n(?![ \t])")
"""A line break that ends a field (the next line is no continuation)."""
_FOLD = re.compile(rb"\r?\n(?=[ \t])")


def automatic_fields(head: bytes) -> dict[str, str]:
    """The fields `is_automatic` reads, by lower-case name: the first occurrence of each,
    unfolded and RFC 2047-decoded. Only these fields are picked out (by the same field reader
    as IMAP's HEADER.FIELDS) and no structured parser runs on them: the standard library's
    header parser is quadratic in a long field's length, and a sender picks those lengths."""
    found: dict[str, str] = {}
    block = header_fields(head, _FIELDS, exclude=False)
    for field in _FIELD_BREAK.split(block):
        name, colon, value = field.partition(b":")
        key = name.strip().lower().decode("ascii", "replace")
        if colon and key in _FIELDS and key not in found:
            found[key] = header_text(_FOLD.sub(b"", value)).strip()
    return found


def is_automatic(headers: Mapping[str, str], sender: str) -> str | None:
    """Why a message must not be answered automatically, or None (RFC 3834 §2); `headers`
    as `automatic_fields` gives them."""
    local = normalize(sender).partition("@")[0]
    if not sender:
        return "null reverse-path"
    if local in _NEVER_ANSWER or local.startswith("owner-") or local.endswith("-request"):
        return f"sender {local} is a robot or list"
    auto = (headers.get("auto-submitted") or "no").strip().lower()
    if auto.split(";")[0] != "no":
        return f"Auto-Submitted: {auto}"
    if (headers.get("precedence") or "").strip().lower() in ("bulk", "list", "junk"):
        return "Precedence bulk/list/junk"
    if any(headers.get(h) for h in _LIST_FIELDS):
        return "mailing list"
    return None


class VacationResponder:
    """The one vacation engine: Sieve's `vacation` action (RFC 5230), whether it comes from
    the user's active Sieve script (services/sieve.py hands it over with `expect`) or from
    the JMAP VacationResponse, which is compiled to the same action (`settings_action`).
    Both then go through the same rules: RFC 3834's never-answer list, the user named in
    To/Cc (or in the action's :addresses), once per sender per period and per response
    (the handle), from the null reverse-path with Auto-Submitted: auto-replied.

    When the script produced a vacation action, it is the one answered; otherwise an active
    VacationResponse is."""

    def __init__(self, store: MailStore, submission: SubmissionService, *,
                 period: float = 7 * 86400, ledger: Ledger | None = None) -> None:
        self.store = store
        self.submission = submission
        self.period = period
        self.ledger = ledger if ledger is not None else LocalLedger()
        self._expected: dict[tuple[str, str], Vacation | None] = {}
        """(account id, email id) -> the Sieve vacation action of that delivery (None: the
        script ran and asked for none), from the pipeline to `after_delivery`, which runs
        in the same process right after it."""

    async def get(self, account: Account) -> dict[str, Any]:
        found = await self.store.get_objects(account.id, KIND, [SINGLETON])
        return {**DEFAULT, **(found[0].data if found else {})}

    async def set(self, account: Account, values: dict[str, Any]) -> int:
        return await self.store.put_object(account.id, KIND, SINGLETON,
                                           {**await self.get(account), **values})

    def active(self, settings: dict[str, Any], now: float) -> bool:
        start, end = _parse_date(settings["fromDate"]), _parse_date(settings["toDate"])
        return bool(settings["isEnabled"]) and (start is None or start <= now) and (
            end is None or now < end)

    def settings_action(self, settings: dict[str, Any]) -> Vacation:
        """The VacationResponse as the Sieve action `vacation :days 7 :subject S "text"`;
        the handle is its fromDate, so a new absence answers everyone anew."""
        return Vacation(
            reason=settings["textBody"] or "I am away and will read your message when I am"
                                            " back.",
            subject=settings["subject"] or None, seconds=int(self.period),
            handle=f"jmap:{settings.get('fromDate')}")

    def expect(self, account_id: str, email_id: str, action: Vacation | None) -> None:
        if len(self._expected) > 10_000:  # deliveries whose after_delivery never came
            self._expected.clear()
        self._expected[(account_id, email_id)] = action

    async def after_delivery(self, mail_from: str, delivered: Sequence[tuple[str, str]]
                             ) -> None:
        """Answer, where the user is away, each (account id, email id) just delivered."""
        for account_id, email_id in delivered:
            try:
                await self._answer(mail_from, account_id, email_id)
            except Exception:
                log.exception("vacation reply for %s failed", account_id)

    async def _answer(self, mail_from: str, account_id: str, email_id: str) -> None:
        now = time.time()
        account = await self.store.get_account_by_id(account_id)
        action = self._expected.pop((account_id, email_id), None)
        html = None
        if action is None:
            settings = await self.get(account)
            if not self.active(settings, now):
                return
            action = self.settings_action(settings)
            html = settings["htmlBody"]
        try:
            record = await self.store.get_email(account_id, email_id)
        except NotFound:
            return
        boxes = {b.name: b.role for b in await self.store.list_mailboxes(account_id)}
        roles = {boxes.get(name) for name in record.mailboxes}
        if "junk" in roles or ((html is not None or action.handle.startswith("jmap:")) and \
                "inbox" not in roles):
            return  # Junk, or (for the JMAP responder) filed away: no person waits on it
        [head] = await self.store.get_heads(account_id, [email_id])
        named = frozenset(normalize(a["email"]) for a in (*record.to, *record.cc)
                          if a.get("email"))
        await self._respond(account, action, html, mail_from, head.head, named,
                            record.subject, record.message_id, record.references)

    async def answer_unstored(self, account_id: str, action: Vacation, mail_from: str,
                              head: bytes, to_cc: list[str], subject: str,
                              message_id: str | None, references: list[str]) -> None:
        """A Sieve vacation action for a message the script did not keep (`vacation` with
        `discard`, RFC 5230 §4.7 allows both): the same rules, from the message's parse."""
        try:
            account = await self.store.get_account_by_id(account_id)
            await self._respond(account, action, None, mail_from, head,
                                frozenset(normalize(a) for a in to_cc), subject, message_id,
                                references)
        except Exception:
            log.exception("vacation reply for %s failed", account_id)

    async def _respond(self, account: Account, action: Vacation, html: str | None,
                       mail_from: str, head: bytes, named: frozenset[str], subject: str,
                       message_id: str | None, references: list[str]) -> None:
        now = time.time()
        account_id = account.id
        # In a thread: a stored header block can be 14 MB, and this runs in the process
        # of the listeners.
        headers = await asyncio.to_thread(automatic_fields, head)
        reason = is_automatic(headers, mail_from)
        own = {normalize(account.address), *(normalize(a) for a in action.addresses)}
        if reason is None and not own & named:
            reason = "not named in To or Cc"
        if reason is None and normalize(mail_from) in own:
            reason = "from the user"
        if reason is not None:
            log.debug("no vacation reply to %s: %s", mail_from, reason)
            return
        since = action.handle or hashlib.sha256(
            f"{action.subject}\x00{action.reason}".encode()).hexdigest()[:16]
        if since.startswith("jmap:"):  # as records made before Sieve held it
            since_value: Any = since[5:] if since[5:] != "None" else None
        else:
            since_value = since
        key = hashlib.sha256(normalize(mail_from).encode()).hexdigest()[:32]
        replied = await self.store.get_objects(account_id, REPLIED, [key])
        if replied and now - replied[0].data["at"] < action.seconds \
                and replied[0].data.get("since") == since_value:
            return
        if not await self.ledger.claim(f"vacation:{account_id}:{key}:{since}", action.seconds):
            return  # another delivery of this sender's, maybe on another node, answers
        await self.store.put_object(account_id, REPLIED, key,
                                    {"at": now, "since": since_value}, log=False)
        # The email package folds a subject of 64 KB (the stored cap) in half a second.
        raw = await asyncio.to_thread(self._reply, account, action, html, subject,
                                      message_id, references, mail_from)
        try:
            await self.submission.submit(account, "", [mail_from], raw, protocol="LOCAL",
                                         file_in_sent=False)
        except SubmissionRefused as e:
            log.warning("vacation reply to %s refused: %s", mail_from, e.reply)

    def _reply(self, account: Account, action: Vacation, html: str | None, subject: str,
               message_id: str | None, references: list[str], to: str) -> bytes:
        reply = EmailMessage(policy=SMTP)
        sender = action.from_ if action.from_ and self.submission.may_send_as(
            account, action.from_) else account.address
        reply["From"] = sender
        reply["To"] = to
        reply["Subject"] = action.subject or f"Auto: {subject}".strip()
        reply["Date"] = email.utils.format_datetime(datetime.now(UTC))
        reply["Auto-Submitted"] = "auto-replied"
        reply["Precedence"] = "bulk"
        if message_id:
            reply["In-Reply-To"] = f"<{message_id}>"
            reply["References"] = " ".join(f"<{r}>" for r in [*references, message_id][-10:])
        if action.mime:  # RFC 5230 §4.6: the reason is a MIME entity of its own
            part = email.message_from_string(action.reason, policy=SMTP)
            for name, value in part.items():
                if name.lower().startswith("content-"):
                    reply[name] = value
            reply.set_payload(part.get_payload())
            return reply.as_bytes()
        reply.set_content(action.reason)
        if html:
            reply.add_alternative(html, subtype="html")
        return reply.as_bytes()
