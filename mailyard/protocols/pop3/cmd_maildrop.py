"""TRANSACTION-state commands (RFC 1939 §5, §7): STAT, LIST, UIDL, RETR, TOP, DELE, RSET,
NOOP, and QUIT, which enters the UPDATE state (§6)."""

from __future__ import annotations

import logging

from mailyard.protocols.pop3.grammar import Command, ParseError, multiline, number, top
from mailyard.protocols.pop3.session import TRANSACTION, Err, Session, State, command
from mailyard.store.ports import NotFound

log = logging.getLogger("mailyard.pop3")


def _message(s: Session, arg: str) -> int:
    """The 0-based index of the message numbered `arg`; -ERR if none or deleted."""
    index = s.drop.index(number(arg))
    if index is None:
        raise Err("No such message")
    return index


def _at_most(cmd: Command, count: int) -> None:
    if len(cmd.args) > count:
        raise ParseError(f"{cmd.keyword} takes at most {count} argument"
                         f"{'s' if count != 1 else ''}")


@command("STAT", states=TRANSACTION)
async def stat(s: Session, cmd: Command) -> None:
    _at_most(cmd, 0)
    s.ok(f"{s.drop.count} {s.drop.octets}")


@command("LIST", states=TRANSACTION)
async def list_(s: Session, cmd: Command) -> None:
    _at_most(cmd, 1)
    drop = s.drop
    if cmd.args:
        i = _message(s, cmd.args[0])
        s.ok(f"{i + 1} {drop.sizes[i]}")
        return
    s.ok(f"{drop.count} messages ({drop.octets} octets)")
    s.raw(multiline("".join(f"{i + 1} {drop.sizes[i]}\r\n" for i in drop.live()).encode()))


@command("UIDL", states=TRANSACTION)
async def uidl(s: Session, cmd: Command) -> None:
    _at_most(cmd, 1)
    drop = s.drop
    if cmd.args:
        i = _message(s, cmd.args[0])
        s.ok(f"{i + 1} {drop.email_ids[i]}")
        return
    s.ok("Unique-id listing follows")
    s.raw(multiline("".join(f"{i + 1} {drop.email_ids[i]}\r\n" for i in drop.live()).encode()))


async def _raw(s: Session, index: int) -> bytes:
    assert s.account is not None
    try:
        return await s.mailbox.raw(s.account, s.drop.email_ids[index])
    except NotFound:
        raise Err("Message was removed by another session") from None


@command("RETR", states=TRANSACTION)
async def retr(s: Session, cmd: Command) -> None:
    if len(cmd.args) != 1:
        raise ParseError("RETR takes a message number")
    i = _message(s, cmd.args[0])
    raw = await _raw(s, i)
    s.ok(f"{s.drop.sizes[i]} octets")
    s.raw(multiline(raw))
    s.drop.retrieved.add(i)


@command("TOP", states=TRANSACTION)
async def top_(s: Session, cmd: Command) -> None:
    if len(cmd.args) != 2:
        raise ParseError("TOP takes a message number and a number of lines")
    i = _message(s, cmd.args[0])
    lines = number(cmd.args[1], "number of lines")
    raw = await _raw(s, i)
    s.ok("Top of message follows")
    s.raw(multiline(top(raw, lines)))


@command("DELE", states=TRANSACTION)
async def dele(s: Session, cmd: Command) -> None:
    if len(cmd.args) != 1:
        raise ParseError("DELE takes a message number")
    n = number(cmd.args[0])
    if 1 <= n <= len(s.drop.email_ids) and n - 1 in s.drop.deleted:
        raise Err(f"Message {n} already deleted")
    s.drop.deleted.add(_message(s, cmd.args[0]))
    s.ok(f"Message {n} deleted")


@command("RSET", states=TRANSACTION)
async def rset(s: Session, cmd: Command) -> None:
    _at_most(cmd, 0)
    s.drop.deleted.clear()
    s.ok(f"Maildrop has {s.drop.count} messages ({s.drop.octets} octets)")


@command("NOOP", states=TRANSACTION)
async def noop(s: Session, cmd: Command) -> None:
    _at_most(cmd, 0)
    s.ok()


@command("QUIT", states=TRANSACTION)
async def quit_(s: Session, cmd: Command) -> None:
    """UPDATE: apply the deletions; only once they are stored does the client hear +OK."""
    assert s.account is not None
    s.state = State.CLOSED
    try:
        await s.drop.update(s.mailbox, s.account, s.policy.dele)
    except Exception:
        log.exception("POP3 UPDATE failed for %s", s.account.address)
        raise Err("Some deleted messages were not removed", "SYS/TEMP") from None
    s.ok(f"Bye ({s.drop.count} messages left)")
