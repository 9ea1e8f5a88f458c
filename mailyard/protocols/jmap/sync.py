"""`GET /sync?since=N[&limit=M]`: the account's change log as plain JSON, for clients that do
not speak JMAP.

Every change to an account takes the next value of its modification sequence, the number JMAP
calls a state and IMAP a MODSEQ, so "what changed after N" is one read of the log:

    {"since": 41, "state": 57, "hasMore": false,
     "changes": [{"modseq": 42, "type": "Email", "id": "e...", "op": "created"}, ...]}

A client keeps `state` and asks `since=state` next time. A page holds the changes of at most
`limit` objects and ends only between two modification sequences (the changes of one sequence,
such as a rename and its children, are never split, so a page may hold more when one sequence
alone does), so resuming from `state` after `hasMore` misses nothing. The route sits behind
the JMAP listener's authentication middleware: it answers for the authenticated account only.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailyard.protocols.jmap.auth import problem_response
from mailyard.services.changes import ChangeService, FutureState
from mailyard.store.ports import Account

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000


def _number(text: str, digits: int) -> bool:
    """ASCII digits only: str.isdigit() also takes "²", which int() refuses."""
    return text.isascii() and text.isdigit() and len(text) <= digits


class Sync:
    def __init__(self, changes: ChangeService) -> None:
        self.service = changes

    async def changes(self, request: Request) -> Response:
        account: Account = request.user.account
        since_text = request.query_params.get("since", "0")
        limit_text = request.query_params.get("limit", str(DEFAULT_LIMIT))
        if not (_number(since_text, 18) and _number(limit_text, 9) and int(limit_text) >= 1):
            return problem_response(400, "since must be a modification sequence (0 or more),"
                                         " limit a positive number")
        since, limit = int(since_text), min(int(limit_text), MAX_LIMIT)
        try:
            page = await self.service.changes(account, since, limit=limit)
        except FutureState as e:
            return problem_response(409, f"since={since} is after the account's state"
                                         f" {e.state}; sync again from 0")
        body = {"since": since, "state": page.state, "hasMore": page.has_more,
                "changes": [{"modseq": c.modseq, "type": c.kind, "id": c.object_id,
                             "op": c.op} for c in page.changes]}
        return Response(orjson.dumps(body), media_type="application/json",
                        headers={"Cache-Control": "no-store"})


def routes(changes: ChangeService) -> list[Route]:
    return [Route("/sync", Sync(changes).changes, methods=["GET"])]
