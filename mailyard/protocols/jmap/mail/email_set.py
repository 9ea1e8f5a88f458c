"""Email/set (RFC 8621 §4.6): create, keywords and mailboxes of existing emails, destroy.

Every change goes through the mailbox service, the calls IMAP STORE, COPY, MOVE and EXPUNGE
make, so an IMAP client sees the result at once with a new MODSEQ. Created emails are built
by `compose` and stored by `email_import` (the IMAP APPEND path).

All Mail is the mailbox every email is in: taking it out of `mailboxIds` is ignored rather
than obeyed, because expunging an email from All Mail destroys it.
"""

from __future__ import annotations

from typing import Any

from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.mail.common import (
    MAIL,
    SetError,
    SetRequest,
    mailbox_service,
    set_response,
    valid_keyword,
)
from mailyard.protocols.jmap.mail.email_import import create_emails
from mailyard.services.mailbox import MailboxService
from mailyard.store.ports import Account, EmailRecord, Mailbox


def _keyword_patch(patch: dict[str, Any]) -> tuple[list[str] | None, list[str], list[str]]:
    """(replacement set or None, keywords to add, keywords to remove)."""
    replace: list[str] | None = None
    add: list[str] = []
    remove: list[str] = []
    for key, value in patch.items():
        if key == "keywords":
            if not isinstance(value, dict) or not all(
                    v is True and valid_keyword(k) for k, v in value.items()):
                raise SetError("invalidProperties", "keywords maps keywords to true",
                               ["keywords"])
            replace = [k.lower() for k in value]
        elif key.startswith("keywords/"):
            keyword = key.partition("/")[2]
            if not valid_keyword(keyword) or value not in (True, None):
                raise SetError("invalidProperties", f"bad keyword patch {key}", [key])
            (add if value is True else remove).append(keyword.lower())
    if replace is not None and (add or remove):
        raise SetError("invalidPatch", "keywords is both replaced and patched", ["keywords"])
    return replace, add, remove


def _mailbox_patch(patch: dict[str, Any], current: set[str], boxes: dict[str, Mailbox]
                   ) -> set[str] | None:
    """The mailbox ids the email should end in, or None when the patch leaves them alone."""
    target: set[str] | None = None
    for key, value in patch.items():
        if key == "mailboxIds":
            if not isinstance(value, dict) or not all(v is True for v in value.values()):
                raise SetError("invalidProperties", "mailboxIds maps ids to true",
                               ["mailboxIds"])
            target = set(value)
    for key, value in patch.items():
        if key.startswith("mailboxIds/"):
            if target is not None and "mailboxIds" in patch:
                raise SetError("invalidPatch", "mailboxIds is both replaced and patched",
                               ["mailboxIds"])
            target = set(current) if target is None else target
            box_id = key.partition("/")[2]
            if value is True:
                target.add(box_id)
            elif value is None:
                target.discard(box_id)
            else:
                raise SetError("invalidProperties", f"bad mailbox patch {key}", [key])
    if target is None:
        return None
    unknown = [b for b in target if b not in boxes]
    if unknown:
        raise SetError("invalidProperties", f"no mailbox {unknown[0]}", ["mailboxIds"])
    if not target:
        raise SetError("invalidProperties", "an email is in at least one mailbox",
                       ["mailboxIds"])
    return target


async def _move_labels(service: MailboxService, account: Account, email_id: str,
                       current: set[str], target: set[str], boxes: dict[str, Mailbox]
                       ) -> None:
    """Labels added before labels removed: removing the last label first could destroy."""
    added = [boxes[b] for b in sorted(target - current)]
    removed = [boxes[b] for b in sorted(current - target) if boxes[b].role != "all"]
    if len(added) == 1 and len(removed) == 1:
        await service.move(account, [email_id], removed[0], added[0])
        return
    for box in added:
        await service.copy(account, [email_id], box)
    for box in removed:
        await service.expunge(account, box, [email_id])


async def _update(service: MailboxService, account: Account, record: EmailRecord,
                  patch: dict[str, Any], boxes: dict[str, Mailbox]) -> None:
    known = ("keywords", "mailboxIds")
    bad = [k for k in patch if k.split("/", 1)[0] not in known]
    if bad:
        raise SetError("invalidProperties", "only keywords and mailboxIds can change", bad)
    replace, add, remove = _keyword_patch(patch)
    by_name = {b.name: b.id for b in boxes.values()}
    current = {by_name[n] for n in record.mailboxes if n in by_name}
    target = _mailbox_patch(patch, current, boxes)
    if replace is not None:
        await service.set_keywords(account, [record.id], replace=replace)
    elif add or remove:
        await service.set_keywords(account, [record.id], add=add, remove=remove)
    if target is not None and target != current:
        await _move_labels(service, account, record.id, current, target, boxes)


@method("Email/set", capability=MAIL)
async def email_set(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    service = mailbox_service(ctx)
    request = await SetRequest.read(ctx, args)
    create, update, destroy = request.create, request.update, request.destroy
    ids = [ctx.resolve_id(i) or i for i in [*update, *destroy]]
    records = {r.id: r for r in await service.get_emails(ctx.account, ids, brief=True)}
    boxes = {b.id: b for b in await service.mailboxes(ctx.account)}
    created, not_created = await create_emails(ctx, create, boxes) if create else ({}, {})
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for email_id, patch in update.items():
        email_id = ctx.resolve_id(email_id) or email_id
        record = records.get(email_id)
        try:
            if record is None:
                raise SetError("notFound", f"no email {email_id}")
            if not isinstance(patch, dict):
                raise SetError("invalidPatch", "a patch is an object")
            await _update(service, ctx.account, record, patch, boxes)
            updated[email_id] = None
        except SetError as e:
            not_updated[email_id] = e.body
    destroyed: list[str] = []
    not_destroyed: dict[str, Any] = {}
    for email_id in destroy:
        email_id = ctx.resolve_id(email_id) or email_id
        if email_id not in records:
            not_destroyed[email_id] = {"type": "notFound"}
            continue
        destroyed.append(email_id)
    if destroyed:
        await service.destroy(ctx.account, destroyed)
    return await set_response(ctx, account_id, request, created=created,
                              not_created=not_created, updated=updated,
                              not_updated=not_updated, destroyed=destroyed,
                              not_destroyed=not_destroyed)
