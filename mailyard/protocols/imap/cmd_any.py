"""Any-state and authentication commands: CAPABILITY, NOOP, LOGOUT, ID, ENABLE, STARTTLS,
LOGIN, AUTHENTICATE, COMPRESS (RFC 3501 §6.1-6.2, RFC 9051, RFC 2971 ID, RFC 5161 ENABLE,
RFC 4959 SASL-IR, RFC 6855 UTF8=ACCEPT, RFC 4978 COMPRESS)."""

from __future__ import annotations

import ssl

from mailyard.protocols.imap.grammar import (
    Command,
    Tokenizer,
    decode_sasl_response,
    parse_authenticate,
    parse_enable,
    parse_login,
)
from mailyard.protocols.imap.reader import CommandTooLong
from mailyard.protocols.imap.session import (
    ANY,
    AUTH,
    NOT_AUTH,
    Bad,
    No,
    Session,
    State,
    command,
)
from mailyard.services.accounts import LoginRefused


@command("CAPABILITY", states=ANY)
async def capability(s: Session, cmd: Command) -> None:
    s.untagged("CAPABILITY " + " ".join(s.capabilities()))
    s.ok(cmd)


@command("NOOP", states=ANY)
async def noop(s: Session, cmd: Command) -> None:
    await s.report_updates()
    s.ok(cmd)


@command("LOGOUT", states=ANY)
async def logout(s: Session, cmd: Command) -> None:
    s.untagged("BYE Mailyard logging out")
    s.ok(cmd)
    s.state = State.LOGOUT


@command("ID", states=ANY)
async def id_(s: Session, cmd: Command) -> None:
    s.untagged('ID ("name" "Mailyard" "vendor" "Mailyard")')
    s.ok(cmd)


_CAPABILITY_SPELLING = {"IMAP4REV2": "IMAP4rev2"}


@command("ENABLE", states=AUTH)
async def enable(s: Session, cmd: Command) -> None:
    enabled = []
    names = parse_enable(cmd.tokenizer())
    if "UTF8=ACCEPT" in names and s.state is State.SELECTED and "UTF8=ACCEPT" not in s.enabled:
        # RFC 6855 §3: only in the authenticated state, since the names and strings of a
        # mailbox already selected were given to the client in the other encoding.
        raise Bad("ENABLE UTF8=ACCEPT is only valid in the authenticated state")
    for name in names:
        if name in ("IMAP4REV2", "CONDSTORE", "QRESYNC", "UTF8=ACCEPT") and name not in s.enabled:
            s.enabled.add(name)
            enabled.append(name)
    if "QRESYNC" in s.enabled:
        s.enabled.add("CONDSTORE")
    # Named as CAPABILITY spells them (the names are case-insensitive, RFC 5161 §3.1).
    spelled = [_CAPABILITY_SPELLING.get(n, n) for n in enabled]
    s.untagged("ENABLED " + " ".join(spelled) if spelled else "ENABLED")
    s.ok(cmd)


@command("STARTTLS", states=NOT_AUTH)
async def starttls(s: Session, cmd: Command) -> None:
    if s.tls or s.services.tls is None:
        raise Bad("TLS is already on" if s.tls else "TLS is not available")
    s.ok(cmd, "Begin TLS negotiation now")
    try:
        await s.start_tls()
    except (ssl.SSLError, OSError, TimeoutError, RuntimeError) as e:
        # A failed handshake (a probe, a client that does not like our ciphers) leaves no
        # usable stream: the session just ends, quietly, as a dropped connection does.
        # RuntimeError: uvloop's answer when the peer had closed the connection before the
        # switch.
        if isinstance(e, RuntimeError) and not s.writer.transport.is_closing():
            raise
        s.state = State.LOGOUT


async def _login(s: Session, cmd: Command, user: str, password: str) -> None:
    try:
        account = await s.services.accounts.login(user, password, ip=s.peer_ip,
                                                  protocol="imap")
    except LoginRefused:
        s.untagged("BYE Too many authentication failures; try again later")
        s.state = State.LOGOUT
        raise No("Too many authentication failures", "UNAVAILABLE") from None
    if account is None:
        raise No("Invalid credentials", "AUTHENTICATIONFAILED")
    limit = s.services.policy.connections_per_user
    if limit > 0:  # counted in the ledger: over every IMAP process and node that shares it
        s.user_hold = await s.services.ledger.hold(f"imap-user:{account.id}", limit)
        if s.user_hold is None:
            raise No("Too many connections for this account", "LIMIT")
    s.log_in(account)
    s.ok(cmd, "Logged in", "CAPABILITY " + " ".join(s.capabilities()))


@command("LOGIN", states=NOT_AUTH)
async def login(s: Session, cmd: Command) -> None:
    if not s.plaintext_allowed:
        raise No("Use STARTTLS first", "PRIVACYREQUIRED")
    user, password = parse_login(cmd.tokenizer())
    await _login(s, cmd, user, password)


@command("AUTHENTICATE", states=NOT_AUTH)
async def authenticate(s: Session, cmd: Command) -> None:
    mechanism, initial = parse_authenticate(cmd.tokenizer())
    if mechanism != "PLAIN":
        raise No(f"Unsupported mechanism {mechanism[:20]}", "CANNOT")
    if not s.plaintext_allowed:
        raise No("Use STARTTLS first", "PRIVACYREQUIRED")
    if initial is None:
        await s._continuation(b"+ \r\n")
        try:
            line = await s.reader.read_line()
        except CommandTooLong:  # the reader has dropped it; the session goes on (fuzz seed 88432)
            raise Bad("[TOOBIG] SASL response too long") from None
        if line is None:
            s.state = State.LOGOUT
            return
        if line.strip() == b"*":
            raise Bad("Authentication cancelled")
        decoded = decode_sasl_response(Tokenizer(line.strip()))
    else:
        decoded = initial
    fields = decoded.split(b"\0")
    if len(fields) != 3:
        raise Bad("Malformed PLAIN response")
    authzid, user, password = (f.decode("utf-8", "replace") for f in fields)
    if authzid and authzid.lower() != user.lower():
        raise No("Authorization identity must match", "AUTHORIZATIONFAILED")
    await _login(s, cmd, user, password)


@command("COMPRESS", states=AUTH)
async def compress(s: Session, cmd: Command) -> None:
    """RFC 4978: after the tagged OK, the connection is raw deflate both ways."""
    tok = cmd.tokenizer()
    mechanism = tok.keyword()
    tok.end()
    if mechanism != "DEFLATE":
        raise Bad(f"Unknown compression mechanism {mechanism[:20]}")
    if s.inflater is not None:
        raise No("Compression is already active", "COMPRESSIONACTIVE")
    s.ok(cmd, "DEFLATE active")
    await s.start_deflate()
