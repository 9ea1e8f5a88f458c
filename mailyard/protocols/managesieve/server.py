"""ManageSieve (RFC 5804): the filter editors of Thunderbird, Roundcube and `sieve-connect`
upload, check, list and activate an account's Sieve scripts on port 4190.

STARTTLS first; AUTHENTICATE PLAIN only over TLS (the SASL capability lists PLAIN only then);
every failed login is logged by AccountService like the other protocols' (docs/fail2ban.md).
Scripts are checked on PUTSCRIPT and CHECKSCRIPT by the same parser the pipeline runs, and a
refusal names the line (RFC 5804 §2.6). The rules (names, quota, the active script) live in
services/sieve.py; this module speaks the protocol.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailyard.core.sieve import EXTENSIONS, SieveSyntaxError
from mailyard.protocols.live import LIVE
from mailyard.protocols.managesieve.grammar import (
    BadCommand,
    Command,
    TooLarge,
    quote,
    read_command,
)
from mailyard.services.accounts import AccountService, LoginRefused
from mailyard.services.sieve import MAX_NAME, ScriptRefused, SieveService
from mailyard.store.ports import Account, Conflict, NotFound

log = logging.getLogger("mailyard.managesieve")
IMPLEMENTATION = "Mailyard"
PRE_AUTH_LITERAL = 8192
"""The longest literal before AUTHENTICATE succeeds (a PLAIN response is a few hundred
octets): an unauthenticated client holds no more memory than this."""


@dataclass(slots=True)
class ManageSieveServices:
    accounts: AccountService
    sieve: SieveService
    tls: ssl.SSLContext | None
    idle_timeout: float = 600.0


class _No(Exception):
    def __init__(self, text: str, code: str = "") -> None:
        super().__init__(text)
        self.text = text
        self.code = code


Handler = Callable[["Session", Command], Awaitable[None]]


class Session:
    def __init__(self, services: ManageSieveServices, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.services = services
        self.reader = reader
        self.writer = writer
        self.tls = False
        self.account: Account | None = None
        self.closed = False
        peer = writer.get_extra_info("peername")
        self.peer_ip = str(peer[0]) if isinstance(peer, tuple) else "local"
        self.out: list[bytes] = []

    # ------------------------------------------------------------------ output

    def line(self, data: bytes) -> None:
        self.out.append(data + b"\r\n")

    def respond(self, status: str, text: str = "", code: str = "") -> None:
        data = status.encode()
        if code:
            data += b" (" + code.encode() + b")"
        if text:
            data += b" " + quote(text)
        self.line(data)

    async def flush(self) -> None:
        if self.out:
            self.writer.write(b"".join(self.out))
            self.out.clear()
        await self.writer.drain()

    def capabilities(self) -> None:
        """RFC 5804 §1.7; SASL lists PLAIN only where it may be used (under TLS)."""
        self.line(b'"IMPLEMENTATION" ' + quote(IMPLEMENTATION))
        self.line(b'"SASL" ' + quote("PLAIN" if self.tls and self.account is None else ""))
        self.line(b'"SIEVE" ' + quote(" ".join(EXTENSIONS)))
        if not self.tls and self.services.tls is not None:
            self.line(b'"STARTTLS"')
        self.line(b'"MAXREDIRECTS" "5"')
        self.line(b'"VERSION" "1.0"')

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        self.capabilities()
        self.respond("OK", "Mailyard ManageSieve ready")
        limit = self.services.sieve.limits.max_script_bytes
        try:
            await self.flush()
            while not self.closed:
                try:
                    # Before AUTHENTICATE only a SASL response can need a literal
                    cmd = await asyncio.wait_for(
                        read_command(self.reader, max_literal=limit + 1024
                                     if self.account is not None else PRE_AUTH_LITERAL),
                        self.services.idle_timeout)
                except TimeoutError:
                    self.respond("BYE", "Idle too long")
                    break
                except TooLarge as e:
                    self.respond("BYE", str(e), "QUOTA/MAXSIZE")
                    break
                except BadCommand as e:
                    self.respond("NO", str(e))
                    await self.flush()
                    continue
                if cmd is None:
                    break
                await self.dispatch(cmd)
                await self.flush()
            await self.flush()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            self.writer.close()

    async def dispatch(self, cmd: Command) -> None:
        handler = HANDLERS.get(cmd.name)
        if handler is None:
            self.respond("NO", f"Unknown command {cmd.name[:30]}")
            return
        if cmd.name not in UNAUTHENTICATED and self.account is None:
            self.respond("NO", "Authenticate first")
            return
        try:
            await handler(self, cmd)
        except _No as e:
            self.respond("NO", e.text, e.code)
        except Exception:
            log.exception("ManageSieve %s failed", cmd.name)
            self.respond("NO", "Internal error", "TRYLATER")

    def strings(self, cmd: Command, count: int) -> list[str]:
        if len(cmd.args) != count or not all(isinstance(a, str) for a in cmd.args):
            raise _No(f"{cmd.name} takes {count} string argument{'s' if count != 1 else ''}")
        return [str(a) for a in cmd.args]

    @property
    def me(self) -> Account:
        assert self.account is not None
        return self.account


HANDLERS: dict[str, Handler] = {}
UNAUTHENTICATED = {"CAPABILITY", "STARTTLS", "AUTHENTICATE", "LOGOUT", "NOOP"}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn
    return register


@command("CAPABILITY")
async def capability(s: Session, cmd: Command) -> None:
    s.capabilities()
    s.respond("OK")


@command("NOOP")
async def noop(s: Session, cmd: Command) -> None:
    if cmd.args and isinstance(cmd.args[0], str):
        s.line(b"OK (TAG " + quote(cmd.args[0]) + b') "Done"')
        return
    s.respond("OK", "Done")


@command("LOGOUT")
async def logout(s: Session, cmd: Command) -> None:
    s.respond("OK", "Bye")
    s.closed = True


@command("STARTTLS")
async def starttls(s: Session, cmd: Command) -> None:
    if s.tls or s.services.tls is None:
        raise _No("TLS is not available" if not s.tls else "TLS is already on")
    if s.account is not None:
        raise _No("STARTTLS before AUTHENTICATE")
    s.respond("OK", "Begin TLS negotiation")
    await s.flush()
    # What the client sent after STARTTLS in plaintext is thrown away, never run as if it
    # came over TLS (a man in the middle's injected AUTHENTICATE: CVE-2011-0411's class).
    s.reader._buffer.clear()  # type: ignore[attr-defined]
    try:
        await s.writer.start_tls(s.services.tls)
    except (ssl.SSLError, OSError, TimeoutError, RuntimeError):
        s.closed = True
        return
    s.tls = True
    s.capabilities()  # RFC 5804 §2.2: the capabilities again, then OK
    s.respond("OK", "TLS active")


@command("AUTHENTICATE")
async def authenticate(s: Session, cmd: Command) -> None:
    if s.account is not None:
        raise _No("Already authenticated")
    if not cmd.args or not isinstance(cmd.args[0], str):
        raise _No("AUTHENTICATE takes a mechanism name")
    if cmd.args[0].upper() != "PLAIN":
        raise _No(f"Unsupported mechanism {cmd.args[0][:20]}")
    if not s.tls:
        raise _No("Authentication needs TLS: STARTTLS first", "ENCRYPT-NEEDED")
    if len(cmd.args) > 1:
        response = str(cmd.args[1])
    else:
        s.line(b'""')  # RFC 5804 §2.1: an empty challenge
        await s.flush()
        again = await read_command_string(s)
        if again is None:
            s.closed = True
            return
        response = again
    if response.strip() == "*":
        raise _No("Authentication cancelled")
    try:
        decoded = binascii.a2b_base64(response.strip(), strict_mode=True)
    except (binascii.Error, ValueError):
        raise _No("Invalid base64 in the SASL response") from None
    fields = decoded.split(b"\0")
    if len(fields) != 3:
        raise _No("Malformed PLAIN response")
    authzid, name, password = (f.decode("utf-8", "replace") for f in fields)
    accounts = s.services.accounts
    if authzid and authzid.lower() != name.lower():
        await accounts.failed(s.peer_ip, name, "managesieve")
        raise _No("Authorization identity must be the user's own", "AUTH-TOO-WEAK")
    try:
        account = await accounts.login(name, password, ip=s.peer_ip, protocol="managesieve")
    except LoginRefused:
        s.respond("BYE", "Too many authentication failures; try again later", "TRYLATER")
        s.closed = True
        return
    if account is None:
        raise _No("Invalid credentials")
    s.account = account
    s.respond("OK", "Logged in")


async def read_command_string(s: Session) -> str | None:
    """The client's SASL response: one string (quoted or literal) on a line of its own, at
    most PRE_AUTH_LITERAL octets (None ends the session: too long, or the stream ended)."""
    try:
        line = await s.reader.readline()
    except ValueError:  # longer than the reader's limit
        return None
    if not line or len(line) > PRE_AUTH_LITERAL:
        return None
    text = line.rstrip(b"\r\n")
    if text.startswith(b"{") and text.endswith((b"}", b"+}")):
        digits = text.strip(b"{}+")
        if not digits.isdigit() or len(digits) > 6 or int(digits) > PRE_AUTH_LITERAL:
            return None
        try:
            data = await s.reader.readexactly(int(digits))
            await s.reader.readline()
        except (ValueError, asyncio.IncompleteReadError):
            return None
        return data.decode("ascii", "replace")
    return text.strip(b'"').decode("ascii", "replace")


@command("UNAUTHENTICATE")
async def unauthenticate(s: Session, cmd: Command) -> None:
    s.account = None
    s.respond("OK")


@command("HAVESPACE")
async def havespace(s: Session, cmd: Command) -> None:
    if len(cmd.args) != 2 or not isinstance(cmd.args[0], str) \
            or not isinstance(cmd.args[1], int):
        raise _No("HAVESPACE takes a script name and a size")
    try:
        await s.services.sieve.have_space(s.me, cmd.args[0], cmd.args[1])
    except ScriptRefused as e:
        raise _No(str(e), e.code) from None
    s.respond("OK")


def _syntax(e: SieveSyntaxError) -> _No:
    return _No(str(e))


@command("PUTSCRIPT")
async def putscript(s: Session, cmd: Command) -> None:
    name, content = s.strings(cmd, 2)
    try:
        await s.services.sieve.put(s.me, name, content)
    except SieveSyntaxError as e:
        raise _syntax(e) from None
    except ScriptRefused as e:
        raise _No(str(e), e.code) from None
    s.respond("OK")


@command("CHECKSCRIPT")
async def checkscript(s: Session, cmd: Command) -> None:
    [content] = s.strings(cmd, 1)
    try:
        await s.services.sieve.validate(content)  # the parse runs off the event loop
    except SieveSyntaxError as e:
        raise _syntax(e) from None
    except ScriptRefused as e:
        raise _No(str(e), e.code) from None
    s.respond("OK")


@command("LISTSCRIPTS")
async def listscripts(s: Session, cmd: Command) -> None:
    for script in await s.services.sieve.list(s.me):
        s.line(quote(script.name) + (b" ACTIVE" if script.active else b""))
    s.respond("OK")


@command("SETACTIVE")
async def setactive(s: Session, cmd: Command) -> None:
    [name] = s.strings(cmd, 1)
    try:
        await s.services.sieve.activate(s.me, name)
    except NotFound:
        raise _No(f"There is no script {name[:MAX_NAME]!r}", "NONEXISTENT") from None
    s.respond("OK")


@command("GETSCRIPT")
async def getscript(s: Session, cmd: Command) -> None:
    [name] = s.strings(cmd, 1)
    try:
        script = await s.services.sieve.get(s.me, name)
    except NotFound:
        raise _No(f"There is no script {name[:MAX_NAME]!r}", "NONEXISTENT") from None
    data = script.content.encode()
    s.line(b"{%d}\r\n" % len(data) + data)
    s.respond("OK")


@command("DELETESCRIPT")
async def deletescript(s: Session, cmd: Command) -> None:
    [name] = s.strings(cmd, 1)
    try:
        await s.services.sieve.delete(s.me, name)
    except NotFound:
        raise _No(f"There is no script {name[:MAX_NAME]!r}", "NONEXISTENT") from None
    except ScriptRefused as e:
        raise _No(str(e), e.code) from None
    s.respond("OK")


@command("RENAMESCRIPT")
async def renamescript(s: Session, cmd: Command) -> None:
    old, new = s.strings(cmd, 2)
    try:
        await s.services.sieve.rename(s.me, old, new)
    except NotFound:
        raise _No(f"There is no script {old[:MAX_NAME]!r}", "NONEXISTENT") from None
    except Conflict:
        raise _No(f"A script {new[:MAX_NAME]!r} exists", "ALREADYEXISTS") from None
    except ScriptRefused as e:
        raise _No(str(e), e.code) from None
    s.respond("OK")


async def start_managesieve(services: ManageSieveServices, host: str, port: int
                            ) -> asyncio.Server:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(services, reader, writer)

        async def goodbye() -> None:
            session.respond("BYE", "Server shutting down", "TRYLATER")
            await session.flush()
            writer.close()

        with LIVE.session("managesieve", goodbye):
            await session.run()

    return await asyncio.start_server(client, host, port, limit=16384, reuse_address=True)
