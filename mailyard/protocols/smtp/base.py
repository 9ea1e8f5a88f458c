"""What every Mailyard SMTP listener shares: enhanced status codes on every reply, one rule for
faults and one for the client's octets, and the small helpers for peers, closing and line lengths.

Line lengths: RFC 5321 §4.5.3.1.6 allows 998 octets per line, but real senders exceed it (the
Outlook file in tests/data/corpora has 21 lines over 1,000 octets, up to 11,677; HTML
generators write whole parts on one line), and Postfix and Dovecot take such mail. So does
Mailyard, byte-exact, up to `[limits] smtp_line_octets` (1 MiB by default); only a longer line
is refused, with 500 5.5.2 naming the limit.

Faults: whatever a handler hook or AUTH raises (the store or queue unreachable: PostgreSQL
stopped, a dead SQLite writer, a full disk, a time-out; or a bug) is logged once here and
answered `451 4.3.0`, a temporary failure the client retries, at every stage. aiosmtpd's own
answer would be `500 5.5.2 Error: (ConnectionRefusedError) ...`: a permanent failure that makes
the sender bounce the mail, with our exception text in it.

Octets: aiosmtpd decodes command arguments as UTF-8 with surrogateescape, so invalid UTF-8
arrives as lone surrogates that no later encoder accepts. They are refused at the command that
carries them (EHLO/HELO 501 5.5.2, MAIL 553 5.1.7, RCPT 501 5.1.3), and an address with
non-ASCII characters needs the SMTPUTF8 parameter (RFC 6531 §3.5: 553 5.6.7).

Floods: aiosmtpd answers every command of one pipelined read without giving the event loop
back (reading a buffered line and writing below the high-water mark never wait), so 65,536
empty lines held every other connection for seconds. Every reply here yields to the loop, and
a connection that makes `ERROR_LIMIT` protocol errors (empty lines, bad syntax, commands out
of sequence or before AUTH/STARTTLS) is closed with `421 4.7.0`, as Postfix's
smtpd_hard_error_limit does; aiosmtpd's own budget counts unknown verbs only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import re
import socket
import time
import types
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

import aiosmtpd
from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    Session,
    TLSSetupException,
    _AuthMechAttr,
    login_always_fail,
    syntax,
)

from mailyard import metrics
from mailyard.config import Limits
from mailyard.protocols.live import LIVE
from mailyard.protocols.smtp.dataread import ClientGone, read_mail_data
from mailyard.protocols.smtp.replies import enhance

log = logging.getLogger("mailyard.smtp")

TEMPORARY = "451 4.3.0 Temporary local problem, try again later"
"""The answer to any fault of ours: generic, so that no exception text reaches the client."""

ERROR_LIMIT = 20
"""Protocol errors one connection may make; the next is answered `TOO_MANY_ERRORS` and the
connection closed (Postfix's smtpd_hard_error_limit is 20 too)."""
TOO_MANY_ERRORS = "421 4.7.0 Too many errors, closing the connection"
ERROR_CODES = frozenset({"500", "501", "502", "503", "504", "530"})
"""The replies that count as a client's protocol error (RFC 5321 §4.2.3: syntax, unknown or
unimplemented command, bad sequence; RFC 4954/3207: 530 before AUTH or STARTTLS). A refused
address or message (550, 553, 554) is the mail's fault, not the protocol's: it does not
count."""


REFLECTED_FOR = "1.4.6"
"""The aiosmtpd release whose SMTP.__init__ `EnhancedSMTP._init_reflected` does in its own
way; under any other, aiosmtpd's own __init__ runs (correct, only slower)."""


@dataclass(frozen=True, slots=True)
class ClassTable:
    """What aiosmtpd's SMTP.__init__ finds by reflection on the protocol class, found once
    per class: the commands (each wrapped in the /metrics timer) and the AUTH mechanisms."""

    commands: tuple[tuple[str, Callable[..., Awaitable[None]]], ...]
    auth: tuple[tuple[str, str], ...]
    """(mechanism, method name) of the class's own auth_* methods."""


@dataclass(frozen=True, slots=True)
class HandlerTable:
    """What SMTP.__init__ finds by reflection on the handler, found once per handler."""

    hooks: dict[str, Callable[..., Any]]
    auth: dict[str, _AuthMechAttr]
    ehlo_hook_ver: str | None


_CLASS_TABLES: dict[type, ClassTable] = {}
_HANDLER_TABLES: weakref.WeakKeyDictionary[Any, HandlerTable] = weakref.WeakKeyDictionary()


def _mechanism(name: str, fn: Any) -> str:
    return str(getattr(fn, "__auth_mechanism_name__",
                       name.replace("auth_", "").replace("__", "-")))


def _class_table(cls: type) -> ClassTable:
    table = _CLASS_TABLES.get(cls)
    if table is None:
        names = dir(cls)
        commands = tuple((name.replace("smtp_", ""), _timed(name.replace("smtp_", ""),
                                                            getattr(cls, name)))
                         for name in names if name.startswith("smtp_"))
        auth = tuple((_mechanism(name, getattr(cls, name)), name)
                     for name in names if name.startswith("auth_"))
        table = _CLASS_TABLES[cls] = ClassTable(commands, auth)
    return table


def _handler_table(handler: Any) -> HandlerTable:
    try:
        table = _HANDLER_TABLES.get(handler)
    except TypeError:  # not weakly referable or not hashable: found for each connection
        return _reflect_handler(handler)
    if table is None:
        table = _reflect_handler(handler)
        with contextlib.suppress(TypeError):
            _HANDLER_TABLES[handler] = table
    return table


def _reflect_handler(handler: Any) -> HandlerTable:
    """SMTP.__init__'s reflection on the handler, as it does it (aiosmtpd 1.4.6)."""
    auth = {_mechanism(name, fn): _AuthMechAttr(fn, False)
            for name, fn in inspect.getmembers(handler) if name.startswith("auth_")}
    hooks = {m.replace("handle_", ""): getattr(handler, m) for m in dir(handler)
             if m.startswith("handle_")}
    ehlo = hooks.get("EHLO")
    version = None
    if ehlo is not None:
        params = len(inspect.signature(ehlo).parameters)
        if params == 4:
            version = "old"
        elif params == 5:
            version = "new"
        else:
            raise RuntimeError("Unsupported EHLO Hook")
    return HandlerTable(hooks, auth, version)


def _timed(name: str, fn: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """`fn` (an smtp_* method of a class) timed for /metrics, and followed by the shutdown's
    421 when one was asked for during it. Made once per class; bound per connection."""

    @functools.wraps(fn)
    async def run(self: EnhancedSMTP, arg: str) -> None:
        self._busy = True
        started = time.perf_counter()
        try:
            await fn(self, arg)
        finally:
            self._busy = False
            metrics.command(self.protocol_name, name, time.perf_counter() - started)
        if self._closing:
            await self._shutdown()

    return run


class EnhancedSMTP(SMTP):
    """aiosmtpd's protocol answering with RFC 3463 codes once ENHANCEDSTATUSCODES is said;
    every command timed for /metrics, and a 421 at shutdown once no command is running.
    Messages are bytes: both listeners run with `decode_data=False`, which DATA assumes.

    Set-up per connection: aiosmtpd's SMTP.__init__ finds the commands, AUTH mechanisms and
    handler hooks by reflection (`inspect.getmembers` and `dir` over the protocol and the
    handler, every property evaluated) on every connection: 11 % of the listener's Python
    time with one mail per connection (issue 24). Here that is found once per class and per
    handler (`ClassTable`, `HandlerTable`) and only bound per connection; the rest of the
    set-up is aiosmtpd's, attribute for attribute (`_init_reflected`; a test compares the
    two). Under another aiosmtpd release its own __init__ runs."""

    protocol_name = "smtp"

    def __init__(self, handler: Any, *, line_octets: int = Limits.smtp_line_octets,
                 **kwargs: Any) -> None:
        if aiosmtpd.__version__ == REFLECTED_FOR:
            self._init_reflected(handler, **kwargs)
        else:
            super().__init__(handler, **kwargs)
            self._smtp_methods = {command: types.MethodType(fn, self)
                                  for command, fn in _class_table(type(self)).commands}
        self.line_octets = line_octets
        """The longest line (without CRLF) a message may carry: far above RFC 5321's 998, as
        Postfix and Dovecot take what real senders send (see `Limits.smtp_line_octets`)."""
        self._in_ehlo = False
        self._busy = False
        self._closing = False
        self._errors = 0
        self._starting_tls = False
        """No yield after STARTTLS's 220: the client's ClientHello could then reach this
        protocol before aiosmtpd puts the TLS layer in its place, and the handshake fail."""

    def _init_reflected(
            self, handler: Any, *, data_size_limit: int | None = 2**25,
            enable_SMTPUTF8: bool = False, decode_data: bool = False,
            hostname: str | None = None, ident: str | None = None,
            tls_context: Any = None, require_starttls: bool = False, timeout: float = 300,
            auth_required: bool = False, auth_require_tls: bool = True,
            auth_exclude_mechanism: Iterable[str] | None = None, auth_callback: Any = None,
            command_call_limit: int | dict[str, int] | None = None, authenticator: Any = None,
            proxy_protocol_timeout: float | None = None,
            loop: asyncio.AbstractEventLoop | None = None) -> None:
        """aiosmtpd 1.4.6's SMTP.__init__ with its reflection taken from the per-class and
        per-handler tables. Its warnings about TLS settings and AUTH without TLS, and its
        INFO line listing the AUTH mechanisms, are left out: our listeners' settings are
        fixed (tests/unit/test_smtp_setup.py compares the outcome with aiosmtpd's own)."""
        self.__ident__ = ident or aiosmtpd.smtp.__ident__
        self.loop = loop if loop else aiosmtpd.smtp.make_loop()
        asyncio.StreamReaderProtocol.__init__(
            self, asyncio.StreamReader(loop=self.loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected, loop=self.loop)
        self.event_handler = handler
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self.command_size_limits.clear()
        if hostname:
            self.hostname = hostname
        else:
            self.hostname = socket.getfqdn()
        self.tls_context = tls_context
        self.require_starttls = tls_context and require_starttls
        self._timeout_duration = timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = auth_require_tls
        if proxy_protocol_timeout is not None and proxy_protocol_timeout <= 0:
            raise ValueError("proxy_protocol_timeout must be > 0")
        self._proxy_timeout = proxy_protocol_timeout
        if authenticator is not None:
            self._authenticator = authenticator
            self._auth_callback = None
        else:
            self._auth_callback = auth_callback or login_always_fail
            self._authenticator = None
        self._auth_required = auth_required
        cls = _class_table(type(self))
        found = _handler_table(handler)
        auth = {mechanism: _AuthMechAttr(getattr(self, name), True)
                for mechanism, name in cls.auth}
        auth.update(found.auth)
        for mechanism in auth_exclude_mechanism or []:
            auth.pop(mechanism, None)
        self._auth_methods = auth
        self._handle_hooks = found.hooks
        self._ehlo_hook_ver = found.ehlo_hook_ver
        self._smtp_methods = {command: types.MethodType(fn, self) for command, fn in cls.commands}
        if command_call_limit is None:
            self._enforce_call_limit = False
        else:
            self._enforce_call_limit = True
            if isinstance(command_call_limit, int):
                self._call_limit_base = {}
                self._call_limit_default = command_call_limit
            else:
                self._call_limit_base = command_call_limit
                self._call_limit_default = command_call_limit.get(
                    "*", aiosmtpd.smtp.CALL_LIMIT_DEFAULT)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's, without the typing.Protocol class it defines on every call (a class
        made per MAIL and per RCPT command: `ABCMeta.__new__` in the listener's profile), and
        with a fast path for the common `<dot-atom@dot-atom>` form, which the standard
        library's RFC 5322 parser (3 % of the listener) reads the same way: the address
        as written and the rest after any spaces (anything else goes to that parser)."""
        if not arg:
            return "", ""
        plain = _PLAIN_PATH.match(arg)
        if plain is not None and arg[plain.end():plain.end() + 1] not in ("(", "\r", "\n"):
            path = plain.group(1)
            if self.local_part_limit and len(path.rpartition("@")[0]) > self.local_part_limit:
                return None, None
            return path, arg[plain.end():]
        address: Any
        try:
            if arg.lstrip().startswith("<"):
                address, rest = get_angle_addr(arg)
            else:
                address, rest = get_addr_spec(arg)
            addr: str = address.addr_spec
        except (HeaderParseError, IndexError):  # `<`, `<"`: the parser reads past the end
            return None, None
        localpart = addr.rpartition("@")[0]
        if self.local_part_limit and len(localpart) > self.local_part_limit:
            return None, None
        return addr, rest

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # called again by STARTTLS on the same connection
        super().connection_made(transport)
        if first:
            LIVE.opened(self, self.protocol_name, self.goodbye)

    def connection_lost(self, error: Exception | None) -> None:
        LIVE.closed(self)
        super().connection_lost(error)

    async def goodbye(self) -> None:
        """At shutdown: 421 now if waiting for a command, else once the command (a DATA whose
        message is being made durable) has been answered."""
        self._closing = True
        if not self._busy:
            await self._shutdown()

    async def _shutdown(self) -> None:
        if self.transport is None:
            return
        with contextlib.suppress(Exception):
            await SMTP.push(self, "421 4.3.2 Service shutting down, try again later")
        close(self)

    async def push(self, status: Any) -> None:
        """Every reply: dropped once the client is gone (its write would fail inside the TLS
        layer), counted if it is a protocol error, and followed by a yield to the event loop
        so that one client's pipelined read cannot hold the other connections."""
        if self._gone():
            # What a closed connection had sent is never run: aiosmtpd's loop would otherwise
            # go through the whole buffer (its own 502 close of a flood of unknown verbs).
            self._reader._buffer.clear()  # type: ignore[attr-defined]
            await asyncio.sleep(0)
            return
        if isinstance(status, str):
            if status[:3] in ERROR_CODES:
                self._errors += 1
                if self._errors > ERROR_LIMIT:
                    await self._hang_up()
                    return
            if not self._in_ehlo and not status.startswith("220 "):
                status = enhance(status)
            # A reply that echoes the client's invalid UTF-8 (VRFY, a hook's text) must
            # still encode: the lone surrogates become "?".
            status = status.encode("utf-8", "replace").decode("utf-8")
        await super().push(status)
        if not self._starting_tls:
            await asyncio.sleep(0)

    def _gone(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    async def _hang_up(self) -> None:
        """`TOO_MANY_ERRORS`, then close; what the client had sent after is thrown away, so
        that aiosmtpd's loop waits for more input instead of parsing the rest of a flood."""
        log.info("%s: %d protocol errors, closing", peer_text(self.session), self._errors)
        with contextlib.suppress(Exception):
            await SMTP.push(self, TOO_MANY_ERRORS)
        self._reader._buffer.clear()  # type: ignore[attr-defined]
        close(self)

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        """Every handler hook passes here: the MAIL/RCPT address is checked first, and a fault
        of the hook becomes 451 with the session's state untouched (aiosmtpd resets the
        transaction after DATA whatever the hook answered)."""
        if command in ("MAIL", "RCPT") and args:
            assert self.envelope is not None
            refusal = address_refusal(command, str(args[0]), bool(self.envelope.smtp_utf8))
            if refusal:
                return refusal
        try:
            return await super()._call_handler_hook(command, *args)
        except Exception as error:
            reply = self._fault(error, command)
            return [reply] if command == "EHLO" else reply  # EHLO's hook returns the lines

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's hook for an exception out of a command (AUTH's password check reaches
        the store outside the handler hooks): the same 451 as a hook's fault. An AUTH response
        line over the reader's limit (aiosmtpd's readline raises ValueError for it) is the
        client's: RFC 4954 §4's 500 5.5.6."""
        if isinstance(error, ValueError) and isinstance(error.__context__,
                                                        asyncio.LimitOverrunError):
            log.info("%s: AUTH response line too long", peer_text(self.session))
            return "500 5.5.6 Authentication exchange line is too long"
        return self._fault(error, "command")

    def _fault(self, error: Exception, stage: str) -> str:
        """Log a fault and give the reply to it. A client that went away mid-command (a
        reset, a closed transport, or asyncio's TLS layer failing to write for want of its
        connection: AttributeError '_write_appdata') is no fault of ours: one INFO line, and
        `push` drops the reply."""
        peer = peer_text(self.session)
        if isinstance(error, TLSSetupException):  # the client's handshake, not our fault
            log.info("TLS handshake with %s failed: %s", peer, error.__cause__)
        elif self._gone():  # not "ConnectionError": asyncpg's refused connection is one
            log.info("%s %s: client gone (%s)", stage, peer, type(error).__name__)
        else:
            FAULTS.log(error, "%s %s failed; answered 451", stage, peer)
        return TEMPORARY

    async def smtp_STARTTLS(self, arg: str) -> None:
        """What the client sent after STARTTLS in the same plaintext segment is discarded, not
        run inside TLS (RFC 3207 §4.2, the CVE-2011-0411 class of injection). aiosmtpd clears
        its buffer once the handshake is done; it is cleared here too, at the command, so that
        the rule does not rest on where a later aiosmtpd puts that line."""
        if not arg and self._tls_protocol is not None:
            # A second STARTTLS (RFC 3207 §4.2: not offered after TLS) would stack a TLS layer
            # on the first; its failed handshake hits a CPython 3.11 sslproto bug
            # (SSLProtocol._abort() TypeError, "Fatal error on SSL protocol" in the log).
            await self.push("503 5.5.1 TLS already active")
            return
        if not arg and self.tls_context and not self._tls_protocol:
            self._reader._buffer.clear()  # type: ignore[attr-defined]
        self._starting_tls = True
        try:
            await super().smtp_STARTTLS(arg)
        finally:
            self._starting_tls = False

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, with the mail data read by `dataread.read_mail_data`: in chunks,
        giving the loop back after each, instead of aiosmtpd's line at a time (see there).
        Lines of any length are read; `message_problem`, in the DATA hook, then refuses one
        over `line_octets` (unstuffed) with `line_too_long` once the final dot has come."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            data = await read_mail_data(self._reader, self.data_size_limit)
        except ClientGone:
            log.info("%s: connection closed during DATA", peer_text(self.session))
            close(self)
            return
        if data.problem is not None:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(data.problem.value)
            return
        self.envelope.content = self.envelope.original_content = data.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    async def smtp_HELO(self, hostname: str) -> None:
        if hostname and not valid_text(hostname):
            await self.push("501 5.5.2 Invalid HELO argument: not valid UTF-8 text")
            return
        await super().smtp_HELO(hostname)

    async def smtp_EHLO(self, hostname: str) -> None:
        if hostname and not valid_text(hostname):
            await self.push("501 5.5.2 Invalid EHLO argument: not valid UTF-8 text")
            return
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*)>[ \t]*")
"""A reverse- or forward-path of ASCII dot-atoms (RFC 5322 §3.2.3), the spaces after it."""


class FaultLog:
    """Logs faults with their traceback once per burst: an engine outage fails every RCPT of
    every connection with the same exception, and a traceback each would bury the log. The
    first of a type within `window` seconds gets its traceback; the others one line each."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._last: dict[type[BaseException], float] = {}

    def log(self, error: BaseException, message: str, *args: object) -> None:
        now = time.monotonic()
        kind = type(error)
        last = self._last.get(kind)
        if last is None or now - last >= self.window:
            self._last[kind] = now
            log.error(message, *args, exc_info=error)
            return
        text = str(error).replace("\n", " ")[:200]
        log.error(message + ": %s: %s (traceback logged within the last %d s)", *args,
                  kind.__name__, text, int(self.window))


FAULTS = FaultLog()


def peer_text(session: Session | None) -> str:
    return str(session.peer) if session is not None else "unknown"


def valid_text(value: str) -> bool:
    """Valid UTF-8 on the wire (no lone surrogates from aiosmtpd's decoding) and no control
    characters (a NUL no database column takes, CR/LF that would split a trace header)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)


def address_refusal(command: str, address: str, smtputf8: bool) -> str:
    """The reply refusing a MAIL FROM or RCPT TO address for its octets, or "" to go on."""
    if not valid_text(address):
        if command == "MAIL":
            return "553 5.1.7 Bad sender address: not valid UTF-8 text"
        return "501 5.1.3 Bad recipient address: not valid UTF-8 text"
    if not smtputf8 and not address.isascii():
        return ("553 5.6.7 Non-ASCII address without the SMTPUTF8 parameter"
                " (RFC 6531 section 3.5)")
    return ""


MAX_HEADER_BLOCK = 1 << 20
"""Octets of header fields a message may carry (Exchange Online takes 256 KiB): a 14 MB header
block of one field folded over 16,000 lines is an attack on every parser after us, not mail."""

HEADER_TOO_BIG = "552 5.3.4 Message header too big: at most 1 MiB of header fields"
_CHUNK = 1 << 20
_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")


def line_too_long(limit: int) -> str:
    """The reply refusing a message with a line over `limit` octets, naming the limit."""
    return f"500 5.5.2 Line too long: at most {limit} octets per line ([limits] smtp_line_octets)"


def message_problem(content: bytes, line_octets: int) -> str:
    """The reply refusing a message for its shape at the end of DATA, or "" to go on. Run in a
    thread: it reads every octet, in steps of at most 1 MiB, since one C call over 14 MB
    (a split, a regex) would hold the GIL, and so the event loop, for its whole length."""
    if _header_block_over(content, MAX_HEADER_BLOCK):
        return HEADER_TOO_BIG
    if has_long_line(content, line_octets):
        return line_too_long(line_octets)
    return ""


def _header_block_over(content: bytes, limit: int) -> bool:
    """Whether the header block (up to the first empty line, or the first line that is no
    field, as core.mime reads it) goes past `limit` octets."""
    if len(content) <= limit or content.find(b"\r\n\r\n", 0, limit) >= 0:
        return False
    pos = 0
    while pos < limit:  # no empty line in the first `limit` octets: rare, read line by line
        end = content.find(b"\n", pos, limit)
        if end < 0:
            return True
        if content[pos:pos + 1] not in (b" ", b"\t") and not _FIELD.match(content, pos, end):
            return False  # a line that is no header field starts the body
        pos = end + 1
    return True


def has_long_line(content: bytes, limit: int, chunk: int = _CHUNK) -> bool:
    """Whether a line of `content` (split at CRLF only, as SMTP splits DATA: a bare LF is
    content) has more than `limit` octets without its CRLF. aiosmtpd's reader lets through
    `limit` + 1 (room for a transparency dot), so an unstuffed line of `limit` + 1 reaches
    here. Read in steps of at most `chunk` octets (see `message_problem`); a line may span
    many steps."""
    if len(content) <= limit:
        return False
    start = 0  # where the line being measured starts
    pos = 0  # where the next step starts
    while pos < len(content):
        end = min(pos + chunk, len(content))
        last = content.rfind(b"\r\n", pos, end)
        if last < 0:  # the line goes on past this step
            # A CR at the step's end may be the first half of a CRLF: the next step has it.
            if end < len(content) and content[end - 1] == 13:
                end -= 1
            if end - start > limit:
                return True
            pos = max(end, pos + 1)
            continue
        first = content.find(b"\r\n", pos, end)
        if first - start > limit:
            return True
        if any(len(line) > limit for line in content[first + 2:last].split(b"\r\n")):
            return True
        start = pos = last + 2
    return len(content) - start > limit


def peer_ip(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "unknown")


def header_safe(value: str) -> str:
    """A value fit for a trace header: no line breaks, bounded length."""
    # Two C replaces, not a generator per character (1.7 % of the MX's GIL time, issue 24).
    return value.replace("\r", "").replace("\n", "")[:256]


def close(server: SMTP) -> None:
    if server.transport is not None:
        server.transport.close()
