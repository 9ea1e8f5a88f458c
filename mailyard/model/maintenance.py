"""Repairs `mailyard fsck --repair` decided (services/fsck.py counts what the counters should
be from the rows): how they are written, once for every engine.

Rules:
- The repair is a compare-and-set on the account's MODSEQ: every write that moves a counter
  takes a MODSEQ, so when the account is still at the MODSEQ the counting saw, nothing has
  moved since, and the counted numbers are right; otherwise nothing is written (False) and
  fsck counts again.
- The quota usage is set as counted; a mailbox's total, unread and octets too, but its
  UIDNEXT only ever rises (a UID given once is never given again).
- Repaired mailboxes take one new MODSEQ and are "Mailbox updated" in the change log (JMAP
  clients cache the counts by state); a repair of the usage alone takes no MODSEQ.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailyard.store.ports.mailtx import CounterTx
from mailyard.store.ports.records import MailboxCounters


async def set_counters(tx: CounterTx, *, modseq: int, used: int,
                       mailboxes: Sequence[MailboxCounters]) -> bool:
    if await tx.current_modseq() != modseq:  # locks the account: NotFound when gone
        return False
    new = await tx.next_modseq() if mailboxes else modseq
    await tx.write_usage(used)
    for mailbox_id in await tx.write_counters(mailboxes, new):
        tx.log(new, "Mailbox", mailbox_id, "updated")
    return True
