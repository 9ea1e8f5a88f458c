"""Keywords (IMAP flags, JMAP keywords) of stored emails: STORE, Email/set, \\Seen on FETCH.

The rule, once for every engine: keywords are kept as `stored_keywords` makes them
(lowercase, each once, no NUL); an update adds then removes, or replaces; UNCHANGEDSINCE
(RFC 7162 §3.1.3) leaves an email that changed after it alone and reports it; an update that
leaves the set as it was writes nothing and takes no MODSEQ; every email changed in one call
shares one new MODSEQ (one step per call, not per email: a FETCH that sets \\Seen on 20
messages is one transaction and one event); a change of $seen moves the unread counter of
every mailbox that holds the email.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailyard.core import query as q
from mailyard.store.ports import EmailFlags, KeywordUpdate, MailTx, stored_keywords

SEEN = "$seen"
UNREAD: q.Node = q.Not(q.Keyword(SEEN))
"""An unread email as a core.query condition, which each engine compiles to SQL with its
search filters (store/*/filters.py): a mailbox's unread threads are counted with the very
test that searching for unread mail applies."""


def updated_keywords(before: Sequence[str], *, add: Sequence[str], remove: frozenset[str],
                     replace: Sequence[str] | None) -> list[str] | None:
    """The email's keywords after the update (all arguments already normalised), or None
    when the update leaves the same set (in any order): nothing to write."""
    after = list(replace) if replace is not None else [
        k for k in dict.fromkeys([*before, *add]) if k not in remove]
    return None if sorted(after) == sorted(before) else after


def unread_change(before: Sequence[str], after: Sequence[str]) -> int:
    """How the unread count of a mailbox holding the email moves: -1 once read, +1 once
    unread again, 0 otherwise. Only the $seen keyword itself makes an email read."""
    return (SEEN not in after) - (SEEN not in before)


async def set_keywords(tx: MailTx, email_ids: Sequence[str], *, add: Sequence[str] = (),
                       remove: Sequence[str] = (), replace: Sequence[str] | None = None,
                       unchanged_since: int | None = None) -> KeywordUpdate:
    """Update the keywords of the account's `email_ids` (unknown ids are skipped)."""
    adding = stored_keywords(add)
    removing = frozenset(stored_keywords(remove))
    replacing = None if replace is None else stored_keywords(replace)
    await tx.lock_account()  # UNCHANGEDSINCE compares against committed state
    rows = await tx.email_flags(email_ids)
    result = KeywordUpdate(updated=[], conflicts=[])
    modseq: int | None = None
    for email_id in email_ids:
        row = rows.get(email_id)
        if row is None:
            continue
        if unchanged_since is not None and row.modseq > unchanged_since:
            result.conflicts.append(email_id)
            continue
        after = updated_keywords(row.keywords, add=adding, remove=removing, replace=replacing)
        if after is None:
            result.updated.append((email_id, list(row.keywords), row.modseq))
            continue
        modseq = modseq or await tx.next_modseq()
        await tx.write_keywords(email_id, after)
        if change := unread_change(row.keywords, after):
            await tx.add_unread(email_id, change)
        await touch(tx, email_id, modseq)
        rows[email_id] = EmailFlags(keywords=after, modseq=modseq)  # the same id twice
        result.updated.append((email_id, after, modseq))
    result.modseq = modseq
    return result


async def touch(tx: MailTx, email_id: str, modseq: int) -> None:
    """An email's metadata changed: it and every mailbox holding it take `modseq`, and the
    change log says the Email was updated (JMAP Email/changes, IMAP CONDSTORE)."""
    await tx.stamp_email(email_id, modseq)
    tx.log(modseq, "Email", email_id, "updated")
