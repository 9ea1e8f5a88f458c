"""The state of a selected mailbox in one IMAP session: its message sequence numbers.

RFC 3501 §7.4.1 / RFC 9051 §7.5: a session's view of the mailbox changes only at the points where
the server may tell the client (after a command, or during IDLE). `Selected` holds that view
(UIDs in order, their emails and flags) and turns a store delta into the untagged EXPUNGE /
EXISTS / FETCH responses that move the client to the current state. Lists of ints are kept in
`array` so ten thousand selected sessions stay small.
"""

from __future__ import annotations

import bisect
import sys
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailyard.protocols.imap.flags import to_flags
from mailyard.store.ports import Mailbox, MailboxDelta, MailboxSnapshot

_KEYWORDS: dict[tuple[str, ...], tuple[str, ...]] = {}
"""One tuple per distinct keyword set, shared by every session: most messages carry one of a
handful ((), ("$seen",), ...), so a view costs a pointer per message instead of a list."""


def shared_keywords(keywords: Iterable[str]) -> tuple[str, ...]:
    key = tuple(sorted(keywords))
    if len(_KEYWORDS) > 100_000:
        _KEYWORDS.clear()  # a flood of distinct custom keywords must not grow without bound
    return _KEYWORDS.setdefault(key, key)


@dataclass
class Selected:
    mailbox: Mailbox
    read_only: bool
    uids: array[int] = field(default_factory=lambda: array("I"))
    email_ids: list[str] = field(default_factory=list)
    keywords: list[tuple[str, ...]] = field(default_factory=list)
    modseq: int = 0
    """The highest MODSEQ this session has reported (or was current at SELECT)."""

    @classmethod
    def from_snapshot(cls, snap: MailboxSnapshot, read_only: bool) -> Selected:
        sel = cls(mailbox=snap.mailbox, read_only=read_only)
        sel.uids = array("I", (e.uid for e in snap.entries))
        sel.email_ids = [sys.intern(e.email_id) for e in snap.entries]
        sel.keywords = [shared_keywords(e.keywords) for e in snap.entries]
        sel.modseq = snap.mailbox.highest_modseq
        return sel

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of_uid(self, uid: int) -> int | None:
        """1-based sequence number of `uid`, or None."""
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def uid_range(self, first: int, last: int) -> range:
        """Indexes (0-based) of the UIDs in first..last (inclusive)."""
        return range(bisect.bisect_left(self.uids, first), bisect.bisect_right(self.uids, last))

    def apply(self, delta: MailboxDelta, *, with_modseq: bool = False,
              qresync: bool = False) -> list[bytes]:
        """Bring the view up to `delta`; return the untagged responses that tell the client.

        Expunges first, from the highest sequence number down, so each number is right at the
        moment the client reads it (or as one VANISHED once QRESYNC is enabled, RFC 7162
        §3.2.10); then new messages (EXISTS); then flag changes (FETCH).
        """
        out: list[bytes] = []
        gone: list[int] = []
        for uid in sorted(delta.vanished, reverse=True):
            seq = self.seq_of_uid(uid)
            if seq is None:
                continue
            del self.uids[seq - 1]
            del self.email_ids[seq - 1]
            del self.keywords[seq - 1]
            gone.append(uid)
            if not qresync:
                out.append(b"* %d EXPUNGE\r\n" % seq)
        if qresync and gone:
            out.append(f"* VANISHED {compact(gone)}\r\n".encode())
        grew = False
        for entry in delta.changed:
            seq = self.seq_of_uid(entry.uid)
            keywords = shared_keywords(entry.keywords)
            if seq is None:
                if self.uids and entry.uid < self.uids[-1]:
                    continue  # an old UID we never saw: already gone again (RFC: no reuse)
                self.uids.append(entry.uid)
                self.email_ids.append(sys.intern(entry.email_id))
                self.keywords.append(keywords)
                grew = True
            elif self.keywords[seq - 1] != keywords:
                self.keywords[seq - 1] = keywords
                flags = " ".join(to_flags(entry.keywords))
                extra = f" MODSEQ ({entry.modseq})" if with_modseq else ""
                out.append(f"* {seq} FETCH (UID {entry.uid} FLAGS ({flags}){extra})\r\n"
                           .encode())
        if grew:
            out.append(b"* %d EXISTS\r\n" % len(self.uids))
        self.modseq = max(self.modseq, delta.highest_modseq)
        return out


def compact(numbers: Iterable[int]) -> str:
    """An IMAP sequence set for the numbers: 1,2,3,5 -> "1:3,5"."""
    out: list[str] = []
    run: list[int] = []
    for n in sorted(set(numbers)):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(f"{run[0]}:{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [n]
    if run:
        out.append(f"{run[0]}:{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)
