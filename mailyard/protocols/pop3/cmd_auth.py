"""AUTHORIZATION-state commands: USER, PASS (RFC 1939 §7), AUTH (RFC 5034), STLS (RFC 2595),
CAPA (RFC 2449), QUIT, and APOP refused. Credentials go through the account service (argon2);
failures are counted per client IP, and past the limit the server closes the connection."""

from __future__ import annotations

import binascii
import ssl

from mailyard.protocols.imap.reader import CommandTooLong
from mailyard.protocols.pop3.grammar import Command, multiline
from mailyard.protocols.pop3.session import (
    ANY,
    AUTHORIZATION,
    Err,
    Session,
    State,
    command,
)
from mailyard.services.accounts import LoginRefused


@command("CAPA", states=ANY)
async def capa(s: Session, cmd: Command) -> None:
    s.ok("Capability list follows")
    s.raw(multiline("\r\n".join(s.capabilities()).encode()))


@command("STLS", states=AUTHORIZATION)
async def stls(s: Session, cmd: Command) -> None:
    if s.tls:
        raise Err("TLS is already on")
    if s.services.tls is None:
        raise Err("TLS is not available")
    if cmd.args:
        raise Err("STLS takes no argument")
    s.user = None
    s.ok("Begin TLS negotiation")
    try:
        await s.start_tls()
    except (ssl.SSLError, OSError, TimeoutError, RuntimeError) as e:
        # A failed handshake leaves no usable stream: the session ends quietly, as a dropped
        # connection does (no traceback for what a client did). RuntimeError: uvloop's answer
        # when the peer had closed the connection before the switch.
        if isinstance(e, RuntimeError) and not s.writer.transport.is_closing():
            raise
        s.state = State.CLOSED


def _require_privacy(s: Session) -> None:
    if not s.plaintext_allowed:
        raise Err("Plain-text authentication needs TLS; use STLS first", "AUTH")


@command("USER", states=AUTHORIZATION)
async def user(s: Session, cmd: Command) -> None:
    _require_privacy(s)
    if len(cmd.args) != 1:
        raise Err("USER takes one argument: the mailbox name")
    s.user = cmd.args[0]
    s.ok("Send PASS")


@command("PASS", states=AUTHORIZATION)
async def pass_(s: Session, cmd: Command) -> None:
    name, s.user = s.user, None
    if name is None:
        raise Err("Send USER first")
    _require_privacy(s)
    if not cmd.rest:
        raise Err("PASS takes the password")
    await _log_in(s, name, cmd.rest)


@command("APOP", states=AUTHORIZATION)
async def apop(s: Session, cmd: Command) -> None:
    raise Err("APOP is not supported; use USER/PASS or AUTH PLAIN over TLS")


@command("AUTH", states=AUTHORIZATION)
async def auth(s: Session, cmd: Command) -> None:
    s.user = None
    if not cmd.args:
        # RFC 1734's listing form, which older clients still send.
        s.ok("Supported mechanisms follow")
        s.raw(multiline(b"PLAIN" if s.plaintext_allowed else b""))
        return
    mechanism = cmd.args[0].upper()
    if mechanism != "PLAIN":
        raise Err(f"Unsupported mechanism {mechanism[:20]}")
    if len(cmd.args) > 2:
        raise Err("AUTH takes a mechanism and an optional initial response")
    _require_privacy(s)
    if len(cmd.args) == 2:
        response = cmd.args[1]
    else:
        s.raw(b"+ \r\n")  # RFC 5034 §4: an empty challenge
        await s.flush()
        try:
            line = await s.reader.read_line()
        except CommandTooLong:
            raise Err("SASL response too long") from None
        if line is None:
            s.state = State.CLOSED
            return
        response = line.decode("ascii", "replace").strip()
    if response == "*":
        raise Err("Authentication cancelled")
    try:
        decoded = b"" if response == "=" else binascii.a2b_base64(response, strict_mode=True)
    except (binascii.Error, ValueError):
        raise Err("Invalid base64 in the SASL response") from None
    fields = decoded.split(b"\0")
    if len(fields) != 3:
        raise Err("Malformed PLAIN response")
    authzid, name, password = (f.decode("utf-8", "replace") for f in fields)
    if authzid and authzid.lower() != name.lower():
        raise Err("Authorization identity must be the user's own", "AUTH")
    await _log_in(s, name, password)


async def _log_in(s: Session, name: str, password: str) -> None:
    try:
        account = await s.services.accounts.login(name, password, ip=s.peer_ip,
                                                  protocol="pop3")
    except LoginRefused:
        s.state = State.CLOSED
        raise Err("Too many authentication failures; try again later", "SYS/TEMP") from None
    if account is None:
        raise Err("Invalid credentials", "AUTH")
    await s.enter_transaction(account)


@command("QUIT", states=AUTHORIZATION)
async def quit_(s: Session, cmd: Command) -> None:
    s.ok("Bye")
    s.state = State.CLOSED
