"""Mailbox file formats: mbox (mboxrd, mboxcl2), Maildir names and flags, folder names.

Pure: bytes and names in, bytes and names out; services/transfer.py does the file I/O.

mbox (RFC 4155 and the qmail mbox(5) page): messages start with a "From " line after a blank
line. mboxrd quotes every body line matching `>*From ` with one more '>', so reading removes one
'>' from each `>+From ` line and the message comes back byte-exact. mboxcl2 quotes nothing and
gives the body length in a Content-Length header instead: a Content-Length that ends exactly at
the next "From " line (or the end of the file) is honoured. The old mboxo quoting (only
`From ` -> `>From `) cannot be undone without loss: it is read as mboxrd.

The message octets are never altered: line ends stay what they are (CRLF or LF), and the
separator added by the writer (a final newline, then a blank line) is taken off by the reader. A
message that does not end with a newline cannot say so in mbox; the export's sidecar (its length
and SHA-256) restores it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# ------------------------------------------------------------------------------------ mbox

_QUOTED = re.compile(rb"^(>*From )", re.MULTILINE)
_UNQUOTE = re.compile(rb"^>(>*From )", re.MULTILINE)
_CONTENT_LENGTH = re.compile(rb"^Content-Length:[ \t]*(\d+)[ \t]*\r?$",
                             re.MULTILINE | re.IGNORECASE)


class MboxError(ValueError):
    """The data is not an mbox (it does not begin with a "From " line)."""


@dataclass(frozen=True, slots=True)
class MboxMessage:
    raw: bytes
    sender: str
    """The envelope sender on the "From " line ("MAILER-DAEMON" when there is none)."""
    received_at: int | None
    """Milliseconds since the epoch from the "From " line's date, when it has a readable one."""


def quote_from(raw: bytes) -> bytes:
    """mboxrd quoting: one more '>' before every line that matches `>*From `."""
    return _QUOTED.sub(rb">\1", raw)


def unquote_from(raw: bytes) -> bytes:
    return _UNQUOTE.sub(rb"\1", raw)


def from_line(sender: str, received_at: int) -> bytes:
    """`From sender asctime` in UTC: the separator line mbox readers expect."""
    when = datetime.fromtimestamp(received_at / 1000, UTC)
    sender = "".join(c for c in sender if c > " " and c != "\x7f") or "MAILER-DAEMON"
    return f"From {sender} {when:%a %b} {when.day:2d} {when:%H:%M:%S %Y}\n".encode(
        "utf-8", "replace")


def write_message(raw: bytes, sender: str, received_at: int) -> bytes:
    """One mboxrd entry: the "From " line, the quoted message, a final newline if the message
    has none, and the blank line that separates it from the next."""
    body = quote_from(raw)
    return from_line(sender, received_at) + body + (b"" if body.endswith(b"\n") else b"\n") + b"\n"


def write_mbox(messages: Iterable[tuple[bytes, str, int]]) -> bytes:
    return b"".join(write_message(raw, sender, at) for raw, sender, at in messages)


def _asctime(line: bytes) -> int | None:
    words = line.decode("latin-1").split()[2:]
    for take in (5, 6):  # "Thu Jan  1 00:00:00 1970" and the variant with a zone before the year
        text = " ".join(w for w in words[:take] if not w.startswith(("+", "-")))
        try:
            when = datetime.strptime(text, "%a %b %d %H:%M:%S %Y").replace(tzinfo=UTC)
        except ValueError:
            continue
        return int(when.timestamp() * 1000)
    return None


def _next_separator(data: bytes, start: int) -> tuple[int, int]:
    """(end of the current message, start of the next "From " line) from `start` on: a "From "
    line only counts after a blank line (LF or CRLF); (len, len) at the end of the data."""
    best = (len(data), len(data))
    for blank in (b"\n\nFrom ", b"\n\r\nFrom "):
        at = data.find(blank, max(start - 1, 0), best[0] + 8)  # bounded: never quadratic
        if at != -1 and at + 1 < best[0]:
            best = (at + 1, at + len(blank) - 5)
    return best


def _content_length_end(data: bytes, start: int) -> int | None:
    """Where the message ends by its Content-Length (mboxcl2), if that lands on a boundary."""
    head_end, limit = -1, len(data)
    for blank in (b"\n\n", b"\n\r\n"):
        at = data.find(blank, max(start - 1, 0), limit + 3)
        if at != -1 and (head_end == -1 or at < limit):
            head_end, limit = at + len(blank), at
    if head_end == -1:
        return None
    found = _CONTENT_LENGTH.search(data, start, head_end)
    if found is None:
        return None
    end = head_end + int(found.group(1))
    rest = data[end:end + 6]
    if end == len(data) or data[end:] == b"\n" or rest == b"\nFrom " or rest[:5] == b"From ":
        return end
    return None


def iter_mbox(data: bytes) -> Iterator[MboxMessage]:
    """The messages of an mboxrd or mboxcl2 file, byte-exact."""
    if data and not data.startswith(b"From "):
        raise MboxError("not an mbox file: it does not begin with a 'From ' line")
    pos = 0
    while pos < len(data):
        eol = data.find(b"\n", pos)
        eol = len(data) if eol == -1 else eol
        line = data[pos:eol].rstrip(b"\r")
        start = min(eol + 1, len(data))
        parts = line.split()
        sender = parts[1].decode("utf-8", "replace") if len(parts) > 1 else "MAILER-DAEMON"
        counted = _content_length_end(data, start)
        if counted is not None:
            raw = data[start:counted]
            pos = counted + (1 if data[counted:counted + 1] == b"\n" else 0)
        else:
            end, pos = _next_separator(data, start)
            region = data[start:end]
            if end == len(data) and (region.endswith(b"\n\n") or region.endswith(b"\r\n\n")):
                region = region[:-1]  # the writer's blank line after the last message
            raw = unquote_from(region)
        yield MboxMessage(raw, sender, _asctime(line))


# --------------------------------------------------------------------------------- Maildir

MAILDIR_FLAGS = {"D": "$draft", "F": "$flagged", "P": "$forwarded", "R": "$answered",
                 "S": "$seen", "T": "$deleted"}
"""The Maildir info letters (cr.yp.to/proto/maildir.html). T (trashed) becomes $deleted, IMAP's
\\Deleted, rather than a skipped message: an import loses nothing, and the user's client shows
the message marked for deletion as it did before."""
_LETTER_OF = {v: k for k, v in MAILDIR_FLAGS.items()}
_INFO = re.compile(r"[:!;]2,([A-Za-z]*)$")


def maildir_keywords(filename: str, custom: dict[str, str] | None = None) -> list[str]:
    """Keywords from a Maildir file name's info (`:2,FRS`); lower-case letters are Dovecot
    keywords, named by the folder's dovecot-keywords file (`custom`: letter -> keyword)."""
    found = _INFO.search(filename)
    if found is None:
        return []
    out = []
    for letter in found.group(1):
        keyword = MAILDIR_FLAGS.get(letter) or (custom or {}).get(letter)
        if keyword and keyword not in out:
            out.append(keyword)
    return out


def maildir_info(keywords: Iterable[str], custom: dict[str, str] | None = None) -> str:
    """The `:2,` suffix for keywords, letters in ASCII order as the spec asks; `custom` maps
    keywords to Dovecot letters (keywords without a letter are left out)."""
    letters = {_LETTER_OF.get(k) or (custom or {}).get(k) for k in keywords}
    return ":2," + "".join(sorted(x for x in letters if x))


def parse_dovecot_keywords(text: str) -> dict[str, str]:
    """dovecot-keywords ("0 $Label1" per line) as letter -> keyword ('a' is 0)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        number, _, name = line.strip().partition(" ")
        if number.isdigit() and int(number) < 26 and name:
            out[chr(ord("a") + int(number))] = name.lower()
    return out


def dovecot_keywords(keywords: Iterable[str]) -> dict[str, str]:
    """Letters for the keywords Maildir has no letter of (at most 26): keyword -> letter."""
    extra = sorted({k for k in keywords if k not in _LETTER_OF})[:26]
    return {k: chr(ord("a") + i) for i, k in enumerate(extra)}


def folder_to_label(folder: str) -> str:
    """A Maildir++ folder (".Work.Projects") or a nested directory path ("Work/Projects") to
    a mailbox name ("Work/Projects"). Dots inside a name were written as %2E; names in IMAP's
    modified UTF-7 (Dovecot's default) are decoded."""
    parts = folder[1:].split(".") if folder.startswith(".") else folder.split("/")
    return "/".join(mutf7_decode(p.replace("%2E", ".").replace("%25", "%")) for p in parts)


def label_to_folder(label: str) -> str:
    """The Maildir++ folder name of a mailbox name (UTF-8 kept, '.' and '%' escaped)."""
    return "." + ".".join(p.replace("%", "%25").replace(".", "%2E") for p in label.split("/"))


# ----------------------------------------------------------------- IMAP names, flags, dates

_MUTF7 = re.compile(r"&([A-Za-z0-9+,]*)-")


def mutf7_decode(name: str) -> str:
    """IMAP's modified UTF-7 (RFC 3501 §5.1.3) to text; a name that is not valid mUTF-7 is
    returned as it is."""
    def decode(m: re.Match[str]) -> str:
        if not m.group(1):
            return "&"
        chunk = m.group(1).replace(",", "/")
        return base64.b64decode(chunk + "=" * (-len(chunk) % 4)).decode("utf-16-be")
    try:
        return _MUTF7.sub(decode, name)
    except (ValueError, UnicodeDecodeError):
        return name


def mutf7_encode(name: str) -> str:
    out: list[str] = []
    pending = ""

    def flush() -> None:
        nonlocal pending
        if pending:
            chunk = base64.b64encode(pending.encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + chunk.replace("/", ",") + "-")
            pending = ""
    for c in name:
        if " " <= c <= "~":
            flush()
            out.append("&-" if c == "&" else c)
        else:
            pending += c
    flush()
    return "".join(out)


IMAP_SYSTEM_FLAGS = {"\\seen": "$seen", "\\flagged": "$flagged", "\\answered": "$answered",
                     "\\draft": "$draft", "\\deleted": "$deleted"}


def imap_keywords(flags: Iterable[str]) -> list[str]:
    """IMAP flags to keywords (lower case, as the store keeps them); \\Recent and unknown
    system flags are dropped."""
    out = []
    for flag in flags:
        low = flag.lower()
        keyword = IMAP_SYSTEM_FLAGS.get(low) or (None if low.startswith("\\") else low)
        if keyword and keyword not in out:
            out.append(keyword)
    return out


GMAIL_SYSTEM_LABELS = {"\\inbox": "INBOX", "\\sent": "role:sent", "\\draft": "role:drafts",
                       "\\drafts": "role:drafts", "\\trash": "role:trash", "\\spam": "role:junk",
                       "\\junk": "role:junk", "\\starred": "keyword:$flagged",
                       "\\important": "keyword:$important"}
"""Gmail's system labels (X-GM-LABELS) to a mailbox by role, or to a keyword."""


def parse_internaldate(text: str) -> int | None:
    """IMAP INTERNALDATE ("17-Jul-1996 02:44:25 -0700") in milliseconds."""
    try:
        when = datetime.strptime(text.strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None
    return int(when.timestamp() * 1000)


def date_header_ms(raw: bytes) -> int | None:
    """The Date header of a message in milliseconds (for sources without a delivery date)."""
    end = raw.find(b"\n\n")
    head = raw[: end if end != -1 else 65536].replace(b"\r\n", b"\n")
    found = re.search(rb"^Date:[ \t]*(.*(?:\n[ \t].*)*)", head, re.MULTILINE | re.IGNORECASE)
    if found is None:
        return None
    try:
        when = parsedate_to_datetime(found.group(1).decode("latin-1").strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)
