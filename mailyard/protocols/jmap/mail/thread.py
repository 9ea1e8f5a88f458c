"""Thread/get and Thread/changes (RFC 8621 §3).

The store keeps a thread id on each email but has no "emails of a thread" lookup for the
protocols, so Thread/get reads the account's emails once per call and groups them: correct,
and cheap next to the bodies a client fetches after it; a thread index in the store is the
way to make it O(thread) when accounts grow large.
"""

from __future__ import annotations

from typing import Any

from mailyard.core import query as q
from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.errors import MethodError
from mailyard.protocols.jmap.mail.common import (
    MAIL,
    changes,
    changes_response,
    current_state,
    mailbox_service,
    requested_ids,
    requested_properties,
    search_service,
)

PROPERTIES = ("id", "emailIds")


@method("Thread/get", capability=MAIL)
async def thread_get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    ids = requested_ids(ctx, args)
    if ids is None:
        raise MethodError("invalidArguments", "Thread/get needs the ids it is asked for")
    props = requested_properties(args, "properties", PROPERTIES, PROPERTIES)
    state = await current_state(ctx)
    every = (await search_service(ctx).search(ctx.account, q.And(()), limit=None,
                                              order="oldest", gmail_scope=False)).ids
    threads: dict[str, list[str]] = {}
    if ids:
        records = await mailbox_service(ctx).get_emails(ctx.account, every, brief=True)
        by_id = {r.id: r for r in records}
        for email_id in every:  # already in receivedAt order, oldest first
            record = by_id.get(email_id)
            if record is not None and record.thread_id in ids:
                threads.setdefault(record.thread_id, []).append(email_id)
    listed = [{p: {"id": t, "emailIds": threads[t]}[p] for p in ("id", *props)}
              for t in ids if t in threads]
    return {"accountId": account_id, "state": str(state), "list": listed,
            "notFound": [t for t in ids if t not in threads]}


@method("Thread/changes", capability=MAIL)
async def thread_changes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    result = await changes(ctx, args, "Thread")
    return changes_response(ctx, account_id, args["sinceState"], result)
