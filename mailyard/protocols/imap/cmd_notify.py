"""NOTIFY (RFC 5465): the server tells the client about changes without being asked.

`NOTIFY SET [STATUS] event-group...` replaces the session's wishes, `NOTIFY NONE` drops them.
A session with wishes has a `Notifier` (Session.notify) registered with its account's watch
(views.AccountWatch.listeners): every event of the account wakes it, and it sends, while the
session sits between commands (RFC 5465 §5: never inside a command's responses) or in IDLE:

- for the selected mailbox (`selected`, `selected-delayed`): what IDLE sends (EXISTS, EXPUNGE
  or VANISHED, FETCH FLAGS), with `selected-delayed` holding expunges back for a command that
  may report them; MessageNew's fetch-att as a FETCH of each new message after its EXISTS;
- for other mailboxes: STATUS on MessageNew/MessageExpunge (and FlagChange), LIST on
  MailboxName (create, delete, rename with OLDNAME), LIST with or without \\Subscribed on
  SubscriptionChange.

The event bus only says "account X changed", not what: a Notifier keeps what it last told
its client (each watched mailbox's counters, every mailbox's name, the subscribed names),
reads the account's mailboxes (one query, MailboxService.mailboxes has every counter) when
woken, and tells the differences. That is correct whatever the change was and whoever made
it (another session, JMAP, a pipeline worker), and costs one query per event per NOTIFY
session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

# Registered first: the handlers here read its helpers (LIST formatting).
from mailyard.protocols.imap import cmd_mailbox
from mailyard.protocols.imap.cmd_mailbox import DELIMITER, SPECIAL_USE
from mailyard.protocols.imap.cmd_message import _fetch_one, records_of
from mailyard.protocols.imap.grammar import Command, FetchItem, Tokenizer, parse_fetch_items
from mailyard.protocols.imap.session import AUTH, Bad, No, Session, State, command
from mailyard.services.subscriptions import imap_name
from mailyard.store.ports import Mailbox

log = logging.getLogger("mailyard.imap")

SUPPORTED = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange")
"""The events this server can send: BADEVENT lists them (RFC 5465 §3.1)."""
_SUPPORTED = {e.upper(): e for e in SUPPORTED}
MESSAGE_EVENTS = frozenset({"MESSAGENEW", "MESSAGEEXPUNGE", "FLAGCHANGE", "ANNOTATIONCHANGE"})
"""<message-event>s: the only ones a `selected` group may hold (RFC 5465 §6.1)."""
SELECTED_FILTERS = ("SELECTED", "SELECTED-DELAYED")
OTHER_FILTERS = ("INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES")
INBOX_ROLES = frozenset({"inbox", "junk"})
"""`inboxes` (RFC 5465 §6.3): the mailboxes the delivery pipeline files mail into."""

MAX_NAMED = 1000
"""Most mailbox names one NOTIFY may list (subtree, mailboxes): more is answered
NO [NOTIFICATIONOVERFLOW], the refusal RFC 5465 §3.1 gives for a too costly request."""
OVERFLOW_OCTETS = 4 * 1024 * 1024
"""Unsent octets queued for a client that does not read, beyond which its notifications stop
with `* OK [NOTIFICATIONOVERFLOW]` (RFC 5465 §5.8) instead of growing the queue."""

Counters = tuple[int, int, int, int, int]
"""(UIDVALIDITY, MESSAGES, UIDNEXT, UNSEEN, HIGHESTMODSEQ) of a mailbox."""


# ---------------------------------------------------------------------- the request

@dataclass(frozen=True, slots=True)
class Group:
    """One event-group: a mailbox filter and the events wanted from it."""

    filter: str
    """SELECTED, SELECTED-DELAYED, INBOXES, PERSONAL, SUBSCRIBED, SUBTREE or MAILBOXES."""
    names: tuple[str, ...]
    """The mailboxes of SUBTREE / MAILBOXES."""
    events: frozenset[str]
    """Upper-cased event names (empty for NONE)."""
    fetch: tuple[FetchItem, ...] = ()
    """MessageNew's fetch-att (selected groups only)."""

    def covers(self, name: str, role: str | None, subscribed: set[str]) -> bool:
        """Whether the mailbox `name` is one of this group's (never the selected-filters)."""
        kind = self.filter
        if kind == "PERSONAL":
            return True
        if kind == "INBOXES":
            return role in INBOX_ROLES
        if kind == "SUBSCRIBED":
            return name in subscribed
        if kind == "MAILBOXES":
            return name in self.names
        if kind == "SUBTREE":
            return any(name == n or name.startswith(n + DELIMITER) for n in self.names)
        return False


@dataclass(frozen=True, slots=True)
class Request:
    selected: Group | None
    """The group of the selected mailbox (None: no events for it, as `SELECTED NONE`)."""
    others: tuple[Group, ...]
    status: bool

    def group_of(self, name: str, role: str | None, subscribed: set[str],
                 event: str) -> Group | None:
        """The group that decides `name`'s events: the first (leftmost) that covers it.
        None if it names no such `event` for the mailbox."""
        for group in self.others:
            if group.covers(name, role, subscribed):
                return group if event in group.events else None
        return None

    @property
    def wants(self) -> frozenset[str]:
        events: set[str] = set()
        for group in self.others:
            events |= group.events
        return frozenset(events)


def _mailbox_names(tok: Tokenizer) -> tuple[str, ...]:
    """one-or-more-mailbox = mailbox / "(" mailbox *(SP mailbox) ")"."""
    if tok.peek() == b"(":
        return tuple(tok.paren_list(tok.mailbox))
    return (tok.mailbox(),)


def _events(tok: Tokenizer, filter_: str) -> tuple[list[str], tuple[FetchItem, ...]]:
    """events = ( "(" event *(SP event) ")" ) / "NONE"."""
    if tok.peek() != b"(":
        if tok.keyword() != "NONE":
            raise Bad("Expected an event list or NONE")
        return [], ()
    names: list[str] = []
    fetch: list[FetchItem] = []

    def event() -> str:
        name = tok.keyword()
        if name == "MESSAGENEW" and tok.peek(2) == b" (":
            if filter_ not in SELECTED_FILTERS:
                raise Bad("MessageNew takes FETCH attributes only for the selected mailbox")
            tok.sp()
            fetch.extend(parse_fetch_items(tok))
        names.append(name)
        return name

    tok.paren_list(event)
    return names, tuple(fetch)


def parse_notify(tok: Tokenizer) -> Request | None:
    """notify = "NOTIFY" SP (notify-set / notify-none) (RFC 5465 §8). None for NONE.

    Raises Bad for what the RFC answers with BAD (syntax, MessageNew without MessageExpunge
    and the other way round, FlagChange without both, a mailbox event in a selected group,
    two selected groups) and No [BADEVENT] for events this server does not send."""
    verb = tok.keyword()
    if verb == "NONE":
        tok.end()
        return None
    if verb != "SET":
        raise Bad("Expected NOTIFY SET or NOTIFY NONE")
    tok.sp()
    status = False
    if tok.peek_keyword() == "STATUS":
        tok.keyword()
        tok.sp()
        status = True
    groups: list[Group] = []
    while True:
        tok.expect(b"(")
        start = tok.pos
        filter_ = tok.keyword()
        names: tuple[str, ...] = ()
        if filter_ in ("SUBTREE", "MAILBOXES"):
            tok.sp()
            names = _mailbox_names(tok)
        elif filter_ not in SELECTED_FILTERS + OTHER_FILTERS:
            raise tok.error(f"Unknown mailbox filter {filter_[:30]}", start)
        tok.sp()
        wanted, fetch = _events(tok, filter_)
        tok.expect(b")")
        groups.append(Group(filter_, names, frozenset(wanted), fetch))
        if tok.at_end():
            break
        tok.sp()
    selected = [g for g in groups if g.filter in SELECTED_FILTERS]
    if len(selected) > 1:
        raise Bad("Only one of SELECTED and SELECTED-DELAYED may be given")
    unsupported: list[str] = []
    for group in groups:
        events = group.events
        if ("MESSAGENEW" in events) != ("MESSAGEEXPUNGE" in events):
            raise Bad("MessageNew and MessageExpunge go together")
        if events & {"FLAGCHANGE", "ANNOTATIONCHANGE"} and "MESSAGENEW" not in events:
            raise Bad("FlagChange needs MessageNew and MessageExpunge")
        if group.filter in SELECTED_FILTERS and events - MESSAGE_EVENTS:
            raise Bad("Only message events can be asked of the selected mailbox")
        unsupported += [e for e in events if e not in _SUPPORTED]
    if unsupported:
        raise No(f"Unsupported event {sorted(unsupported)[0][:30]}",
                 f"BADEVENT ({' '.join(SUPPORTED)})")
    if sum(len(g.names) for g in groups) > MAX_NAMED:
        raise No(f"At most {MAX_NAMED} mailboxes", "NOTIFICATIONOVERFLOW")
    return Request(selected[0] if selected else None,
                   tuple(g for g in groups if g.filter not in SELECTED_FILTERS), status)


# ---------------------------------------------------------------------- what to say

def _counters(box: Mailbox) -> Counters:
    return box.uidvalidity, box.total, box.uidnext, box.unread, box.highest_modseq


def _status_line(s: Session, box: Mailbox, group: Group) -> bytes:
    """STATUS with what RFC 5465 §3.1, §5.1-5.3 ask: MESSAGES UIDNEXT UIDVALIDITY, and
    HIGHESTMODSEQ for FlagChange or once CONDSTORE is on; UNSEEN too, the unread count that
    mail clients show beside every mailbox."""
    items = (f"MESSAGES {box.total} UIDNEXT {box.uidnext} UIDVALIDITY {box.uidvalidity} "
             f"UNSEEN {box.unread}")
    if "FLAGCHANGE" in group.events or "CONDSTORE" in s.enabled:
        items += f" HIGHESTMODSEQ {box.highest_modseq}"
    return f"* STATUS {cmd_mailbox._wire(s, imap_name(box))} ({items})\r\n".encode()


def _children(name: str, names: set[str]) -> str:
    prefix = name + DELIMITER
    return "\\HasChildren" if any(n.startswith(prefix) for n in names) else "\\HasNoChildren"


def _list_line(s: Session, name: str, attrs: Sequence[str], extra: str = "") -> bytes:
    wire = cmd_mailbox._wire(s, name)
    return f'* LIST ({" ".join(attrs)}) "{DELIMITER}" {wire}{extra}\r\n'.encode()


# ---------------------------------------------------------------------- the notifier

class Notifier:
    """One session's NOTIFY state: its request, what it told, and the pass that tells more.

    Passes run one at a time in a task of their own (never two: an older read must not be
    told after a newer one). A pass reads first, then, without yielding, checks that the
    session sits between commands (or in IDLE) and writes straight to its connection; if a
    command runs, it leaves everything untold and runs again once the command is over
    (`between_commands`)."""

    __slots__ = ("_again", "_pending", "_task", "fetched", "names", "request", "selected_id",
                 "session", "subscribed", "told")

    def __init__(self, session: Session, request: Request) -> None:
        self.session = session
        self.request = request
        self.told: dict[str, Counters] = {}
        """Mailbox id -> the counters last told (or current when the client was told
        nothing), for the mailboxes other than the selected one."""
        self.names: dict[str, tuple[str, str | None]] = {}
        """Mailbox id -> (name, role) as last told (MailboxName)."""
        self.subscribed: set[str] = set()
        """The subscribed names as last told (SubscriptionChange)."""
        self.selected_id: str | None = None
        self.fetched = 0
        """The highest UID of the selected mailbox whose MessageNew FETCH went out (or that
        was there when it was selected)."""
        self._task: asyncio.Future[None] | None = None
        self._again = False
        self._pending = False

    # -- life

    def start(self) -> None:
        watch = self.session.watch
        if watch is not None:
            watch.listeners[self] = None

    def close(self) -> None:
        watch = self.session.watch
        if watch is not None:
            watch.listeners.pop(self, None)
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def __call__(self) -> None:
        """The account changed (AccountWatch._changed)."""
        if self.session.notify is not self:
            self.close()
            return
        self.kick()

    def kick(self) -> None:
        if self._task is not None:
            self._again = True
            return
        self._task = asyncio.ensure_future(self._run())

    def between_commands(self) -> None:
        """The session finished a command: tell what waited for it."""
        if self._pending:
            self._pending = False
            self.kick()

    @property
    def pushes_selected(self) -> bool:
        """IDLE pushes the selected mailbox's changes only if NOTIFY asked for them
        (RFC 5465 §4: during IDLE, exactly the events NOTIFY set)."""
        group = self.request.selected
        return group is not None and bool(group.events)

    def _between(self) -> bool:
        """No command is running: the session waits for one (or for DONE in IDLE), which
        is when its deadline is set (Session._serve)."""
        s = self.session
        return s.deadline != math.inf and s.state is not State.LOGOUT

    async def _run(self) -> None:
        try:
            while True:
                self._again = False
                await self._pass()
                if not self._again:
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("NOTIFY pass failed")
        finally:
            self._task = None

    # -- the pass

    async def baseline(self, s: Session, *, status: bool) -> None:
        """At NOTIFY SET: take the current state as told; with STATUS, tell each watched
        mailbox's counters first (RFC 5465 §3.1)."""
        boxes = await s.mailbox.mailboxes(s.user)
        subscribed = await s.mailbox.subscriptions.names(s.user, boxes)
        selected = s.selected.mailbox.id if s.selected is not None else None
        request = self.request
        for box in boxes:
            self.names[box.id] = (imap_name(box), box.role)
            self.told[box.id] = _counters(box)
            if status and box.id != selected:
                group = request.group_of(imap_name(box), box.role, subscribed, "MESSAGENEW")
                if group is not None:
                    s.raw(_status_line(s, box, group))
        self.subscribed = subscribed
        self._note_selected()

    def _note_selected(self) -> None:
        sel = self.session.selected
        self.selected_id = sel.mailbox.id if sel is not None else None
        self.fetched = sel.uids[-1] if sel is not None and len(sel.uids) else 0

    async def _pass(self) -> None:
        s = self.session
        if s.watch is None or s.account is None:
            return
        if not self._between():
            self._pending = True
            return
        request = self.request
        group = request.selected
        sel = s.selected
        if group is not None and group.events and sel is not None and sel.view is not None:
            s.watch.poll()
            if sel.view.stale():
                await sel.view.refresh()
        boxes = await s.mailbox.mailboxes(s.user)
        wants = request.wants
        if "SUBSCRIPTIONCHANGE" in wants or any(g.filter == "SUBSCRIBED"
                                                for g in request.others):
            subscribed = await s.mailbox.subscriptions.names(s.user, boxes)
        else:
            subscribed = self.subscribed
        # From here on no await until the lines are written: the session may not start a
        # command in between.
        if s.notify is not self:
            return
        if not self._between():
            self._pending = True
            return
        if self._overflowing():
            return
        lines = self._selected_lines() + self._other_lines(boxes, subscribed)
        if lines:
            with contextlib.suppress(Exception):  # a connection going away says so in run()
                s.writer.write(b"".join(lines))
        if group is not None and group.fetch:
            await self._fetch_new(group.fetch)

    def _overflowing(self) -> bool:
        """RFC 5465 §5.8: a client that does not read its notifications stops getting them
        (as after NOTIFY NONE) rather than making the server queue without end."""
        s = self.session
        transport = getattr(s.writer, "transport", None)
        if transport is None or transport.get_write_buffer_size() <= OVERFLOW_OCTETS:
            return False
        with contextlib.suppress(Exception):
            s.writer.write(b"* OK [NOTIFICATIONOVERFLOW] Too many notifications; "
                           b"they are off now\r\n")
        s.notify = None
        self.close()
        return True

    def _selected_lines(self) -> list[bytes]:
        s = self.session
        sel = s.selected
        if (sel.mailbox.id if sel is not None else None) != self.selected_id:
            self._note_selected()  # another mailbox: its messages so far are not new
        group = self.request.selected
        if sel is None or group is None or not group.events:
            return []
        expunges = group.filter == "SELECTED"
        if "FLAGCHANGE" not in group.events and not self._news(expunges):
            return []  # flag changes alone, not asked for: the next command reports them
        return s._catch_up(sel, expunges)

    def _news(self, expunges: bool) -> bool:
        """Whether the selected mailbox's untold steps hold a new message or an expunge
        that may be sent now (the flag changes before them go along)."""
        sel = self.session.selected
        step = sel.version.next if sel is not None else None
        while step is not None:
            if step.vanished:
                return expunges  # selected-delayed: catch_up stops here
            if step.grew:
                return True
            step = step.version.next
        return False

    def _other_lines(self, boxes: list[Mailbox], subscribed: set[str]) -> list[bytes]:
        s = self.session
        request = self.request
        out: list[bytes] = []
        selected = self.selected_id
        names_now = {imap_name(b) for b in boxes}
        seen: set[str] = set()
        for box in boxes:
            name = imap_name(box)
            seen.add(box.id)
            now = _counters(box)
            before = self.told.get(box.id)
            self.told[box.id] = now
            if before is None or box.id == selected:
                continue  # new (MailboxName tells it) or selected (told as EXISTS...)
            group = request.group_of(name, box.role, subscribed, "MESSAGENEW")
            if group is None:
                continue
            wanted = 5 if "FLAGCHANGE" in group.events else 3
            if now[:wanted] != before[:wanted]:
                out.append(_status_line(s, box, group))
            else:
                self.told[box.id] = before  # untold: compared against what was told
        for gone in set(self.told) - seen:
            del self.told[gone]
        # MailboxName (RFC 5465 §5.4): created, renamed (with OLDNAME), deleted.
        old_names = self.names
        new_names = {b.id: (imap_name(b), b.role) for b in boxes}
        roles = {b.id: b.role for b in boxes}
        if "MAILBOXNAME" in request.wants:
            either = subscribed | self.subscribed
            for box_id, (old, old_role) in old_names.items():
                if box_id not in new_names and request.group_of(
                        old, old_role, either, "MAILBOXNAME") is not None:
                    out.append(_list_line(s, old, ["\\NonExistent"]))
            for box in boxes:
                name, role = new_names[box.id]
                before_name = old_names.get(box.id)
                if before_name is not None and before_name[0] == name:
                    continue
                covered = request.group_of(name, role, either, "MAILBOXNAME") is not None
                if before_name is not None:
                    covered = covered or request.group_of(
                        before_name[0], roles[box.id], either, "MAILBOXNAME") is not None
                if not covered:
                    continue
                attrs = [_children(name, names_now)]
                if role in SPECIAL_USE:
                    attrs.append(SPECIAL_USE[role])
                extra = ""
                if before_name is not None:
                    extra = f' ("OLDNAME" ({cmd_mailbox._wire(s, before_name[0])}))'
                out.append(_list_line(s, name, attrs, extra))
        self.names = new_names
        # SubscriptionChange (RFC 5465 §5.5): each name that joined or left the list.
        if "SUBSCRIPTIONCHANGE" in request.wants:
            by_name = {imap_name(b): b for b in boxes}
            for name in sorted(subscribed ^ self.subscribed):
                found = by_name.get(name)
                role = found.role if found is not None else None
                if request.group_of(name, role, subscribed | self.subscribed,
                                    "SUBSCRIPTIONCHANGE") is None:
                    continue
                attrs = ([_children(name, names_now)] if found is not None
                         else ["\\NonExistent"])
                if name in subscribed:
                    attrs.append("\\Subscribed")
                out.append(_list_line(s, name, attrs))
        self.subscribed = subscribed
        return out

    async def _fetch_new(self, items: tuple[FetchItem, ...]) -> None:
        """MessageNew's fetch-att (RFC 5465 §5.2): a FETCH of each message the client was
        told of (EXISTS) since the last one, written only if no command started meanwhile
        and the client's sequence numbers are still the ones read here."""
        s = self.session
        sel = s.selected
        if sel is None or sel.mailbox.id != self.selected_id:
            return
        uids = sel.uids
        start = sel.uid_range(self.fetched + 1, 2**32).start
        indexes = list(range(start, len(uids)))
        if not indexes:
            return
        version = sel.version
        records = await records_of(s, indexes)
        responses: list[bytes] = []
        for index in indexes:
            record = records.get(sel.email_ids[index])
            if record is None:
                continue
            try:
                responses.append(await _fetch_one(s, index, record, list(items), True, False))
            except No:
                continue  # a part it cannot decode: the client may FETCH it and be told why
        if s.notify is not self or s.selected is not sel or sel.version is not version \
                or not self._between():
            return  # the client moved on; it knows of the messages from EXISTS
        self.fetched = uids[-1]
        if responses:
            with contextlib.suppress(Exception):
                s.writer.write(b"".join(responses))


# ---------------------------------------------------------------------- the command

@command("NOTIFY", states=AUTH)
async def notify(s: Session, cmd: Command) -> None:
    """NOTIFY SET replaces the session's wishes (an implicit NOOP first: RFC 5465 §3.1),
    NOTIFY NONE drops them."""
    request = parse_notify(cmd.tokenizer())
    old = s.notify
    if old is not None:
        old.close()
        s.notify = None
    if request is None:
        s.ok(cmd)
        return
    await s.report_updates()
    notifier = Notifier(s, request)
    await notifier.baseline(s, status=request.status)
    s.notify = notifier
    notifier.start()
    s.ok(cmd)
