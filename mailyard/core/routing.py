"""Mail routing's pure parts: subaddresses, SRS envelope rewriting, and loop counting.

The rules that read the store (aliases, domain aliases, catch-alls) live once in
services/routing.py; what is here needs no I/O and is tested on its own.

SRS (the Sender Rewriting Scheme, Shevek's 2004 draft as libsrs2 and postsrsd implement it):
a message we forward to another domain leaves with an envelope sender at our own domain, so the
receiver's SPF check asks our domain, which authorises us. The rewritten address carries the
original one and an HMAC over it, so that a bounce addressed to it can be reversed, and only
to an address we rewrote ourselves (no open relay through forged SRS addresses):

    SRS0=HHHH=TT=orig-domain=orig-local@our-domain

HHHH is the first `HASH_CHARS` (8) characters of the base32 HMAC-SHA256 (key: the configured
secret) of TT + orig-domain + orig-local, all lower case: the hash must survive a relay that
changes the case, and base32 has one case, so all 40 bits count (libsrs2's default of four
base64 characters compared without case leaves 21 bits, which a sender guesses in seconds
with RCPT after RCPT); TT is the day number modulo 1024 in two base32 characters, and a
reversal is refused after `max_age_days`. Only a bounce (the null sender) may be addressed to
an SRS address: anything else to one is refused at RCPT, so a valid address seen in one
forwarded message's Return-Path relays nothing but bounces.

An address that is already SRS0 is not wrapped again but re-signed as SRS1
(SRS1=HHHH=first-forwarder==SRS0-part@our-domain), so the bounce goes back one hop to the
forwarder that wrote the SRS0 address, which reverses it once more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from mailyard.core.mime import top_fields

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
HASH_CHARS = 8
_DAY = 86400
_PERIOD = 1024


def split_detail(address: str, delimiter: str) -> tuple[str, str]:
    """`alice+news@example.org` -> (`alice@example.org`, `news`) with delimiter "+"; the
    address unchanged and "" when it has no detail (or `delimiter` is "": subaddressing off).
    The first delimiter splits (RFC 5233 §4: the rest is the detail, delimiters included)."""
    local, at, domain = address.rpartition("@")
    if not at or not delimiter or not local:
        return address, ""
    user, sep, detail = local.partition(delimiter)
    if not sep or not user:
        return address, ""
    return f"{user}@{domain}", detail


class SRSError(ValueError):
    """An SRS address that is not ours to reverse: malformed, a wrong hash, or too old."""


@dataclass(frozen=True, slots=True)
class SRS:
    """Forward and reverse SRS with one secret. `domain` is the rewritten sender's domain."""

    secret: bytes
    domain: str
    max_age_days: int = 21

    def _hash(self, *parts: str) -> str:
        mac = hmac.new(self.secret, "".join(parts).lower().encode("utf-8", "surrogateescape"),
                       hashlib.sha256).digest()
        return base64.b32encode(mac).decode()[:HASH_CHARS]

    @staticmethod
    def _same(given: str, expected: str) -> bool:
        """Compared without case: a relay may change the address's case (and the recipient
        lookup here lower-cases it), which base32 survives with every bit intact."""
        return len(given) == HASH_CHARS and hmac.compare_digest(
            given.upper().encode("utf-8", "surrogateescape"), expected.encode())

    @staticmethod
    def _timestamp(now: float) -> str:
        day = int(now // _DAY) % _PERIOD
        return _B32[day >> 5] + _B32[day & 31]

    def forward(self, sender: str, now: float | None = None) -> str:
        """The envelope sender for a copy of mail from `sender` that we forward. The null
        sender stays null (a bounce is never rewritten), and one at our own domain needs no
        rewriting (our SPF covers it)."""
        if not sender or "@" not in sender:
            return sender
        local, _, domain = sender.rpartition("@")
        if domain.lower() == self.domain.lower():
            return sender
        upper = local[:5].upper()
        if upper in ("SRS0=", "SRS1="):
            return self._resign(local, domain)
        stamp = self._timestamp(time.time() if now is None else now)
        digest = self._hash(stamp, domain, local)
        return f"SRS0={digest}={stamp}={domain}={local}@{self.domain}"

    def _resign(self, local: str, domain: str) -> str:
        """An SRS address from another forwarder: SRS1 naming that forwarder (`domain`)."""
        if local[:5].upper() == "SRS1=":
            # SRS1=HHHH=first==rest: keep the first forwarder and the rest, re-sign.
            parts = local[5:].split("=", 2)
            if len(parts) < 3:
                return local + "@" + domain
            first, rest = parts[1], parts[2]
        else:
            first, rest = domain, local[4:]
        digest = self._hash(first, rest)
        return f"SRS1={digest}={first}={rest}@{self.domain}"

    def is_srs(self, address: str) -> bool:
        local = address.rpartition("@")[0]
        return local[:5].upper() in ("SRS0=", "SRS1=")

    def reverse(self, address: str, now: float | None = None) -> str:
        """The original sender of an SRS address we wrote; SRSError otherwise."""
        local, at, domain = address.rpartition("@")
        if not at or domain.lower() != self.domain.lower():
            raise SRSError(f"{address} is not at {self.domain}")
        tag = local[:5].upper()
        if tag == "SRS1=":
            parts = local[5:].split("=", 2)
            if len(parts) != 3 or not parts[2].startswith("="):
                raise SRSError(f"malformed SRS1 address {address}")
            digest, first, rest = parts
            if not self._same(digest, self._hash(first, rest)):
                raise SRSError(f"bad SRS hash in {address}")
            return f"SRS0{rest}@{first}"
        if tag != "SRS0=":
            raise SRSError(f"{address} is no SRS address")
        parts = local[5:].split("=", 3)
        if len(parts) != 4 or not all(parts):
            raise SRSError(f"malformed SRS0 address {address}")
        digest, stamp, orig_domain, orig_local = parts
        if not self._same(digest, self._hash(stamp, orig_domain, orig_local)):
            raise SRSError(f"bad SRS hash in {address}")
        stamp = stamp.upper()
        if len(stamp) != 2 or any(c not in _B32 for c in stamp):
            raise SRSError(f"bad SRS timestamp in {address}")
        then = (_B32.index(stamp[0]) << 5) | _B32.index(stamp[1])
        today = int((time.time() if now is None else now) // _DAY) % _PERIOD
        if (today - then) % _PERIOD > self.max_age_days:
            raise SRSError(f"SRS address {address} has expired")
        return f"{orig_local}@{orig_domain}"


def trace_counts(raw: bytes, delivered_to: str = "") -> tuple[int, bool]:
    """How many Received fields the top-level header block holds, and whether a Delivered-To
    field there names `delivered_to` (case-insensitive): the two signs of a forwarding loop
    (RFC 5321 §6.3: count the Received fields; a Delivered-To we wrote before means the
    message came back to the same address)."""
    received = 0
    seen = False
    want = delivered_to.lower().encode("utf-8", "surrogateescape")
    for key, value in top_fields(raw):
        if key == b"received":
            received += 1
        elif key == b"delivered-to" and want and value.strip().lower() == want:
            seen = True
    return received, seen
