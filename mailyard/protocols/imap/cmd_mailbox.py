"""Mailbox commands: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, NAMESPACE,
STATUS, IDLE, QUOTA (RFC 3501 §6.3, RFC 9051, RFC 6154 SPECIAL-USE, RFC 5258 LIST-EXTENDED,
RFC 5819 LIST-STATUS, RFC 9208 QUOTA). SELECT and EXPUNGE are in cmd_select, APPEND in
cmd_append."""

from __future__ import annotations

import contextlib
import re

from mailyard.core.imapfmt import astring, quoted
from mailyard.core.mailboxrules import MAX_PATH_OCTETS, MailboxRefused, Refusal
from mailyard.protocols.imap.grammar import (
    Command,
    encode_mailbox_name,
    parse_list,
    parse_status,
)
from mailyard.protocols.imap.listmatch import MAX_PATTERN_OCTETS, ListPattern, combine
from mailyard.protocols.imap.session import AUTH, Bad, No, Session, command
from mailyard.services.subscriptions import imap_name
from mailyard.store.ports import Conflict, Mailbox, NotFound

DELIMITER = "/"
SPECIAL_USE = {"sent": "\\Sent", "drafts": "\\Drafts", "trash": "\\Trash", "junk": "\\Junk",
               "archive": "\\Archive", "all": "\\All"}
ROLE_OF_USE = {v.lower(): k for k, v in SPECIAL_USE.items()}
MAX_NAME_OCTETS = MAX_PATH_OCTETS
"""Longest mailbox name SUBSCRIBE accepts (UTF-8 octets), as CREATE and RENAME (the mailbox
rules, core/mailboxrules) and LIST patterns."""
CODE_OF_REFUSAL = {Refusal.EXISTS: "ALREADYEXISTS", Refusal.INBOX_NAME: "ALREADYEXISTS",
                   Refusal.TOO_LONG: "LIMIT", Refusal.BAD_NAME: "CANNOT",
                   Refusal.UNKNOWN_ROLE: "USEATTR", Refusal.ROLE_TAKEN: "USEATTR",
                   Refusal.FIXED: "CANNOT", Refusal.BELOW_ITSELF: "CANNOT"}
"""The response code (RFC 5530, RFC 6154 USEATTR) that says why the rules refused."""


def refused(e: MailboxRefused) -> No:
    """The tagged NO for a mailbox operation the rules refuse."""
    return No(str(e), CODE_OF_REFUSAL[e.reason])


_UTF8_QUOTABLE = re.compile(r"[^\x00-\x1f\x7f]*\Z")


def _name(s: Session, mailbox: Mailbox) -> str:
    return _wire(s, mailbox.name)


def _wire(s: Session, name: str) -> str:
    """A mailbox name as this client reads it: UTF-8 (a quoted string may hold it, RFC 6855
    §3 / RFC 9051) once it enabled UTF8=ACCEPT or IMAP4rev2, modified UTF-7 otherwise."""
    if s.utf8:
        if _UTF8_QUOTABLE.match(name) and not name.isascii():
            return quoted(name.encode()).decode()
        return astring(name).decode("utf-8")
    return astring(encode_mailbox_name(name)).decode("ascii")


async def find_mailbox(s: Session, name: str) -> Mailbox:
    try:
        return await s.mailbox.mailbox(s.user, name)
    except NotFound:
        raise No("No such mailbox", "NONEXISTENT") from None


# ---------------------------------------------------------------------- CREATE / DELETE / ...

@command("CREATE", states=AUTH)
async def create(s: Session, cmd: Command) -> None:
    tok = cmd.tokenizer()
    name = tok.mailbox().rstrip(DELIMITER)
    role = None
    if not tok.at_end():  # CREATE-SPECIAL-USE: (USE (\Sent))
        tok.sp()
        tok.expect(b"(")
        if tok.keyword() != "USE":
            raise Bad("Unknown CREATE parameter")
        tok.sp()
        uses = [u.lower() for u in tok.flag_list()]
        tok.expect(b")")
        roles = [ROLE_OF_USE[u] for u in uses if u in ROLE_OF_USE]
        if len(roles) != len(uses) or len(roles) > 1:
            raise No("Unsupported special use", "USEATTR")
        role = roles[0] if roles else None
    tok.end()
    if name.upper() == "INBOX":
        raise No("Mailbox exists", "ALREADYEXISTS")
    # CREATE does not subscribe (RFC 3501 §6.3.3, §6.3.6): the list is written out before
    # the mailbox exists, so the old default of the store cannot slip it in.
    await s.mailbox.subscriptions.materialise(s.user)
    existing = {b.name for b in await s.mailbox.mailboxes(s.user)}
    parts = name.split(DELIMITER)
    for depth in range(1, len(parts)):  # RFC 3501 §6.3.3: create the superiors too
        parent = DELIMITER.join(parts[:depth])
        if parent not in existing:
            with contextlib.suppress(Conflict, MailboxRefused):
                await s.mailbox.create_mailbox(s.user, parent)
    try:
        box = await s.mailbox.create_mailbox(s.user, name, role)
    except MailboxRefused as e:
        raise refused(e) from None
    except Conflict as e:  # another session made the same name first
        raise No(str(e), "ALREADYEXISTS") from None
    s.ok(cmd, "CREATE completed", f"MAILBOXID ({box.id})")


@command("DELETE", states=AUTH)
async def delete(s: Session, cmd: Command) -> None:
    """The subscription stays (RFC 3501 §6.3.9: the server MUST NOT remove a name from the
    list because its mailbox is gone)."""
    tok = cmd.tokenizer()
    box = await find_mailbox(s, tok.mailbox())
    tok.end()
    try:
        await s.mailbox.delete_mailbox(s.user, box)
    except MailboxRefused as e:
        raise refused(e) from None
    except NotFound:  # another session deleted or renamed it since it was looked up
        raise No("No such mailbox", "NONEXISTENT") from None
    if s.selected is not None and s.selected.mailbox.id == box.id:
        s.select(None)
    s.ok(cmd)


@command("RENAME", states=AUTH)
async def rename(s: Session, cmd: Command) -> None:
    """The subscriptions of the mailbox and of those below it follow the new names."""
    tok = cmd.tokenizer()
    box = await find_mailbox(s, tok.mailbox())
    tok.sp()
    new = tok.mailbox().rstrip(DELIMITER)
    tok.end()
    if box.role == "inbox":
        await _rename_inbox(s, box, new)
        s.ok(cmd)
        return
    try:
        await s.mailbox.rename_mailbox(s.user, box, new)
    except MailboxRefused as e:
        raise refused(e) from None
    except NotFound:  # another session deleted it since it was looked up
        raise No("No such mailbox", "NONEXISTENT") from None
    except Conflict as e:
        raise No(str(e), "ALREADYEXISTS") from None
    await s.mailbox.subscriptions.renamed(s.user, box.name, new)
    s.ok(cmd)


RENAME_INBOX_BATCH = 500
"""Emails moved per store call when INBOX is renamed."""


async def _rename_inbox(s: Session, inbox: Mailbox, name: str) -> None:
    """RFC 3501 §6.3.5 / RFC 9051 §6.3.6: renaming INBOX is permitted and moves all of its
    messages to a new mailbox of the given name, leaving INBOX there, empty; INBOX's inferiors
    (and subscriptions) stay where they are. Mail delivered meanwhile stays in INBOX."""
    try:
        target = await s.mailbox.create_mailbox(s.user, name)
    except MailboxRefused as e:
        raise refused(e) from None
    except Conflict as e:
        raise No(str(e), "ALREADYEXISTS") from None
    ids = [entry.email_id for entry in (await s.mailbox.snapshot(s.user, inbox)).entries]
    for start in range(0, len(ids), RENAME_INBOX_BATCH):
        await s.mailbox.move(s.user, ids[start:start + RENAME_INBOX_BATCH], inbox, target)


@command("SUBSCRIBE", "UNSUBSCRIBE", states=AUTH)
async def subscribe(s: Session, cmd: Command) -> None:
    """A name, whether or not a mailbox has it (RFC 3501 §6.3.6-6.3.7, RFC 9051 §6.3.7);
    both are idempotent. A trailing delimiter is dropped, as CREATE drops it."""
    tok = cmd.tokenizer()
    name = tok.mailbox().rstrip(DELIMITER)
    tok.end()
    if not name:
        raise No("No mailbox has an empty name", "CANNOT")
    if len(name.encode()) > MAX_NAME_OCTETS:
        raise No(f"Mailbox names are at most {MAX_NAME_OCTETS} octets", "LIMIT")
    await s.mailbox.subscriptions.subscribe(s.user, name, cmd.name == "SUBSCRIBE")
    s.ok(cmd)


@command("NAMESPACE", states=AUTH)
async def namespace(s: Session, cmd: Command) -> None:
    s.untagged(f'NAMESPACE (("" "{DELIMITER}")) NIL NIL')
    s.ok(cmd)


# ---------------------------------------------------------------------- LIST / LSUB / STATUS

MAX_PATTERNS = 64
"""Most patterns in one LIST (RFC 5258 allows a list of them)."""


def _ancestors(name: str) -> list[str]:
    """"a/b/c" -> ["a", "a/b"]."""
    parts = name.split(DELIMITER)
    return [DELIMITER.join(parts[:i]) for i in range(1, len(parts))]


@command("LIST", "LSUB", states=AUTH)
async def list_(s: Session, cmd: Command) -> None:
    """LIST (RFC 3501 §6.3.8, RFC 9051 §6.3.9, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS,
    RFC 6154 SPECIAL-USE) and LSUB (RFC 3501 §6.3.9).

    The selection criteria give the names that meet them: existing mailboxes, or subscribed
    names (SUBSCRIBED, LSUB), narrowed to special-use mailboxes (SPECIAL-USE). Each that
    matches a pattern is listed. So is a name that does not meet them but matches a pattern
    and has a descendant that meets them and matches none (RFC 5258 §3.3 rule 2B): the `%`
    levels of RFC 3501 — `\\Noselect` in LSUB, `\\NonExistent` (`\\Noselect` in a plain
    IMAP4rev1 LIST) for a missing parent of existing mailboxes — and, with RECURSIVEMATCH
    only, a parent given CHILDINFO (RFC 5258 §3.5)."""
    lsub = cmd.name == "LSUB"
    req = parse_list(cmd.tokenizer(), extended=not lsub)
    if not lsub and req.patterns == ("",):  # the hierarchy delimiter and root name
        s.untagged(f'LIST (\\Noselect) "{DELIMITER}" ""')
        s.ok(cmd)
        return
    if len(req.patterns) > MAX_PATTERNS:
        raise No(f"At most {MAX_PATTERNS} patterns", "LIMIT")
    canonical = [combine(req.reference, p, DELIMITER) for p in req.patterns]
    if any(len(c.encode()) > MAX_PATTERN_OCTETS for c in canonical):
        raise No(f"A LIST pattern is at most {MAX_PATTERN_OCTETS} octets", "LIMIT")
    patterns = [ListPattern(c, DELIMITER) for c in canonical]
    matched: dict[str, bool] = {}

    def matches(name: str) -> bool:
        if name not in matched:
            matched[name] = any(p.match(name) for p in patterns)
        return matched[name]

    boxes = await s.mailbox.mailboxes(s.user)
    existing = {imap_name(b): b for b in boxes}
    position = {n: i for i, n in enumerate(existing)}
    first_below: dict[str, int] = {}  # parent name -> position of its first existing child
    for n, i in position.items():
        for a in _ancestors(n):
            first_below.setdefault(a, i)
    by_subscription = lsub or "SUBSCRIBED" in req.selection
    show_subscribed = by_subscription or "SUBSCRIBED" in req.return_options
    subscribed = (await s.mailbox.subscriptions.names(s.user, boxes) if show_subscribed
                  else set())
    criteria = set(subscribed) if by_subscription else set(existing)
    if "SPECIAL-USE" in req.selection:
        criteria = {n for n in criteria if n in existing and existing[n].role in SPECIAL_USE}
    recursive = "RECURSIVEMATCH" in req.selection
    narrowed = by_subscription or "SPECIAL-USE" in req.selection
    childinfo = " ".join(f'"{o}"' for o in ("SUBSCRIBED", "SPECIAL-USE") if o in req.selection)

    listed = {n for n in criteria if matches(n)}
    has_criteria_below: set[str] = set()
    for n in criteria:
        for a in _ancestors(n):
            has_criteria_below.add(a)
            # Rule 2B: a level whose matching descendant would otherwise go unseen.
            if a not in listed and matches(a) and not matches(n) and (
                    lsub or recursive or (not narrowed and a not in existing)):
                listed.add(a)
    nonexistent = ("\\NonExistent" if req.extended or "IMAP4REV2" in s.enabled
                   else "\\Noselect")

    def order(n: str) -> tuple[int, int, str]:
        if n in position:
            return position[n], 1, n
        return first_below.get(n, len(position)), 0, n

    for name in sorted(listed, key=order):
        box = existing.get(name)
        extra = ""
        if lsub:
            attrs = [] if name in subscribed else ["\\Noselect"]
        else:
            attrs = [] if box is not None else [nonexistent]
            attrs.append("\\HasChildren" if name in first_below else "\\HasNoChildren")
            if box is not None and box.role in SPECIAL_USE:
                attrs.append(SPECIAL_USE[box.role])
            if show_subscribed and name in subscribed:
                attrs.append("\\Subscribed")
            if recursive and name in has_criteria_below:
                extra = f' ("CHILDINFO" ({childinfo}))'
        s.untagged(f'{cmd.name} ({" ".join(attrs)}) "{DELIMITER}" {_wire(s, name)}{extra}')
        if req.status_items and box is not None:  # RFC 5819: selectable mailboxes only
            s.untagged(await _status_line(s, box, list(req.status_items)))
    s.ok(cmd)


async def _status_line(s: Session, box: Mailbox, items: list[str]) -> str:
    values: dict[str, object] = {
        "MESSAGES": box.total, "UIDNEXT": box.uidnext, "UIDVALIDITY": box.uidvalidity,
        "UNSEEN": box.unread, "SIZE": box.size,
        "HIGHESTMODSEQ": box.highest_modseq, "MAILBOXID": f"({box.id})",
    }
    if "DELETED" in items or "RECENT" in items:
        snapshot = await s.mailbox.snapshot(s.user, box)
        # RFC 9051 §6.3.11: the messages with \Deleted
        values["DELETED"] = sum("$deleted" in e.keywords for e in snapshot.entries)
        # RFC 3501 §6.3.10: \Recent ones, those no session has selected yet (views.py)
        mark = s.services.views.recent_marks.get(box.id, [1])[0]
        values["RECENT"] = sum(e.uid >= mark for e in snapshot.entries)
    body = " ".join(f"{item} {values[item]}" for item in items if item in values)
    return f"STATUS {_name(s, box)} ({body})"


@command("STATUS", states=AUTH)
async def status(s: Session, cmd: Command) -> None:
    name, items = parse_status(cmd.tokenizer())
    box = await find_mailbox(s, name)
    s.untagged(await _status_line(s, box, items))
    s.ok(cmd)


# ---------------------------------------------------------------------- IDLE

@command("IDLE", states=AUTH)
async def idle(s: Session, cmd: Command) -> None:
    """RFC 2177: the session's own (Session.idle), since its wait for DONE may outlive the
    command's task (hibernation); registered here for the state check like every command."""
    await s.idle(cmd)


# ---------------------------------------------------------------------- QUOTA (RFC 9208)

def _quota_line(used: int, limit: int) -> str:
    return f'QUOTA "" (STORAGE {used // 1024} {limit // 1024})'


@command("GETQUOTAROOT", states=AUTH)
async def getquotaroot(s: Session, cmd: Command) -> None:
    tok = cmd.tokenizer()
    box = await find_mailbox(s, tok.mailbox())
    tok.end()
    account = await s.mailbox.account(s.user.address)
    s.untagged(f'QUOTAROOT {_name(s, box)} ""')
    s.untagged(_quota_line(account.used, account.quota))
    s.ok(cmd)


@command("GETQUOTA", states=AUTH)
async def getquota(s: Session, cmd: Command) -> None:
    tok = cmd.tokenizer()
    root = tok.astring_text()
    tok.end()
    if root != "":
        raise No("No such quota root", "NONEXISTENT")
    account = await s.mailbox.account(s.user.address)
    s.untagged(_quota_line(account.used, account.quota))
    s.ok(cmd)


@command("SETQUOTA", states=AUTH)
async def setquota(s: Session, cmd: Command) -> None:
    raise No("Quotas are set by the administrator (mailyard user quota)", "NOPERM")
