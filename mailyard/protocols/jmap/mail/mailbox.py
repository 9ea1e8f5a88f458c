"""Mailbox/get and Mailbox/changes (RFC 8621 §2).

Our mailboxes are labels named by their path with "/" between levels, as IMAP shows them; JMAP
wants a tree, so `name` is the last component and `parentId` the mailbox of the path above.
"""

from __future__ import annotations

from typing import Any

from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.mail.common import (
    MAIL,
    changes,
    changes_response,
    current_state,
    mailbox_role,
    mailbox_service,
    requested_ids,
    requested_properties,
)
from mailyard.store.ports import Mailbox

SEPARATOR = "/"
PROPERTIES = ("id", "name", "parentId", "role", "sortOrder", "totalEmails", "unreadEmails",
              "totalThreads", "unreadThreads", "myRights", "isSubscribed")
RIGHTS = ("mayReadItems", "mayAddItems", "mayRemoveItems", "maySetSeen", "maySetKeywords",
          "mayCreateChild", "mayRename", "mayDelete", "maySubmit")
_ROLE_ORDER = {"inbox": 1, "archive": 2, "drafts": 3, "sent": 4, "junk": 5, "trash": 6,
               "all": 7}
"""Where clients that honour sortOrder put the special mailboxes; user labels come after."""


def to_jmap(box: Mailbox, by_name: dict[str, Mailbox]) -> dict[str, Any]:
    """totalThreads and unreadThreads repeat the email counts: the store counts emails per
    label, not threads, and a thread count would cost a scan of the label on every get."""
    parent, _, leaf = box.name.rpartition(SEPARATOR)
    parent_box = by_name.get(parent) if parent else None
    return {
        "id": box.id,
        "name": leaf if parent_box is not None else box.name,
        "parentId": parent_box.id if parent_box is not None else None,
        "role": mailbox_role(box),
        "sortOrder": _ROLE_ORDER.get(box.role or "", 10),
        "totalEmails": box.total,
        "unreadEmails": box.unread,
        "totalThreads": box.total,
        "unreadThreads": box.unread,
        "myRights": dict.fromkeys(RIGHTS, True),
        "isSubscribed": box.subscribed,
    }


@method("Mailbox/get", capability=MAIL)
async def mailbox_get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    ids = requested_ids(ctx, args)
    props = requested_properties(args, "properties", PROPERTIES, PROPERTIES)
    state = await current_state(ctx)
    boxes = await mailbox_service(ctx).mailboxes(ctx.account)
    by_name = {b.name: b for b in boxes}
    by_id = {b.id: b for b in boxes}
    wanted = [b.id for b in boxes] if ids is None else ids
    found = [to_jmap(by_id[i], by_name) for i in wanted if i in by_id]
    listed = [{p: m[p] for p in ("id", *props)} for m in found]
    return {"accountId": account_id, "state": str(state), "list": listed,
            "notFound": [i for i in wanted if i not in by_id]}


@method("Mailbox/changes", capability=MAIL)
async def mailbox_changes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    result = await changes(ctx, args, "Mailbox")
    return {**changes_response(ctx, account_id, args["sinceState"], result),
            "updatedProperties": None}
