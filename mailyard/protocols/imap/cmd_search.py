"""SEARCH and UID SEARCH (RFC 3501 §6.4.4, RFC 9051 §6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES,
RFC 7162 CONDSTORE MODSEQ, RFC 5267 CONTEXT=SEARCH, RFC 9394 PARTIAL), and CANCELUPDATE
(RFC 5267 §4.3)."""

from __future__ import annotations

from typing import Any

from mailyard.protocols.imap import grammar as g
from mailyard.protocols.imap.cmd_message import records_of
from mailyard.protocols.imap.esearch import (
    add_context,
    cancel_contexts,
    esearch_data,
    quote,
    returned,
)
from mailyard.protocols.imap.grammar import Command, parse_search
from mailyard.protocols.imap.search import evaluate
from mailyard.protocols.imap.session import SELECTED, Bad, Session, command


def _has_modseq(key: Any) -> bool:
    if isinstance(key, g.ModSeq):
        return True
    if isinstance(key, g.And):
        return any(_has_modseq(k) for k in key.keys)
    if isinstance(key, g.Or):
        return _has_modseq(key.a) or _has_modseq(key.b)
    if isinstance(key, g.Not):
        return _has_modseq(key.key)
    return False


@command("SEARCH", "UID SEARCH", states=SELECTED)
async def search(s: Session, cmd: Command) -> None:
    uid = cmd.uid
    tok = cmd.tokenizer()
    program = parse_search(tok, uid=uid)
    tok.end()
    if program.charset is not None and "UTF8=ACCEPT" in s.enabled:
        # RFC 6855 §3 (erratum 4029): strings are UTF-8 now; a CHARSET label contradicts that.
        raise Bad("No CHARSET after ENABLE UTF8=ACCEPT")
    sel = s.sel
    with_modseq = _has_modseq(program.key)
    if with_modseq:  # RFC 7162 §3.1: SEARCH MODSEQ enables CONDSTORE
        s.enable_condstore()
    matches, records = await evaluate(s, program.key,
                                      lambda ix: records_of(s, ix, brief=True))

    def number(index: int) -> int:
        return sel.uids[index] if uid else index + 1

    def highest(indexes: list[int]) -> int | None:
        """RFC 7162 §3.1.5: the highest mod-sequence of the messages returned."""
        if not with_modseq or not indexes:
            return None
        return max(records[sel.email_ids[i]].modseq for i in indexes)

    returns = program.return_options
    if returns is None and "IMAP4REV2" in s.enabled:
        returns = ("ALL",)  # RFC 9051 §6.4.4: IMAP4rev2 answers SEARCH with ESEARCH
    if returns is None:
        modseq = highest(matches)
        s.untagged("SEARCH" + "".join(f" {number(i)}" for i in matches)
                   + (f" (MODSEQ {modseq})" if modseq is not None else ""))
    else:
        chosen = returned(matches, returns, program.partial)
        if "SAVE" in returns:  # RFC 5182 §2.1, RFC 9394 §3.2: what is returned is saved
            s.saved_uids = [sel.uids[i] for i in chosen]
        if "UPDATE" in returns and not add_context(s, cmd.tag, uid, program.key,
                                                   (sel.uids[i] for i in matches)):
            s.untagged(f"NO [NOUPDATE {quote(cmd.tag)}] Too many search contexts")
        if set(returns) - {"SAVE", "CONTEXT"}:  # RETURN (SAVE) alone: no ESEARCH
            data = esearch_data([number(i) for i in matches], returns, program.partial,
                                highest(chosen))
            s.untagged(" ".join([f"ESEARCH (TAG {quote(cmd.tag)})", *(["UID"] if uid else []),
                                 *data]))
    await s.report_updates(expunges=uid)
    s.ok(cmd)


@command("CANCELUPDATE", states=SELECTED)
async def cancel_update(s: Session, cmd: Command) -> None:
    """cancelupdate = "CANCELUPDATE" 1*(SP quoted) (RFC 5267 §4.3). A tag that names no
    context (never one, or one already ended) is no error: the client's wish holds."""
    tok = cmd.tokenizer()
    tags: list[str] = []
    while not tags or not tok.at_end():
        if tags:
            tok.sp()
        start = tok.pos
        tags.append(tok.text(tok.quoted(), start, "utf-8"))
    cancel_contexts(s, tags)
    s.ok(cmd)
