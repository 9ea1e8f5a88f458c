"""APPEND (RFC 3501 §6.3.11, RFC 9051 §6.3.12) with MULTIAPPEND (RFC 3502), CATENATE
(RFC 4469) and UIDPLUS's APPENDUID (RFC 4315)."""

from __future__ import annotations

from mailyard.protocols.imap.catenate import catenate
from mailyard.protocols.imap.flags import SETTABLE_FLAGS, to_keywords
from mailyard.protocols.imap.grammar import Command, parse_append
from mailyard.protocols.imap.selected import compact
from mailyard.protocols.imap.session import AUTH, Bad, No, Session, command
from mailyard.services.mailbox import Appended
from mailyard.store.ports import NotFound, QuotaExceeded

# ---------------------------------------------------------------------- APPEND

@command("APPEND", states=AUTH)
async def append(s: Session, cmd: Command) -> None:
    """APPEND, with MULTIAPPEND (RFC 3502) and CATENATE (RFC 4469): all the messages are
    stored or none is.

    Everything that can be checked before storing is (the literals' sizes were, by the reader:
    APPENDLIMIT; flags, the CATENATE URLs, empty messages and the quota here), so the usual
    failures store nothing. A failure while storing (a full disk, a quota raced by a delivery)
    takes back what this command already stored before answering NO."""
    name, messages = parse_append(cmd.tokenizer(), utf8_data="UTF8=ACCEPT" in s.enabled)
    for message in messages:
        bad = [f for f in message.flags if f.startswith("\\") and f not in SETTABLE_FLAGS]
        if bad:
            raise Bad(f"APPEND cannot set the flag {bad[0][:40]}")
        if not message.data and not message.catenate:
            raise No("Empty message")
    try:
        box = await s.mailbox.mailbox(s.user, name)
    except NotFound:
        raise No("No such mailbox", "TRYCREATE") from None
    limit = s.services.policy.max_literal
    datas = [await catenate(s, m.catenate, limit) if m.catenate else m.data for m in messages]
    if not all(datas):
        raise No("Empty message")
    account = await s.mailbox.account(s.user.address)
    if account.used + sum(len(d) for d in datas) > account.quota:
        raise No("Over quota: nothing stored", "OVERQUOTA")
    done: list[Appended] = []
    try:
        for message, data in zip(messages, datas, strict=True):
            when = message.internal_date
            received = int(when.timestamp() * 1000) if when else None
            done.append(await s.mailbox.append(s.user, box, data,
                                               keywords=to_keywords(message.flags),
                                               received_at=received))
    except QuotaExceeded as e:
        await _take_back(s, done)
        raise No(f"{e}: nothing stored", "OVERQUOTA") from None
    except BaseException:
        await _take_back(s, done)
        raise
    await s.report_updates()
    uids = [d.uid for d in done]
    uid_text = compact(uids) if uids == sorted(uids) else ",".join(map(str, uids))
    s.ok(cmd, "APPEND completed", f"APPENDUID {box.uidvalidity} {uid_text}")


async def _take_back(s: Session, done: list[Appended]) -> None:
    """Undo the part of a MULTIAPPEND that was stored: every message APPEND stored is an
    email of its own (never an existing one), so taking it back destroys it."""
    if done:
        await s.mailbox.destroy(s.user, [d.email_id for d in done])
