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

from mailyard.protocols.imap.flags import SYSTEM_KEYWORDS, flag_list, flags_text
from mailyard.store.ports import Mailbox, MailboxDelta, MailboxSnapshot

if TYPE_CHECKING:
    from mailyard.protocols.imap.views import MailboxView

_KEYWORDS: dict[tuple[str, ...], tuple[str, ...]] = {}
"""One tuple per distinct keyword set, shared by every session: most messages carry one of a
handful ((), ("$seen",), ...), so a view costs a pointer per message instead of a list."""


def custom_names(sets: Iterable[tuple[str, ...]]) -> frozenset[str]:
    """The keywords in `sets` that are not system flags (what `* FLAGS` lists beyond them)."""
    return frozenset(k for kw in sets for k in kw if k not in SYSTEM_KEYWORDS)


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
    modseqs: array[int]
    """Each message's MODSEQ as of this version: FETCH MODSEQ answers from here, so what a
    session reports pairs with the flags it reports and never runs ahead of the steps it
    will report later (RFC 7162 §3.1.4: MODSEQ never goes backwards)."""
    names: frozenset[str] = frozenset()
    """Every keyword (other than the system flags) any message of this version carries or
    carried: the `* FLAGS` a session must have announced before it shows one (RFC 3501
    §7.2.6)."""
    next: Step | None = None

    @classmethod
    def from_snapshot(cls, snap: MailboxSnapshot) -> Version:
        keywords = [shared_keywords(e.keywords) for e in snap.entries]
        return cls(array("I", (e.uid for e in snap.entries)),
                   [sys.intern(e.email_id) for e in snap.entries], keywords,
                   snap.mailbox.highest_modseq, array("Q", (e.modseq for e in snap.entries)),
                   custom_names(set(keywords)))

    def index_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i if i < len(self.uids) and self.uids[i] == uid else None

    def advance(self, delta: MailboxDelta) -> Version:
        """The version after `delta` (linked from this one). Lists that did not change are
        shared with this version rather than copied."""
        vanished = sorted(u for u in set(delta.vanished) if self.index_of(u) is not None)
        uids, ids, keywords, modseqs = self.uids, self.email_ids, self.keywords, self.modseqs
        if vanished:
            gone = set(vanished)
            keep = [i for i, u in enumerate(uids) if u not in gone]
            uids = array("I", (uids[i] for i in keep))
            ids = [ids[i] for i in keep]
            keywords = [keywords[i] for i in keep]
            modseqs = array("Q", (modseqs[i] for i in keep))
        copied = bool(vanished)
        changed: list[tuple[int, int, int]] = []
        grew = False
        seen: set[tuple[str, ...]] = set()
        for entry in delta.changed:
            kw = shared_keywords(entry.keywords)
            seen.add(kw)
            i = bisect.bisect_left(uids, entry.uid)
            if i < len(uids) and uids[i] == entry.uid:
                if not copied:
                    keywords, modseqs = list(keywords), array("Q", modseqs)
                    copied = True
                keywords[i] = kw
                modseqs[i] = max(modseqs[i], entry.modseq)
                changed.append((entry.uid, i, entry.modseq))
                continue
            if uids and entry.uid < uids[-1]:
                continue  # an old UID we never saw: already gone again (RFC: no reuse)
            if not grew:
                if uids is self.uids:
                    uids, ids = array("I", uids), list(ids)
                if not copied:
                    keywords, modseqs = list(keywords), array("Q", modseqs)
                copied = grew = True
            uids.append(entry.uid)
            ids.append(sys.intern(entry.email_id))
            keywords.append(kw)
            modseqs.append(entry.modseq)
        names = self.names
        extra = custom_names(seen) - names
        if extra:
            names = names | extra
        new = Version(uids, ids, keywords, max(self.modseq, delta.highest_modseq), modseqs,
                      names)
        self.next = Step(vanished, changed, grew, new)
        return new

    def latest(self) -> Version:
        version = self
        while version.next is not None:
            version = version.next.version
        return version


class Selected:
    """One session's place in a (possibly shared) chain of versions of the selected mailbox."""

    __slots__ = ("announced", "mailbox", "modseq", "own", "read_only", "recent", "version",
                 "view")

    def __init__(self, mailbox: Mailbox, read_only: bool, version: Version,
                 view: MailboxView | None = None) -> None:
        self.mailbox = mailbox
        self.read_only = read_only
        self.version = version
        """What this session's client has been told: its sequence numbers are positions here."""
        self.own: dict[int, tuple[tuple[str, ...], int]] | None = None
        """Flags and MODSEQ this session told its client itself (STORE, FETCH setting \\Seen)
        ahead of `version`, by UID: a later step that is older for that UID is not reported
        (the client would see its flags go back)."""
        self.modseq = version.modseq
        """The highest MODSEQ this session has reported (or was current at SELECT)."""
        self.view = view
        """The shared MailboxView this session's versions come from (None: a private one)."""
        self.recent: set[int] = set()
        """UIDs that are \\Recent in this session (RFC 3501 §2.3.2): this session was the
        first to see them since they arrived (IMAP4rev1 only; RFC 9051 dropped \\Recent)."""
        self.announced = version.names
        """The keywords this session's client was told in `* FLAGS` (RFC 3501 §7.2.6)."""

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
                return found[0]
        return self.version.keywords[index]

    def modseq_at(self, index: int) -> int:
        """The MODSEQ this session's client knows for the message at `index`."""
        own = self.own
        if own:
            found = own.get(self.version.uids[index])
            if found is not None:
                return found[1]
        return self.version.modseqs[index]

    def all_keywords(self) -> Sequence[tuple[str, ...]]:
        """keywords_at for every index (one list, built only if this session changed flags)."""
        if not self.own:
            return self.version.keywords
        return [self.keywords_at(i) for i in range(len(self.version.uids))]

    def flags_text(self, index: int, keywords: tuple[str, ...] | None = None, *,
                   recent: bool = False, uid: int | None = None) -> str:
        """The FLAGS list of the message at `index` (or of `uid` with its `keywords`) as this
        client is to read it: with \\Recent for an IMAP4rev1 client (`recent`) when this
        session holds it."""
        text = flags_text(self.keywords_at(index) if keywords is None else keywords)
        if recent and (self.version.uids[index] if uid is None else uid) in self.recent:
            return text + " \\Recent" if text else "\\Recent"
        return text

    def set_keywords(self, index: int, keywords: tuple[str, ...], modseq: int) -> None:
        """This session changed the message's flags (at `modseq`) and told its client."""
        if self.own is None:
            self.own = {}
        uid = self.version.uids[index]
        known = self.own.get(uid)
        if known is None or known[1] <= modseq:
            self.own[uid] = (keywords, modseq)

    def announce(self, keywords: Iterable[tuple[str, ...]]) -> list[bytes]:
        """`* FLAGS` and PERMANENTFLAGS again if `keywords` hold one the client was not told
        of (RFC 3501 §7.2.6); to send before the FETCH that shows it."""
        extra = custom_names(keywords) - self.announced
        if not extra:
            return []
        self.announced = self.announced | extra
        return self.flags_lines()

    def flags_lines(self) -> list[bytes]:
        permanent = "()" if self.read_only else flag_list(self.announced, permanent=True)
        return [f"* FLAGS {flag_list(self.announced)}\r\n".encode(),
                f"* OK [PERMANENTFLAGS {permanent}] Flags permitted\r\n".encode()]

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

    def catch_up(self, *, with_modseq: bool = False, qresync: bool = False,
                 expunges: bool = True, recent: bool = False,
                 claim: list[int] | None = None) -> list[bytes]:
        """Move towards the newest version; return the untagged responses that tell the client.

        For each step: new keywords first (`* FLAGS`), then expunges, from the highest sequence
        number down, so each number is right at the moment the client reads it (or as one
        VANISHED once QRESYNC is enabled, RFC 7162 §3.2.10); then flag changes (FETCH); then
        new messages (EXISTS, and RECENT for an IMAP4rev1 client: `recent`).

        `expunges=False` (during FETCH, STORE, SEARCH: RFC 3501 §7.4.1) stops before the first
        step that expunges, which the next command reports. `claim` is the mailbox's \\Recent
        mark (the first UID no session has seen yet; a one-element list shared by the sessions
        of the view): a read-write session takes the new UIDs from it as its \\Recent ones.
        """
        out: list[bytes] = []
        while (step := self.version.next) is not None:
            if step.vanished and not expunges:
                break
            old, new = self.version, step.version
            own = self.own
            out += self.announce(new.keywords[i] for _, i, _ in step.changed)
            if step.grew:
                out += self.announce(new.keywords[len(old.uids) - len(step.vanished):])
            if step.vanished:
                if qresync:
                    out.append(f"* VANISHED {compact(step.vanished)}\r\n".encode())
                for uid in reversed(step.vanished):
                    if own:
                        own.pop(uid, None)
                    self.recent.discard(uid)
                    if not qresync:
                        i = old.index_of(uid)
                        out.append(b"* %d EXPUNGE\r\n" % ((i or 0) + 1))
            for uid, i, modseq in step.changed:
                kw = new.keywords[i]
                mine = own.get(uid) if own else None
                if mine is not None:
                    if mine[1] >= modseq:
                        continue  # the client was told this or newer already
                    del own[uid]  # type: ignore[union-attr]
                    before = mine[0]
                else:
                    j = old.index_of(uid)
                    before = old.keywords[j] if j is not None else kw
                if before != kw:
                    self.modseq = max(self.modseq, modseq)
                    flags = self.flags_text(i, kw, recent=recent, uid=uid)
                    extra = f" MODSEQ ({modseq})" if with_modseq else ""
                    out.append(f"* {i + 1} FETCH (UID {uid} FLAGS ({flags}){extra})\r\n"
                               .encode())
            if step.grew:
                if recent:
                    self._take_recent(new, len(old.uids) - len(step.vanished), claim)
                out.append(b"* %d EXISTS\r\n" % len(new.uids))
                if recent:
                    out.append(b"* %d RECENT\r\n" % len(self.recent))
            self.version = new
            self.modseq = max(self.modseq, new.modseq)
        if self.own:  # flags the shared version has caught up with need no override
            version = self.version
            for uid, (_kw, modseq) in list(self.own.items()):
                i = version.index_of(uid)
                if i is None or version.modseqs[i] >= modseq:
                    del self.own[uid]
        return out

    def _take_recent(self, version: Version, start: int, claim: list[int] | None) -> None:
        """The messages from `start` on are new to this session: \\Recent here if no other
        session saw them first (a read-only session sees them without taking them)."""
        if claim is None:
            return
        mark = claim[0]
        fresh = [u for u in version.uids[start:] if u >= mark]
        self.recent.update(fresh)
        if fresh and not self.read_only:
            claim[0] = fresh[-1] + 1

    def select_recent(self, claim: list[int]) -> None:
        """At SELECT/EXAMINE: the messages no session has seen are \\Recent here; SELECT
        takes them (the next session sees them without \\Recent), EXAMINE does not."""
        self._take_recent(self.version, 0, claim)


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
