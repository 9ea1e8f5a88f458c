"""Mailbox commands: SELECT, EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB,
NAMESPACE, STATUS, APPEND, IDLE, CHECK, CLOSE, UNSELECT, EXPUNGE (RFC 3501 §6.3-6.4, RFC 9051,
RFC 6154 SPECIAL-USE, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 4315 UIDPLUS)."""

from __future__ import annotations

import contextlib
import re

from mailyard.core.imapfmt import astring, quoted
from mailyard.protocols.imap.flags import (
    FLAGS,
    PERMANENT_FLAGS,
    SETTABLE_FLAGS,
    to_flags,
    to_keywords,
)
from mailyard.protocols.imap.grammar import (
    Command,
    SequenceSet,
    encode_mailbox_name,
    list_pattern_to_regex,
    parse_append,
    parse_list,
    parse_select,
    parse_status,
)
from mailyard.protocols.imap.selected import Selected, compact
from mailyard.protocols.imap.session import AUTH, SELECTED, Bad, No, Session, command
from mailyard.services.mailbox import Appended
from mailyard.store.ports import Conflict, Mailbox, NotFound, QuotaExceeded

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


async def _mailbox(s: Session, name: str) -> Mailbox:
    try:
        return await s.mailbox.mailbox(s.user, name)
    except NotFound:
        raise No("No such mailbox", "NONEXISTENT") from None


# ---------------------------------------------------------------------- SELECT / EXAMINE

async def _select(s: Session, cmd: Command, read_only: bool) -> None:
    tok = cmd.tokenizer()
    name, params = parse_select(tok)
    tok.end()
    if s.selected is not None:
        s.select(None)
        s.untagged("OK [CLOSED] Previous mailbox closed")
    if params.condstore:
        s.enabled.add("CONDSTORE")
    qresync = params.qresync
    if qresync is not None and "QRESYNC" not in s.enabled:
        raise Bad("ENABLE QRESYNC first")
    box = await _mailbox(s, name)
    assert s.watch is not None  # made at login
    sel = await s.services.views.select(s.watch, box, read_only)
    s.select(sel)
    s.untagged(f"FLAGS {FLAGS}")
    s.untagged(f"OK [PERMANENTFLAGS {'()' if read_only else PERMANENT_FLAGS}] Flags permitted")
    s.untagged(f"{sel.exists} EXISTS")
    if "IMAP4REV2" not in s.enabled:
        s.untagged("0 RECENT")
        unseen = next((i + 1 for i, kw in enumerate(sel.all_keywords()) if "$seen" not in kw),
                      None)
        if unseen is not None:
            s.untagged(f"OK [UNSEEN {unseen}] First unseen")
    s.untagged(f"OK [UIDVALIDITY {box.uidvalidity}] UIDs valid")
    s.untagged(f"OK [UIDNEXT {box.uidnext}] Predicted next UID")
    s.untagged(f"OK [HIGHESTMODSEQ {sel.modseq}] Highest")
    s.untagged(f"OK [MAILBOXID ({box.id})] Ok")
    if qresync is not None and qresync.uidvalidity == box.uidvalidity:
        await _resync(s, sel, qresync.modseq, qresync.known_uids)
    mode = "READ-ONLY" if read_only else "READ-WRITE"
    s.tagged(cmd, "OK", f"{cmd.name} completed", mode)


async def _resync(s: Session, sel: Selected, since: int, known: SequenceSet | None) -> None:
    """RFC 7162 §3.2.5: what a client that last saw `since` missed, before the tagged OK."""
    delta = await s.mailbox.delta(s.user, sel.mailbox, since)
    vanished = delta.vanished
    if known is not None:
        top = max(vanished, default=0)
        vanished = [u for u in vanished if known.contains(u, top)]
    if vanished:
        s.untagged(f"VANISHED (EARLIER) {compact(vanished)}")
    for entry in delta.changed:
        seq = sel.seq_of_uid(entry.uid)
        if seq is not None:
            flags = " ".join(to_flags(entry.keywords))
            s.untagged(f"{seq} FETCH (UID {entry.uid} FLAGS ({flags}) MODSEQ ({entry.modseq}))")


@command("SELECT", states=AUTH)
async def select(s: Session, cmd: Command) -> None:
    await _select(s, cmd, read_only=False)


@command("EXAMINE", states=AUTH)
async def examine(s: Session, cmd: Command) -> None:
    await _select(s, cmd, read_only=True)


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
    box = await _mailbox(s, tok.mailbox())
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
    box = await _mailbox(s, tok.mailbox())
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
    box = await _mailbox(s, tok.mailbox())
    tok.end()
    await s.mailbox.subscribe(s.user, box, cmd.name == "SUBSCRIBE")
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
    box = await _mailbox(s, name)
    s.untagged(_status_line(s, box, items))
    s.ok(cmd)


# ---------------------------------------------------------------------- APPEND

@command("APPEND", states=AUTH)
async def append(s: Session, cmd: Command) -> None:
    """APPEND, with MULTIAPPEND (RFC 3502): all the messages are stored or none is.

    Everything that can be checked before storing is (the literals' sizes were, by the reader:
    APPENDLIMIT; flags, empty messages and the quota here), so the usual failures store nothing.
    A failure while storing (a full disk, a quota raced by a delivery) takes back what this
    command already stored before answering NO."""
    name, messages = parse_append(cmd.tokenizer(), utf8_data="UTF8=ACCEPT" in s.enabled)
    for message in messages:
        bad = [f for f in message.flags if f.startswith("\\") and f not in SETTABLE_FLAGS]
        if bad:
            raise Bad(f"APPEND cannot set the flag {bad[0][:40]}")
        if not message.data:
            raise No("Empty message")
    try:
        box = await s.mailbox.mailbox(s.user, name)
    except NotFound:
        raise No("No such mailbox", "TRYCREATE") from None
    account = await s.mailbox.account(s.user.address)
    if account.used + sum(len(m.data) for m in messages) > account.quota:
        raise No("Over quota: nothing stored", "OVERQUOTA")
    done: list[Appended] = []
    try:
        for message in messages:
            when = message.internal_date
            received = int(when.timestamp() * 1000) if when else None
            done.append(await s.mailbox.append(s.user, box, message.data,
                                               keywords=to_keywords(message.flags),
                                               received_at=received))
    except QuotaExceeded as e:
        await _take_back(s, box, done)
        raise No(f"{e}: nothing stored", "OVERQUOTA") from None
    except BaseException:
        await _take_back(s, box, done)
        raise
    await s.report_updates()
    uids = [d.uid for d in done]
    uid_text = compact(uids) if uids == sorted(uids) else ",".join(map(str, uids))
    s.ok(cmd, "APPEND completed", f"APPENDUID {box.uidvalidity} {uid_text}")


async def _take_back(s: Session, box: Mailbox, done: list[Appended]) -> None:
    """Undo the part of a MULTIAPPEND that was stored: an email this command created (it is in
    no mailbox but this one) is destroyed; one that existed already (deduplicated) only loses
    the label it gained."""
    if not done:
        return
    ids = [d.email_id for d in done]
    records = await s.mailbox.get_emails(s.user, ids, brief=True)
    alls = {b.name for b in await s.mailbox.mailboxes(s.user) if b.role == "all"}
    fresh = [r.id for r in records if not set(r.mailboxes) - alls - {box.name}]
    kept = [e for e in ids if e not in fresh]
    if fresh:
        await s.mailbox.destroy(s.user, fresh)
    if kept:
        await s.mailbox.expunge(s.user, box, kept)


# ---------------------------------------------------------------------- IDLE

@command("IDLE", states=AUTH)
async def idle(s: Session, cmd: Command) -> None:
    """RFC 2177: the session's own (Session.idle), since its wait for DONE may outlive the
    command's task (hibernation); registered here for the state check like every command."""
    await s.idle(cmd)


# ---------------------------------------------------------------------- CHECK / CLOSE / ...

@command("CHECK", states=SELECTED)
async def check(s: Session, cmd: Command) -> None:
    await s.report_updates()
    s.ok(cmd)


async def _expunge_deleted(s: Session, uids: set[int] | None = None) -> list[int]:
    sel = s.sel
    if sel.read_only:
        raise No("Mailbox is read-only", "READ-ONLY")
    doomed = [sel.email_ids[i] for i, kw in enumerate(sel.all_keywords())
              if "$deleted" in kw and (uids is None or sel.uids[i] in uids)]
    if not doomed:
        return []
    return await s.mailbox.expunge(s.user, sel.mailbox, doomed)


@command("EXPUNGE", states=SELECTED)
async def expunge(s: Session, cmd: Command) -> None:
    cmd.tokenizer().end()
    await s.report_updates()
    await _expunge_deleted(s)
    await s.report_updates()
    s.ok(cmd)


@command("UID EXPUNGE", states=SELECTED)
async def uid_expunge(s: Session, cmd: Command) -> None:
    tok = cmd.tokenizer()
    seqset = tok.sequence_set(allow_saved=False)
    tok.end()
    await s.report_updates()
    sel = s.sel
    wanted = {uid for uid in sel.uids if seqset.contains(uid, sel.uids[-1] if sel.uids else 0)}
    await _expunge_deleted(s, wanted)
    await s.report_updates()
    s.ok(cmd)


@command("CLOSE", states=SELECTED)
async def close(s: Session, cmd: Command) -> None:
    if not s.sel.read_only:
        await _expunge_deleted(s)
    s.select(None)
    s.ok(cmd)


@command("UNSELECT", states=SELECTED)
async def unselect(s: Session, cmd: Command) -> None:
    s.select(None)
    s.ok(cmd)




# ---------------------------------------------------------------------- QUOTA (RFC 9208)

def _quota_line(used: int, limit: int) -> str:
    return f'QUOTA "" (STORAGE {used // 1024} {limit // 1024})'


@command("GETQUOTAROOT", states=AUTH)
async def getquotaroot(s: Session, cmd: Command) -> None:
    tok = cmd.tokenizer()
    box = await _mailbox(s, tok.mailbox())
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
