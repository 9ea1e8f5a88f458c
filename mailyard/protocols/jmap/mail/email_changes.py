"""Email/changes (RFC 8621 §4.3): the account's change log read for Email objects.

A keyword set over IMAP STORE, a delivery, an expunge from any client all write that log, so
a JMAP client hears about every change whichever protocol made it.
"""

from __future__ import annotations

from typing import Any

from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.mail.common import MAIL, changes, changes_response


@method("Email/changes", capability=MAIL)
async def email_changes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    result = await changes(ctx, args, "Email")
    return changes_response(ctx, account_id, args["sinceState"], result)
