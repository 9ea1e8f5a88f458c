"""Model-based concurrency stress test for IMAP (issue 16, "Concurrency, proved").

N sessions share INBOX of one account (and a second mailbox, Target, for COPY/MOVE) and do
random APPEND, COPY, MOVE, STORE (+FLAGS/-FLAGS/FLAGS, with and without UNCHANGEDSINCE),
EXPUNGE, UID EXPUNGE, FETCH (FLAGS MODSEQ), NOOP, IDLE and SMTP deliveries. Each session keeps
its own view of INBOX built only from what the server told it (RFC 3501 §7: EXISTS, EXPUNGE,
FETCH; RFC 7162: MODSEQ, VANISHED; RFC 4315: APPENDUID, COPYUID). Sessions are of three
kinds, by index: plain IMAP4rev1, CONDSTORE enabled, QRESYNC enabled.

What is checked (the names are the keys of `Model.passed` / `Failure.check`):
  serverbug            no response ever carries [SERVERBUG]
  status               no BAD, no untagged NO/BAD/BYE; a tagged NO only where allowed: the one
                       NO this test allows is NO [EXPUNGEISSUED] (RFC 5530) for FETCH, STORE,
                       COPY and MOVE, the documented way RFC 3501 §7.4.1's guidance lets a
                       server refuse to act on a message another session expunged. APPEND,
                       EXPUNGE, UID EXPUNGE, NOOP, IDLE and every UID command on a UID that is
                       gone must answer OK (RFC 3501 §6.4.8: a non-existent UID is ignored).
                       A failed UNCHANGEDSINCE is OK [MODIFIED ...], never NO (RFC 7162 §3.1.3).
  responses            APPENDUID on every APPEND OK, COPYUID on every COPY/MOVE that copied
  exists               EXISTS never below the session's count (only EXPUNGE/VANISHED lower it)
  expunge-range        EXPUNGE n names a message the session has; VANISHED names UIDs it has
  expunge-kind         a QRESYNC session gets VANISHED, never EXPUNGE (RFC 7162 §3.2.10), and
                       the others never VANISHED
  uid-order            UIDs strictly increase with sequence numbers; a new message's UID is
                       above every UID the session saw before (RFC 3501 §2.3.1.1)
  uid-stable           a FETCH's UID equals the UID the session holds at that number
  uid-reused           APPENDUID/COPYUID never name a UID given out before or expunged
  uid-identity         one (mailbox, UID) is always the same message (Message-ID), everywhere
  resurrected-in-view  a UID a session was told is expunged never comes back to it
  modseq-monotonic     a message's MODSEQ as told to one session never goes backwards
  modseq-consistent    one (UID, MODSEQ) always carries the same flags, in every session
  store-reply          a STORE's own FETCH shows its change (+ present, - absent, = exact) and,
                       with UNCHANGEDSINCE m, a MODSEQ above m (or m itself if nothing
                       changed); [MODIFIED set] names only messages the STORE named
  fetch-complete       FETCH m:n of messages the session has returns each of them
  final-view           after the end NOOP, each view (UIDs in order, flags) equals the server's
                       state read over a fresh session; again after UID FETCH 1:* (FLAGS)
  lost-message         every UID given out or seen in INBOX that nobody was told is expunged
                       is in INBOX at the end; Target holds exactly what COPYUID put there
  lost-delivery        every message delivered over SMTP was seen by someone
  resurrected-uid      no UID reported expunged is in the final state
  phantom-message      a Message-ID never has more UIDs in a mailbox than APPEND, COPY and
                       delivery made of it (an expunged message does not come back under a new
                       UID unless it was appended again)
  phantom-flag         a message never shows a flag nobody gave it (APPEND flags, a STORE
                       that could add it, or its COPY source's)

Message bodies are sometimes identical on purpose (a small pool of "twin" messages appended
again and again), since APPEND and COPY must create a new message every time.

The seed fixes every session's sequence of operations and every message; the interleaving of
sessions is the machine's, so a seed reproduces the same workload, not the same schedule.
Nothing waits by sleeping: a session waits for its tagged reply; IDLE ends on untagged data or
on other sessions having done some operations; the end waits for the delivery queue to drain
and for every delivered message to be seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
import smtplib
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

INBOX = "INBOX"
TARGET = "Target"
FLAG_POOL = ("\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "$a", "$b")
APPEND_FLAGS = ("\\Seen", "\\Flagged", "\\Answered", "$a")
"""No \\Deleted at APPEND: a message nobody has seen could then be expunged unannounced, and
phantom-flag could not tell a resurrected \\Deleted from a given one."""
TWINS = 4
IDLE_GUARD = 10.0
"""IDLE ends on untagged data or after other sessions did 3 operations; this is only the
guard for when all the others are done or idle too (it does not order anything)."""

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n\Z")
_NUMBERED = re.compile(rb"^\* (\d+) (EXISTS|EXPUNGE|RECENT|FETCH)\b")
_VANISHED = re.compile(rb"^\* VANISHED (\(EARLIER\) )?([0-9:,]+)")
_UID = re.compile(rb"[( ]UID (\d+)")
_FLAGS = re.compile(rb"[( ]FLAGS \(([^)]*)\)")
_MODSEQ = re.compile(rb"[( ]MODSEQ \((\d+)\)")
_MSGID = re.compile(rb"Message-ID:\s*(<[^>\r\n]*>)", re.I)
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]")
_COPYUID = re.compile(rb"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]")
_MODIFIED = re.compile(rb"\[MODIFIED ([0-9:,]+)\]")


def expand(text: str) -> list[int]:
    """The numbers of an IMAP sequence set without '*' ("1:3,7" -> [1, 2, 3, 7]), in order."""
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition(":")
        lo, hi = int(a), int(b or a)
        out.extend(range(lo, hi + 1) if lo <= hi else range(lo, hi - 1, -1))
    return out


def compact(numbers: list[int]) -> str:
    """An IMAP sequence set for the numbers (sorted, runs joined)."""
    out: list[str] = []
    for n in sorted(set(numbers)):
        if out and ":" in out[-1] and int(out[-1].split(":")[1]) == n - 1:
            out[-1] = f"{out[-1].split(':')[0]}:{n}"
        elif out and ":" not in out[-1] and int(out[-1]) == n - 1:
            out[-1] = f"{out[-1]}:{n}"
        else:
            out.append(str(n))
    return ",".join(out)


def clean(flags: bytes | str) -> frozenset[str]:
    """Flags as compared: \\Recent left out (a per-session flag), keywords case-folded."""
    text = flags.decode() if isinstance(flags, bytes) else flags
    return frozenset(f if f.startswith("\\") else f.lower()
                     for f in text.split() if f.lower() != "\\recent")


def show(flags: frozenset[str] | set[str]) -> str:
    return "(" + " ".join(sorted(flags)) + ")"


class SessionBroken(Exception):
    """The connection broke or the session cannot go on (already recorded as a failure)."""


@dataclass
class Failure:
    check: str
    detail: str
    session: str = ""
    excerpt: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"[{self.check}] {self.session}: {self.detail}"]
        lines += [f"    | {line}" for line in self.excerpt]
        return "\n".join(lines)


@dataclass
class Config:
    port: int
    user: str
    password: str
    smtp_port: int = 0
    sessions: int = 4
    ops: int = 150
    seed: int = 1
    seconds: float = 0.0
    """0: no time limit (the run ends when every session did `ops` operations)."""
    host: str = "127.0.0.1"
    deliver: bool = True


@dataclass
class Fetched:
    seq: int
    uid: int | None
    flags: frozenset[str] | None
    modseq: int | None


@dataclass
class Reply:
    status: str
    tagged: bytes
    untagged: list[bytes]
    fetched: list[Fetched]


class Model:
    """What every session learnt, put together: the shared knowledge the end checks read."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.failures: list[Failure] = []
        self.passed: Counter[str] = Counter()
        self.ops: Counter[str] = Counter()
        self.assigned: dict[tuple[str, int], str] = {}
        """(mailbox, UID) -> Message-ID, from APPENDUID and COPYUID."""
        self.identity: dict[tuple[str, int], str] = {}
        """(mailbox, UID) -> Message-ID, from every FETCH that showed one (and `assigned`)."""
        self.expunged: dict[int, float] = {}
        """INBOX UIDs some session was told are expunged (EXPUNGE, VANISHED), with when the
        model first heard it (monotonic; the sessions share one event loop)."""
        self.seen_uids: set[int] = set()
        """Every INBOX UID some session learnt of."""
        self.creations: Counter[tuple[str, str]] = Counter()
        """(mailbox, Message-ID) -> how many APPEND, COPY, MOVE and deliveries were sent."""
        self.given: defaultdict[tuple[str, int], set[str]] = defaultdict(set)
        """(mailbox, UID) -> every flag an APPEND or a STORE could have given it."""
        self.parent: dict[tuple[str, int], tuple[str, int]] = {}
        """A COPY/MOVE's new message -> its source (whose flags it may carry)."""
        self.flag_seen: list[tuple[str, int, frozenset[str], str, list[str]]] = []
        """(mailbox, UID, flags, session, excerpt) of every FLAGS a session was told."""
        self.modseq_flags: dict[tuple[int, int], tuple[frozenset[str], str]] = {}
        self.delivered: set[str] = set()
        self.progress = 0
        self.running = 0
        self.changed = asyncio.Condition()

    def ok(self, check: str) -> None:
        self.passed[check] += 1

    def fail(self, check: str, detail: str, session: Session | None = None) -> None:
        self.failures.append(Failure(check, detail, session.name if session else "",
                                     session.excerpt() if session else []))

    def check(self, condition: bool, check: str, detail: str,
              session: Session | None = None) -> bool:
        if condition:
            self.ok(check)
        else:
            self.fail(check, detail, session)
        return condition

    def assign(self, mailbox: str, uid: int, msgid: str, session: Session, how: str) -> None:
        """A UID the server just gave out (APPENDUID/COPYUID): it must be new."""
        key = (mailbox, uid)
        # Expunged before the command that names it was sent: a UID given out again. (One
        # expunged while the command ran was made by it and expunged by another session at
        # once, which the server may tell before the tagged APPENDUID/COPYUID.)
        expunged = mailbox == INBOX and self.expunged.get(uid, math.inf) < session.sent_at
        self.check(key not in self.assigned and not expunged, "uid-reused",
                   f"{how} gave {mailbox} UID {uid} for {msgid}, a UID already given"
                   f" out (for {self.assigned.get(key, 'a message seen in a FETCH')})"
                   + (" and reported expunged" if expunged else ""), session)
        self.assigned.setdefault(key, msgid)
        self.know(mailbox, uid, msgid, session)

    def know(self, mailbox: str, uid: int, msgid: str, session: Session) -> None:
        key = (mailbox, uid)
        before = self.identity.setdefault(key, msgid)
        self.check(before == msgid, "uid-identity",
                   f"{mailbox} UID {uid} is {msgid} here, {before} before", session)

    async def tick(self) -> None:
        async with self.changed:
            self.progress += 1
            self.changed.notify_all()

    async def others_moved(self, since: int, steps: int) -> None:
        """Until other sessions did `steps` operations, or no other session is running."""
        async with self.changed:
            await self.changed.wait_for(
                lambda: self.progress >= since + steps or self.running <= 1)

    def allowed(self, mailbox: str, uid: int) -> set[str]:
        """Flags the message may show: given to it, or to any message linked to it by COPY or
        MOVE, either way. With Gmail-style labels (DESIGN.md: a mailbox is a label) a COPY
        into another mailbox labels the same email, so a STORE on either UID shows on both,
        and MOVE within a mailbox keeps the email under a new UID."""
        children: defaultdict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
        for child, parent in self.parent.items():
            children[parent].append(child)
        flags: set[str] = set()
        todo = [(mailbox, uid)]
        visited: set[tuple[str, int]] = set()
        while todo:
            key = todo.pop()
            if key in visited:
                continue
            visited.add(key)
            flags |= self.given.get(key, set())
            up = self.parent.get(key)
            if up is not None:
                todo.append(up)
            todo += children.get(key, [])
        return flags


class Session:
    """One IMAP connection and the view of INBOX it built from what the server told it."""

    def __init__(self, model: Model, index: int, kind: str, rng: random.Random) -> None:
        self.model = model
        self.index = index
        self.kind = kind
        self.name = f"s{index}/{kind}" if index >= 0 else "fresh"
        self.rng = rng
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.tags = 0
        self.mailbox = INBOX
        self.uids: list[int | None] = []
        self.flags: dict[int, frozenset[str]] = {}
        self.modseq: dict[int, int] = {}
        self.msgid: dict[int, str] = {}
        self.gone: set[int] = set()
        self.max_uid = 0
        self.transcript: list[str] = []
        self.made = 0
        self.current = ""
        self.sent_at = 0.0
        """When the command in progress was sent (monotonic)."""
        self.floor = 0
        """Every message announced by EXISTS and not fetched yet has a UID above this (the
        highest UID the session knew when the first of them was announced)."""

    # ------------------------------------------------------------------ wire

    def log(self, direction: str, data: bytes) -> None:
        text = data.decode(errors="replace").rstrip("\r\n").replace("\r\n", " ")
        if len(text) > 400:
            text = text[:400] + "..."
        self.transcript.append(f"{time.monotonic():.3f} {direction} {text}")

    def excerpt(self, lines: int = 14) -> list[str]:
        return self.transcript[-lines:]

    async def connect(self) -> None:
        config = self.model.config
        self.reader, self.writer = await asyncio.open_connection(config.host, config.port,
                                                                 limit=1 << 22)
        greeting = await self.read_response()
        if not greeting.startswith(b"* OK"):
            raise SessionBroken(f"greeting {greeting!r}")
        await self.command(f'LOGIN "{config.user}" "{config.password}"')
        if self.kind == "condstore":
            await self.command("ENABLE CONDSTORE")
        elif self.kind == "qresync":
            await self.command("ENABLE QRESYNC")

    async def select(self, mailbox: str) -> None:
        self.mailbox = mailbox
        self.uids, self.flags, self.modseq, self.msgid = [], {}, {}, {}
        self.gone, self.max_uid = set(), 0
        await self.command(f"SELECT {mailbox}")
        await self.resolve()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()

    async def read_response(self) -> bytes:
        """One response with its literals inline (logged with the literals cut short)."""
        assert self.reader is not None
        parts: list[bytes] = []
        shown: list[bytes] = []
        while True:
            try:
                line = await self.reader.readuntil(b"\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ConnectionError) as e:
                self.log("S:", f"<connection lost: {e!r}>".encode())
                self.model.fail("status", f"connection lost: {e!r}", self)
                raise SessionBroken(repr(e)) from None
            parts.append(line)
            shown.append(line)
            mark = _LITERAL.search(line)
            if mark is None:
                break
            literal = await self.reader.readexactly(int(mark.group(1)))
            parts.append(literal)
            found = _MSGID.search(literal)
            shown.append(b"<" + (found.group(1) if found else b"literal") + b">")
        self.log("S:", b"".join(shown))
        return b"".join(parts)

    def send(self, data: bytes, shown: bytes | None = None) -> None:
        assert self.writer is not None
        self.log("C:", shown if shown is not None else data)
        self.writer.write(data)

    def next_tag(self) -> bytes:
        self.tags += 1
        return b"%s.%d" % (self.name.split("/")[0].encode(), self.tags)

    async def command(self, text: str, literal: bytes | None = None, *,
                      may_expungeissued: bool = False, checked: bool = True) -> Reply:
        """Send one command, apply every untagged response to the view as it comes, and
        check the tagged status against what the RFCs allow for it."""
        tag = self.next_tag()
        self.current = text
        self.sent_at = time.monotonic()
        if literal is None:
            self.send(b"%s %s\r\n" % (tag, text.encode()))
        else:
            found = _MSGID.search(literal)
            name = found.group(1) if found else b"?"
            self.send(b"%s %s {%d+}\r\n%s\r\n" % (tag, text.encode(), len(literal), literal),
                      b"%s %s {%d+} %s" % (tag, text.encode(), len(literal), name))
        assert self.writer is not None
        await self.writer.drain()
        return await self.finish(tag, text, may_expungeissued=may_expungeissued,
                                 checked=checked)

    async def finish(self, tag: bytes, text: str, *, may_expungeissued: bool = False,
                     first: bytes | None = None, checked: bool = True) -> Reply:
        untagged: list[bytes] = []
        fetched: list[Fetched] = []
        while True:
            line = first if first is not None else await self.read_response()
            first = None
            if line.startswith(tag + b" "):
                break
            untagged.append(line)
            got = self.apply(line)
            if got is not None:
                fetched.append(got)
        status = line[len(tag) + 1:].split(b" ", 1)[0].decode(errors="replace")
        m = self.model
        m.check(b"SERVERBUG" not in line, "serverbug",
                f"{text[:80]!r} answered {line.decode(errors='replace')[:200]}", self)
        allowed = status == "OK" or (status == "NO" and may_expungeissued
                                     and b"[EXPUNGEISSUED]" in line)
        if checked:
            m.check(allowed, "status",
                    f"{text[:80]!r} answered {line.decode(errors='replace')[:200]}",
                    self)
        return Reply(status, line, untagged, fetched)

    # ------------------------------------------------------------------ the view

    def apply(self, line: bytes) -> Fetched | None:
        """One untagged response, applied to the view as RFC 3501 §7 and RFC 7162 say."""
        m = self.model
        if line.startswith(b"* BYE") and self.current == "LOGOUT":
            return None
        if line.startswith((b"* NO", b"* BAD", b"* BYE")):
            m.check(b"SERVERBUG" not in line, "serverbug",
                    line.decode(errors="replace")[:200], self)
            m.fail("status", f"untagged {line.decode(errors='replace')[:200]}", self)
            return None
        numbered = _NUMBERED.match(line)
        if numbered:
            n, what = int(numbered.group(1)), numbered.group(2)
            if what == b"EXISTS":
                self.exists(n)
            elif what == b"EXPUNGE":
                self.expunge(n)
            elif what == b"FETCH":
                return self.fetched(n, line)
            return None
        vanished = _VANISHED.match(line)
        if vanished:
            m.check(vanished.group(1) is None and self.kind == "qresync", "expunge-kind",
                    f"{self.kind} session got {line.decode()[:100]}", self)
            self.vanish(expand(vanished.group(2).decode()))
        return None

    def exists(self, n: int) -> None:
        have = len(self.uids)
        if self.model.check(n >= have, "exists",
                            f"EXISTS {n} below the {have} messages the session has",
                            self):
            if n > have and None not in self.uids:
                self.floor = self.max_uid
            self.uids.extend([None] * (n - have))

    def forget(self, uid: int | None) -> None:
        if uid is None:
            return
        self.gone.add(uid)
        self.flags.pop(uid, None)
        self.modseq.pop(uid, None)
        if self.mailbox == INBOX:
            self.model.expunged.setdefault(uid, time.monotonic())

    def expunge(self, n: int) -> None:
        m = self.model
        m.check(self.kind != "qresync", "expunge-kind",
                "EXPUNGE sent to a session with QRESYNC enabled", self)
        if m.check(1 <= n <= len(self.uids), "expunge-range",
                   f"EXPUNGE {n} with {len(self.uids)} messages", self):
            self.forget(self.uids.pop(n - 1))

    def vanish(self, uids: list[int]) -> None:
        """VANISHED: UIDs; one the session does not know yet (a message announced by EXISTS
        and not fetched) is one of the unfetched messages between the known UIDs below and
        above it (UIDs ascend with sequence numbers): any of those is dropped, since they are
        all unknown alike (they are re-fetched)."""
        for uid in uids:
            if uid in self.uids:
                self.uids.remove(uid)
                self.forget(uid)
                self.model.ok("expunge-range")
                continue
            slot = self._unknown_slot(uid)
            if slot is not None:
                del self.uids[slot]
                self.forget(uid)
                self.model.ok("expunge-range")
            else:
                self.model.fail("expunge-range",
                                f"VANISHED UID {uid}, which the session does not have"
                                f" (highest known {self.floor})", self)

    def _unknown_slot(self, uid: int) -> int | None:
        """The index of an unfetched message that may have `uid`: one between the last known
        UID below it and the first known UID above it."""
        for i, held in enumerate(self.uids):
            if held is None:
                below = [u for u in self.uids[:i] if u is not None]
                if below and below[-1] > uid:
                    return None
                above = next((u for u in self.uids[i + 1:] if u is not None), None)
                if above is None or above > uid:
                    return i
        return None

    def fetched(self, seq: int, line: bytes) -> Fetched | None:
        m = self.model
        if not m.check(1 <= seq <= len(self.uids), "expunge-range",
                       f"FETCH for {seq} with {len(self.uids)} messages", self):
            return None
        skeleton, literal = line, b""
        mark = re.search(rb"\{(\d+)\+?\}\r\n", line)
        if mark:
            size = int(mark.group(1))
            literal = line[mark.end():mark.end() + size]
            skeleton = line[:mark.start()] + line[mark.end() + size:]
        uid_m, flags_m, modseq_m = (_UID.search(skeleton), _FLAGS.search(skeleton),
                                    _MODSEQ.search(skeleton))
        held = self.uids[seq - 1]
        uid = int(uid_m.group(1)) if uid_m else held
        if held is None and uid is not None:
            self.learn(seq, uid)
        elif uid_m is not None and held is not None:
            m.check(uid == held, "uid-stable",
                    f"FETCH {seq} says UID {uid}, the session has UID {held} there",
                    self)
            uid = held
        if uid is None:
            return Fetched(seq, None, None, None)
        found = _MSGID.search(literal)
        if found:
            msgid = found.group(1).decode()
            self.msgid[uid] = msgid
            m.know(self.mailbox, uid, msgid, self)
        flags = clean(flags_m.group(1)) if flags_m else None
        modseq = int(modseq_m.group(1)) if modseq_m else None
        if modseq is not None:
            last = self.modseq.get(uid, 0)
            m.check(modseq >= last, "modseq-monotonic",
                    f"UID {uid}: MODSEQ {modseq} after MODSEQ {last}", self)
            self.modseq[uid] = max(last, modseq)
            if flags is not None and self.mailbox == INBOX:
                key = (uid, modseq)
                before = m.modseq_flags.setdefault(key, (flags, self.name))
                m.check(before[0] == flags, "modseq-consistent",
                        f"UID {uid} MODSEQ {modseq}: FLAGS {show(flags)} here,"
                                f" {show(before[0])} in {before[1]}", self)
        if flags is not None:
            self.flags[uid] = flags
            m.flag_seen.append((self.mailbox, uid, flags, self.name, self.excerpt(8)))
        return Fetched(seq, uid, flags, modseq)

    def learn(self, seq: int, uid: int) -> None:
        """The UID of a message announced by EXISTS: above every UID before it."""
        m = self.model
        below = [u for u in self.uids[:seq - 1] if u is not None]
        above = [u for u in self.uids[seq:] if u is not None]
        m.check(uid > self.floor and (not below or below[-1] < uid)
                and (not above or uid < above[0]), "uid-order",
                f"new message {seq} has UID {uid}: the session knew UIDs up to"
                f" {self.floor} when it was announced; UIDs around it"
                f" {below[-1:]} {above[:1]}", self)
        m.check(uid not in self.gone, "resurrected-in-view",
                f"UID {uid} is back after it was expunged", self)
        self.uids[seq - 1] = uid
        self.max_uid = max(self.max_uid, uid)
        if self.mailbox == INBOX:
            m.seen_uids.add(uid)

    def fetch_items(self, *, msgid: bool) -> str:
        items = "UID FLAGS" + (" MODSEQ" if self.kind != "plain" else "")
        return items + (" BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]" if msgid else "")

    async def resolve(self) -> None:
        """Fetch UID, flags and Message-ID of the messages announced but not fetched yet (or
        whose UID came in an unsolicited FETCH, without the Message-ID)."""
        for _ in range(10):
            unknown = [i + 1 for i, u in enumerate(self.uids)
                       if u is None or u not in self.msgid]
            if not unknown:
                return
            first, last = unknown[0], unknown[-1]
            await self.command(f"FETCH {first}:{last} ({self.fetch_items(msgid=True)})")
            missing = [s for s in range(first, min(last, len(self.uids)) + 1)
                       if self.uids[s - 1] is None or self.uids[s - 1] not in self.msgid]
            if not self.model.check(not missing, "fetch-complete",
                                    f"FETCH {first}:{last} left out {missing}", self):
                raise SessionBroken("FETCH left messages out")
        raise SessionBroken("the view never settles")

    def known(self) -> list[int]:
        return [u for u in self.uids if u is not None]

    def pick(self, most: int = 3) -> list[int]:
        uids = self.known()
        if not uids:
            return []
        return sorted(self.rng.sample(uids, self.rng.randint(1, min(most, len(uids)))))

    def seqs_of(self, uids: list[int]) -> list[int]:
        return [self.uids.index(u) + 1 for u in uids]

    # ------------------------------------------------------------------ operations

    def message(self) -> tuple[str, bytes]:
        """A new message with its own Message-ID and Subject, or (one time in four) one of the
        few twins: byte-identical messages that every session appends again and again."""
        seed = self.model.config.seed
        if self.rng.random() < 0.25:
            k = self.rng.randrange(TWINS)
            msgid = f"<twin-{k}.{seed}@model.test>"
            subject = f"twin {k}"
        else:
            self.made += 1
            msgid = f"<{self.name.split('/')[0]}-{self.made}.{seed}@model.test>"
            subject = f"message {self.name} {self.made}"
        raw = (f"From: model@remote.test\r\nTo: {self.model.config.user}\r\n"
               f"Subject: {subject}\r\nMessage-ID: {msgid}\r\n"
               f"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n{subject}\r\n").encode()
        return msgid, raw

    async def op_append(self) -> None:
        mailbox = TARGET if self.rng.random() < 0.1 else INBOX
        msgid, raw = self.message()
        flags = sorted(f for f in APPEND_FLAGS if self.rng.random() < 0.25)
        self.model.creations[(mailbox, msgid)] += 1
        reply = await self.command(f"APPEND {mailbox} ({' '.join(flags)})", raw)
        if reply.status != "OK":
            return
        found = _APPENDUID.search(reply.tagged)
        if not self.model.check(found is not None, "responses",
                                "APPEND OK without APPENDUID", self):
            return
        assert found is not None
        for uid in expand(found.group(2).decode()):
            self.model.assign(mailbox, uid, msgid, self, "APPEND")
            self.model.given[(mailbox, uid)].update(clean(" ".join(flags)))

    async def op_copy(self, move: bool) -> None:
        uids = self.pick()
        if not uids:
            return
        target = TARGET if move or self.rng.random() < 0.6 else INBOX
        for uid in uids:
            if uid in self.msgid:
                self.model.creations[(target, self.msgid[uid])] += 1
        verb = "MOVE" if move else "COPY"
        if self.rng.random() < 0.5:
            text = f"UID {verb} {compact(uids)} {target}"
        else:
            text = f"{verb} {compact(self.seqs_of(uids))} {target}"
        sources = {u: self.msgid.get(u) for u in uids}
        reply = await self.command(text, may_expungeissued=True)
        if reply.status != "OK":
            return
        lines = [reply.tagged] + [u for u in reply.untagged if u.startswith(b"* OK")]
        found = next((f for f in map(_COPYUID.search, lines) if f), None)
        if found is None:
            self.model.check(b"No messages" in reply.tagged, "responses",
                             f"{verb} OK without COPYUID", self)
            return
        self.model.ok("responses")
        pairs = zip(expand(found.group(2).decode()), expand(found.group(3).decode()),
                    strict=False)
        for src, dst in pairs:
            msgid = sources.get(src) or self.model.identity.get((INBOX, src), "?")
            self.model.assign(target, dst, msgid, self, verb)
            self.model.parent[(target, dst)] = (INBOX, src)

    async def op_store(self) -> None:
        uids = self.pick()
        if not uids:
            return
        mode = self.rng.choice(("+", "-", ""))
        flags = sorted(f for f in FLAG_POOL if self.rng.random() < 0.3)
        if mode and not flags:
            flags = [self.rng.choice(FLAG_POOL)]
        since: int | None = None
        if self.kind != "plain" and self.rng.random() < 0.4:
            since = min(self.modseq.get(u, 1) for u in uids)
        if mode != "-":
            for uid in uids:
                self.model.given[(INBOX, uid)].update(clean(" ".join(flags)))
        by_uid = self.rng.random() < 0.5
        numbers = uids if by_uid else self.seqs_of(uids)
        modifier = f" (UNCHANGEDSINCE {since})" if since is not None else ""
        text = (("UID " if by_uid else "") + f"STORE {compact(numbers)}{modifier}"
                f" {mode}FLAGS ({' '.join(flags)})")
        before = {u: self.flags.get(u) for u in uids}
        reply = await self.command(text, may_expungeissued=True)
        if reply.status != "OK":
            return
        found = _MODIFIED.search(reply.tagged)
        failed = set(expand(found.group(1).decode())) if found else set()
        self.model.check(failed <= set(numbers), "store-reply",
                         f"[MODIFIED {compact(sorted(failed))}] names"
                         f" {'UIDs' if by_uid else 'numbers'} the STORE did not", self)
        want = clean(" ".join(flags))
        checked: set[int] = set()
        for f in reply.fetched:
            if f.uid not in uids or f.uid in checked or (f.uid if by_uid else f.seq) in failed:
                continue
            checked.add(f.uid)
            got, modseq = f.flags, f.modseq
            if got is not None:
                right = (want <= got if mode == "+" else not (want & got) if mode == "-"
                         else got == want)
                self.model.check(right, "store-reply",
                                 f"{mode}FLAGS {show(want)} on UID {f.uid} answered"
                                         f" FLAGS {show(got or frozenset())}", self)
            if since is not None:
                # A STORE that changed nothing may keep the MODSEQ; one that did change the
                # flags takes a new one, above UNCHANGEDSINCE (RFC 7162 §3.1.3).
                unchanged = got is not None and got == before.get(f.uid)
                self.model.check(modseq is not None and (modseq > since or
                                                         (unchanged and modseq == since)),
                                 "store-reply",
                                 f"UNCHANGEDSINCE {since} on UID {f.uid} changed FLAGS"
                                 f" {show(before.get(f.uid) or frozenset())} ->"
                                 f" {show(got or frozenset())} with MODSEQ {modseq}", self)

    async def op_expunge(self) -> None:
        if self.rng.random() < 0.5:
            await self.command("EXPUNGE")
            return
        deleted = [u for u in self.known() if "\\Deleted" in self.flags.get(u, ())]
        uids = sorted(set(self.pick(2) + deleted[:3]))
        if uids:
            await self.command(f"UID EXPUNGE {compact(uids)}")

    async def op_fetch(self) -> None:
        if not self.uids:
            return
        items = self.fetch_items(msgid=False)
        if self.rng.random() < 0.5:
            uids = self.pick(5)
            await self.command(f"UID FETCH {compact(uids)} ({items})", may_expungeissued=True)
            return
        first = self.rng.randint(1, len(self.uids))
        last = self.rng.randint(first, len(self.uids))
        await self.command(f"FETCH {first}:{last} ({items})", may_expungeissued=True)

    async def op_noop(self) -> None:
        await self.command("NOOP")

    async def op_idle(self) -> None:
        """IDLE until untagged data comes or other sessions did three operations; DONE."""
        tag = self.next_tag()
        self.send(tag + b" IDLE\r\n")
        while True:
            line = await self.read_response()
            if line.startswith(b"+"):
                break
            if line.startswith(tag + b" "):
                await self.finish(tag, "IDLE", first=line)
                return
            self.apply(line)
        reading = asyncio.ensure_future(self.read_response())
        waiting = asyncio.ensure_future(self.model.others_moved(self.model.progress, 3))
        await asyncio.wait({reading, waiting}, timeout=IDLE_GUARD,
                           return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        self.send(b"DONE\r\n")
        first = await reading
        if not first.startswith(tag + b" "):
            self.apply(first)
            first = await self.read_response()
        await self.finish(tag, "IDLE", first=first)

    async def op_deliver(self) -> None:
        """One message over SMTP to the account (the pipeline's workers deliver it)."""
        config = self.model.config
        self.made += 1
        msgid = f"<{self.name.split('/')[0]}-d{self.made}.{config.seed}@model.test>"
        raw = (f"From: sender@remote.test\r\nTo: {config.user}\r\n"
               f"Subject: delivered {self.name} {self.made}\r\nMessage-ID: {msgid}\r\n\r\n"
               f"delivered\r\n").encode()
        self.model.creations[(INBOX, msgid)] += 1
        self.log("C:", f"<SMTP delivery of {msgid}>".encode())

        def send() -> None:
            with smtplib.SMTP(config.host, config.smtp_port, timeout=60) as smtp:
                smtp.sendmail("sender@remote.test", [config.user], raw)

        try:
            await asyncio.to_thread(send)
        except (smtplib.SMTPException, OSError) as e:
            self.model.fail("status", f"SMTP delivery refused: {e!r}", self)
            return
        self.model.delivered.add(msgid)
        self.log("S:", b"<SMTP 250>")

    async def step(self) -> str:
        """One random operation, then the FETCH that learns the UIDs of new messages."""
        r = self.rng.random()
        deliver = self.model.config.deliver and self.model.config.smtp_port
        table: list[tuple[float, str, Callable[[], Awaitable[None]]]] = [
            (0.22, "append", self.op_append),
            (0.08, "copy", lambda: self.op_copy(False)),
            (0.05, "move", lambda: self.op_copy(True)),
            (0.25, "store", self.op_store),
            (0.09, "expunge", self.op_expunge),
            (0.12, "fetch", self.op_fetch),
            (0.06, "noop", self.op_noop),
            (0.06, "idle", self.op_idle),
            (0.07 if deliver else 0.0, "deliver", self.op_deliver),
        ]
        total = sum(w for w, _, _ in table)
        r *= total
        for weight, name, run in table:
            if r < weight:
                await run()
                await self.resolve()
                return name
            r -= weight
        return "none"


# ---------------------------------------------------------------------- the run

KINDS = ("plain", "condstore", "qresync")


@dataclass
class Result:
    model: Model
    sessions: list[Session]
    seconds: float
    """The operations phase only (not the end checks)."""
    total_seconds: float

    @property
    def failures(self) -> list[Failure]:
        return self.model.failures

    def summary(self) -> str:
        m = self.model
        ops = sum(m.ops.values())
        passed, failed = sum(m.passed.values()), len(m.failures)
        by_check = Counter(f.check for f in m.failures)
        lines = [
            f"seed {m.config.seed}: {len(self.sessions)} sessions "
            f"({', '.join(s.kind for s in self.sessions)}), {ops} operations in "
            f"{self.seconds:.2f} s ({ops / max(self.seconds, 1e-9):.0f} ops/s), "
            f"{self.total_seconds:.2f} s with the end checks",
            "operations: " + ", ".join(f"{k} {v}" for k, v in sorted(m.ops.items())),
            f"checks: {passed} passed, {failed} failed",
            "passed by check: " + ", ".join(f"{k} {v}" for k, v in sorted(m.passed.items())),
        ]
        if by_check:
            lines.append("failed by check: "
                         + ", ".join(f"{k} {v}" for k, v in sorted(by_check.items())))
        return "\n".join(lines)

    def report(self, per_check: int = 3) -> str:
        """The summary, then the first few failures of each check with transcript excerpts."""
        out = [self.summary()]
        shown: Counter[str] = Counter()
        for failure in self.model.failures:
            shown[failure.check] += 1
            if shown[failure.check] <= per_check:
                out.append(failure.render())
        out.append(f"(reproduce the workload with seed {self.model.config.seed})")
        return "\n".join(out)

    def write_transcripts(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for s in self.sessions:
            (directory / f"{s.name.replace('/', '-')}.log").write_text(
                "\n".join(s.transcript) + "\n")
        (directory / "report.txt").write_text(self.report(per_check=1000) + "\n")


async def run_model(config: Config, drain: Callable[[], None] | None = None) -> Result:
    """The whole run: operations, catching up, and the end checks. `drain` (blocking) waits
    for the server's delivery queue to be empty (Server.wait_queue_empty) before the end."""
    model = Model(config)
    master = random.Random(config.seed)
    sessions = [Session(model, i, KINDS[i % len(KINDS)], random.Random(master.getrandbits(64)))
                for i in range(config.sessions)]
    setup = Session(model, -1, "plain", random.Random(0))
    setup.name = "setup"
    await setup.connect()
    await setup.command(f"CREATE {TARGET}", checked=False)  # NO if it is there already
    await setup.command("LOGOUT", checked=False)
    await setup.close()
    for s in sessions:
        await s.connect()
        await s.select(INBOX)
    started = time.monotonic()
    deadline = started + config.seconds if config.seconds else float("inf")
    broken: set[int] = set()

    async def run_one(s: Session) -> None:
        try:
            for _ in range(config.ops):
                if time.monotonic() > deadline:
                    break
                model.ops[await s.step()] += 1
                await model.tick()
        except SessionBroken:
            broken.add(s.index)
        finally:
            async with model.changed:
                model.running -= 1
                model.changed.notify_all()

    model.running = len(sessions)
    await asyncio.gather(*(run_one(s) for s in sessions))
    seconds = time.monotonic() - started
    live = [s for s in sessions if s.index not in broken]
    try:
        if drain is not None:
            await asyncio.to_thread(drain)
        if live:
            await _until_delivered_seen(model, live[0])
        fresh = Session(model, -1, "plain", random.Random(0))
        await fresh.connect()
        await fresh.select(TARGET)
        target = {u: fresh.msgid.get(u, "?") for u in fresh.known()}
        await fresh.select(INBOX)
        for s in live:
            await s.command("NOOP")
            await s.resolve()
            _compare(model, s, fresh, "after NOOP")
            await s.command(f"UID FETCH 1:* ({s.fetch_items(msgid=False)})")
            _compare(model, s, fresh, "after UID FETCH 1:* (FLAGS)")
        await fresh.command("LOGOUT", checked=False)
        _end_checks(model, fresh, target)
    except SessionBroken:
        pass
    finally:
        for s in sessions:
            await s.close()
    return Result(model, sessions, seconds, time.monotonic() - started)


async def _until_delivered_seen(model: Model, s: Session, timeout: float = 60.0) -> None:
    """NOOP until every message delivered over SMTP was seen by some session (polling a
    condition, with a deadline after which lost-delivery reports what is missing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if model.delivered <= set(model.identity.values()):
            return
        await s.command("NOOP")
        await s.resolve()
        if model.delivered <= set(model.identity.values()):
            return
        await asyncio.sleep(0.05)


def _compare(model: Model, s: Session, fresh: Session, when: str) -> None:
    """The session's view (UIDs in order, flags) against the server's state."""
    view, truth = s.uids, fresh.uids
    problems: list[str] = []
    if view != truth:
        have, want = set(s.known()), set(fresh.known())
        problems.append(f"{len(view)} messages, the server has {len(truth)};"
                        f" missing UIDs {sorted(want - have)[:10]},"
                        f" extra UIDs {sorted(have - want)[:10]}")
    for uid in fresh.known():
        if uid in s.flags and s.flags[uid] != fresh.flags.get(uid):
            problems.append(f"UID {uid} FLAGS {show(s.flags[uid])}, the server has"
                            f" {show(fresh.flags.get(uid, frozenset()))}")
    model.check(not problems, "final-view",
                f"{when}: " + "; ".join(problems[:6])
                        + (f" (+{len(problems) - 6} more)" if len(problems) > 6 else ""), s)


def _end_checks(model: Model, fresh: Session, target: dict[int, str]) -> None:
    final = set(fresh.known())
    known = {u for (box, u) in model.assigned if box == INBOX} | model.seen_uids
    for uid in sorted(known - model.expunged.keys()):
        model.check(uid in final, "lost-message",
                    f"INBOX UID {uid} ({model.identity.get((INBOX, uid))}) was never"
                            f" reported expunged and is not in INBOX")
    for uid in sorted(final):
        model.check(uid not in model.expunged, "resurrected-uid",
                    f"INBOX UID {uid} ({model.identity.get((INBOX, uid))}) was reported"
                            f" expunged and is in INBOX")
    for (box, uid), msgid in sorted(model.assigned.items()):
        if box == TARGET:
            model.check(target.get(uid) == msgid, "lost-message",
                        f"{TARGET} UID {uid} ({msgid}) given by COPYUID/APPENDUID"
                                f" is {target.get(uid, 'missing')}")
    for uid in sorted(set(target) - {u for (box, u) in model.assigned if box == TARGET}):
        model.fail("phantom-message", f"{TARGET} UID {uid} ({target[uid]}) that no"
                   " APPENDUID/COPYUID gave out")
    seen = set(model.identity.values())
    for msgid in sorted(model.delivered):
        model.check(msgid in seen, "lost-delivery",
                    f"{msgid} was delivered (SMTP 250) and never seen")
    uids_of: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for (box, uid), msgid in model.identity.items():
        uids_of[(box, msgid)].add(uid)
    for (box, msgid), uids in sorted(uids_of.items()):
        made = model.creations[(box, msgid)]
        model.check(len(uids) <= made, "phantom-message",
                    f"{msgid} has {len(uids)} UIDs in {box} {sorted(uids)[:12]},"
                            f" {made} APPEND/COPY/MOVE/delivery made it")
    reported: set[tuple[str, int, str]] = set()
    for box, uid, flags, name, excerpt in model.flag_seen:
        extra = flags - model.allowed(box, uid)
        fresh_ones = {f for f in extra if (box, uid, f) not in reported}
        if not extra:
            model.ok("phantom-flag")
        elif fresh_ones:
            reported |= {(box, uid, f) for f in fresh_ones}
            model.failures.append(Failure(
                "phantom-flag", f"{box} UID {uid} showed {show(fresh_ones)}, which no APPEND"
                f" or STORE gave it (given: {show(model.allowed(box, uid))})", name, excerpt))
