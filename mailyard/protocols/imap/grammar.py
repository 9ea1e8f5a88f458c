"""Parsing one IMAP command into values (RFC 3501 §9, RFC 9051 §9 and the extensions we speak).

The names follow the ABNF of the RFCs (astring, nstring, sequence-set, fetch-att, search-key...),
so a rule can be checked against its RFC side by side. The input is one command as framed by
`reader.CommandReader`: literals are inline (`{3}\\r\\nabc`), the final CRLF is gone.

Every parser raises `ParseError` (the server answers `tag BAD <message>`) and nothing else:
the input comes from the network, so an IndexError or UnicodeDecodeError here would be a crash
any client could trigger. `BadCharset` is a ParseError too, answered `NO [BADCHARSET]` instead.

Extensions covered: IMAP4rev2 (RFC 9051), LITERAL+/- (RFC 7888), BINARY (RFC 3516), ESEARCH
(RFC 4731), SEARCHRES (RFC 5182), extended syntax (RFC 4466), CONDSTORE/QRESYNC (RFC 7162),
LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE (RFC 6154), SORT/THREAD (RFC 5256),
ESORT (RFC 5267), DISPLAYFROM/DISPLAYTO (RFC 5957), WITHIN (RFC 5032), OBJECTID (RFC 8474),
MULTIAPPEND (RFC 3502), ID (RFC 2971), SASL-IR (RFC 4959), ENABLE (RFC 5161), Gmail X-GM-EXT-1.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import codecs
import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar

from mailyard.core.imapfmt import astring as _fmt_astring

T = TypeVar("T")

MAX_NUMBER = 2**32 - 1
"""number and nz-number are 32-bit unsigned (RFC 9051 §9)."""
MAX_NUMBER64 = 2**63 - 1
"""number64 and mod-sequence-value are 63-bit (RFC 9051 §9, RFC 7162 §7)."""
MAX_SEARCH_DEPTH = 64
"""Nesting of NOT / OR / parentheses: deeper is an attack, not a search."""
SEARCH_CHARSETS = ("UTF-8", "US-ASCII")
"""Advertised in `NO [BADCHARSET (...)]`; the common legacy charsets below are accepted too."""
_EXTRA_CHARSETS = (
    *(f"ISO-8859-{i}" for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16)),
    *(f"WINDOWS-{i}" for i in range(1250, 1259)),
    "KOI8-R", "KOI8-U", "ISO-2022-JP", "SHIFT_JIS", "EUC-JP", "EUC-KR", "GB2312", "GBK",
    "GB18030", "BIG5", "UTF-16", "UTF-7",
)

# RFC 9051 §9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials /
# resp-specials. ASTRING-CHAR adds "]"; list-char adds "%" and "*"; a tag is astring minus "+".
_ATOM = re.compile(rb"[\x21\x23\x24\x26\x27\x2b-\x5b\x5e-\x7a\x7c-\x7e]+")
_ASTRING_ATOM = re.compile(rb"[\x21\x23\x24\x26\x27\x2b-\x5b\x5d-\x7a\x7c-\x7e]+")
_ASTRING_ATOM_UTF8 = re.compile(rb"[\x21\x23\x24\x26\x27\x2b-\x5b\x5d-\x7a\x7c-\x7e\x80-\xff]+")
_LIST_CHARS = re.compile(rb"[\x21\x23-\x27\x2a-\x5b\x5d-\x7a\x7c-\x7e]+")
_LIST_CHARS_UTF8 = re.compile(rb"[\x21\x23-\x27\x2a-\x5b\x5d-\x7a\x7c-\x7e\x80-\xff]+")
_TAG = re.compile(rb"[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c-\x7e]+")
_DIGITS = re.compile(rb"[0-9]+")
_LITERAL = re.compile(rb"(~?)\{([0-9]+)(\+?)\}(\r?\n)")
_FETCH_NAME = re.compile(rb"[A-Za-z0-9.\-]+")
_SECTION_WORD = re.compile(rb"[A-Za-z.]+")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}\Z")
_OBJECTID = re.compile(r"[A-Za-z0-9_\-]{1,255}\Z")
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")  # RFC 5322 ftext
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME = re.compile(
    rb'"[ ]?([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) '
    rb'([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
_SYSTEM_FLAGS = {
    f.upper(): f
    for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
}
_UID_COMMANDS = frozenset(
    {"COPY", "MOVE", "FETCH", "SEARCH", "STORE", "EXPUNGE", "SORT", "THREAD"}
)


class ParseError(Exception):
    """Bad syntax: the server answers `tag BAD <message>`; `position` is the octet offset in the
    parsed bytes where it went wrong (useful in logs, never sent to the client)."""

    def __init__(self, message: str, position: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        return self.message


class BadMailboxName(ParseError):
    """A mailbox name that is not valid modified UTF-7 (RFC 3501 §5.1.3) or, once UTF8=ACCEPT
    or IMAP4rev2 is enabled, not valid Net-Unicode (RFC 6855 §3, RFC 9051 §5.1). The command
    is well-formed, so it is refused with NO, not BAD; a LIST pattern of such a name simply
    matches nothing (parse_list)."""


class BadCharset(ParseError):
    """An unknown SEARCH/SORT/THREAD charset: answered `tag NO [BADCHARSET (UTF-8 US-ASCII)]`
    (RFC 9051 §6.4.4), a refusal rather than bad syntax."""

    def __init__(self, charset: str, position: int = 0) -> None:
        super().__init__(f"Unsupported charset {charset}", position)
        self.charset = charset


# --------------------------------------------------------------------------- modified UTF-7


def decode_mailbox_name(name: bytes | str) -> str:
    """Modified UTF-7 (RFC 3501 §5.1.3) to text: `&` starts modified base64 of UTF-16 ending
    with `-`, and `&-` is `&`. Raises ValueError for anything that is not valid mUTF-7."""
    text = name.decode("ascii") if isinstance(name, bytes) else name
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "&":
            end = text.find("-", i + 1)
            if end < 0:
                raise ValueError("unterminated modified base64")
            chunk = text[i + 1:end]
            if not chunk:
                out.append("&")
            else:
                if not re.fullmatch(r"[A-Za-z0-9+,]+", chunk) or len(chunk) % 4 == 1:
                    raise ValueError("bad modified base64")
                raw = base64.b64decode(chunk.replace(",", "/") + "=" * (-len(chunk) % 4))
                if len(raw) % 2:
                    raise ValueError("odd UTF-16 length")
                decoded = raw.decode("utf-16-be")
                if any(0x20 <= ord(c) <= 0x7E for c in decoded):
                    raise ValueError("printable ASCII must not be base64-encoded")
                out.append(decoded)
            i = end + 1
        elif 0x20 <= ord(ch) <= 0x7E:
            out.append(ch)
            i += 1
        else:
            raise ValueError("mailbox names are 7-bit unless UTF8=ACCEPT is enabled")
    return "".join(out)


def encode_mailbox_name(name: str) -> str:
    """Text to modified UTF-7, the form a client that did not ENABLE UTF8=ACCEPT expects."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be", "surrogatepass")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ","))
            out.append("-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class SequenceSet:
    """A sequence-set: ranges as written, `*` kept as None until the mailbox size is known;
    `is_saved` is SEARCHRES' `$`, which the session replaces by its saved result (RFC 5182)."""

    ranges: tuple[tuple[int | None, int | None], ...] = ()
    is_saved: bool = False

    @classmethod
    def from_values(cls, values: Iterable[int]) -> SequenceSet:
        """The compact set of some numbers, e.g. to save a SEARCH result or answer ESEARCH ALL."""
        ranges: list[tuple[int | None, int | None]] = []
        start = prev = None
        for value in sorted(set(values)):
            if prev is not None and value == prev + 1:
                prev = value
                continue
            if start is not None:
                ranges.append((start, prev))
            start = prev = value
        if start is not None:
            ranges.append((start, prev))
        return cls(tuple(ranges))

    def resolve(self, max_value: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive ranges with `*` = max_value (the highest sequence number or
        UID; 0 for an empty mailbox, where a lone `*` then matches nothing)."""
        if self.is_saved:
            raise ValueError("$ must be replaced by the saved search result first")
        spans: list[tuple[int, int]] = []
        for first, last in self.ranges:
            lo = max_value if first is None else first
            hi = max_value if last is None else last
            if lo > hi:
                lo, hi = hi, lo
            if hi >= 1:
                spans.append((max(lo, 1), hi))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        return merged

    def contains(self, n: int, max_value: int) -> bool:
        spans = self.resolve(max_value)
        i = bisect.bisect_right(spans, (n, MAX_NUMBER64 + 1)) - 1
        return i >= 0 and spans[i][0] <= n <= spans[i][1]

    def iter(self, values: Sequence[int]) -> Iterator[int]:
        """The members of `values` (sorted: the mailbox's UIDs, or range(1, exists + 1)) that are
        in the set, in order; `*` is the last of them. Cost is per range, not per number."""
        max_value = values[-1] if len(values) else 0
        for lo, hi in self.resolve(max_value):
            start = bisect.bisect_left(values, lo)
            stop = bisect.bisect_right(values, hi)
            for i in range(start, stop):
                yield values[i]

    def __str__(self) -> str:
        if self.is_saved:
            return "$"

        def one(v: int | None) -> str:
            return "*" if v is None else str(v)

        return ",".join(one(a) if a == b else f"{one(a)}:{one(b)}" for a, b in self.ranges)


# --------------------------------------------------------------------------- the tokenizer


class Tokenizer:
    """A cursor over the arguments of one command, with one method per ABNF rule.

    `utf8` is True once the client has ENABLEd UTF8=ACCEPT (or IMAP4rev2): mailbox names are then
    UTF-8 rather than modified UTF-7, and 8-bit octets are allowed in atoms of names.
    """

    def __init__(self, data: bytes, pos: int = 0, *, utf8: bool = False) -> None:
        self.data = data
        self.pos = pos
        self.utf8 = utf8

    # -- low level

    def error(self, message: str, position: int | None = None) -> ParseError:
        return ParseError(message, self.pos if position is None else position)

    def peek(self, n: int = 1) -> bytes:
        return self.data[self.pos:self.pos + n]

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def end(self) -> None:
        """The command must stop here."""
        if not self.at_end():
            raise self.error("Unexpected characters at end of command")

    def sp(self) -> None:
        if self.peek() != b" ":
            raise self.error("Expected a space" if not self.at_end() else "Missing arguments")
        self.pos += 1

    def accept(self, token: bytes) -> bool:
        """Consume `token` (letters matched case-insensitively) if it comes next."""
        if self.peek(len(token)).upper() == token.upper():
            self.pos += len(token)
            return True
        return False

    def expect(self, token: bytes) -> None:
        if not self.accept(token):
            raise self.error(f"Expected {token.decode('ascii', 'replace')!r}")

    def _match(self, pattern: re.Pattern[bytes]) -> bytes | None:
        m = pattern.match(self.data, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return m.group()

    def peek_keyword(self) -> str:
        """The atom that comes next, upper-cased, without consuming it ("" if none)."""
        m = _ATOM.match(self.data, self.pos)
        return m.group().decode("ascii").upper() if m else ""

    # -- RFC 9051 §9 rules

    def atom(self) -> str:
        value = self._match(_ATOM)
        if value is None:
            raise self.error("Expected an atom")
        return value.decode("ascii")

    def keyword(self) -> str:
        """An atom used as a keyword of the grammar (command, option, search key): upper-cased."""
        return self.atom().upper()

    def number(self, maximum: int = MAX_NUMBER) -> int:
        start = self.pos
        digits = self._match(_DIGITS)
        if digits is None:
            raise self.error("Expected a number")
        if len(digits) > 20 or int(digits) > maximum:
            raise self.error("Number out of range", start)
        return int(digits)

    def number64(self) -> int:
        return self.number(MAX_NUMBER64)

    def nz_number(self, maximum: int = MAX_NUMBER) -> int:
        start = self.pos
        value = self.number(maximum)
        if value == 0:
            raise self.error("Expected a non-zero number", start)
        return value

    def quoted(self) -> bytes:
        """DQUOTE *QUOTED-CHAR DQUOTE, with `\\"` and `\\\\` escapes; 8-bit octets are kept
        (IMAP4rev2's utf8-quoted) and checked by whoever decodes them."""
        start = self.pos
        self.expect(b'"')
        out = bytearray()
        data = self.data
        while True:
            end = self.pos
            while end < len(data) and data[end] not in b'"\\\r\n\x00':
                end += 1
            out += data[self.pos:end]
            self.pos = end
            ch = self.peek()
            if ch == b'"':
                self.pos += 1
                return bytes(out)
            if ch == b"\\":
                nxt = self.data[self.pos + 1:self.pos + 2]
                if nxt not in (b'"', b"\\"):
                    raise self.error("Only \\\" and \\\\ may be escaped in a quoted string")
                out += nxt
                self.pos += 2
                continue
            if not ch:
                raise self.error("Unterminated quoted string", start)
            raise self.error("CR, LF and NUL are not allowed in a quoted string")

    def literal(self, *, literal8: bool = False, allow_nul: bool = False) -> bytes:
        """`{n}` / `{n+}` CRLF and n octets; `~{n}` (literal8, binary) only where `literal8`."""
        start = self.pos
        m = _LITERAL.match(self.data, self.pos)
        if m is None:
            raise self.error("Expected a literal")
        binary, digits = m.group(1), m.group(2)
        if binary and not literal8:
            raise self.error("literal8 (~{n}) is not allowed here")
        if len(digits) > 20:
            raise self.error("Literal too long")
        size = int(digits)
        data = self.data[m.end():m.end() + size]
        if len(data) < size:
            raise self.error("Literal shorter than announced", start)
        if b"\x00" in data and not (binary or allow_nul):
            raise self.error("NUL is only allowed in a literal8", start)
        self.pos = m.end() + size
        return data

    def string(self) -> bytes:
        if self.peek() == b'"':
            return self.quoted()
        if self.peek() == b"{":
            return self.literal()
        raise self.error("Expected a string")

    def astring(self) -> bytes:
        if self.peek() in (b'"', b"{"):
            return self.string()
        value = self._match(_ASTRING_ATOM_UTF8 if self.utf8 else _ASTRING_ATOM)
        if value is None:
            raise self.error("Expected a string or atom")
        return value

    def nstring(self) -> bytes | None:
        if self.peek() in (b'"', b"{"):
            return self.string()
        start = self.pos
        if self.keyword() != "NIL":
            raise self.error("Expected a string or NIL", start)
        return None

    def text(self, value: bytes, start: int, charset: str = "utf-8") -> str:
        """Octets received as a string, as text; bad octets are a ParseError."""
        try:
            return value.decode(charset)
        except (UnicodeError, LookupError) as exc:
            raise self.error(f"String is not valid {charset}", start) from exc

    def astring_text(self) -> str:
        start = self.pos
        return self.text(self.astring(), start)

    def paren_list(self, item: Callable[[], T], *, allow_empty: bool = False) -> list[T]:
        """"(" item *(SP item) ")" — and "()" when allow_empty."""
        self.expect(b"(")
        items: list[T] = []
        if self.accept(b")"):
            if not allow_empty:
                raise self.error("Empty list")
            return items
        while True:
            items.append(item())
            if self.accept(b")"):
                return items
            self.sp()

    def astring_list(self) -> list[bytes]:
        return self.paren_list(self.astring)

    def flag(self) -> str:
        """flag = "\\" atom (system flags, canonical case) / flag-keyword (atom, case kept)."""
        if self.accept(b"\\"):
            name = "\\" + self.atom()
            return _SYSTEM_FLAGS.get(name.upper(), name)
        return self.atom()

    def flag_list(self) -> list[str]:
        return self.paren_list(self.flag, allow_empty=True)

    def _name(self, raw: bytes, start: int) -> str:
        """A mailbox name (or pattern) on the wire as text: UTF-8 once the client enabled
        UTF8=ACCEPT or IMAP4rev2 (`&` is then an ordinary character), modified UTF-7 before.
        Modified UTF-7 must be in its one canonical form (what encode_mailbox_name writes:
        no split or empty base64 runs, no stray bits), so that one mailbox has one name."""
        try:
            if self.utf8:
                name = raw.decode("utf-8")
            else:
                name = decode_mailbox_name(raw)
                if encode_mailbox_name(name) != raw.decode("ascii"):
                    raise ValueError("not the canonical modified UTF-7 of the name")
        except (UnicodeError, ValueError) as exc:
            kind = "UTF-8" if self.utf8 else "modified UTF-7"
            raise BadMailboxName(f"Mailbox name is not valid {kind}", start) from exc
        if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029" for c in name):
            raise BadMailboxName("Control characters are not allowed in mailbox names", start)
        return name

    def mailbox(self) -> str:
        """mailbox = "INBOX" / astring; INBOX in any case is INBOX (RFC 9051 §5.1)."""
        start = self.pos
        name = self._name(self.astring(), start)
        return "INBOX" if name.upper() == "INBOX" else name

    def list_mailbox(self) -> str:
        """list-mailbox = 1*list-char / string: a mailbox name that may hold `%` and `*`."""
        start = self.pos
        if self.peek() in (b'"', b"{"):
            raw = self.string()
        else:
            matched = self._match(_LIST_CHARS_UTF8 if self.utf8 else _LIST_CHARS)
            if matched is None:
                raise self.error("Expected a mailbox name or pattern")
            raw = matched
        return self._name(raw, start)

    def date(self) -> dt.date:
        """date = date-text / DQUOTE date-text DQUOTE, e.g. 1-Feb-1994."""
        quoted = self.accept(b'"')
        start = self.pos
        m = _DATE.match(self.data, self.pos)
        if m is None:
            raise self.error("Expected a date like 1-Feb-1994")
        self.pos = m.end()
        if quoted:
            self.expect(b'"')
        return self._date(m.group(1), m.group(2), m.group(3), start)

    def _date(self, day: bytes, month: bytes, year: bytes, start: int) -> dt.date:
        month_no = _MONTHS.get(month.decode("ascii").upper())
        if month_no is None:
            raise self.error("Unknown month", start)
        try:
            return dt.date(int(year), month_no, int(day))
        except ValueError as exc:
            raise self.error("No such date", start) from exc

    def date_time(self) -> dt.datetime:
        """date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE,
        e.g. "17-Jul-1996 02:44:25 -0700"; returned timezone-aware."""
        start = self.pos
        m = _DATE_TIME.match(self.data, self.pos)
        if m is None:
            raise self.error('Expected a date-time like "17-Jul-1996 02:44:25 -0700"')
        day = self._date(m.group(1), m.group(2), m.group(3), start)
        hour, minute, second, zh, zm = (int(m.group(i)) for i in (4, 5, 6, 8, 9))
        if hour > 23 or minute > 59 or second > 60 or zh > 23 or zm > 59:
            raise self.error("Bad time or zone", start)
        offset = dt.timedelta(hours=zh, minutes=zm) * (-1 if m.group(7) == b"-" else 1)
        self.pos = m.end()
        return dt.datetime(
            day.year, day.month, day.day, hour, minute, min(second, 59), tzinfo=dt.timezone(offset)
        )

    def _seq_number(self, allow_star: bool) -> int | None:
        if self.peek() == b"*":
            if not allow_star:
                raise self.error("* is not allowed here")
            self.pos += 1
            return None
        return self.nz_number()

    def sequence_set(self, *, allow_star: bool = True, allow_saved: bool = True) -> SequenceSet:
        """sequence-set = (seq-number / seq-range) ["," sequence-set], or "$" (RFC 5182)."""
        if self.peek() == b"$":
            if not allow_saved:
                raise self.error("$ is not allowed here")
            self.pos += 1
            return SequenceSet(is_saved=True)
        ranges: list[tuple[int | None, int | None]] = []
        while True:
            first = self._seq_number(allow_star)
            last = self._seq_number(allow_star) if self.accept(b":") else first
            ranges.append((first, last))
            if not self.accept(b","):
                return SequenceSet(tuple(ranges))

    def mod_sequence_value(self) -> int:
        """mod-sequence-value = 1*DIGIT, non-zero, 63-bit (RFC 7162 §7)."""
        return self.nz_number(MAX_NUMBER64)

    def mod_sequence_valzer(self) -> int:
        """mod-sequence-valzer: like mod-sequence-value but 0 is allowed."""
        return self.number64()


# --------------------------------------------------------------------------- command


@dataclass(frozen=True)
class Command:
    """A command line split into tag, name and its still unparsed arguments.

    `name` is upper-cased with "UID " folded in ("UID FETCH"); `args` is what follows the SP after
    the name, and `offset` is where it starts in the command (to map ParseError positions)."""

    tag: str
    name: str
    args: bytes
    offset: int = 0
    utf8: bool = False
    """The session has enabled UTF8=ACCEPT (or IMAP4rev2): its tokenizers read UTF-8 names."""

    @property
    def uid(self) -> bool:
        return self.name.startswith("UID ")

    def tokenizer(self, *, utf8: bool | None = None) -> Tokenizer:
        return Tokenizer(self.args, utf8=self.utf8 if utf8 is None else utf8)


def parse_command(data: bytes) -> Command:
    """tag SP command-name [SP arguments], from `CommandReader.read_command` (without the final
    CRLF: stripping one here could eat the last octets of a literal)."""
    tok = Tokenizer(data)
    if tok.at_end():
        raise tok.error("Empty command")
    tag_bytes = tok._match(_TAG)
    if tag_bytes is None:
        raise tok.error("Missing or invalid tag")
    tag = tag_bytes.decode("ascii")
    if tok.at_end():
        raise tok.error("Missing command")
    tok.sp()
    name = tok.keyword()
    if name == "UID":
        tok.sp()
        start = tok.pos
        sub = tok.keyword()
        if sub not in _UID_COMMANDS:
            raise tok.error(f"Unknown UID command {sub}", start)
        name = f"UID {sub}"
    if tok.at_end():
        return Command(tag, name, b"", tok.pos)
    tok.sp()
    return Command(tag, name, data[tok.pos:], tok.pos)


# --------------------------------------------------------------------------- FETCH


@dataclass(frozen=True)
class Section:
    """section-spec of BODY[...] / BINARY[...]: part numbers, then HEADER, HEADER.FIELDS,
    HEADER.FIELDS.NOT, TEXT or MIME (or None for the whole part), and the header field names."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        out = ".".join(map(str, self.part))
        if self.text:
            out += ("." if out else "") + self.text
        if self.fields:
            names = b" ".join(_fmt_astring(f) for f in self.fields)
            out += " (" + names.decode("utf-8", "surrogateescape") + ")"
        return out


@dataclass(frozen=True)
class FetchItem:
    """One fetch-att. BODY.PEEK / BINARY.PEEK are name BODY / BINARY with peek=True; BODY with
    a section is BODY[...] (BODY alone is the non-extensible BODYSTRUCTURE)."""

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False

    def response_name(self) -> str:
        """The name the FETCH response uses: PEEK dropped, and only the origin of a partial
        (RFC 9051 §7.5.2: BODY[<section>]<<origin octet>>)."""
        if self.section is None:
            return self.name
        out = f"{self.name}[{self.section}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}>"
        return out


_FETCH_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SIMPLE_FETCH = frozenset(
    {
        "FLAGS", "UID", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE", "RFC822.TEXT",
        "ENVELOPE", "BODY", "BODYSTRUCTURE", "MODSEQ", "EMAILID", "THREADID", "X-GM-MSGID",
        "X-GM-THRID", "X-GM-LABELS", "SAVEDATE",
    }
)
_SECTION_FETCH = frozenset({"BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE"})


def _section(tok: Tokenizer, binary: bool) -> Section:
    """"[" [section-spec] "]"; BINARY takes only part numbers (section-binary, RFC 3516)."""
    tok.expect(b"[")
    parts: list[int] = []
    if tok.peek().isdigit():
        parts.append(tok.nz_number())
        while tok.peek(2)[:1] == b"." and tok.peek(2)[1:].isdigit():
            tok.pos += 1
            parts.append(tok.nz_number())
    text: str | None = None
    fields: tuple[str, ...] = ()
    if tok.peek() != b"]":
        if binary:
            raise tok.error("BINARY takes only part numbers")
        if parts:
            tok.expect(b".")
        start = tok.pos
        word = (tok._match(_SECTION_WORD) or b"").decode("ascii").upper()
        if word not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME") or (
            word == "MIME" and not parts
        ):
            raise tok.error("Bad section", start)
        text = word
        if word.startswith("HEADER.FIELDS"):
            tok.sp()
            names = []
            for name in tok.astring_list():
                try:
                    names.append(name.decode("ascii"))
                except UnicodeDecodeError as exc:
                    raise tok.error("Header field names are ASCII") from exc
            fields = tuple(names)
    tok.expect(b"]")
    return Section(tuple(parts), text, fields)


def _fetch_att(tok: Tokenizer) -> FetchItem:
    start = tok.pos
    raw = tok._match(_FETCH_NAME)
    name = raw.decode("ascii").upper() if raw else ""
    if name in _SECTION_FETCH and tok.peek() == b"[":
        section = _section(tok, name.startswith("BINARY"))
        partial = None
        if tok.peek() == b"<" and name != "BINARY.SIZE":
            tok.pos += 1
            origin = tok.number64()
            tok.expect(b".")
            length = tok.nz_number(MAX_NUMBER64)
            tok.expect(b">")
            partial = (origin, length)
        peek = name.endswith(".PEEK")
        return FetchItem(name.removesuffix(".PEEK"), section, partial, peek)
    if name in _SIMPLE_FETCH:
        return FetchItem(name)
    raise tok.error(f"Unknown fetch attribute {name or tok.peek(10)!r}", start)


def parse_fetch_items(tok: Tokenizer) -> list[FetchItem]:
    """"ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")"."""
    if tok.peek() == b"(":
        return tok.paren_list(lambda: _fetch_att(tok))
    macro = _FETCH_MACROS.get(tok.peek_keyword())
    if macro is not None:
        tok.keyword()
        return [FetchItem(name) for name in macro]
    return [_fetch_att(tok)]


class FetchModifiers(NamedTuple):
    changedsince: int | None = None
    vanished: bool = False
    partial: PartialRange | None = None


def parse_fetch_modifiers(tok: Tokenizer) -> FetchModifiers:
    """[SP "(" fetch-modifier *(SP fetch-modifier) ")"]: CHANGEDSINCE n, VANISHED (RFC 7162),
    PARTIAL range (RFC 9394 §3.2)."""
    if tok.at_end():
        return FetchModifiers()
    tok.sp()
    changedsince: int | None = None
    vanished = False
    partial: PartialRange | None = None

    def modifier() -> None:
        nonlocal changedsince, vanished, partial
        start = tok.pos
        name = tok.keyword()
        if name == "CHANGEDSINCE" and changedsince is None:
            tok.sp()
            changedsince = tok.mod_sequence_value()
        elif name == "VANISHED" and not vanished:
            vanished = True
        elif name == "PARTIAL" and partial is None:
            tok.sp()
            partial = partial_range(tok)
        else:
            raise tok.error(f"Unknown or repeated FETCH modifier {name}", start)

    tok.paren_list(modifier)
    return FetchModifiers(changedsince, vanished, partial)


class FetchCommand(NamedTuple):
    sequence_set: SequenceSet
    items: list[FetchItem]
    changedsince: int | None
    vanished: bool
    partial: PartialRange | None = None


def parse_fetch(tok: Tokenizer, *, uid: bool = False) -> FetchCommand:
    """fetch = "FETCH" SP sequence-set SP fetch-atts [fetch-modifiers]; VANISHED is only for
    UID FETCH with CHANGEDSINCE (RFC 7162 §3.2.6)."""
    seqs = tok.sequence_set()
    tok.sp()
    items = parse_fetch_items(tok)
    start = tok.pos
    mods = parse_fetch_modifiers(tok)
    tok.end()
    if mods.vanished and not (uid and mods.changedsince is not None):
        raise tok.error("VANISHED needs UID FETCH and CHANGEDSINCE", start)
    return FetchCommand(seqs, items, mods.changedsince, mods.vanished, mods.partial)


# --------------------------------------------------------------------------- STORE


class StoreCommand(NamedTuple):
    """STORE: mode "+" adds, "-" removes, "" replaces; `is_gm_labels` for X-GM-LABELS."""

    sequence_set: SequenceSet
    unchangedsince: int | None
    mode: Literal["+", "-", ""]
    silent: bool
    flags: list[str]
    is_gm_labels: bool


def _gm_label(tok: Tokenizer) -> str:
    """A Gmail label: a system label (\\Inbox, \\Starred...) or a name like a mailbox's."""
    if tok.peek() == b"\\":
        return tok.flag()
    return tok.mailbox()


def parse_store(tok: Tokenizer) -> StoreCommand:
    """store = "STORE" SP sequence-set [store-modifiers] SP store-att-flags, where
    store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list / (flag *(SP flag)))
    and the modifier is UNCHANGEDSINCE (RFC 7162); X-GM-LABELS works like FLAGS."""
    seqs = tok.sequence_set()
    tok.sp()
    unchangedsince: int | None = None
    if tok.peek() == b"(":

        def modifier() -> None:
            nonlocal unchangedsince
            start = tok.pos
            name = tok.keyword()
            if name != "UNCHANGEDSINCE":
                raise tok.error(f"Unknown STORE modifier {name}", start)
            tok.sp()
            unchangedsince = tok.mod_sequence_valzer()

        tok.paren_list(modifier)
        tok.sp()
    mode: Literal["+", "-", ""] = ""
    if tok.accept(b"+"):
        mode = "+"
    elif tok.accept(b"-"):
        mode = "-"
    start = tok.pos
    what = tok.keyword()
    silent = what.endswith(".SILENT")
    what = what.removesuffix(".SILENT")
    if what not in ("FLAGS", "X-GM-LABELS"):
        raise tok.error("Expected FLAGS, FLAGS.SILENT or X-GM-LABELS", start)
    gm = what == "X-GM-LABELS"
    item: Callable[[], str] = (lambda: _gm_label(tok)) if gm else tok.flag
    tok.sp()
    if tok.peek() == b"(":
        flags = tok.paren_list(item, allow_empty=True)
    else:
        flags = [item()]
        while not tok.at_end():
            tok.sp()
            flags.append(item())
    tok.end()
    return StoreCommand(seqs, unchangedsince, mode, silent, flags, gm)


# --------------------------------------------------------------------------- SEARCH


class SearchKey:
    """A node of a search program's tree."""

    __slots__ = ()


@dataclass(frozen=True)
class All(SearchKey):
    pass


@dataclass(frozen=True)
class And(SearchKey):
    keys: tuple[SearchKey, ...]


@dataclass(frozen=True)
class Or(SearchKey):
    a: SearchKey
    b: SearchKey


@dataclass(frozen=True)
class Not(SearchKey):
    key: SearchKey


@dataclass(frozen=True)
class SeqSet(SearchKey):
    """Messages by sequence number (or `$`)."""

    set: SequenceSet


@dataclass(frozen=True)
class Uid(SearchKey):
    set: SequenceSet


@dataclass(frozen=True)
class Flag(SearchKey):
    """A system flag (\\Seen, \\Recent...) set (present=True) or not set."""

    name: str
    present: bool = True


@dataclass(frozen=True)
class Keyword(SearchKey):
    name: str
    present: bool = True


@dataclass(frozen=True)
class Date(SearchKey):
    """BEFORE/ON/SINCE (internal date) and SENTBEFORE/SENTON/SENTSINCE (Date: header),
    compared by calendar day, disregarding time and timezone (RFC 9051 §6.4.4)."""

    field: Literal["internal", "sent"]
    op: Literal["before", "on", "since"]
    date: dt.date


@dataclass(frozen=True)
class Within(SearchKey):
    """OLDER / YOUNGER n seconds, by internal date (RFC 5032)."""

    op: Literal["older", "younger"]
    seconds: int


@dataclass(frozen=True)
class Size(SearchKey):
    op: Literal["larger", "smaller"]
    n: int


@dataclass(frozen=True)
class Header(SearchKey):
    """A header field contains `value` (substring, case-insensitive); `name` is lower-cased.
    FROM/TO/CC/BCC/SUBJECT are Header too; an empty value matches any message with the field."""

    name: str
    value: str


@dataclass(frozen=True)
class Text(SearchKey):
    value: str


@dataclass(frozen=True)
class Body(SearchKey):
    value: str


@dataclass(frozen=True)
class ModSeq(SearchKey):
    """MODSEQ [entry-name entry-type] n: mod-sequence >= n (RFC 7162 §3.1.5)."""

    n: int
    entry: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True)
class GmRaw(SearchKey):
    """X-GM-RAW: a Gmail search query, handed to the query language as is."""

    query: str


@dataclass(frozen=True)
class GmMsgId(SearchKey):
    id: int


@dataclass(frozen=True)
class GmThrId(SearchKey):
    id: int


@dataclass(frozen=True)
class GmLabel(SearchKey):
    label: str


@dataclass(frozen=True)
class EmailId(SearchKey):
    id: str


@dataclass(frozen=True)
class ThreadId(SearchKey):
    id: str


@dataclass(frozen=True)
class PartialRange:
    """RFC 9394 partial-range: result positions `low`..`high` (1-based, low <= high), counted
    from the oldest message, or with `from_end` from the newest (-1 being the newest)."""

    low: int
    high: int
    from_end: bool = False

    def __str__(self) -> str:
        sign = "-" if self.from_end else ""
        return f"{sign}{self.low}:{sign}{self.high}"


@dataclass(frozen=True)
class SearchProgram:
    """`return_options` None is a classic SEARCH (answered `* SEARCH`); a tuple asks for ESEARCH
    (RFC 4731), `RETURN ()` being ("ALL",). SAVE is SEARCHRES (RFC 5182), UPDATE and CONTEXT
    CONTEXT=SEARCH (RFC 5267); PARTIAL (RFC 9394) is in the options with its range in
    `partial`."""

    key: SearchKey
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    uid: bool = False
    partial: PartialRange | None = None


_FLAG_KEYS: dict[str, SearchKey] = {
    "ANSWERED": Flag("\\Answered"),
    "DELETED": Flag("\\Deleted"),
    "DRAFT": Flag("\\Draft"),
    "FLAGGED": Flag("\\Flagged"),
    "SEEN": Flag("\\Seen"),
    "RECENT": Flag("\\Recent"),
    "UNANSWERED": Flag("\\Answered", False),
    "UNDELETED": Flag("\\Deleted", False),
    "UNDRAFT": Flag("\\Draft", False),
    "UNFLAGGED": Flag("\\Flagged", False),
    "UNSEEN": Flag("\\Seen", False),
    "OLD": Flag("\\Recent", False),
    "NEW": And((Flag("\\Recent"), Flag("\\Seen", False))),
    "ALL": All(),
}
_DATE_KEYS: dict[str, tuple[Literal["internal", "sent"], Literal["before", "on", "since"]]] = {
    "BEFORE": ("internal", "before"),
    "ON": ("internal", "on"),
    "SINCE": ("internal", "since"),
    "SENTBEFORE": ("sent", "before"),
    "SENTON": ("sent", "on"),
    "SENTSINCE": ("sent", "since"),
}
_HEADER_KEYS = {"FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc", "SUBJECT": "subject"}


_CODECS = frozenset(codecs.lookup(name).name for name in SEARCH_CHARSETS + _EXTRA_CHARSETS)


def _codec(charset: str, start: int) -> str:
    """The Python codec for a CHARSET; one we do not accept is BadCharset. A fixed list, because
    Python also has codecs (unicode_escape, rot13...) that are not charsets at all."""
    try:
        name = codecs.lookup(charset).name
    except (LookupError, ValueError, TypeError):
        raise BadCharset(charset, start) from None
    if name not in _CODECS:
        raise BadCharset(charset, start)
    return name


class _SearchParser:
    def __init__(self, tok: Tokenizer, codec: str) -> None:
        self.tok = tok
        self.codec = codec

    def string(self) -> str:
        tok = self.tok
        start = tok.pos
        return tok.text(tok.astring(), start, self.codec)

    def keys(self) -> SearchKey:
        """search-key *(SP search-key) up to the end: one key, or their And."""
        keys = [self.key(0)]
        while not self.tok.at_end():
            self.tok.sp()
            keys.append(self.key(0))
        return keys[0] if len(keys) == 1 else And(tuple(keys))

    def key(self, depth: int) -> SearchKey:
        tok = self.tok
        if depth > MAX_SEARCH_DEPTH:
            raise tok.error("Search program nested too deeply")
        first = tok.peek()
        if first == b"(":
            keys = tok.paren_list(lambda: self.key(depth + 1))
            return keys[0] if len(keys) == 1 else And(tuple(keys))
        if first.isdigit() or first in (b"*", b"$"):
            return SeqSet(tok.sequence_set())
        start = tok.pos
        name = tok.keyword()
        simple = _FLAG_KEYS.get(name)
        if simple is not None:
            return simple
        tok.sp()
        if name in _DATE_KEYS:
            where, op = _DATE_KEYS[name]
            return Date(where, op, tok.date())
        if name in _HEADER_KEYS:
            return Header(_HEADER_KEYS[name], self.string())
        if name in ("KEYWORD", "UNKEYWORD"):
            flag = tok.flag()
            present = name == "KEYWORD"
            return Flag(flag, present) if flag.startswith("\\") else Keyword(flag, present)
        if name == "NOT":
            return Not(self.key(depth + 1))
        if name == "OR":
            a = self.key(depth + 1)
            tok.sp()
            return Or(a, self.key(depth + 1))
        if name in ("LARGER", "SMALLER"):
            return Size("larger" if name == "LARGER" else "smaller", tok.number64())
        if name in ("OLDER", "YOUNGER"):
            return Within("older" if name == "OLDER" else "younger", tok.nz_number())
        if name == "HEADER":
            field_start = tok.pos
            field_name = tok.text(tok.astring(), field_start, "ascii")
            if not _FIELD_NAME.match(field_name):
                raise tok.error("Bad header field name", field_start)
            tok.sp()
            return Header(field_name.lower(), self.string())
        if name == "TEXT":
            return Text(self.string())
        if name == "BODY":
            return Body(self.string())
        if name == "UID":
            return Uid(tok.sequence_set())
        if name == "MODSEQ":
            return self.modseq()
        if name in ("EMAILID", "THREADID"):
            id_start = tok.pos
            value = tok.text(tok.astring(), id_start, "ascii")
            if not _OBJECTID.match(value):
                raise tok.error("Bad object id", id_start)
            return EmailId(value) if name == "EMAILID" else ThreadId(value)
        if name == "X-GM-RAW":
            return GmRaw(self.string())
        if name == "X-GM-MSGID":
            return GmMsgId(tok.number(2**64 - 1))
        if name == "X-GM-THRID":
            return GmThrId(tok.number(2**64 - 1))
        if name == "X-GM-LABELS":
            return GmLabel(_gm_label(tok))
        raise tok.error(f"Unknown search key {name}", start)

    def modseq(self) -> ModSeq:
        """MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer (RFC 7162 §3.1.5)."""
        tok = self.tok
        if tok.peek() == b'"':
            start = tok.pos
            entry = tok.text(tok.quoted(), start, "ascii")
            tok.sp()
            type_start = tok.pos
            kind = tok.atom().lower()
            if kind not in ("priv", "shared", "all"):
                raise tok.error("Expected priv, shared or all", type_start)
            tok.sp()
            return ModSeq(tok.mod_sequence_valzer(), entry, kind)
        return ModSeq(tok.mod_sequence_valzer())


def _return_options(tok: Tokenizer, allowed: frozenset[str]) -> tuple[str, ...] | None:
    """[RETURN SP "(" [option *(SP option)] ")" SP]: None if absent, ("ALL",) for `()`."""
    if tok.peek_keyword() != "RETURN":
        return None
    tok.keyword()
    tok.sp()

    def option() -> str:
        start = tok.pos
        name = tok.keyword()
        if name not in allowed:
            raise tok.error(f"Unknown RETURN option {name}", start)
        return name

    options = tok.paren_list(option, allow_empty=True)
    tok.sp()
    return tuple(dict.fromkeys(options)) or ("ALL",)


def _charset(tok: Tokenizer) -> tuple[str, str]:
    start = tok.pos
    raw = tok.quoted() if tok.peek() == b'"' else tok.atom().encode("ascii")
    name = tok.text(raw, start, "ascii").upper()
    return name, _codec(name, start)


_PARTIAL_RANGE = re.compile(r"(-?)([1-9][0-9]*):(-?)([1-9][0-9]*)\Z")


def partial_range(tok: Tokenizer) -> PartialRange:
    """partial-range = partial-range-first / partial-range-last (RFC 9394 §4): n:m or -n:-m,
    never "*", never mixed signs; 500:400 is 400:500."""
    start = tok.pos
    found = _PARTIAL_RANGE.match(tok.atom())
    if found is None or found.group(1) != found.group(3):
        raise tok.error("Bad partial range", start)
    a, b = int(found.group(2)), int(found.group(4))
    if max(a, b) > MAX_NUMBER:
        raise tok.error("Partial range out of range", start)
    return PartialRange(min(a, b), max(a, b), found.group(1) == "-")


_SEARCH_RETURN_OPTIONS = frozenset(
    {"MIN", "MAX", "ALL", "COUNT", "SAVE", "UPDATE", "CONTEXT", "PARTIAL"})


def search_return_options(
    tok: Tokenizer, allowed: frozenset[str] = _SEARCH_RETURN_OPTIONS,
) -> tuple[tuple[str, ...] | None, PartialRange | None]:
    """[RETURN SP "(" [option *(SP option)] ")" SP] with RFC 5267's UPDATE and CONTEXT and
    RFC 9394's PARTIAL range: (None, None) if absent, ("ALL",) for `()`. PARTIAL twice, or
    PARTIAL with ALL, is BAD (RFC 9394 §3.1)."""
    if tok.peek_keyword() != "RETURN":
        return None, None
    tok.keyword()
    tok.sp()
    ranges: list[PartialRange] = []

    def option() -> str:
        start = tok.pos
        name = tok.keyword()
        if name not in allowed:
            raise tok.error(f"Unknown RETURN option {name}", start)
        if name == "PARTIAL":
            if ranges:
                raise tok.error("PARTIAL twice", start)
            tok.sp()
            ranges.append(partial_range(tok))
        return name

    start = tok.pos
    options = tuple(dict.fromkeys(tok.paren_list(option, allow_empty=True)))
    tok.sp()
    if ranges and "ALL" in options:
        raise tok.error("PARTIAL and ALL together", start)
    results = set(options) & {"MIN", "MAX", "ALL", "COUNT", "PARTIAL"}
    if not results and ("UPDATE" in options or "SAVE" not in options):
        # RETURN () is RETURN (ALL) (RFC 4731 §3.1); so are (CONTEXT) and (UPDATE), which
        # only ask for more than the result itself (RFC 5267 §4.1); (SAVE) asks for nothing.
        options = ("ALL", *options)
    return options, ranges[0] if ranges else None


def parse_search(tok: Tokenizer, *, uid: bool = False) -> SearchProgram:
    """search = "SEARCH" [search-return-opts] SP search-program, where
    search-program = ["CHARSET" SP charset SP] search-key *(SP search-key)."""
    options, partial = search_return_options(tok)
    charset: str | None = None
    codec = "utf-8"
    if tok.peek_keyword() == "CHARSET":
        tok.keyword()
        tok.sp()
        charset, codec = _charset(tok)
        tok.sp()
    if tok.at_end():
        raise tok.error("Missing search keys")
    key = _SearchParser(tok, codec).keys()
    return SearchProgram(key, charset, options, uid, partial)


class SortCriterion(NamedTuple):
    key: str
    reverse: bool = False


_SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)


@dataclass(frozen=True)
class SortProgram:
    """`search.return_options` None is a classic SORT (`* SORT`); a tuple asks for ESEARCH
    (ESORT, RFC 5267 §3). `partial` is RFC 9394's range."""

    criteria: tuple[SortCriterion, ...]
    search: SearchProgram
    partial: PartialRange | None = None


def _search_criteria(
    tok: Tokenizer, uid: bool, options: tuple[str, ...] | None
) -> SearchProgram:
    """search-criteria = charset 1*(SP search-key): SORT and THREAD always name the charset."""
    charset, codec = _charset(tok)
    tok.sp()
    return SearchProgram(_SearchParser(tok, codec).keys(), charset, options, uid)


_SORT_RETURN = frozenset({"MIN", "MAX", "ALL", "COUNT", "PARTIAL", "UPDATE", "CONTEXT"})


def parse_sort(tok: Tokenizer, *, uid: bool = False) -> SortProgram:
    """sort = ["UID" SP] "SORT" [search-return-opts] SP sort-criteria SP search-criteria
    (RFC 5256, ESORT and CONTEXT=SORT RFC 5267, PARTIAL RFC 9394, DISPLAYFROM/DISPLAYTO
    RFC 5957). The return options are SEARCH's, less SAVE."""
    options, partial = search_return_options(tok, _SORT_RETURN)

    def criterion() -> SortCriterion:
        start = tok.pos
        name = tok.keyword()
        reverse = name == "REVERSE"
        if reverse:
            tok.sp()
            start = tok.pos
            name = tok.keyword()
        if name not in _SORT_KEYS:
            raise tok.error(f"Unknown sort key {name}", start)
        return SortCriterion(name, reverse)

    criteria = tok.paren_list(criterion)
    tok.sp()
    return SortProgram(tuple(criteria), _search_criteria(tok, uid, options), partial)


@dataclass(frozen=True)
class ThreadProgram:
    algorithm: str
    search: SearchProgram


def parse_thread(tok: Tokenizer, *, uid: bool = False) -> ThreadProgram:
    """thread = ["UID" SP] "THREAD" SP thread-alg SP search-criteria (RFC 5256); the algorithm
    is returned upper-cased for the session to check against what it advertises."""
    algorithm = tok.keyword()
    tok.sp()
    return ThreadProgram(algorithm, _search_criteria(tok, uid, None))


# --------------------------------------------------------------------------- mailbox commands


_STATUS_ITEMS = frozenset(
    {
        "MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE",
        "HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID",
    }
)


def parse_status_items(tok: Tokenizer) -> list[str]:
    """"(" status-att *(SP status-att) ")", upper-cased and checked."""

    def item() -> str:
        start = tok.pos
        name = tok.keyword()
        if name not in _STATUS_ITEMS:
            raise tok.error(f"Unknown status item {name}", start)
        return name

    return list(dict.fromkeys(tok.paren_list(item)))


def parse_status(tok: Tokenizer) -> tuple[str, list[str]]:
    """status = "STATUS" SP mailbox SP "(" status-att *(SP status-att) ")"."""
    mailbox = tok.mailbox()
    tok.sp()
    items = parse_status_items(tok)
    tok.end()
    return mailbox, items


@dataclass(frozen=True)
class ListCommand:
    """LIST with LIST-EXTENDED (RFC 5258): selection options narrow which names are listed,
    return options add data to each; `status_items` is LIST-STATUS (RFC 5819)."""

    reference: str
    patterns: tuple[str, ...]
    """Without those that are not valid mailbox names (all of them if the reference is not):
    such a pattern matches no name."""
    selection: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()
    status_items: tuple[str, ...] = ()
    extended: bool = False
    """True when any LIST-EXTENDED syntax was used (options or a list of patterns)."""


_LIST_SELECT = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_LIST_RETURN = frozenset({"SUBSCRIBED", "CHILDREN", "STATUS", "SPECIAL-USE"})


def parse_list(tok: Tokenizer, *, extended: bool = True) -> ListCommand:
    """list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]
    (RFC 5258 §6); extended=False gives the RFC 3501 form, as LSUB uses."""
    selection: list[str] = []
    is_extended = False
    if extended and tok.peek() == b"(":
        is_extended = True

        def select_opt() -> str:
            start = tok.pos
            name = tok.keyword()
            if name not in _LIST_SELECT:
                raise tok.error(f"Unknown LIST selection option {name}", start)
            return name

        start = tok.pos
        selection = list(dict.fromkeys(tok.paren_list(select_opt, allow_empty=True)))
        if "RECURSIVEMATCH" in selection and not {"SUBSCRIBED", "SPECIAL-USE"} & set(selection):
            raise tok.error("RECURSIVEMATCH needs another selection option", start)
        tok.sp()
    valid = True

    def read_name(read: Callable[[], str]) -> str:
        """A reference or pattern that is not a valid name matches nothing (RFC 3501 §5.1.3:
        the command is still answered OK): it is left out of `patterns`."""
        nonlocal valid
        try:
            return read()
        except BadMailboxName:
            valid = False
            return ""

    reference = read_name(tok.mailbox)
    reference_valid, valid = valid, True
    tok.sp()
    patterns: list[str] = []
    if extended and tok.peek() == b"(":
        is_extended = True

        def pattern() -> str:
            nonlocal valid
            valid = True
            value = read_name(tok.list_mailbox)
            if valid:
                patterns.append(value)
            return value

        tok.paren_list(pattern)
    else:
        value = read_name(tok.list_mailbox)
        if valid:
            patterns.append(value)
    if not reference_valid:
        patterns = []
    returns: list[str] = []
    status: list[str] = []
    if extended and not tok.at_end():
        tok.sp()
        start = tok.pos
        if tok.keyword() != "RETURN":
            raise tok.error("Expected RETURN", start)
        tok.sp()
        is_extended = True

        def return_opt() -> str:
            nonlocal status
            start = tok.pos
            name = tok.keyword()
            if name not in _LIST_RETURN:
                raise tok.error(f"Unknown LIST return option {name}", start)
            if name == "STATUS":
                tok.sp()
                status = parse_status_items(tok)
            return name

        returns = list(dict.fromkeys(tok.paren_list(return_opt, allow_empty=True)))
    tok.end()
    return ListCommand(
        reference, tuple(patterns), tuple(selection), tuple(returns), tuple(status), is_extended
    )


@dataclass(frozen=True)
class QResync:
    """SELECT (QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)])) of RFC 7162 §3.2.5."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True)
class SelectParams:
    condstore: bool = False
    qresync: QResync | None = None


def parse_select_params(tok: Tokenizer) -> SelectParams:
    """[SP "(" select-param *(SP select-param) ")"] after the mailbox of SELECT / EXAMINE:
    CONDSTORE, QRESYNC (...). Unknown parameters are BAD (RFC 4466 §2.1)."""
    if tok.at_end():
        return SelectParams()
    tok.sp()
    condstore = False
    qresync: QResync | None = None

    def known() -> SequenceSet:
        return tok.sequence_set(allow_star=False, allow_saved=False)

    def param() -> None:
        nonlocal condstore, qresync
        start = tok.pos
        name = tok.keyword()
        if name == "CONDSTORE":
            condstore = True
            return
        if name != "QRESYNC":
            raise tok.error(f"Unknown SELECT parameter {name}", start)
        tok.sp()
        tok.expect(b"(")
        uidvalidity = tok.nz_number()
        tok.sp()
        modseq = tok.mod_sequence_value()
        known_uids: SequenceSet | None = None
        seq_match: tuple[SequenceSet, SequenceSet] | None = None
        if tok.accept(b" "):
            if tok.peek() != b"(":
                known_uids = known()
                if tok.accept(b" "):
                    tok.expect(b"(")
                    seq_match = _seq_match(tok, known)
            else:
                tok.expect(b"(")
                seq_match = _seq_match(tok, known)
        tok.expect(b")")
        qresync = QResync(uidvalidity, modseq, known_uids, seq_match)

    tok.paren_list(param)
    tok.end()
    return SelectParams(condstore, qresync)


def _seq_match(
    tok: Tokenizer, known: Callable[[], SequenceSet]
) -> tuple[SequenceSet, SequenceSet]:
    """The rest of seq-match-data after "(": known-sequence-set SP known-uid-set ")"."""
    seqs = known()
    tok.sp()
    uids = known()
    tok.expect(b")")
    return seqs, uids


def parse_select(tok: Tokenizer) -> tuple[str, SelectParams]:
    """select = "SELECT" SP mailbox [select-params] (EXAMINE likewise)."""
    mailbox = tok.mailbox()
    return mailbox, parse_select_params(tok)


@dataclass(frozen=True)
class AppendMessage:
    flags: tuple[str, ...]
    internal_date: dt.datetime | None
    data: bytes
    binary: bool = False
    """True when sent as literal8 (~{n}, RFC 3516): the data may hold NUL and 8-bit octets."""
    catenate: tuple[CatPart, ...] = ()
    """CATENATE (RFC 4469): the parts the message is made of, in order (`data` is empty)."""


class CatPart(NamedTuple):
    """cat-part = text-literal / url (RFC 4469 §5): `kind` "TEXT" with the octets sent, or
    "URL" with an IMAP URL (RFC 5092) whose octets the server fetches itself."""

    kind: str
    value: bytes


def _cat_part(tok: Tokenizer, utf8_data: bool) -> CatPart:
    """text-literal = "TEXT" SP literal; url = "URL" SP astring (RFC 4469 §5). Since we offer
    BINARY, TEXT may be a literal8 too; after ENABLE UTF8=ACCEPT a part may also be
    "UTF8" SP "(" literal8 ")" (RFC 6855 §4)."""
    start = tok.pos
    kind = tok.keyword()
    tok.sp()
    if kind == "TEXT":
        if tok.peek() not in (b"{", b"~"):
            raise tok.error("TEXT takes a literal")
        return CatPart("TEXT", tok.literal(literal8=True))
    if kind == "URL":
        return CatPart("URL", tok.astring())
    if kind == "UTF8" and utf8_data:
        tok.expect(b"(")
        if tok.peek() != b"~":
            raise tok.error("UTF8 data is a literal8 (~{n})")
        data = tok.literal(literal8=True)
        tok.expect(b")")
        return CatPart("TEXT", data)
    raise tok.error("Expected TEXT or URL", start)


class AppendCommand(NamedTuple):
    mailbox: str
    messages: list[AppendMessage]


def parse_append(tok: Tokenizer, *, utf8_data: bool = False) -> AppendCommand:
    """append = "APPEND" SP mailbox 1*append-message (MULTIAPPEND, RFC 3502), where
    append-message = [SP flag-list] [SP date-time] SP append-data, and
    append-data = literal / literal8 / "UTF8" SP "(" literal8 ")" — the last form only once the
    client enabled UTF8=ACCEPT (`utf8_data`, RFC 6855 §4) — / "CATENATE" SP "(" cat-part
    *(SP cat-part) ")" (RFC 4469 §5).

    NUL is outside literal's CHAR8: a `{n}` literal holding one is BAD, and a client with such
    a message sends it as literal8 `~{n}`, which is BINARY's way to say so (RFC 3516 §4.4)."""
    mailbox = tok.mailbox()
    messages: list[AppendMessage] = []
    while not tok.at_end() or not messages:
        tok.sp()
        flags: list[str] = []
        when: dt.datetime | None = None
        if tok.peek() == b"(":
            flags = tok.flag_list()
            tok.sp()
        if tok.peek() == b'"':
            when = tok.date_time()
            tok.sp()
        if tok.peek_keyword() == "CATENATE":  # RFC 4469: "CATENATE" SP "(" cat-part ... ")"
            tok.keyword()
            tok.sp()
            parts = tok.paren_list(lambda: _cat_part(tok, utf8_data))
            messages.append(AppendMessage(tuple(dict.fromkeys(flags)), when, b"",
                                          catenate=tuple(parts)))
            continue
        if tok.peek() in (b"u", b"U"):
            start = tok.pos
            if tok.keyword() != "UTF8" or not utf8_data:
                raise tok.error("UTF8 append data needs ENABLE UTF8=ACCEPT", start)
            tok.sp()
            tok.expect(b"(")
            if tok.peek() != b"~":
                raise tok.error("UTF8 append data is a literal8 (~{n})")
            data = tok.literal(literal8=True)
            tok.expect(b")")
            binary = False
        else:
            binary = tok.peek() == b"~"
            data = tok.literal(literal8=True)
        messages.append(AppendMessage(tuple(dict.fromkeys(flags)), when, data, binary))
    return AppendCommand(mailbox, messages)


# --------------------------------------------------------------------------- session commands


def parse_enable(tok: Tokenizer) -> list[str]:
    """enable = "ENABLE" 1*(SP capability) (RFC 5161); upper-cased, in order, no repeats."""
    caps = [tok.keyword()]
    while not tok.at_end():
        tok.sp()
        caps.append(tok.keyword())
    return list(dict.fromkeys(caps))


MAX_ID_PAIRS = 30


def parse_id(tok: Tokenizer) -> dict[str, str | None] | None:
    """id = "ID" SP id-params-list; id-params-list = "(" *(string SP nstring) ")" / nil
    (RFC 2971). Values are informational, so undecodable octets are replaced, not refused."""
    if tok.peek() != b"(":
        start = tok.pos
        if tok.keyword() != "NIL":
            raise tok.error("Expected a list or NIL", start)
        tok.end()
        return None
    tok.expect(b"(")
    out: dict[str, str | None] = {}
    while not tok.accept(b")"):
        if out:
            tok.sp()
        if len(out) >= MAX_ID_PAIRS:
            raise tok.error("Too many ID fields")
        name = tok.string().decode("utf-8", "replace")
        tok.sp()
        value = tok.nstring()
        out[name] = None if value is None else value.decode("utf-8", "replace")
    tok.end()
    return out


class Authenticate(NamedTuple):
    mechanism: str
    initial_response: bytes | None
    """SASL-IR (RFC 4959): None when absent, b"" for "="."""


def decode_sasl_response(tok: Tokenizer) -> bytes:
    """base64 / "=" (the empty response); invalid base64 is a ParseError."""
    start = tok.pos
    raw = tok.data[tok.pos:]
    tok.pos = len(tok.data)
    if raw == b"=":
        return b""
    if not raw or not _BASE64.match(raw) or len(raw) % 4:
        raise tok.error("Invalid base64", start)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise tok.error("Invalid base64", start) from exc


def parse_authenticate(tok: Tokenizer) -> Authenticate:
    """authenticate = "AUTHENTICATE" SP auth-type [SP (base64 / "=")]."""
    mechanism = tok.keyword()
    if tok.at_end():
        return Authenticate(mechanism, None)
    tok.sp()
    return Authenticate(mechanism, decode_sasl_response(tok))


def parse_login(tok: Tokenizer) -> tuple[str, str]:
    """login = "LOGIN" SP userid SP password (both astrings, UTF-8)."""
    user = tok.astring_text()
    tok.sp()
    password = tok.astring_text()
    tok.end()
    return user, password


def parse_copy(tok: Tokenizer) -> tuple[SequenceSet, str]:
    """copy / move = ("COPY" / "MOVE") SP sequence-set SP mailbox."""
    seqs = tok.sequence_set()
    tok.sp()
    mailbox = tok.mailbox()
    tok.end()
    return seqs, mailbox


__all__ = [
    "MAX_NUMBER",
    "MAX_NUMBER64",
    "SEARCH_CHARSETS",
    "All",
    "And",
    "AppendCommand",
    "AppendMessage",
    "Authenticate",
    "BadCharset",
    "BadMailboxName",
    "Body",
    "CatPart",
    "Command",
    "Date",
    "EmailId",
    "FetchCommand",
    "FetchItem",
    "FetchModifiers",
    "Flag",
    "GmLabel",
    "GmMsgId",
    "GmRaw",
    "GmThrId",
    "Header",
    "Keyword",
    "ListCommand",
    "ModSeq",
    "Not",
    "Or",
    "ParseError",
    "QResync",
    "SearchKey",
    "SearchProgram",
    "Section",
    "SelectParams",
    "SeqSet",
    "SequenceSet",
    "Size",
    "SortCriterion",
    "SortProgram",
    "StoreCommand",
    "Text",
    "ThreadId",
    "ThreadProgram",
    "Tokenizer",
    "Uid",
    "Within",
    "decode_mailbox_name",
    "decode_sasl_response",
    "encode_mailbox_name",
    "parse_append",
    "parse_authenticate",
    "parse_command",
    "parse_copy",
    "parse_enable",
    "parse_fetch",
    "parse_fetch_items",
    "parse_fetch_modifiers",
    "parse_id",
    "parse_list",
    "parse_login",
    "parse_search",
    "parse_select",
    "parse_select_params",
    "parse_sort",
    "parse_status",
    "parse_status_items",
    "parse_store",
    "parse_thread",
]
