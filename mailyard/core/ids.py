"""Opaque, URL-safe, time-ordered ids.

Like the seed's TIMEUUID: the first 48 bits are milliseconds since the epoch, so sorting ids
sorts by
creation time and "newest first" is an index order. Encoded in Crockford base32 (lower case), which
is URL-safe and valid as a JMAP Id (RFC 8620 §1.2). A one-letter prefix names the kind of object so
an id read in a log says what it is.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_lock = threading.Lock()
_last = (0, 0)


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """A 26-character ULID-style id after `prefix`; monotonic within one process."""
    global _last
    millis = time.time_ns() // 1_000_000
    with _lock:
        last_ms, last_rand = _last
        if millis <= last_ms:
            millis, rand = last_ms, (last_rand + 1) & ((1 << 80) - 1)
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
        _last = (millis, rand)
    return prefix + _encode((millis << 80) | rand, 26)


def id_value(ident: str) -> int:
    """The 128-bit number an id made by new_id encodes (time in the top 48 bits)."""
    value = 0
    for ch in ident[-26:]:
        value = (value << 5) | _ALPHABET.index(ch)
    return value


def id_time_ms(ident: str) -> int:
    """The creation time in milliseconds encoded in an id made by new_id."""
    return id_value(ident) >> 80


def id_u64(ident: str) -> int:
    """A 64-bit number for protocols that want one (Gmail's X-GM-MSGID): the time and the
    first 16 random bits, so it still sorts by creation time."""
    return id_value(ident) >> 64


def next_uidvalidity(last: int, now: float) -> int:
    """The UIDVALIDITY for a mailbox created now, when the account last gave `last`.

    RFC 3501 §2.3.1.1: a (mailbox name, UIDVALIDITY, UID) triple must never name two messages,
    so a name deleted and created again needs a new value, even within the same second.
    Seconds since the epoch keep values unique across a re-created account; one more than
    the last keeps them unique within a second. Fits the RFC's 32 bits until 2106."""
    return max(int(now), last + 1)
