"""SearchSnippet/get (RFC 8621 §5): why an email matched, with the terms in <mark>.

The text index marks the terms itself (it knows the stemming that made them match); a filter
without text conditions has nothing to mark, and gets null subject and preview.
"""

from __future__ import annotations

from typing import Any

from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.errors import MethodError
from mailyard.protocols.jmap.mail.common import (
    MAIL,
    mailbox_service,
    max_objects,
    search_service,
)
from mailyard.protocols.jmap.mail.email_query import filter_node


@method("SearchSnippet/get", capability=MAIL)
async def search_snippet_get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    node = filter_node(args)
    ids = args.get("emailIds")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise MethodError("invalidArguments", "emailIds must be an array of ids")
    if len(ids) > max_objects(ctx):
        raise MethodError("requestTooLarge", f"at most {max_objects(ctx)} emailIds")
    ids = list(dict.fromkeys(ids))
    known = {r.id for r in await mailbox_service(ctx).get_emails(ctx.account, ids, brief=True)}
    found = [i for i in ids if i in known]
    snippets = await search_service(ctx).snippets(ctx.account, node, found) if found else []
    return {"accountId": account_id,
            "list": [{"emailId": s.email_id, "subject": s.subject, "preview": s.preview}
                     for s in snippets],
            "notFound": [i for i in ids if i not in known] or None}
