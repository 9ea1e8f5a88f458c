"""Mailbox commands: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, NAMESPACE,
STATUS, IDLE, QUOTA (RFC 3501 §6.3, RFC 9051, RFC 6154 SPECIAL-USE, RFC 5258 LIST-EXTENDED,
RFC 5819 LIST-STATUS, RFC 9208 QUOTA). SELECT and EXPUNGE are in cmd_select, APPEND in
cmd_append."""

from __future__ import annotations

import contextlib
import re

from mailyard.core.imapfmt import astring, quoted
from mailyard.protocols.imap.grammar import (
    Command,
    encode_mailbox_name,
    list_pattern_to_regex,
    parse_list,
    parse_status,
)
from mailyard.protocols.imap.session import AUTH, Bad, No, Session, command
from mailyard.store.ports import Conflict, Mailbox, NotFound

DELIMITER = "/"
SPECIAL_USE = {"sent": "\\Sent", "drafts": "\\Drafts", "trash": "\\Trash", "junk": "\\Junk",
               "archive": "\\Archive", "all": "\\All"}
ROLE_OF_USE = {v.lower(): k for k, v in SPECIAL_USE.items()}


_UTF8_QUOTABLE = re.compile(r"[^\x00-\x1f\x7f]*\Z")


def _name(s: Session, mailbox: Mailbox) -> str:
    """A mailbox name as this client reads it: UTF-8 (a quoted string may hold it, RFC 6855
    §3 / RFC 9051) once it enabled UTF8=ACCEPT or IMAP4rev2, modified UTF-7 otherwise."""
    if s.utf8:
        if _UTF8_QUOTABLE.match(mailbox.name) and not mailbox.name.isascii():
            return quoted(mailbox.name.encode()).decode()
        return astring(mailbox.name).decode("utf-8")
    return astring(encode_mailbox_name(mailbox.name)).decode("ascii")


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
    if not name or name.upper() == "INBOX":
        raise No("Mailbox exists", "ALREADYEXISTS")
    existing = {b.name for b in await s.mailbox.mailboxes(s.user)}
    parts = name.split(DELIMITER)
    for depth in range(1, len(parts)):  # RFC 3501 §6.3.3: create the superiors too
        parent = DELIMITER.join(parts[:depth])
        if parent not in existing:
            with contextlib.suppress(Conflict):
                await s.mailbox.create_mailbox(s.user, parent)
    try:
        box = await s.mailbox.create_mailbox(s.user, name, role)
    except Conflict as e:
        raise No(str(e), "ALREADYEXISTS" if "exists" in str(e) else "USEATTR") from None
    s.ok(cmd, "CREATE completed", f"MAILBOXID ({box.id})")


@command("DELETE", states=AUTH)
async def delete(s: Session, cmd: Command) -> None:
    tok = cmd.tokenizer()
    box = await find_mailbox(s, tok.mailbox())
    tok.end()
    try:
        await s.mailbox.delete_mailbox(s.user, box)
    except Conflict as e:
        raise No(str(e), "CANNOT") from None
    if s.selected is not None and s.selected.mailbox.id == box.id:
        s.select(None)
    s.ok(cmd)


@command("RENAME", states=AUTH)
async def rename(s: Session, cmd: Command) -> None:
    tok = cmd.tokenizer()
    box = await find_mailbox(s, tok.mailbox())
    tok.sp()
    new = tok.mailbox().rstrip(DELIMITER)
    tok.end()
    if box.role == "inbox":
        raise No("Renaming INBOX is not supported", "CANNOT")
    try:
        await s.mailbox.rename_mailbox(s.user, box, new)
    except Conflict as e:
        raise No(str(e), "ALREADYEXISTS") from None
    s.ok(cmd)


@command("SUBSCRIBE", "UNSUBSCRIBE", states=AUTH)
async def subscribe(s: Session, cmd: Command) -> None:
    tok = cmd.tokenizer()
    box = await find_mailbox(s, tok.mailbox())
    tok.end()
    await s.mailbox.subscriptions.subscribe(s.user, box, cmd.name == "SUBSCRIBE")
    s.ok(cmd)


@command("NAMESPACE", states=AUTH)
async def namespace(s: Session, cmd: Command) -> None:
    s.untagged(f'NAMESPACE (("" "{DELIMITER}")) NIL NIL')
    s.ok(cmd)


# ---------------------------------------------------------------------- LIST / LSUB / STATUS

def _attributes(box: Mailbox, names: set[str], extended: bool) -> list[str]:
    attrs = []
    has_children = any(n.startswith(box.name + DELIMITER) for n in names)
    attrs.append("\\HasChildren" if has_children else "\\HasNoChildren")
    if box.role in SPECIAL_USE:
        attrs.append(SPECIAL_USE[box.role])
    if extended and box.subscribed:
        attrs.append("\\Subscribed")
    return attrs


def _status_line(s: Session, box: Mailbox, items: list[str]) -> str:
    values = {
        "MESSAGES": box.total, "UIDNEXT": box.uidnext, "UIDVALIDITY": box.uidvalidity,
        "UNSEEN": box.unread, "RECENT": 0, "SIZE": box.size, "DELETED": 0,
        "HIGHESTMODSEQ": box.highest_modseq, "MAILBOXID": f"({box.id})",
    }
    body = " ".join(f"{item} {values[item]}" for item in items if item in values)
    return f"STATUS {_name(s, box)} ({body})"


@command("LIST", "LSUB", states=AUTH)
async def list_(s: Session, cmd: Command) -> None:
    req = parse_list(cmd.tokenizer(), extended=cmd.name == "LIST")
    boxes = await s.mailbox.mailboxes(s.user)
    names = {b.name for b in boxes}
    if cmd.name == "LIST" and req.patterns == ("",):
        s.untagged(f'LIST (\\Noselect) "{DELIMITER}" ""')
        s.ok(cmd)
        return
    regexes = [list_pattern_to_regex(req.reference, p, DELIMITER) for p in req.patterns]
    only_subscribed = cmd.name == "LSUB" or "SUBSCRIBED" in req.selection
    only_special = "SPECIAL-USE" in req.selection
    for box in boxes:
        name = "INBOX" if box.role == "inbox" else box.name
        if not any(_match(r, name) for r in regexes):
            continue
        if only_subscribed and not box.subscribed:
            continue
        if only_special and box.role not in SPECIAL_USE:
            continue
        attrs = _attributes(box, names, extended=req.extended)
        s.untagged(f'{cmd.name} ({" ".join(attrs)}) "{DELIMITER}" {_name(s, box)}')
        if req.status_items:
            s.untagged(_status_line(s, box, list(req.status_items)))
    s.ok(cmd)


def _match(regex: re.Pattern[str], name: str) -> bool:
    return regex.fullmatch(name) is not None


@command("STATUS", states=AUTH)
async def status(s: Session, cmd: Command) -> None:
    name, items = parse_status(cmd.tokenizer())
    box = await find_mailbox(s, name)
    s.untagged(_status_line(s, box, items))
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
