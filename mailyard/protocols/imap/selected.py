"""The state of a selected mailbox in one IMAP session: its message sequence numbers.

RFC 3501 §7.4.1 / RFC 9051 §7.5: a session's view of the mailbox changes only at the points where
the server may tell the client (after a command, or during IDLE). The UID map itself (UIDs in
order, their emails and flags) is a `Version`: made once per change of the mailbox and never
modified, so every session that has the mailbox selected shares it (ten thousand IDLE sessions
on one INBOX hold one UID map, not ten thousand). Each version links to the next with the delta
that made it; a session (`Selected`) keeps only the version it last told its client about, the
flags it changed itself since, and its MODSEQ high-water mark, and turns the chain of deltas
into the untagged EXPUNGE / EXISTS / FETCH responses that move its client to the newest state.
"""

from __future__ import annotations

import bisect
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailyard.protocols.imap.flags import to_flags
from mailyard.store.ports import Mailbox, MailboxDelta, MailboxSnapshot

if TYPE_CHECKING:
    from mailyard.protocols.imap.views import MailboxView

_KEYWORDS: dict[tuple[str, ...], tuple[str, ...]] = {}
"""One tuple per distinct keyword set, shared by every session: most messages carry one of a
handful ((), ("$seen",), ...), so a view costs a pointer per message instead of a list."""


def shared_keywords(keywords: Iterable[str]) -> tuple[str, ...]:
    key = tuple(sorted(keywords))
    if len(_KEYWORDS) > 100_000:
        _KEYWORDS.clear()  # a flood of distinct custom keywords must not grow without bound
    return _KEYWORDS.setdefault(key, key)


@dataclass(slots=True, eq=False)
class Step:
    """How `version` was made from the version that links here."""

    vanished: list[int]
    """UIDs that left, ascending (only those the previous version had)."""
    changed: list[tuple[int, int, int]]
    """(UID, 0-based index in `version`, MODSEQ) of messages that were there before and whose
    entry changed (flags, or only MODSEQ), in UID order."""
    grew: bool
    """New messages came in (the count to announce is len(version.uids))."""
    version: Version


@dataclass(slots=True, eq=False)
class Version:
    """One state of a mailbox's UID map. Never changed once made (sessions share it): a change
    makes a new Version and links it as `next`."""

    uids: array[int]
    email_ids: list[str]
    keywords: list[tuple[str, ...]]
    modseq: int
    next: Step | None = None

    @classmethod
    def from_snapshot(cls, snap: MailboxSnapshot) -> Version:
        return cls(array("I", (e.uid for e in snap.entries)),
                   [sys.intern(e.email_id) for e in snap.entries],
                   [shared_keywords(e.keywords) for e in snap.entries],
                   snap.mailbox.highest_modseq)

    def index_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i if i < len(self.uids) and self.uids[i] == uid else None

    def advance(self, delta: MailboxDelta) -> Version:
        """The version after `delta` (linked from this one). Lists that did not change are
        shared with this version rather than copied."""
        vanished = sorted(u for u in set(delta.vanished) if self.index_of(u) is not None)
        uids, ids, keywords = self.uids, self.email_ids, self.keywords
        if vanished:
            gone = set(vanished)
            keep = [i for i, u in enumerate(uids) if u not in gone]
            uids = array("I", (uids[i] for i in keep))
            ids = [ids[i] for i in keep]
            keywords = [keywords[i] for i in keep]
        copied = bool(vanished)
        changed: list[tuple[int, int, int]] = []
        grew = False
        for entry in delta.changed:
            kw = shared_keywords(entry.keywords)
            i = bisect.bisect_left(uids, entry.uid)
            if i < len(uids) and uids[i] == entry.uid:
                if keywords[i] != kw:
                    if not copied:
                        keywords = list(keywords)
                        copied = True
                    keywords[i] = kw
                changed.append((entry.uid, i, entry.modseq))
                continue
            if uids and entry.uid < uids[-1]:
                continue  # an old UID we never saw: already gone again (RFC: no reuse)
            if not grew:
                if uids is self.uids:
                    uids, ids = array("I", uids), list(ids)
                if keywords is self.keywords:
                    keywords = list(keywords)
                copied = grew = True
            uids.append(entry.uid)
            ids.append(sys.intern(entry.email_id))
            keywords.append(kw)
        new = Version(uids, ids, keywords, max(self.modseq, delta.highest_modseq))
        self.next = Step(vanished, changed, grew, new)
        return new

    def latest(self) -> Version:
        version = self
        while version.next is not None:
            version = version.next.version
        return version


class Selected:
    """One session's place in a (possibly shared) chain of versions of the selected mailbox."""

    __slots__ = ("mailbox", "modseq", "own", "read_only", "recent", "version", "view")

    def __init__(self, mailbox: Mailbox, read_only: bool, version: Version,
                 view: MailboxView | None = None) -> None:
        self.mailbox = mailbox
        self.read_only = read_only
        self.version = version
        """What this session's client has been told: its sequence numbers are positions here."""
        self.own: dict[int, tuple[str, ...]] | None = None
        """Flags this session changed itself (STORE, FETCH setting \\Seen) that `version`
        does not show yet, by UID."""
        self.modseq = version.modseq
        """The highest MODSEQ this session has reported (or was current at SELECT)."""
        self.view = view
        """The shared MailboxView this session's versions come from (None: a private one)."""
        self.recent: set[int] = set()
        """UIDs that are \\Recent in this session (RFC 3501 §2.3.2): this session was the
        first to see them since they arrived (IMAP4rev1 only; RFC 9051 dropped \\Recent)."""

    def is_recent(self, uid: int) -> bool:
        return uid in self.recent

    @classmethod
    def from_snapshot(cls, snap: MailboxSnapshot, read_only: bool) -> Selected:
        return cls(snap.mailbox, read_only, Version.from_snapshot(snap))

    # ------------------------------------------------------------------ reading

    @property
    def uids(self) -> array[int]:
        return self.version.uids

    @property
    def email_ids(self) -> list[str]:
        return self.version.email_ids

    @property
    def exists(self) -> int:
        return len(self.version.uids)

    def keywords_at(self, index: int) -> tuple[str, ...]:
        """The flags this session's client knows for the message at 0-based `index`."""
        own = self.own
        if own:
            found = own.get(self.version.uids[index])
            if found is not None:
                return found
        return self.version.keywords[index]

    def all_keywords(self) -> Sequence[tuple[str, ...]]:
        """keywords_at for every index (one list, built only if this session changed flags)."""
        if not self.own:
            return self.version.keywords
        return [self.keywords_at(i) for i in range(len(self.version.uids))]

    def set_keywords(self, index: int, keywords: tuple[str, ...]) -> None:
        """This session changed the message's flags and told its client."""
        if self.own is None:
            self.own = {}
        self.own[self.version.uids[index]] = keywords

    def seq_of_uid(self, uid: int) -> int | None:
        """1-based sequence number of `uid`, or None."""
        i = self.version.index_of(uid)
        return None if i is None else i + 1

    def uid_range(self, first: int, last: int) -> range:
        """Indexes (0-based) of the UIDs in first..last (inclusive)."""
        uids = self.version.uids
        return range(bisect.bisect_left(uids, first), bisect.bisect_right(uids, last))

    # ------------------------------------------------------------------ moving on

    def apply(self, delta: MailboxDelta, *, with_modseq: bool = False,
              qresync: bool = False) -> list[bytes]:
        """A private view: bring it up to `delta` and return what tells the client."""
        self.version.latest().advance(delta)
        return self.catch_up(with_modseq=with_modseq, qresync=qresync)

    def catch_up(self, *, with_modseq: bool = False, qresync: bool = False) -> list[bytes]:
        """Move to the newest version; return the untagged responses that tell the client.

        For each step: expunges first, from the highest sequence number down, so each number is
        right at the moment the client reads it (or as one VANISHED once QRESYNC is enabled,
        RFC 7162 §3.2.10); then flag changes (FETCH); then new messages (EXISTS).
        """
        out: list[bytes] = []
        while (step := self.version.next) is not None:
            old, new = self.version, step.version
            own = self.own
            if step.vanished:
                if qresync:
                    out.append(f"* VANISHED {compact(step.vanished)}\r\n".encode())
                for uid in reversed(step.vanished):
                    if own:
                        own.pop(uid, None)
                    if not qresync:
                        i = old.index_of(uid)
                        out.append(b"* %d EXPUNGE\r\n" % ((i or 0) + 1))
            for uid, i, modseq in step.changed:
                kw = new.keywords[i]
                before = own.pop(uid, None) if own else None
                if before is None:
                    j = old.index_of(uid)
                    before = old.keywords[j] if j is not None else kw
                if before != kw:
                    flags = " ".join(to_flags(kw))
                    extra = f" MODSEQ ({modseq})" if with_modseq else ""
                    out.append(f"* {i + 1} FETCH (UID {uid} FLAGS ({flags}){extra})\r\n"
                               .encode())
            if step.grew:
                out.append(b"* %d EXISTS\r\n" % len(new.uids))
            self.version = new
            self.modseq = max(self.modseq, new.modseq)
        if self.own:  # flags the shared version has caught up with need no override
            version = self.version
            for uid, kw in list(self.own.items()):
                i = version.index_of(uid)
                if i is None or version.keywords[i] == kw:
                    del self.own[uid]
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
