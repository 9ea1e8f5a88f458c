"""The MSA role: SMTP submission (RFC 6409) on port 587 with STARTTLS and on 465 with implicit
TLS (RFC 8314), for authenticated users only.

AUTH PLAIN and LOGIN (RFC 4954) are offered only inside TLS (or on loopback when the config
allows it for tests and local tools); nothing is accepted before AUTH, so the listener can never
relay for strangers. FUTURERELEASE (RFC 4865: HOLDFOR, HOLDUNTIL) holds a message for a
scheduled send; `mailyard queue cancel` takes it back before it leaves. The password check runs
argon2 off the event loop, which aiosmtpd's own synchronous authenticator hook cannot, so both
mechanisms are implemented here. Failed logins are counted per IP; past the limit the
connection is refused with 454 4.7.0 and closed.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import socket
import ssl
from base64 import b64decode
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiosmtpd.smtp import MISSING, AuthResult, Envelope, Session

from mailyard.config import Limits
from mailyard.core.netaddr import is_loopback
from mailyard.protocols.smtp.base import (
    EnhancedSMTP,
    close,
    message_problem,
    peer_ip,
    valid_text,
)
from mailyard.services.accounts import AccountService, LoginRefused
from mailyard.services.submission import (
    MAX_HOLD,
    SubmissionRefused,
    SubmissionService,
    release_time,
)
from mailyard.store.ports import Account

log = logging.getLogger("mailyard.submission")

IDENT = "Mailyard ESMTP MSA"


@dataclass(frozen=True)
class MSAPolicy:
    hostname: str
    message_size: int
    allow_plaintext_loopback: bool = False
    timeout: float = 300.0
    line_octets: int = Limits.smtp_line_octets


class SubmissionHandler:
    """aiosmtpd handler hooks: who may send what, then the submission service."""

    def __init__(self, accounts: AccountService, submission: SubmissionService,
                 policy: MSAPolicy) -> None:
        self.accounts = accounts
        self.submission = submission
        self.policy = policy

    async def handle_EHLO(self, server: SubmissionSMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        last = responses.pop()
        latest = datetime.now(UTC) + timedelta(seconds=MAX_HOLD)
        responses += ["250-PIPELINING", "250-ENHANCEDSTATUSCODES",
                      f"250-FUTURERELEASE {MAX_HOLD} {latest.strftime('%Y-%m-%dT%H:%M:%SZ')}"]
        responses.append(last)
        return responses

    async def handle_MAIL(self, server: SubmissionSMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        account = _account(session)
        try:
            self.submission.check_sender(account, address)
            await self.submission.allow_message(account)
        except SubmissionRefused as e:
            return e.reply
        session.send_at = None  # type: ignore[attr-defined]
        for option in mail_options:
            key, _, value = option.partition("=")
            if key.upper() in ("HOLDFOR", "HOLDUNTIL"):
                send_at = release_time(key.upper(), value)
                if send_at is None:
                    return (f"501 5.5.4 Bad {key.upper()} value (at most {MAX_HOLD} seconds"
                            " ahead, RFC 4865)")
                session.send_at = send_at  # type: ignore[attr-defined]
            elif key.upper() == "BODY" and value.upper() not in ("7BIT", "8BITMIME"):
                return f"501 5.5.4 Unsupported BODY type {value}"
            if key.upper() == "SIZE" and value.isdigit() and \
                    int(value) > self.policy.message_size:
                return "552 5.3.4 Message size exceeds fixed maximum message size"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: SubmissionSMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        try:
            await self.submission.check_recipient(len(envelope.rcpt_tos), address)
        except SubmissionRefused as e:
            return e.reply
        if address not in envelope.rcpt_tos:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SubmissionSMTP, session: Session,
                          envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if len(content) > self.policy.message_size:
            return "552 5.3.4 Message too big for this system"
        problem = await asyncio.to_thread(message_problem, content,
                                          self.policy.line_octets)  # 14 MB: off the loop
        if problem:
            return problem
        try:
            done = await self.submission.submit(
                _account(session), envelope.mail_from or "", envelope.rcpt_tos, content,
                send_at=getattr(session, "send_at", None),
                peer=peer_ip(session), helo=session.host_name or "",
                protocol="ESMTPSA" if session.ssl is not None else "ESMTPA")
        except SubmissionRefused as e:
            return e.reply
        # Any other fault (the store or queue down) is answered 451 by EnhancedSMTP.
        return f"250 2.0.0 OK queued as {done.id}"

    async def login(self, server: SubmissionSMTP, user: bytes, password: bytes,
                    authzid: bytes = b"") -> AuthResult:
        """The password check, then the authorization identity (RFC 4616): empty or one of
        the account's own addresses, as IMAP and POP3 require; another user's is refused
        like a wrong password (535 5.7.8), so it tells nothing about the password."""
        assert server.session is not None
        ip = peer_ip(server.session)
        try:
            name, secret = user.decode(), password.decode()
        except UnicodeDecodeError:
            name, secret = "", ""
        account: Account | None = None
        try:
            if name and valid_text(name):
                account = await self.accounts.login(name, secret, ip=ip, protocol="smtp")
            else:
                # A control character (a NUL through AUTH LOGIN) or bytes that are not UTF-8
                # name no account; they must not reach a database that refuses them and turn
                # a wrong login into a 451.
                await self.accounts.failed(ip, name if valid_text(name) else "", "smtp")
        except LoginRefused:
            await server.push("454 4.7.0 Too many authentication failures, try again later")
            asyncio.get_running_loop().call_soon(close, server)
            return AuthResult(success=False, handled=True)
        if account is not None and authzid and \
                not self.submission.may_send_as(account, authzid.decode("utf-8", "replace")):
            log.warning("submission AUTH from %s: %s may not act as another identity",
                        ip, account.address)
            await self.accounts.failed(ip, name, "smtp")
            account = None
        if account is None:
            return AuthResult(success=False, handled=False,
                              message="535 5.7.8 Authentication credentials invalid")
        return AuthResult(success=True, auth_data=account)


_HOLD_PARAMS = ("HOLDFOR", "HOLDUNTIL")
def _account(session: Session) -> Account:
    account = session.auth_data
    assert isinstance(account, Account), "aiosmtpd lets no MAIL through before AUTH"
    return account


class SubmissionSMTP(EnhancedSMTP):
    """aiosmtpd's protocol with asynchronous AUTH and TLS rules per connection."""

    protocol_name = "submission"

    def __init__(self, handler: SubmissionHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.submission = handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if not first:
            return  # the STARTTLS upgrade of a connection already set up
        implicit_tls = transport.get_extra_info("sslcontext") is not None
        peer = transport.get_extra_info("peername")
        loopback = isinstance(peer, tuple) and is_loopback(str(peer[0]))
        if implicit_tls or (loopback and self.submission.policy.allow_plaintext_loopback):
            self._auth_require_tls = False
            self.require_starttls = False

    def _getparams(self, params: Any) -> Any:
        """aiosmtpd refuses MAIL parameters it does not know; FUTURERELEASE's are ours
        (the handler reads them from the MAIL options)."""
        found = super()._getparams(params)
        if found is not None:
            for key in _HOLD_PARAMS:
                found.pop(key, None)
        return found

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        assert isinstance(blob, bytes)
        parts = blob.split(b"\0")
        if len(parts) != 3:
            await self.push("501 5.5.2 Cannot split the PLAIN credentials")
            return AuthResult(success=False, handled=True)
        return await self.submission.login(self, parts[1], parts[2], parts[0])

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            user = await self.challenge_auth("Username:")
        else:
            try:
                user = b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        if user is MISSING:
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        assert isinstance(user, bytes) and isinstance(password, bytes)
        return await self.submission.login(self, user, password)




async def start_submission(handler: SubmissionHandler, host: str, port: int,
                           tls: ssl.SSLContext, *, implicit_tls: bool = False) -> asyncio.Server:
    """Port 587 (STARTTLS required before AUTH) or 465 (`implicit_tls`)."""
    policy = handler.policy

    def factory() -> SubmissionSMTP:
        return SubmissionSMTP(
            handler, hostname=policy.hostname, ident=IDENT,
            data_size_limit=policy.message_size, enable_SMTPUTF8=True, decode_data=False,
            tls_context=None if implicit_tls else tls, require_starttls=not implicit_tls,
            timeout=policy.timeout, auth_required=True, auth_require_tls=True,
            auth_exclude_mechanism=["CRAM-MD5"], line_octets=policy.line_octets,
        )

    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, host=host, port=port, reuse_address=True,
                                    family=socket.AF_UNSPEC,
                                    ssl=tls if implicit_tls else None)
