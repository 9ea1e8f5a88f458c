"""One POP3 connection: states, dispatch, responses (RFC 1939 §3-§6, RFC 2449 §8).

The session holds what RFC 1939 makes per-connection: the state, the account and the maildrop
snapshot. Mail goes through the mailbox service, credentials through the account service; the
command handlers live in `cmd_auth.py` (AUTHORIZATION) and `cmd_maildrop.py` (TRANSACTION) and
register in `COMMANDS` with the states they are valid in.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mailyard import metrics
from mailyard.core.netaddr import is_loopback
from mailyard.core.ratelimit import Hold, Ledger, LocalLedger
from mailyard.protocols.imap.reader import CommandReader, CommandTooLong
from mailyard.protocols.pop3.grammar import Command, ParseError, parse_command
from mailyard.protocols.pop3.maildrop import Maildrop
from mailyard.services.accounts import AccountService
from mailyard.services.mailbox import MailboxService
from mailyard.store.ports import Account

log = logging.getLogger("mailyard.pop3")


class State(enum.Enum):
    AUTHORIZATION = 1
    TRANSACTION = 2
    CLOSED = 3
    """After QUIT (and UPDATE), or when the server gives up on the client."""


class Err(Exception):
    """Answer the command with -ERR, with an RFC 2449 response code when there is one."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.code = code


@dataclass(frozen=True)
class POP3Policy:
    hostname: str
    dele: str = "trash"
    max_line: int = 1024
    idle_timeout: float = 600.0
    allow_plaintext_loopback: bool = False
    connections_per_ip: int = 50


@dataclass
class POP3Services:
    accounts: AccountService
    mailbox: MailboxService
    policy: POP3Policy
    tls: ssl.SSLContext | None
    ledger: Ledger = field(default_factory=LocalLedger)
    """Where the per-IP connection counts and the maildrop locks live: this process, or
    Redis for every node of a cluster (a second session of a maildrop on another node is
    then refused too)."""


Handler = Callable[["Session", Command], Awaitable[None]]

COMMANDS: dict[str, dict[State, Handler]] = {}
"""Handlers by keyword and state: one keyword may mean different things in different states
(QUIT ends the session in AUTHORIZATION but enters UPDATE in TRANSACTION, RFC 1939 §5-§6)."""
AUTHORIZATION = frozenset({State.AUTHORIZATION})
TRANSACTION = frozenset({State.TRANSACTION})
ANY = AUTHORIZATION | TRANSACTION


def command(*names: str, states: frozenset[State]) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            handlers = COMMANDS.setdefault(name, {})
            for state in states:
                handlers[state] = fn
        return fn
    return register


class Session:
    def __init__(self, services: POP3Services, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, implicit_tls: bool) -> None:
        self.services = services
        self.mailbox = services.mailbox
        self.policy = services.policy
        self.stream = reader
        self.writer = writer
        self.state = State.AUTHORIZATION
        self.tls = implicit_tls
        self.user: str | None = None
        """The name given by USER, waiting for PASS."""
        self.account: Account | None = None
        self.maildrop: Maildrop | None = None
        self.lock: Hold | None = None
        """The maildrop's exclusive-access lock, held from PASS to the end."""
        peer = writer.get_extra_info("peername")
        self.peer_ip = str(peer[0]) if isinstance(peer, tuple) else "local"
        self.reader = CommandReader(reader, max_line=services.policy.max_line,
                                    max_literal=0, continuation=self._no_continuation)
        self._out: list[bytes] = []

    @staticmethod
    async def _no_continuation(line: bytes) -> None:
        """POP3 has no literals; read_line never asks for a continuation."""

    # ------------------------------------------------------------------ output

    def ok(self, text: str = "") -> None:
        self._out.append(b"+OK" + (b" " + text.encode() if text else b"") + b"\r\n")

    def err(self, text: str, code: str | None = None) -> None:
        code_part = f"[{code}] " if code else ""
        self._out.append(f"-ERR {code_part}{text}\r\n".encode())

    def raw(self, data: bytes) -> None:
        self._out.append(data)

    async def flush(self) -> None:
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()
        await self.writer.drain()

    # ------------------------------------------------------------------ facts

    @property
    def drop(self) -> Maildrop:
        assert self.maildrop is not None
        return self.maildrop

    @property
    def plaintext_allowed(self) -> bool:
        """USER/PASS and AUTH PLAIN only under TLS (RFC 2595 §2.1), or from loopback when the
        config says so (tests, local tools), as IMAP's LOGINDISABLED does."""
        return self.tls or (self.policy.allow_plaintext_loopback
                            and is_loopback(self.peer_ip))

    def capabilities(self) -> list[str]:
        """RFC 2449 §6: what CAPA lists in the current state."""
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state is State.AUTHORIZATION:
            if self.plaintext_allowed:
                caps += ["USER", "SASL PLAIN"]
            if not self.tls and self.services.tls is not None:
                caps.append("STLS")
        caps.append("IMPLEMENTATION Mailyard")
        return caps

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        services = self.services
        connection = await services.ledger.hold(f"pop3-conn:{self.peer_ip}",
                                                services.policy.connections_per_ip)
        if connection is None:
            self.err("Too many connections from your address", "SYS/TEMP")
            await self.flush()
            self.writer.close()
            return
        try:
            self.ok(f"{self.policy.hostname} Mailyard POP3 ready")
            await self.flush()
            while self.state is not State.CLOSED:
                try:
                    line = await asyncio.wait_for(self.reader.read_line(),
                                                  self.policy.idle_timeout)
                except TimeoutError:
                    # RFC 1939 §3: the autologout timer closes without UPDATE or response.
                    break
                except CommandTooLong:
                    self.err("Line too long")
                    await self.flush()
                    continue
                if line is None:
                    break
                await self.execute(line)
                await self.flush()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went away, or broke its TLS session: no one to answer
        except RuntimeError:
            if not self.writer.transport.is_closing():
                raise
            # uvloop refuses any operation on a transport the peer has already closed
        finally:
            await services.ledger.release(connection)
            if self.lock is not None:
                await services.ledger.release(self.lock)
            with contextlib.suppress(Exception):
                await self.flush()
                self.writer.close()

    async def execute(self, line: bytes) -> None:
        try:
            cmd = parse_command(line)
        except ParseError as e:
            self.err(str(e))
            return
        handlers = COMMANDS.get(cmd.keyword)
        if handlers is None:
            self.err(f"Unknown command {cmd.keyword[:10]}")
            return
        handler = handlers.get(self.state)
        if handler is None:
            self.err(f"{cmd.keyword} is not valid in this state")
            return
        started = time.perf_counter()
        try:
            await handler(self, cmd)
        except ParseError as e:
            self.err(str(e))
        except Err as e:
            self.err(str(e), e.code)
        except (ConnectionError, asyncio.IncompleteReadError):
            raise
        except Exception:
            log.exception("POP3 %s failed", cmd.keyword)
            self.err("Internal error; the failure was logged", "SYS/TEMP")
        metrics.command("pop3", cmd.keyword, time.perf_counter() - started)

    # ------------------------------------------------------------------ transitions

    async def start_tls(self) -> None:
        """Send +OK, then switch to TLS (RFC 2595 §4). Reading stops first, so the ClientHello
        reaches the handshake, and whatever the client pipelined in plain text before it is
        thrown away: a command injected there must not run as if it came over TLS."""
        assert self.services.tls is not None
        self.writer.transport.pause_reading()  # type: ignore[attr-defined]
        buffered = getattr(self.stream, "_buffer", None)
        if isinstance(buffered, bytearray):
            buffered.clear()
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()
        await self.writer.start_tls(self.services.tls)
        self.tls = True

    async def enter_transaction(self, account: Account) -> None:
        """Lock the maildrop and take its snapshot (RFC 1939 §4: "acquire an exclusive-access
        lock on the maildrop"), or answer -ERR [IN-USE] and stay in AUTHORIZATION."""
        lock = await self.services.ledger.hold(f"pop3-maildrop:{account.id}", 1)
        if lock is None:
            raise Err("Maildrop already locked by another session", "IN-USE")
        try:
            drop = await Maildrop.load(self.mailbox, account)
        except Exception:
            await self.services.ledger.release(lock)
            log.exception("POP3: cannot open the maildrop of %s", account.address)
            raise Err("Cannot open the maildrop now", "SYS/TEMP") from None
        self.account, self.maildrop, self.lock = account, drop, lock
        self.state = State.TRANSACTION
        self.ok(f"Maildrop has {drop.count} messages ({drop.octets} octets)")


async def serve_connection(services: POP3Services, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter, *, implicit_tls: bool) -> None:
    await Session(services, reader, writer, implicit_tls=implicit_tls).run()
