"""Entering and leaving a mailbox, and taking messages out of it: SELECT, EXAMINE, CHECK, CLOSE,
UNSELECT, EXPUNGE, UID EXPUNGE (RFC 3501 §6.3.1-2, §6.4.1-3, RFC 9051, RFC 4315 UIDPLUS,
RFC 3691 UNSELECT, RFC 7162 QRESYNC)."""

from __future__ import annotations

from mailyard.protocols.imap.cmd_mailbox import find_mailbox
from mailyard.protocols.imap.flags import to_flags
from mailyard.protocols.imap.grammar import Command, SequenceSet, parse_select
from mailyard.protocols.imap.selected import Selected, compact
from mailyard.protocols.imap.session import AUTH, SELECTED, Bad, No, Session, command

# ---------------------------------------------------------------------- SELECT / EXAMINE

async def _select(s: Session, cmd: Command, read_only: bool) -> None:
    tok = cmd.tokenizer()
    name, params = parse_select(tok)
    tok.end()
    if s.selected is not None:
        s.select(None)
        s.untagged("OK [CLOSED] Previous mailbox closed")
    if params.condstore:
        s.enabled.add("CONDSTORE")  # HIGHESTMODSEQ follows in the SELECT's own responses
    qresync = params.qresync
    if qresync is not None and "QRESYNC" not in s.enabled:
        raise Bad("ENABLE QRESYNC first")
    box = await find_mailbox(s, name)
    assert s.watch is not None  # made at login
    sel = await s.services.views.select(s.watch, box, read_only)
    s.select(sel)
    for line in sel.flags_lines():  # the system flags and the keywords in use (§7.2.6)
        s.raw(line)
    s.untagged(f"{sel.exists} EXISTS")
    if s.rev1:
        if sel.view is not None:
            sel.select_recent(sel.view.recent_mark)
        s.untagged(f"{len(sel.recent)} RECENT")
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


# ---------------------------------------------------------------------- CHECK / CLOSE / ...

@command("CHECK", states=SELECTED)
async def check(s: Session, cmd: Command) -> None:
    await s.report_updates()
    s.ok(cmd)


async def _expunge_deleted(s: Session, uids: set[int] | None = None) -> list[int]:
    """Expunge what this session knows as \\Deleted (among `uids`); the UIDs removed. The
    shared view moves on by them at once when nothing else came between (advance_own): the
    EXPUNGE responses need no read of what this write just did."""
    sel = s.sel
    if sel.read_only:
        raise No("Mailbox is read-only", "READ-ONLY")
    doomed = [sel.email_ids[i] for i, kw in enumerate(sel.all_keywords())
              if "$deleted" in kw and (uids is None or sel.uids[i] in uids)]
    if not doomed:
        return []
    done = await s.mailbox.expunge(s.user, sel.mailbox, doomed, if_deleted=True)
    if done.uids and done.modseq is not None and sel.view is not None:
        sel.view.advance_own(done.modseq, vanished=done.uids)
    return done.uids


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




