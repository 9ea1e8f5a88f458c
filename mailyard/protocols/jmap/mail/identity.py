"""Identity/get (RFC 8621 §6): the addresses a user may send from.

An account sends from its own address only, so it has one Identity, named by the account id;
it cannot be changed or destroyed, and Identity/set is left to the submission work.
"""

from __future__ import annotations

from typing import Any

from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.mail.common import (
    SUBMISSION,
    current_state,
    requested_ids,
    requested_properties,
)
from mailyard.protocols.jmap.services import JMAPServices
from mailyard.protocols.jmap.session import CAPABILITIES, capability
from mailyard.services.submission import MAX_HOLD
from mailyard.store.ports import Account

PROPERTIES = ("id", "name", "email", "replyTo", "bcc", "textSignature", "htmlSignature",
              "mayDelete")


def _submission_account(services: JMAPServices, account: Account) -> dict[str, Any]:
    return {"maxDelayedSend": MAX_HOLD, "submissionExtensions": {
        "FUTURERELEASE": [str(MAX_HOLD)], "SIZE": [], "ENHANCEDSTATUSCODES": []}}


if SUBMISSION not in CAPABILITIES:  # the EmailSubmission module may declare it first
    capability(SUBMISSION, account=_submission_account)


@method("Identity/get", capability=SUBMISSION)
async def identity_get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    ids = requested_ids(ctx, args)
    props = requested_properties(args, "properties", PROPERTIES, PROPERTIES)
    own = {"id": ctx.account.id, "name": "", "email": ctx.account.address, "replyTo": None,
           "bcc": None, "textSignature": "", "htmlSignature": "", "mayDelete": False}
    wanted = [ctx.account.id] if ids is None else ids
    return {"accountId": account_id, "state": str(await current_state(ctx)),
            "list": [{p: own[p] for p in ("id", *props)} for i in wanted if i == own["id"]],
            "notFound": [i for i in wanted if i != own["id"]]}
