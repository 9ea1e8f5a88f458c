"""SEARCH and UID SEARCH (RFC 3501 §6.4.4, RFC 9051 §6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES,
RFC 7162 CONDSTORE MODSEQ)."""

from __future__ import annotations

from mailyard.protocols.imap.cmd_message import records_of
from mailyard.protocols.imap.grammar import Command, parse_search
from mailyard.protocols.imap.search import evaluate
from mailyard.protocols.imap.selected import compact
from mailyard.protocols.imap.session import SELECTED, Bad, Session, command


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
    matches, _ = await evaluate(s, program.key, lambda ix: records_of(s, ix, brief=True))
    numbers = [sel.uids[i] if uid else i + 1 for i in matches]
    returns = program.return_options
    if returns is not None and "SAVE" in returns:
        s.saved_uids = [sel.uids[i] for i in matches]
        returns = tuple(r for r in returns if r != "SAVE")
        if not returns:  # RETURN (SAVE) alone: no ESEARCH response (RFC 5182 §2.1)
            await s.report_updates(expunges=uid)
            s.ok(cmd)
            return
    if returns is None and "IMAP4REV2" in s.enabled:
        returns = ("ALL",)  # RFC 9051 §6.4.4: IMAP4rev2 answers SEARCH with ESEARCH
    if returns is not None:
        parts = [f'(TAG "{cmd.tag}")'] + (["UID"] if uid else [])
        wanted = returns or ("ALL",)
        if "MIN" in wanted and numbers:
            parts.append(f"MIN {numbers[0]}")
        if "MAX" in wanted and numbers:
            parts.append(f"MAX {numbers[-1]}")
        if "COUNT" in wanted:
            parts.append(f"COUNT {len(numbers)}")
        if "ALL" in wanted and numbers:
            parts.append(f"ALL {compact(numbers)}")
        s.untagged("ESEARCH " + " ".join(parts))
    else:
        s.untagged("SEARCH" + "".join(f" {n}" for n in numbers))
    await s.report_updates(expunges=uid)
    s.ok(cmd)
