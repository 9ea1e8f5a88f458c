"""Message commands: FETCH, STORE, COPY, MOVE, SEARCH and their UID forms (RFC 3501 §6.4,
RFC 9051, RFC 4315 UIDPLUS, RFC 6851 MOVE, RFC 7162 CONDSTORE, RFC 4731 ESEARCH).

FETCH answers ENVELOPE, BODYSTRUCTURE, sizes and flags from what the pipeline stored; only body
sections open the message blob.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime

from mailyard.core import sections
from mailyard.core.ids import id_u64
from mailyard.core.imapfmt import binary_data, literal
from mailyard.core.mailboxrules import MailboxRefused
from mailyard.core.mime import Part, find_part
from mailyard.protocols.imap.cmd_mailbox import refused
from mailyard.protocols.imap.esearch import partial_window
from mailyard.protocols.imap.flags import flags_text, to_keywords
from mailyard.protocols.imap.grammar import (
    Command,
    FetchItem,
    SequenceSet,
    encode_mailbox_name,
    parse_copy,
    parse_fetch,
    parse_store,
)
from mailyard.protocols.imap.selected import compact, shared_keywords
from mailyard.protocols.imap.session import SELECTED, Bad, No, Session, command
from mailyard.store.ports import EmailHead, EmailRecord, Mailbox, NotFound, QuotaExceeded

_BATCH = 256
_PARALLEL = 16
"""Messages fetched at once; bounds the memory a FETCH of large bodies can hold."""


def resolve(s: Session, seqset: SequenceSet, *, uid: bool) -> list[int]:
    """0-based indexes into the selected view named by a sequence set (or a UID set).

    A message sequence number beyond the mailbox's count is the client's error (BAD), and in
    an empty mailbox that includes `*` (RFC 9051 §9, seq-number; Dovecot does the same); a UID
    set may name UIDs that do not exist, and `$` may be empty."""
    sel = s.sel
    if not sel.uids:
        if uid or seqset.is_saved:
            return []
        raise Bad("Invalid message sequence number: the mailbox is empty")
    if seqset.is_saved:
        seqs = (sel.seq_of_uid(u) for u in s.saved_uids)
        return sorted(seq - 1 for seq in seqs if seq is not None)
    if uid:
        top = sel.uids[-1]
        out: list[int] = []
        for start, end in seqset.resolve(top):
            lo, hi = min(start, end), max(start, end)
            out.extend(sel.uid_range(lo, hi))
        return sorted(set(out))
    count = len(sel.uids)
    indexes: set[int] = set()
    for start, end in seqset.resolve(count):
        lo, hi = min(start, end), max(start, end)
        if lo < 1 or hi > count:
            raise Bad("Invalid message sequence number")
        indexes.update(range(lo - 1, hi))
    return sorted(indexes)


def internaldate(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%d-%b-%Y %H:%M:%S +0000")


# ---------------------------------------------------------------------- FETCH

_NEEDS_RAW = {"RFC822", "RFC822.HEADER", "RFC822.TEXT", "BODY[]", "BINARY", "BINARY.SIZE"}


def _needs_raw(items: list[FetchItem]) -> bool:
    return any(i.section is not None or i.name in _NEEDS_RAW for i in items)


_HEADER_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"})


def _header_only(items: list[FetchItem]) -> bool:
    """Whether every octet asked for lies in the top-level header (the common index fetch)."""
    def in_header(i: FetchItem) -> bool:
        if i.name == "RFC822.HEADER":
            return True
        return (i.name == "BODY" and i.section is not None and not i.section.part
                and i.section.text in _HEADER_TEXTS)

    return all(in_header(i) for i in items if i.section is not None or i.name in _NEEDS_RAW)


_FROM_HEAD = frozenset({"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ", "EMAILID",
                        "THREADID", "X-GM-MSGID", "X-GM-THRID", "RFC822.HEADER"})


def _from_head(items: list[FetchItem]) -> bool:
    """Whether the stored header block and a few numbers answer every item: the message-list
    FETCH that clients run on every mailbox they open."""
    return all(
        i.name in _FROM_HEAD
        or (i.name == "BODY" and i.section is not None and not i.section.part
            and i.section.text in _HEADER_TEXTS)
        for i in items)


@functools.lru_cache(maxsize=256)
def _response_name(item: FetchItem) -> bytes:
    """The item's name in a response, made once per distinct item rather than once per
    message (a 50-message header FETCH formatted the section text 50 times)."""
    return item.response_name().encode()


def _head_item(item: FetchItem, head: bytes) -> bytes:
    if item.name == "RFC822.HEADER":
        return b"RFC822.HEADER " + literal(head)
    sec = item.section
    assert sec is not None
    if sec.text == "HEADER":
        found = head
    else:
        found = sections.header_fields(head, sec.fields, exclude=sec.text == "HEADER.FIELDS.NOT")
    if item.partial is not None:
        found = sections.partial(found, item.partial[0], item.partial[1])
    return _response_name(item) + b" " + literal(found)


def _fetch_head(s: Session, index: int, head: EmailHead, items: list[FetchItem],
                uid_cmd: bool) -> bytes:
    """One FETCH response from the stored header block: no blob, no part tree."""
    sel = s.sel
    uid = sel.uids[index]
    names = {i.name for i in items}
    out: list[bytes] = [b"UID %d" % uid] if uid_cmd and "UID" not in names else []
    for item in items:
        name = item.name
        if name == "UID":
            out.append(b"UID %d" % uid)
        elif name == "INTERNALDATE":
            out.append(f'INTERNALDATE "{internaldate(head.received_at)}"'.encode())
        elif name == "RFC822.SIZE":
            out.append(b"RFC822.SIZE %d" % head.size)
        elif name == "MODSEQ":
            out.append(b"MODSEQ (%d)" % sel.modseq_at(index))
        elif name == "EMAILID":
            out.append(f"EMAILID ({head.id})".encode())
        elif name == "X-GM-MSGID":
            out.append(b"X-GM-MSGID %d" % id_u64(head.id))
        elif name == "THREADID":
            out.append(f"THREADID ({head.thread_id})".encode())
        elif name == "X-GM-THRID":
            out.append(b"X-GM-THRID %d" % id_u64(head.thread_id))
        elif name != "FLAGS":
            out.append(_head_item(item, head.head))
    if "FLAGS" in names:
        out.append(f"FLAGS ({sel.flags_text(index, recent=s.rev1)})".encode())
        if "MODSEQ" not in names and "CONDSTORE" in s.enabled:
            out.append(b"MODSEQ (%d)" % sel.modseq_at(index))
    return b"* %d FETCH (" % (index + 1) + b" ".join(out) + b")\r\n"


def _section_data(item: FetchItem, raw: bytes, root: Part) -> bytes | None:
    sec = item.section
    assert sec is not None
    if item.name.startswith("BINARY"):
        return sections.binary_section(raw, root, leaf_path(root, sec.part))
    return sections.body_section(raw, root, leaf_path(root, sec.part), sec.text, sec.fields)


def leaf_path(root: Part, path: tuple[int, ...]) -> tuple[int, ...]:
    """A part that is neither multipart nor an encapsulated message has one part, itself
    (RFC 3501 §6.4.5: "only have a part 1"), so `2.2.1` of a leaf `2.2` names `2.2`, as
    Dovecot and Cyrus read it; a message's own part 1 is left to the part tree."""
    while len(path) > 1 and path[-1] == 1:
        part = find_part(root, ".".join(map(str, path[:-1])))
        if part is None or part.children or part.content_type.startswith(("multipart/",
                                                                          "message/")):
            break
        path = path[:-1]
    return path


async def _fetch_one(s: Session, index: int, record: EmailRecord, items: list[FetchItem],
                     uid_cmd: bool, seen_now: bool) -> bytes:
    """One message's FETCH response; `seen_now`: this FETCH has just set its \\Seen, so
    FLAGS go with it (RFC 3501 §6.4.5)."""
    sel = s.sel
    uid = sel.uids[index]
    out: list[bytes] = []
    names = {i.name for i in items}
    if uid_cmd and "UID" not in names:
        out.append(b"UID %d" % uid)
    raw: bytes | None = None
    root: Part | None = None
    if _needs_raw(items):
        root = Part.from_json(record.parts)
        cache = s.services.raw_cache
        raw = cache.get(record.blob_id)  # the whole message: the header block lies in it too
        if raw is None and _header_only(items):
            raw = await s.mailbox.head_of(record, root.body_start)
        elif raw is None:
            raw = await s.mailbox.raw_of(record)
            cache.put(record.blob_id, raw)
    for item in items:
        name = item.name
        if name == "UID":
            out.append(b"UID %d" % uid)
        elif name == "FLAGS":
            continue  # written last, after a body fetch may have set \Seen
        elif name == "INTERNALDATE":
            out.append(f'INTERNALDATE "{internaldate(record.received_at)}"'.encode())
        elif name == "RFC822.SIZE":
            out.append(b"RFC822.SIZE %d" % record.size)
        elif name == "ENVELOPE":
            out.append(b"ENVELOPE " + record.envelope)
        elif name == "BODYSTRUCTURE":
            out.append(b"BODYSTRUCTURE " + record.bodystructure)
        elif name == "BODY" and item.section is None:
            out.append(b"BODY " + (record.body or record.bodystructure))
        elif name == "MODSEQ":
            continue  # written last, after a body fetch may have set \Seen
        elif name in ("EMAILID", "X-GM-MSGID"):
            out.append(f"EMAILID ({record.id})".encode() if name == "EMAILID"
                       else b"X-GM-MSGID %d" % id_u64(record.id))
        elif name in ("THREADID", "X-GM-THRID"):
            out.append(f"THREADID ({record.thread_id})".encode() if name == "THREADID"
                       else b"X-GM-THRID %d" % id_u64(record.thread_id))
        elif name == "X-GM-LABELS":
            labels = " ".join(_gm_label(s, n) for n in record.mailboxes if n != "All Mail")
            out.append(f"X-GM-LABELS ({labels})".encode())
        elif name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
            assert raw is not None and root is not None
            text = {"RFC822": None, "RFC822.HEADER": "HEADER", "RFC822.TEXT": "TEXT"}[name]
            data = sections.body_section(raw, root, (), text) or b""
            out.append(name.encode() + b" " + literal(data))
        elif name == "BINARY.SIZE":
            assert raw is not None and root is not None and item.section is not None
            try:
                decoded = sections.binary_section(raw, root, leaf_path(root, item.section.part))
            except sections.UnknownCTE:
                raise No("Unknown Content-Transfer-Encoding", "UNKNOWN-CTE") from None
            out.append(_response_name(item) + b" %d" % len(decoded or b""))
        elif item.section is not None:
            assert raw is not None and root is not None
            try:
                found = _section_data(item, raw, root)
            except sections.UnknownCTE:
                raise No("Unknown Content-Transfer-Encoding", "UNKNOWN-CTE") from None
            if found is None:
                out.append(_response_name(item) + b" NIL")
                continue
            if item.partial is not None:
                found = sections.partial(found, item.partial[0], item.partial[1])
            data = binary_data(found) if name.startswith("BINARY") else literal(found)
            out.append(_response_name(item) + b" " + data)
    if seen_now:
        names.add("FLAGS")
    if "FLAGS" in names:
        out.append(f"FLAGS ({sel.flags_text(index, recent=s.rev1)})".encode())
    if "MODSEQ" in names or ("CONDSTORE" in s.enabled and "FLAGS" in names):
        out.append(b"MODSEQ (%d)" % sel.modseq_at(index))
    return b"* %d FETCH (" % (index + 1) + b" ".join(out) + b")\r\n"


_SYSTEM_LABELS = {"\\inbox": "inbox", "\\sent": "sent", "\\drafts": "drafts",
                  "\\trash": "trash", "\\spam": "junk", "\\junk": "junk"}


async def _label_mailbox(s: Session, label: str) -> Mailbox:
    """The mailbox a Gmail label names; a label that does not exist yet is created."""
    role = _SYSTEM_LABELS.get(label.lower())
    boxes = await s.mailbox.mailboxes(s.user)
    for box in boxes:
        if (role and box.role == role) or (not role and box.name == label):
            return box
    if role or label.startswith("\\"):
        raise No(f"Unknown system label {label[:40]}", "CANNOT")
    try:
        return await s.mailbox.create_mailbox(s.user, label)
    except MailboxRefused as e:
        raise refused(e) from None


async def _store_labels(s: Session, indexes: list[int], ids: list[str], mode: str,
                        labels: list[str], silent: bool, uid: bool) -> None:
    """STORE X-GM-LABELS: a label is a mailbox, so adding one is COPY and removing one takes
    the email out of that mailbox (Gmail's model, and ours)."""
    wanted = [await _label_mailbox(s, label) for label in labels]
    if mode in ("+", ""):
        for box in wanted:
            await s.mailbox.copy(s.user, ids, box)
    if mode == "":
        keep = {b.id for b in wanted}
        for record in (await records_of(s, indexes)).values():
            for box in await s.mailbox.mailboxes(s.user):
                if box.name in record.mailboxes and box.id not in keep and box.role != "all":
                    await s.mailbox.expunge(s.user, box, [record.id])
    if mode == "-":
        for box in wanted:
            await s.mailbox.expunge(s.user, box, ids)
    if silent:
        return
    records = await records_of(s, indexes)
    for i in indexes:
        found = records.get(s.sel.email_ids[i])
        if found is None:
            continue
        labels_text = " ".join(_gm_label(s, n) for n in found.mailboxes if n != "All Mail")
        prefix = f"UID {s.sel.uids[i]} " if uid else ""
        s.untagged(f"{i + 1} FETCH ({prefix}X-GM-LABELS ({labels_text}))")


def _gm_label(s: Session, name: str) -> str:
    """A label as Gmail writes it: \\Inbox, else the mailbox name quoted, in modified UTF-7
    unless the client enabled UTF-8 (as every mailbox name, RFC 6855)."""
    if name == "INBOX":
        return "\\Inbox"
    text = name if s.utf8 else encode_mailbox_name(name)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def records_of(s: Session, indexes: list[int], *,
                     brief: bool = False) -> dict[str, EmailRecord]:
    ids = [s.sel.email_ids[i] for i in indexes]
    found: dict[str, EmailRecord] = {}
    batch = 2000 if brief else _BATCH
    for start in range(0, len(ids), batch):
        for record in await s.mailbox.get_emails(s.user, ids[start:start + batch],
                                                 brief=brief):
            found[record.id] = record
    return found


def _fetch_flags(s: Session, indexes: list[int], with_uid: bool, with_flags: bool) -> None:
    """FETCH (FLAGS) / (UID FLAGS) / (UID) from the session's view alone: the flag sync
    every client runs, with no store round trip."""
    sel = s.sel
    recent, condstore = s.rev1, "CONDSTORE" in s.enabled
    if with_uid and with_flags and not condstore:
        # The common sync, `FETCH 1:* (UID FLAGS)`, once per message of the mailbox: one
        # format per line, the flags text made once per distinct keyword set.
        uids, keywords = sel.uids, sel.all_keywords()
        marked = sel.recent if recent else None
        cache: dict[tuple[str, ...], bytes] = {}
        lines = []
        for i in indexes:
            kw = keywords[i]
            text = cache.get(kw)
            if text is None:
                text = cache[kw] = flags_text(kw).encode()
            uid = uids[i]
            if marked and uid in marked:
                text = sel.flags_text(i, recent=True).encode()
            lines.append(b"* %d FETCH (UID %d FLAGS (%s))\r\n" % (i + 1, uid, text))
        s.raw(b"".join(lines))
        return
    for i in indexes:
        items = [b"UID %d" % sel.uids[i]] if with_uid else []
        if with_flags:
            items.append(b"FLAGS (%s)" % sel.flags_text(i, recent=recent).encode())
            if condstore:
                items.append(b"MODSEQ (%d)" % sel.modseq_at(i))
        s.raw(b"* %d FETCH (%s)\r\n" % (i + 1, b" ".join(items)))


@command("FETCH", "UID FETCH", states=SELECTED)
async def fetch(s: Session, cmd: Command) -> None:
    uid = cmd.uid
    seqset, items, changed_since, vanished, partial = parse_fetch(cmd.tokenizer(), uid=uid)
    if changed_since is not None and not any(i.name == "MODSEQ" for i in items):
        items.append(FetchItem("MODSEQ"))  # RFC 7162 §3.1.4.1: CHANGEDSINCE implies MODSEQ
    if any(i.name == "MODSEQ" for i in items):
        s.enable_condstore()
    if vanished and "QRESYNC" not in s.enabled:
        raise Bad("VANISHED needs ENABLE QRESYNC")
    indexes = resolve(s, seqset, uid=uid)
    if partial is not None:
        # RFC 9394 §3.2: the window counts the messages the FETCH would return, those
        # changed since CHANGEDSINCE when it is given, in UID order.
        if changed_since is not None:
            indexes = [i for i in indexes if s.sel.modseq_at(i) > changed_since]
        indexes = partial_window(indexes, partial)
    if vanished and changed_since is not None:
        delta = await s.mailbox.delta(s.user, s.sel.mailbox, changed_since)
        top = max(delta.vanished, default=0)
        gone = [u for u in delta.vanished if seqset.contains(u, top)]
        if gone:
            s.untagged(f"VANISHED (EARLIER) {compact(gone)}")
    if {i.name for i in items} <= {"UID", "FLAGS"} and changed_since is None:
        names = {i.name for i in items}
        _fetch_flags(s, indexes, uid or "UID" in names, "FLAGS" in names)
        await s.report_updates(expunges=uid)
        s.ok(cmd)
        return
    # RFC 3516 §4.2: BINARY.SIZE, like BODY.PEEK, leaves \Seen alone.
    set_seen = not s.sel.read_only and any(
        (i.section is not None and not i.peek and i.name != "BINARY.SIZE")
        or i.name in ("RFC822", "RFC822.TEXT")
        for i in items)
    if not set_seen and _from_head(items):
        await _fetch_heads(s, indexes, items, uid, changed_since)
    else:
        await _fetch_records(s, indexes, items, uid, changed_since, set_seen)
    await s.report_updates(expunges=uid)
    s.ok(cmd)


async def _fetch_heads(s: Session, indexes: list[int], items: list[FetchItem], uid: bool,
                       changed_since: int | None) -> None:
    for start in range(0, len(indexes), _BATCH):
        chunk = indexes[start:start + _BATCH]
        ids = [s.sel.email_ids[i] for i in chunk]
        heads = {h.id: h for h in await s.mailbox.get_heads(s.user, ids)}
        missing: list[int] = []
        for index, email_id in zip(chunk, ids, strict=True):
            head = heads.get(email_id)
            if head is None:
                continue  # expunged by another session; reported at the next chance
            if changed_since is not None and s.sel.modseq_at(index) <= changed_since:
                continue
            if not head.head:
                missing.append(index)  # stored before heads were kept: read the blob
                continue
            s.raw(_fetch_head(s, index, head, items, uid))
        if missing:
            await _fetch_records(s, missing, items, uid, changed_since, False)
        if start + _BATCH < len(indexes):
            await s.flush()  # the last batch goes out with the tagged OK: one send, not two


async def _fetch_records(s: Session, indexes: list[int], items: list[FetchItem], uid: bool,
                         changed_since: int | None, set_seen: bool) -> None:
    for start in range(0, len(indexes), _BATCH):
        chunk = indexes[start:start + _BATCH]
        records = await records_of(s, chunk)
        wanted = [(index, record) for index in chunk
                  if (record := records.get(s.sel.email_ids[index])) is not None
                  # (None: expunged by another session; reported at the next chance)
                  and (changed_since is None or s.sel.modseq_at(index) > changed_since)]
        seen_now = await _set_seen(s, wanted) if set_seen else set()
        for start_wave in range(0, len(wanted), _PARALLEL):
            # A wave of messages at once: their blob reads overlap instead of queueing.
            wave = wanted[start_wave:start_wave + _PARALLEL]
            for response in await asyncio.gather(*(
                    _fetch_one(s, index, record, items, uid, index in seen_now)
                    for index, record in wave)):
                s.raw(response)
        if start + _BATCH < len(indexes):
            await s.flush()


async def _set_seen(s: Session, wanted: list[tuple[int, EmailRecord]]) -> set[int]:
    """The implicit \\Seen of a FETCH of body data, for a batch of messages in one storage
    transaction (one MODSEQ step each, one change event), not one per message; the indexes
    whose \\Seen this set."""
    sel = s.sel
    unseen = {record.id: index for index, record in wanted
              if "$seen" not in sel.keywords_at(index)}
    if not unseen:
        return set()
    result = await s.mailbox.set_keywords(s.user, list(unseen), add=["$seen"])
    now: set[int] = set()
    for email_id, keywords, modseq in result.updated:
        index = unseen[email_id]
        sel.set_keywords(index, shared_keywords(keywords), modseq)
        now.add(index)
    return now


# ---------------------------------------------------------------------- STORE

@command("STORE", "UID STORE", states=SELECTED)
async def store(s: Session, cmd: Command) -> None:
    uid = cmd.uid
    tok = cmd.tokenizer()
    req = parse_store(tok)
    tok.end()
    sel = s.sel
    if sel.read_only:
        raise No("Mailbox is read-only", "READ-ONLY")
    indexes = resolve(s, req.sequence_set, uid=uid)
    ids = [sel.email_ids[i] for i in indexes]
    if req.is_gm_labels:
        await _store_labels(s, indexes, ids, req.mode, req.flags, req.silent, uid)
        await s.report_updates(expunges=uid)
        s.ok(cmd)
        return
    keywords = to_keywords(req.flags)
    if req.unchangedsince is not None:
        s.enable_condstore()
    if req.mode == "+":
        result = await s.mailbox.set_keywords(s.user, ids, add=keywords,
                                              unchanged_since=req.unchangedsince)
    elif req.mode == "-":
        result = await s.mailbox.set_keywords(s.user, ids, remove=keywords,
                                              unchanged_since=req.unchangedsince)
    else:
        result = await s.mailbox.set_keywords(s.user, ids, replace=keywords,
                                              unchanged_since=req.unchangedsince)
    position = {email_id: i for i, email_id in zip(indexes, ids, strict=True)}
    for line in sel.announce(shared_keywords(kws) for _, kws, _ in result.updated):
        s.raw(line)  # a new keyword: * FLAGS before the FETCH that shows it
    condstore = "CONDSTORE" in s.enabled
    for email_id, kws, modseq in result.updated:
        i = position[email_id]
        sel.set_keywords(i, shared_keywords(kws), modseq)
        if req.silent and not condstore:
            continue
        # RFC 7162 §3.1.3: with CONDSTORE, .SILENT still reports the new MODSEQ (and a
        # message changed by someone else meanwhile its flags too: it is not silent then).
        parts = [f"UID {sel.uids[i]}"] if uid or condstore else []
        if not req.silent:
            parts.append(f"FLAGS ({sel.flags_text(i, recent=s.rev1)})")
        if condstore:
            parts.append(f"MODSEQ ({modseq})")
        s.untagged(f"{i + 1} FETCH ({' '.join(parts)})")
        sel.modseq = max(sel.modseq, modseq)
    # Numbered before the updates: a UID STORE may report expunges, which renumber.
    failed = sorted(sel.uids[position[e]] if uid else position[e] + 1
                    for e in result.conflicts)
    await s.report_updates(expunges=uid)
    if failed:
        s.ok(cmd, "Conditional STORE failed for some", "MODIFIED " + compact(failed))
    else:
        s.ok(cmd)


# ---------------------------------------------------------------------- COPY / MOVE

@command("COPY", "UID COPY", "MOVE", "UID MOVE", states=SELECTED)
async def copy_or_move(s: Session, cmd: Command) -> None:
    """COPY adds the target label, MOVE moves it (RFC 6851); both answer COPYUID."""
    uid, move = cmd.uid, cmd.name.endswith("MOVE")
    seqset, name = parse_copy(cmd.tokenizer())
    sel = s.sel
    if move and sel.read_only:
        raise No("Mailbox is read-only", "READ-ONLY")
    try:
        target = await s.mailbox.mailbox(s.user, name)
    except NotFound:
        raise No("No such mailbox", "TRYCREATE") from None
    indexes = resolve(s, seqset, uid=uid)
    if not indexes:
        s.ok(cmd, "No messages")
        return
    ids = [sel.email_ids[i] for i in indexes]
    source_uids = [sel.uids[i] for i in indexes]
    if move:  # to the same mailbox too: new UIDs there (RFC 6851 §3.3)
        try:
            moved = await s.mailbox.move(s.user, ids, sel.mailbox, target)
        except QuotaExceeded as e:
            raise No(f"{e}", "OVERQUOTA") from None
        pairs = [moved[e] for e in ids if e in moved]
        if pairs:
            s.untagged(f"OK [COPYUID {target.uidvalidity} {copyuid_sets(pairs)}] Moved")
        await s.report_updates()
        if not pairs:  # all expunged by another session meanwhile (RFC 9051 §7.1)
            raise No("The messages no longer exist", "EXPUNGEISSUED")
        s.ok(cmd)
        return
    try:
        copied = await s.mailbox.copy(s.user, ids, target, sel.mailbox)
    except QuotaExceeded as e:
        raise No(f"{e}", "OVERQUOTA") from None
    pairs = [(old, copied[e]) for e, old in zip(ids, source_uids, strict=True) if e in copied]
    await s.report_updates(expunges=uid)
    if not pairs:  # all expunged by another session meanwhile (RFC 9051 §7.1)
        raise No("The messages no longer exist", "EXPUNGEISSUED")
    s.ok(cmd, "COPY completed", f"COPYUID {target.uidvalidity} {copyuid_sets(pairs)}")


def copyuid_sets(pairs: list[tuple[int, int]]) -> str:
    """The two sets of a COPYUID (RFC 4315 §3): source and target UIDs pair up by position,
    so they are compressed into ranges only when both run in the same order."""
    pairs = sorted(pairs)
    sources = [p[0] for p in pairs]
    targets = [p[1] for p in pairs]
    if targets == sorted(targets):
        return f"{compact(sources)} {compact(targets)}"
    return f"{_uid_list(sources)} {_uid_list(targets)}"


def _uid_list(uids: list[int]) -> str:
    """In the order given, as RFC 4315 pairs source and target UIDs positionally."""
    return ",".join(map(str, uids))
