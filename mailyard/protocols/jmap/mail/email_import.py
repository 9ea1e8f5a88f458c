"""Putting messages into an account: Email/import (RFC 8621 §4.8), Email/set create (§4.6,
with `compose`), Email/parse (§4.9) and Email/copy (§4.7).

Every new email goes through MailboxService.append, the IMAP APPEND path: the same pipeline as
delivery threads it, deduplicates it, indexes it and counts it against the quota.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.errors import MethodError
from mailyard.protocols.jmap.mail import compose
from mailyard.protocols.jmap.mail.bodyparts import BODY_PROPERTIES, DEFAULT_BODY_PROPERTIES, Body
from mailyard.protocols.jmap.mail.common import (
    MAIL,
    SetError,
    current_state,
    mailbox_service,
    requested_properties,
    valid_keyword,
)
from mailyard.protocols.jmap.mail.email_get import (
    PROPERTIES,
    EmailView,
    body_values,
    header_form,
)
from mailyard.services.blobs import BlobService
from mailyard.store.ports import EmailRecord, Mailbox, NotFound, QuotaExceeded


def blob_service(ctx: Context) -> BlobService:
    return ctx.services.need_data().blobs


def _mailboxes(value: Any, boxes: dict[str, Mailbox], ctx: Context) -> list[Mailbox]:
    if not isinstance(value, dict) or not value or not all(v is True for v in value.values()):
        raise SetError("invalidProperties", "mailboxIds maps at least one id to true",
                       ["mailboxIds"])
    found = []
    for box_id in value:
        resolved = ctx.resolve_id(box_id)
        if resolved is None or resolved not in boxes:
            raise SetError("invalidProperties", f"no mailbox {box_id}", ["mailboxIds"])
        found.append(boxes[resolved])
    return found


def _keywords(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, dict) or not all(
            v is True and valid_keyword(k) for k, v in value.items()):
        raise SetError("invalidProperties", "keywords maps keywords to true", ["keywords"])
    return [k.lower() for k in value]


def _received_at(value: Any) -> int | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise SetError("invalidProperties", "receivedAt must be a UTCDate", ["receivedAt"])
    return int(when.timestamp() * 1000)


async def store_email(ctx: Context, raw: bytes, boxes: Sequence[Mailbox],
                      keywords: list[str], received_at: int | None) -> dict[str, Any]:
    """Append `raw` to the first mailbox, label it with the rest; the Email's id, blobId,
    threadId and size, as /set and /import report a creation."""
    service = mailbox_service(ctx)
    try:
        appended = await service.append(ctx.account, boxes[0], raw, keywords=keywords,
                                        received_at=received_at)
    except QuotaExceeded as e:
        raise SetError("overQuota", str(e)) from None
    for box in boxes[1:]:  # a new Email (never an old one): the other mailboxes are labels
        await service.copy(ctx.account, [appended.email_id], box)
    record = await service.email(ctx.account, appended.email_id)
    return {"id": record.id, "blobId": record.id, "threadId": record.thread_id,
            "size": record.size}


def is_email(raw: bytes) -> bool:
    """Whether `raw` can be taken for an RFC 5322 message: something, starting with a header
    field. Email/import refuses what fails it (invalidEmail) and Email/parse calls it
    notParsable, so the two methods agree on what an email is."""
    return bool(raw.strip()) and b":" in raw.split(b"\n", 1)[0]


def _check_state(args: dict[str, Any], state: int) -> None:
    if_in_state = args.get("ifInState")
    if if_in_state is not None and if_in_state != str(state):
        raise MethodError("stateMismatch")


@method("Email/import", capability=MAIL)
async def email_import(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    emails = args.get("emails")
    if not isinstance(emails, dict):
        raise MethodError("invalidArguments", "emails maps creation ids to EmailImport")
    limit: int = ctx.services.policy.limits.max_objects_in_set
    if len(emails) > limit:
        raise MethodError("requestTooLarge", f"at most {limit} emails in one import")
    old_state = await current_state(ctx)
    _check_state(args, old_state)
    boxes = {b.id: b for b in await mailbox_service(ctx).mailboxes(ctx.account)}
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for creation_id, spec in emails.items():
        try:
            if not isinstance(spec, dict) or not isinstance(spec.get("blobId"), str):
                raise SetError("invalidProperties", "an EmailImport needs a blobId", ["blobId"])
            blob_id = ctx.resolve_id(spec["blobId"]) or spec["blobId"]
            targets = _mailboxes(spec.get("mailboxIds"), boxes, ctx)
            keywords = _keywords(spec.get("keywords"))
            received_at = _received_at(spec.get("receivedAt"))
            try:
                raw = await blob_service(ctx).read(ctx.account, blob_id)
            except (NotFound, ValueError):
                # §4.8: a blobId that is "invalid (e.g., missing, wrong type, id not found)"
                # is invalidProperties, as for mailboxIds and keywords.
                raise SetError("invalidProperties", f"no blob {blob_id} in this account",
                               ["blobId"]) from None
            if not is_email(raw):
                raise SetError("invalidEmail", "the blob is not an RFC 5322 message")
            created[creation_id] = await store_email(ctx, raw, targets, keywords,
                                                     received_at)
            ctx.created(creation_id, created[creation_id]["id"])
        except SetError as e:
            not_created[creation_id] = e.body
    return {"accountId": account_id, "oldState": str(old_state),
            "newState": str(await current_state(ctx)), "created": created or None,
            "notCreated": not_created or None}


async def create_emails(ctx: Context, create: dict[str, Any], boxes: dict[str, Mailbox]
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Email/set create: (created, notCreated)."""
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for creation_id, obj in create.items():
        try:
            if not isinstance(obj, dict):
                raise SetError("invalidProperties", "an Email is an object")
            bad = [k for k in obj if k not in compose.SETTABLE and not k.startswith("header:")]
            if bad:
                raise SetError("invalidProperties", "these cannot be set on create", bad)
            targets = _mailboxes(obj.get("mailboxIds"), boxes, ctx)
            keywords = _keywords(obj.get("keywords"))
            received_at = _received_at(obj.get("receivedAt"))
            blobs: dict[str, bytes] = {}
            missing: dict[str, list[str]] = {}
            for blob_id, where in compose.blob_ids(obj).items():
                try:
                    blobs[blob_id] = await blob_service(ctx).read(
                        ctx.account, ctx.resolve_id(blob_id) or blob_id)
                except (NotFound, ValueError):
                    missing[blob_id] = where
            if missing:
                # §4.6: blobNotFound "SHOULD also include a notFound property", the blob ids.
                error = SetError("blobNotFound", "no such blob in this account: "
                                 + ", ".join(b[:100] for b in list(missing)[:10]),
                                 list(dict.fromkeys(p for w in missing.values() for p in w)))
                error.body["notFound"] = list(missing)
                raise error
            raw = await asyncio.to_thread(compose.build, obj, blobs)  # or invalidProperties
            created[creation_id] = await store_email(ctx, raw, targets, keywords, received_at)
            ctx.created(creation_id, created[creation_id]["id"])
        except SetError as e:
            not_created[creation_id] = e.body
    return created, not_created


def _parsed_record(blob_id: str, body: Body, size: int) -> EmailRecord:
    """An EmailRecord for a message that is in no mailbox, so Email/parse shares Email/get's
    property code; what only stored emails have is null in the answer."""
    p = body.parsed

    def addresses(items: list[Any]) -> list[dict[str, str]]:
        return [{"name": a.name, "email": a.email} for a in items]

    return EmailRecord(
        id=blob_id, account_id="", thread_id="", blob_id=blob_id, size=size, received_at=0,
        sent_at=int(p.date.timestamp() * 1000) if p.date else None, message_id=p.message_id,
        subject=p.subject, from_=addresses(p.from_), to=addresses(p.to), cc=addresses(p.cc),
        preview=p.preview, has_attachment=p.has_attachment, attachments=[], keywords=[],
        mailboxes={}, in_reply_to=p.in_reply_to, references=p.references, envelope=b"",
        bodystructure=b"", modseq=0)


PARSE_DEFAULT = ("messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc",
                 "replyTo", "subject", "sentAt", "hasAttachment", "preview", "bodyValues",
                 "textBody", "htmlBody", "attachments")
ONLY_STORED = frozenset({"id", "mailboxIds", "keywords", "receivedAt", "threadId"})


@method("Email/parse", capability=MAIL)
async def email_parse(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    blob_ids = args.get("blobIds")
    if not isinstance(blob_ids, list) or not all(isinstance(b, str) for b in blob_ids):
        raise MethodError("invalidArguments", "blobIds must be an array of ids")
    if len(blob_ids) > ctx.services.policy.limits.max_objects_in_get:
        raise MethodError("requestTooLarge", "too many blobs in one parse")
    props = requested_properties(args, "properties", PROPERTIES, PARSE_DEFAULT,
                                 headers=True)
    body_props = requested_properties(args, "bodyProperties", BODY_PROPERTIES,
                                      DEFAULT_BODY_PROPERTIES, headers=True)
    for p in (*props, *body_props):
        if p.startswith("header:"):
            header_form(p)
    parsed: dict[str, Any] = {}
    not_parsable: list[str] = []
    not_found: list[str] = []
    for blob_id in dict.fromkeys(blob_ids):
        try:
            raw = await blob_service(ctx).read(ctx.account, blob_id)
        except (NotFound, ValueError):
            not_found.append(blob_id)
            continue
        if not is_email(raw):  # what Email/import refuses as invalidEmail
            not_parsable.append(blob_id)
            continue
        try:
            body = await asyncio.to_thread(Body, blob_id, raw)
        except Exception:
            not_parsable.append(blob_id)
            continue
        values = body_values(body, args) if "bodyValues" in props else {}
        view = EmailView(_parsed_record(blob_id, body, len(raw)), body, {}, body_props, values)
        parsed[blob_id] = {p: None if p in ONLY_STORED else view.get(p) for p in props}
        if "blobId" in props:
            parsed[blob_id]["blobId"] = blob_id
    return {"accountId": account_id, "parsed": parsed or None,
            "notParsable": not_parsable or None, "notFound": not_found or None}


@method("Email/copy", capability=MAIL)
async def email_copy(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """§4.7 copies between accounts; every account a user reaches here is their own, and the
    RFC requires fromAccountId to differ from accountId, so a copy has nowhere to go yet."""
    from_account = args.get("fromAccountId")
    if not isinstance(from_account, str):
        raise MethodError("invalidArguments", "fromAccountId must be a string")
    ctx.account_id(args)
    if from_account != ctx.account.id:
        raise MethodError("fromAccountNotFound")
    raise MethodError("invalidArguments",
                      "fromAccountId must differ from accountId (RFC 8621 §4.7)")
