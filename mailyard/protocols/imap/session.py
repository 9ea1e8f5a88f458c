"""One IMAP connection: states, dispatch, responses (RFC 3501 §3, RFC 9051 §3).

The session owns only what the RFC makes per-connection: its state, the account, the selected
mailbox's view (`Selected`), enabled extensions. Everything about mail goes through the mailbox
service. Commands live in one module per group (`cmd_*.py`) and register themselves in
`COMMANDS` with the states they are valid in.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import enum
import logging
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mailyard import metrics
from mailyard.core.netaddr import is_loopback
from mailyard.core.ratelimit import Hold, Ledger, LocalLedger
from mailyard.protocols.imap.compress import DeflateWriter, Inflater
from mailyard.protocols.imap.grammar import (
    BadCharset,
    BadMailboxName,
    Command,
    ParseError,
    parse_command,
)
from mailyard.protocols.imap.rawcache import RawCache
from mailyard.protocols.imap.reader import CommandReader, CommandTooLong, LiteralTooBig
from mailyard.protocols.imap.selected import Selected
from mailyard.protocols.imap.views import AccountWatch, ViewHub
from mailyard.protocols.live import LIVE
from mailyard.services.accounts import AccountService
from mailyard.services.mailbox import MailboxService
from mailyard.services.search import SearchService
from mailyard.store.ports import Account, EventBus, NotFound, QueryTimeout

if TYPE_CHECKING:
    from mailyard.protocols.imap.cmd_notify import Notifier

log = logging.getLogger("mailyard.imap")


class State(enum.Enum):
    NOT_AUTHENTICATED = 1
    AUTHENTICATED = 2
    SELECTED = 3
    LOGOUT = 4


class No(Exception):
    """Answer the command with a tagged NO (and an optional response code)."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.code = code


class Bad(Exception):
    """Answer the command with a tagged BAD."""


@dataclass(frozen=True)
class IMAPPolicy:
    hostname: str
    max_line: int = 65_536
    max_literal: int = 36_700_160
    idle_timeout: float = 1800.0
    allow_plaintext_loopback: bool = False
    connections_per_ip: int = 50
    connections_per_user: int = 50


@dataclass
class IMAPServices:
    accounts: AccountService
    mailbox: MailboxService
    search: SearchService
    bus: EventBus
    policy: IMAPPolicy
    tls: ssl.SSLContext | None
    ledger: Ledger = field(default_factory=LocalLedger)
    """Where the per-IP and per-user connection counts live: this process's, or the
    cluster's (Redis), so that a client cannot open the limit on every node."""
    views: ViewHub = field(init=False)
    raw_cache: RawCache = field(default_factory=RawCache)
    """Octets of the messages fetched lately (rawcache.py), shared by the sessions; its size
    is `[imap] fetch_cache`."""
    sessions: set[Session] = field(init=False)
    """The open sessions, for the idle-timeout sweep."""
    max_command: int = field(init=False)
    """What CommandReader allows a whole command (one int for all sessions, not one each)."""
    _sweeper: asyncio.Future[None] | None = field(init=False, default=None)
    activity: int = field(init=False, default=0)
    """Commands started and sessions opened or closed so far (the sweep trims the heap once
    this stops moving)."""

    def __post_init__(self) -> None:
        self.views = ViewHub(self.mailbox, self.bus)
        self.sessions = set()
        LIVE.track(self.sessions)  # the server's goodbye reaches every session, hibernated too
        self.max_command = self.policy.max_literal + 64 * self.policy.max_line

    def enrol(self, session: Session) -> None:
        """Count the session in the idle-timeout sweep: one task for every session, where a
        timer per session (and per command) would cost memory and time."""
        self.sessions.add(session)
        self.activity += 1
        LIVE.counted("imap", True)
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep())

    async def _sweep(self) -> None:
        interval = max(0.05, min(5.0, self.policy.idle_timeout / 4))
        trimmed, opened = time.monotonic(), len(self.sessions)
        trimmed_at = last = self.activity
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for session in [s for s in self.sessions if s.deadline < now]:
                session.expire()
            # Trim the heap every TRIM_EVERY seconds while sessions come and go, and once
            # whenever the listener falls quiet after some work (no command, no session
            # opened or closed for a whole interval): a burst of logins leaves argon2's
            # buffers, a burst of APPENDs their parsing, and memory at rest gets them back.
            activity, count = self.activity, len(self.sessions)
            churning = count != opened and now - trimmed > TRIM_EVERY
            settled = activity == last and activity != trimmed_at
            if churning or settled:
                trimmed, opened, trimmed_at = now, count, activity
                _trim_heap()
            last = activity


TRIM_EVERY = 10.0
"""Seconds between heap trims while sessions keep coming and going."""


def _trim_heap() -> None:
    """Give freed heap memory back to the system (glibc malloc_trim). Every LOGIN hashes with
    argon2 (megabytes allocated and freed), every APPEND parses a message: glibc keeps those
    pages resident, and an IMAP listener holding thousands of idle sessions measured 30 MiB
    more for it after a burst. A no-op where there is no glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


Handler = Callable[["Session", Command], Awaitable[None]]


@dataclass(frozen=True)
class CommandSpec:
    handler: Handler
    states: frozenset[State]


COMMANDS: dict[str, CommandSpec] = {}

ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})


def command(*names: str, states: frozenset[State]) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            COMMANDS[name] = CommandSpec(fn, states)
        return fn
    return register


BASE_CAPABILITIES = [
    "IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE",
    "UIDPLUS", "MOVE", "UNSELECT", "CHILDREN", "SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS",
    "STATUS=SIZE", "ESEARCH", "OBJECTID", "CONDSTORE", "QRESYNC", "QUOTA",
    "QUOTA=RES-STORAGE", "BINARY", "CREATE-SPECIAL-USE", "SORT", "SORT=DISPLAY",
    "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT", "X-GM-EXT-1", "SEARCHRES", "ESORT",
    "CONTEXT=SORT", "CONTEXT=SEARCH", "NOTIFY", "PARTIAL",
    "UTF8=ACCEPT", "MULTIAPPEND", "CATENATE", "COMPRESS=DEFLATE",
]


async def _no_continuation(line: bytes) -> None:
    raise ConnectionError("the session is hibernated")


_PARKED_READER = CommandReader(None, continuation=_no_continuation)  # type: ignore[arg-type]
"""What a hibernated session points `reader` at (it reads nothing until it wakes up, then
gets a reader of its own on the new stream): one for all of them."""

class _ParkedOutput(list[bytes]):
    """The output buffer of every hibernated session (one, shared): nothing may be queued
    there, since no task would send it (what a hibernated session says, it writes)."""

    def append(self, data: bytes) -> None:
        raise RuntimeError("a hibernated IMAP session queued output")


_PARKED_OUT = _ParkedOutput()

_NO_EXTENSIONS: set[str] = set()
"""What a hibernated session with no extension enabled points `enabled` at: one empty set for
all of them instead of one each (never changed; a session waking up gets its own again)."""

IDLE_DONE = b"OK IDLE terminated\r\n"


class Session:
    __slots__ = (
        "_out",
        "account",
        "deadline",
        "enabled",
        "idle_tag",
        "idling",
        "inflater",
        "ip_hold",
        "mailbox",
        "notify",
        "peer_ip",
        "reader",
        "saved_uids",
        "search",
        "selected",
        "services",
        "state",
        "tls",
        "user_hold",
        "watch",
        "writer",
    )

    def __init__(self, services: IMAPServices, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, implicit_tls: bool) -> None:
        self.services = services
        self.mailbox = services.mailbox
        self.search = services.search
        self.writer: asyncio.StreamWriter | DeflateWriter | Hibernation = writer
        """A Hibernation while the session rests in IDLE: it writes to the transport."""
        self.inflater: Inflater | None = None
        """Set once COMPRESS DEFLATE is active (RFC 4978)."""
        self.state = State.NOT_AUTHENTICATED
        self.account: Account | None = None
        self.selected: Selected | None = None
        self.tls = implicit_tls
        self.enabled: set[str] = set()
        self.saved_uids: Sequence[int] = ()
        """SEARCHRES: the UIDs of the last SEARCH RETURN (SAVE), named "$"."""
        self.watch: AccountWatch | None = None
        """The account's events, shared with its other sessions (set at login)."""
        peer = writer.get_extra_info("peername")
        # Interned: the sessions from one address (a NAT, a webmail host) share the string.
        self.peer_ip = sys.intern(str(peer[0])) if isinstance(peer, tuple) else "local"
        self.reader = self._command_reader(reader)
        self._out: list[bytes] = []
        self.deadline = float("inf")
        """When the idle timeout ends this session (monotonic; inf while a command runs)."""
        self.idling = False
        self.idle_tag: str | None = None
        """The tag of the IDLE command in progress (its continuation sent), else None."""
        self.notify: Notifier | None = None
        """What NOTIFY SET asked for (RFC 5465, cmd_notify), else None."""
        self.ip_hold: Hold | None = None
        """The connection's place under connections_per_ip (None: no limit, or given back)."""
        self.user_hold: Hold | None = None
        """Its place under connections_per_user, taken at login (cmd_any)."""

    def _command_reader(self, stream: asyncio.StreamReader) -> CommandReader:
        policy = self.services.policy
        return CommandReader(stream, max_line=policy.max_line, max_literal=policy.max_literal,
                             max_command=self.services.max_command,
                             pre_auth=self.state is State.NOT_AUTHENTICATED,
                             continuation=self._continuation)

    # ------------------------------------------------------------------ output

    def untagged(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        self._out.append(b"* " + data + (b"" if data.endswith(b"\r\n") else b"\r\n"))

    def raw(self, data: bytes) -> None:
        self._out.append(data)

    async def flush(self) -> None:
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()
        await self.writer.drain()

    async def _continuation(self, line: bytes) -> None:
        await self.flush()
        self.writer.write(line)
        await self.writer.drain()

    # ------------------------------------------------------------------ facts

    @property
    def user(self) -> Account:
        assert self.account is not None
        return self.account

    @property
    def sel(self) -> Selected:
        if self.selected is None:
            raise Bad("no mailbox selected")
        return self.selected

    @property
    def utf8(self) -> bool:
        """Mailbox names and quoted strings are UTF-8 (RFC 6855 UTF8=ACCEPT, and IMAP4rev2's
        own rule, RFC 9051 §5.1) rather than modified UTF-7 and 7-bit."""
        return "UTF8=ACCEPT" in self.enabled or "IMAP4REV2" in self.enabled

    @property
    def plaintext_allowed(self) -> bool:
        return self.tls or (self.services.policy.allow_plaintext_loopback
                            and is_loopback(self.peer_ip))

    def capabilities(self) -> list[str]:
        caps = list(BASE_CAPABILITIES)
        if self.state is State.NOT_AUTHENTICATED:
            if not self.tls and self.services.tls is not None:
                caps.append("STARTTLS")
            if self.plaintext_allowed:
                caps.append("AUTH=PLAIN")
            else:
                caps.append("LOGINDISABLED")
        caps.append(f"APPENDLIMIT={self.services.policy.max_literal}")
        return caps

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        services = self.services
        limit = services.policy.connections_per_ip
        if limit > 0:  # no limit, no place to count (nor a Redis round trip per connection)
            self.ip_hold = await services.ledger.hold(f"imap-conn:{self.peer_ip}", limit)
            if self.ip_hold is None:
                self.writer.write(
                    b"* BYE [UNAVAILABLE] Too many connections from your address\r\n")
                await self.writer.drain()
                self.writer.close()
                return
        services.enrol(self)
        caps = " ".join(self.capabilities())
        self.untagged(f"OK [CAPABILITY {caps}] {services.policy.hostname} Mailyard ready")
        await self._serve()

    async def resume(self) -> None:
        """Go on after a hibernated IDLE woke up (`Connection` gave the session new streams):
        read the DONE, answer the IDLE, and serve the commands that follow."""
        await self._serve(idling=True)

    async def _serve(self, *, idling: bool = False) -> None:
        timeout = self.services.policy.idle_timeout
        hibernated = False
        try:
            if idling:
                await self._idle_wait()
            await self.flush()
            while self.state is not State.LOGOUT:
                self.deadline = time.monotonic() + timeout
                if self.notify is not None:  # RFC 5465: what waited for the command
                    self.notify.between_commands()
                try:
                    data = await self.reader.read_command()
                except CommandTooLong as e:
                    self.raw(f"{e.tag or '*'} BAD [TOOBIG] Command line too long\r\n".encode())
                    await self.flush()
                    continue
                except LiteralTooBig as e:
                    status = "BAD" if e.close else "NO"  # BAD: RFC 7888 §4
                    self.raw(f"{e.tag or '*'} {status} [TOOBIG] Literal too big\r\n".encode())
                    if e.close:
                        self.untagged("BYE Too much data")
                        break
                    await self.flush()
                    continue
                finally:
                    self.deadline = float("inf")
                if data is None:
                    break
                await self.execute(data)
                if self.idle_tag is not None:  # IDLE began: its continuation went out
                    if self._hibernate():
                        hibernated = True
                        return
                    await self._idle_wait()
                await self.flush()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went away, or broke its TLS session: no one to answer
        except RuntimeError:
            if not self.writer.transport.is_closing():
                raise
            # uvloop refuses any operation on a transport the peer has already closed
        finally:
            if not hibernated:
                self._release()
                try:
                    await self.give_back()  # before the close: a client that saw it can retry
                finally:
                    with contextlib.suppress(Exception):
                        await self.flush()
                        self.writer.close()

    def _release(self) -> None:
        """The connection is over: give back what the session held (once)."""
        services = self.services
        if self not in services.sessions:
            return
        services.sessions.discard(self)
        services.activity += 1
        LIVE.counted("imap", False)
        self._idle_end()
        if self.notify is not None:
            self.notify.close()
            self.notify = None
        self.select(None)
        if self.watch is not None:
            services.views.detach(self.watch)
            self.watch = None
        if self.inflater is not None:
            self.inflater.close()

    async def give_back(self) -> None:
        """Release the connection's places in the ledger (once): the per-IP one taken at the
        greeting, the per-user one at login. Apart from `_release` because a shared ledger
        answers over the network, and a hibernated session has no task to wait in."""
        holds = [h for h in (self.ip_hold, self.user_hold) if h is not None]
        self.ip_hold = self.user_hold = None
        for hold in holds:
            await self.services.ledger.release(hold)

    async def execute(self, data: bytes) -> None:
        try:
            cmd = parse_command(data)
        except ParseError as e:
            self.untagged(f"BAD {e}")
            return
        if self.utf8:
            cmd = dataclasses.replace(cmd, utf8=True)
        spec = COMMANDS.get(cmd.name)
        if spec is None:
            self.tagged(cmd, "BAD", f"Unknown command {cmd.name[:40]}")
            return
        if self.state not in spec.states:
            self.tagged(cmd, "BAD", f"{cmd.name} is not valid in this state")
            return
        self.services.activity += 1
        started = time.perf_counter()
        try:
            await spec.handler(self, cmd)
        except BadCharset:
            self.tagged(cmd, "NO", "Unsupported charset", "BADCHARSET (UTF-8 US-ASCII)")
        except BadMailboxName as e:  # well-formed, names no mailbox there can be: NO
            self.tagged(cmd, "NO", str(e), "CANNOT")
        except ParseError as e:
            self.tagged(cmd, "BAD", str(e))
        except Bad as e:
            self.tagged(cmd, "BAD", str(e))
        except No as e:
            self.tagged(cmd, "NO", str(e), e.code)
        except QueryTimeout:  # RFC 5530 LIMIT: the server's budget for one command is spent
            self.tagged(cmd, "NO", "The search took too long; narrow it down", "LIMIT")
        except NotFound:
            # A mailbox or message this command looked up was deleted or expunged by another
            # session before its write: the race every multi-session server has, the
            # client's to retry after it learns the new state (RFC 5530 NONEXISTENT).
            self.tagged(cmd, "NO", "Another session removed the mailbox or message meanwhile",
                        "NONEXISTENT")
        except Exception as e:
            if self.client_gone(e):
                # IDLE's continuation, FETCH's batches, AUTHENTICATE's challenge: a command
                # that writes while it runs finds the client gone. Not the server's fault:
                # one INFO line, and _serve ends the session as for any dropped connection.
                log.info("IMAP %s: the client went away (%s)", cmd.name, type(e).__name__)
                raise
            log.exception("IMAP %s failed", cmd.name)
            self.tagged(cmd, "NO", "Internal error; the failure was logged", "SERVERBUG")
        metrics.command("imap", cmd.name, time.perf_counter() - started)

    def client_gone(self, error: BaseException) -> bool:
        """`error` is the client's connection ending (a reset, an EOF mid-read, a broken TLS
        record, uvloop refusing a closed transport), not a fault of the server's: the kind of
        error a socket gives, on a connection that is closing. A ConnectionRefusedError from a
        database, with the client still there, is the server's and stays an error."""
        if not isinstance(error, (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError,
                                  RuntimeError)):
            return False
        with contextlib.suppress(Exception):
            return bool(self.writer.transport.is_closing())
        return True  # no transport left to ask: it is gone

    def tagged(self, cmd: Command, status: str, text: str, code: str | None = None) -> None:
        code_part = f"[{code}] " if code else ""
        self.raw(f"{cmd.tag} {status} {code_part}{text}\r\n".encode())

    def ok(self, cmd: Command, text: str = "done", code: str | None = None) -> None:
        self.tagged(cmd, "OK", f"{cmd.name} {text}" if text == "done" else text, code)

    # ------------------------------------------------------------------ IDLE

    async def idle(self, cmd: Command) -> None:
        """RFC 2177 IDLE, up to the "+" continuation. The shared view writes each change to
        the socket itself (push_updates), so what is left is waiting for DONE: `_serve` then
        either hibernates the session (its task ends and a `Hibernation` holds the transport)
        or, where that is not possible (TLS, COMPRESS, the client already sent more), waits
        in this task (`_idle_wait`)."""
        cmd.tokenizer().end()
        await self.report_updates()
        await self._continuation(b"+ idling\r\n")
        sel = self.selected
        view = sel.view if sel is not None else None
        if view is not None:
            view.idlers[self] = None
            if view.stale():  # changed while the continuation went out
                view.refresh_soon()
        self.idling = True
        self.idle_tag = sys.intern(cmd.tag)  # clients reuse tags: one string for many sessions
        self.deadline = time.monotonic() + self.services.policy.idle_timeout  # see expire

    def _idle_end(self) -> None:
        self.idling = False
        self.idle_tag = None
        self.deadline = float("inf")
        sel = self.selected
        if sel is not None and sel.view is not None:
            sel.view.idlers.pop(self, None)

    async def _idle_wait(self) -> None:
        """Read the line that ends the IDLE and answer the IDLE command."""
        tag = self.idle_tag
        try:
            line = await self.reader.read_line()
        except CommandTooLong:
            line = b""
        finally:
            self._idle_end()
        if self.state is State.LOGOUT:
            return  # expired: BYE said
        if line is None:
            self.state = State.LOGOUT
            return
        if line.strip().upper() != b"DONE":
            self.raw(f"{tag} BAD Expected DONE\r\n".encode())
        else:
            self.raw(f"{tag} ".encode() + IDLE_DONE)

    def _hibernate(self) -> bool:
        """Let this task end while the client idles: a `Hibernation` (a few slots) takes the
        transport, the StreamReader/StreamWriter/protocol and the task's frames are freed. Not
        for TLS or COMPRESS sessions (their streams sit between socket and session), nor when
        the client already sent more than the IDLE (it is read in the task)."""
        writer = self.writer
        if self.tls or self.inflater is not None or not isinstance(writer, _Writer):
            return False
        stream = self.reader.stream
        # StreamReader has no public "nothing buffered, no EOF, no error" test.
        if stream._buffer or stream._eof or stream._exception is not None:  # type: ignore
            return False
        transport = writer.transport
        if transport.is_closing() or self.state is State.LOGOUT:
            return False
        paused = bool(getattr(writer._protocol, "_paused", False))  # type: ignore
        hibernation = Hibernation(self, transport, paused)  # type: ignore[arg-type]
        self.writer = hibernation
        self.reader = _PARKED_READER  # a new one when the session wakes up
        self._out = _PARKED_OUT  # likewise
        if not self.enabled:
            self.enabled = _NO_EXTENSIONS
        transport.set_protocol(hibernation)
        return True

    # ------------------------------------------------------------------ updates

    def log_in(self, account: Account) -> None:
        """From now on, watch the account's events, so that each command knows without a
        query whether anything changed (the watch exists before any SELECT reads)."""
        self.state = State.AUTHENTICATED
        self.reader.pre_auth = False  # the post-login literal and command limits from now on
        self.watch = self.services.views.attach(account)
        self.account = self.watch.account  # one Account object for the account's sessions

    def select(self, selected: Selected | None) -> None:
        """Enter (or leave, with None) a mailbox."""
        old = self.selected
        if old is not None and old.view is not None and self.watch is not None:
            self.services.views.release(self.watch, old.view)
        self.selected = selected
        self.saved_uids = ()
        if self.state is not State.LOGOUT:
            self.state = State.AUTHENTICATED if selected is None else State.SELECTED

    async def report_updates(self, *, expunges: bool = True) -> None:
        """Tell the client what changed in the selected mailbox (RFC 3501 §5.2, §7.4.1).

        During FETCH, STORE and SEARCH (not their UID forms) EXPUNGE must not be sent, since it
        would renumber messages under the client's feet: `expunges=False` then reports the
        changes up to the first expunge, and the next command or NOOP the rest. The shared
        view asks the store only when an event said the account changed (or after a quiet
        minute, in case one was lost), and once for all the sessions that have the mailbox
        selected.
        """
        sel = self.selected
        if sel is None or self.watch is None:
            return
        view = sel.view
        if view is not None:
            self.watch.poll()
            if view.stale():
                await view.refresh()
            sel = self.selected  # the session may have moved on while the query ran
            if sel is None or sel.view is not view:
                return
        for line in self._catch_up(sel, expunges):
            self.raw(line)
        if expunges:  # CONTEXT=SEARCH (RFC 5267): ADDTO/REMOVETO of the live searches
            from mailyard.protocols.imap import esearch  # (esearch imports the commands)
            await esearch.report_context_updates(self)

    def _catch_up(self, sel: Selected, expunges: bool = True) -> list[bytes]:
        enabled = self.enabled
        return sel.catch_up(with_modseq="CONDSTORE" in enabled, qresync="QRESYNC" in enabled,
                            expunges=expunges, recent=self.rev1,
                            claim=sel.view.recent_mark if sel.view is not None else None)

    def enable_condstore(self) -> None:
        """A CONDSTORE enabling command (RFC 7162 §3.1: SELECT/EXAMINE (CONDSTORE), FETCH
        MODSEQ or CHANGEDSINCE, SEARCH MODSEQ, STORE UNCHANGEDSINCE, ENABLE): from now on
        FETCH responses carry MODSEQ; with a mailbox selected, the client learns its
        HIGHESTMODSEQ at once."""
        if "CONDSTORE" in self.enabled:
            return
        self.enabled.add("CONDSTORE")
        if self.selected is not None:
            self.untagged(f"OK [HIGHESTMODSEQ {self.selected.modseq}] Highest")

    @property
    def rev1(self) -> bool:
        """An IMAP4rev1 client: \\Recent and RECENT exist for it (RFC 9051 dropped them)."""
        return "IMAP4REV2" not in self.enabled

    def expire(self) -> None:
        """The idle timeout ran out (RFC 9051 §5.4): say BYE and close; the read the session
        waits in then ends (or, hibernated, the connection's end releases the session)."""
        self.deadline = float("inf")
        text = b"* BYE Idle for too long\r\n" if self.idling else \
            b"* BYE Autologout; idle for too long\r\n"
        self.state = State.LOGOUT
        with contextlib.suppress(Exception):
            self.writer.write(text)
            self.writer.close()

    async def goodbye(self) -> None:
        """The server is stopping (LIVE.goodbye): BYE, then close."""
        bye = b"* BYE Server shutting down, reconnect in a moment\r\n"
        if isinstance(self.writer, Hibernation):
            self.writer.write(bye)
        else:
            self.raw(bye)
            await self.flush()
        self.writer.close()

    def push_updates(self) -> None:
        """During IDLE: write what changed straight to the socket (called by the view after
        a refresh, outside this session's task)."""
        sel = self.selected
        if sel is None:
            return
        if self.notify is not None and not self.notify.pushes_selected:
            return  # RFC 5465 §4: IDLE sends what NOTIFY asked for, and no more
        lines = self._catch_up(sel)
        if lines:
            with contextlib.suppress(Exception):  # a connection going away says so in run()
                self.writer.write(b"".join(lines))

    async def start_tls(self) -> None:
        """Stop reading, send the tagged OK, then switch to TLS: the client sends its
        ClientHello the moment it reads OK, and were we still reading, those octets would land
        in the plain-text stream buffer where the handshake never sees them.

        Whatever the client sent after STARTTLS in plain text is thrown away unanswered: a
        command injected there by a man in the middle must never run as if it came over TLS
        (the STARTTLS command injection of CVE-2011-0411)."""
        assert self.services.tls is not None
        assert isinstance(self.writer, asyncio.StreamWriter)  # STARTTLS comes before COMPRESS
        self.writer.transport.pause_reading()  # type: ignore[attr-defined]
        self.reader.stream._buffer.clear()  # type: ignore[attr-defined]
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()
        await self.writer.start_tls(self.services.tls)
        self.tls = True

    async def start_deflate(self) -> None:
        """COMPRESS DEFLATE (RFC 4978): the tagged OK goes out uncompressed, then both ways are
        raw deflate. The command reader keeps no buffer, so pointing it at the inflated stream
        between two commands loses no octet; a client sends nothing before it reads the OK."""
        assert isinstance(self.writer, asyncio.StreamWriter)
        await self.flush()
        self.inflater = Inflater(self.reader.stream, self.services.policy.max_line + 1024)
        self.reader.stream = self.inflater.reader
        self.writer = DeflateWriter(self.writer)


# ---------------------------------------------------------------------- the connection

class _Writer(asyncio.StreamWriter):
    """A StreamWriter that does not close its transport when it is garbage-collected: a
    session going into hibernation drops its streams but keeps the connection."""

    def __del__(self) -> None:
        pass


class Connection(asyncio.StreamReaderProtocol):
    """The protocol of an IMAP connection while its session runs as a task: asyncio's stream
    protocol (reader, writer, flow control), running `Session.run`, or `Session.resume` for a
    hibernated session that woke up."""

    def __init__(self, services: IMAPServices, *, implicit_tls: bool = False,
                 session: Session | None = None) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=services.policy.max_line + 1024, loop=loop)
        super().__init__(reader, loop=loop)
        # StreamWriter.start_tls (STARTTLS) takes a protocol with a callback as server side.
        self._client_connected_cb = _server_side
        self._reader: asyncio.StreamReader | None = reader
        """Held until connection_made (the base class holds it only weakly)."""
        self._services = services
        self._implicit_tls = implicit_tls
        self._session = session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        self._transport = transport
        reader, self._reader = self._reader, None
        assert reader is not None
        reader.set_transport(transport)
        self._over_ssl = transport.get_extra_info("sslcontext") is not None
        writer = _Writer(transport, self, reader, loop)  # type: ignore[arg-type]
        self._stream_writer = writer
        session, self._session = self._session, None
        if session is None:
            session = Session(self._services, reader, writer, implicit_tls=self._implicit_tls)
            task = loop.create_task(session.run())
        else:
            session.writer = writer
            session.reader = session._command_reader(reader)
            session._out = []
            if session.enabled is _NO_EXTENSIONS:
                session.enabled = set()
            task = loop.create_task(session.resume())
        self._task = task
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("IMAP session failed", exc_info=task.exception())
            if self._transport is not None:
                self._transport.close()


def _server_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Never called: marks a Connection as the server side for StreamWriter.start_tls."""


_GIVING_BACK: set[asyncio.Task[None]] = set()
"""The ledger releases of hibernated sessions whose connection ended, while they run."""


class Hibernation(asyncio.Protocol):
    """An IMAP session resting in IDLE (like Dovecot's imap-hibernate): the transport's
    protocol and the session's writer, with no task, stream or coroutine frame behind it.
    The view pushes updates through `write`; the idle sweep and the server's goodbye write
    their BYE and close. Anything the client sends (DONE, or more) wakes the session: a new
    `Connection` takes the transport and the session goes on where it stopped."""

    __slots__ = ("paused", "session", "transport")

    def __init__(self, session: Session, transport: asyncio.WriteTransport,
                 paused: bool) -> None:
        self.session = session
        self.transport = transport
        self.paused = paused
        """The transport told us to stop writing (its buffer is full): told on to the
        Connection at wake-up, whose flow control then waits for resume_writing."""

    # The writer side (what Session.writer offers).

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.transport.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    # The protocol side.

    def data_received(self, data: bytes) -> None:
        self._wake().data_received(data)

    def eof_received(self) -> bool | None:
        return self._wake().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        session = self.session
        session._release()
        if session.ip_hold is not None or session.user_hold is not None:
            task = asyncio.get_running_loop().create_task(session.give_back())
            _GIVING_BACK.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(_GIVING_BACK.discard)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def _wake(self) -> Connection:
        session = self.session
        connection = Connection(session.services, session=session)
        self.transport.set_protocol(connection)
        connection.connection_made(self.transport)
        if self.paused:
            connection.pause_writing()
        return connection
