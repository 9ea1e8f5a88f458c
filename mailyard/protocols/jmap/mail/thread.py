"""Thread/get and Thread/changes (RFC 8621 §3).

A thread is the emails that share its id; the store answers "emails of these threads" from
its (account, thread) index, oldest first, as RFC 8621 orders Thread.emailIds.
"""

from __future__ import annotations

from typing import Any

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
    threads = await mailbox_service(ctx).threads(ctx.account, ids) if ids else {}
    listed = [{p: {"id": t, "emailIds": threads[t]}[p] for p in ("id", *props)}
              for t in ids if t in threads]
    return {"accountId": account_id, "state": str(state), "list": listed,
            "notFound": [t for t in ids if t not in threads]}


@method("Thread/changes", capability=MAIL)
async def thread_changes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    result = await changes(ctx, args, "Thread")
    return changes_response(ctx, account_id, args["sinceState"], result)
