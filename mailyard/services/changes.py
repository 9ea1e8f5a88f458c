"""An account's state and what changed since a state: the one reader of the change log.

Every change to an account takes the next value of its modification sequence (JMAP's state,
IMAP's MODSEQ), and the change log records it under that value. JMAP's /changes and
/queryChanges, the Quota state and `GET /sync` all ask the same question, "what changed after
S, of these kinds, about this many at a time", so it is answered here once, paging included.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from mailyard.store.ports.mailstore import MailStore
from mailyard.store.ports.records import Account, Change


class FutureState(Exception):
    """A state the account has not reached (another server's, or from before a restore):
    nothing can be said about what changed since it."""

    def __init__(self, since: int, state: int) -> None:
        super().__init__(f"state {since} is after the account's state {state}")
        self.since = since
        self.state = state


@dataclass(frozen=True, slots=True)
class ChangePage:
    changes: list[Change]
    """In modseq order; the changes of one modseq are never split between pages."""
    state: int
    """Where the next page starts: the last modseq of this page when `has_more`, else the
    account's state when it was read."""
    has_more: bool


def page(log: list[Change], limit: int | None) -> tuple[list[Change], bool]:
    """The first changes of `log` (in modseq order) that touch at most `limit` objects, cut
    only between modseqs; the first modseq is always taken whole, however many objects it
    touches, so a client always moves on. (page, whether changes are left after it)."""
    if limit is None:
        return log, False
    objects: set[tuple[str, str]] = set()
    end = 0
    while end < len(log):
        modseq = log[end].modseq
        stop = end
        while stop < len(log) and log[stop].modseq == modseq:
            stop += 1
        touched = objects | {(c.kind, c.object_id) for c in log[end:stop]}
        if objects and len(touched) > limit:
            return log[:end], True
        objects, end = touched, stop
    return log, False


class ChangeService:
    def __init__(self, store: MailStore) -> None:
        self._store = store

    async def state(self, account: Account) -> int:
        """Read fresh: the Account a session holds is a copy from its login."""
        return (await self._store.get_account_by_id(account.id)).modseq

    async def changes(self, account: Account, since: int, kinds: Collection[str] | None = None,
                      limit: int | None = None) -> ChangePage:
        """The changes after `since` of `kinds` (None: all), a page touching at most about
        `limit` objects (None: all); FutureState when `since` is after the account's state.

        Only the log up to the state read first is returned: a change committed meanwhile
        belongs to the next call, or it would be reported twice (here, and after `state`)."""
        state = await self.state(account)
        if since > state:
            raise FutureState(since, state)
        log = [c for c in await self._store.changes_since(account.id, since)
               if c.modseq <= state and (kinds is None or c.kind in kinds)]
        changes, more = page(log, limit)
        return ChangePage(changes, changes[-1].modseq if more else state, more)
