"""APPEND (RFC 3501 §6.3.11, RFC 9051 §6.3.12) with MULTIAPPEND (RFC 3502) and UIDPLUS's
APPENDUID (RFC 4315)."""

from __future__ import annotations

from mailyard.protocols.imap.flags import SETTABLE_FLAGS, to_keywords
from mailyard.protocols.imap.grammar import Command, parse_append
from mailyard.protocols.imap.selected import compact
from mailyard.protocols.imap.session import AUTH, Bad, No, Session, command
from mailyard.services.mailbox import Appended
from mailyard.store.ports import Mailbox, NotFound, QuotaExceeded

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


