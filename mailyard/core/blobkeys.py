"""Blob ids: what the BlobStore port accepts, and the two shapes the pipeline gives them.

- A message body (the skeleton left once attachments are split out, core/skeleton.py) is named
  ``bodies/YYYY/MM/DD/<sha256 hex>`` by the UTC day it was received. The email row records that
  whole id, so the row is the mapping from an email to its body object (the seed keeps bodies
  by date, attachments by hash): an operator can list, size, tier or expire one day, month or
  year of bodies by key prefix (S3 lifecycle rules, `ls` on the file store) without reading a
  database, and the SHA-256 tail still lets fsck verify the content and lets two recipients of
  one message share one object. The day is the message's `received_at` (not the clock at write
  time), so a retried delivery writes the same key again instead of a second copy.
- Everything else is flat, ``[A-Za-z0-9_-]{8,128}``: attachments and uploads by the SHA-256 hex
  of their content (the skeleton names attachments by 32-byte digest, so their id must stay the
  bare digest: the store spreads those by the hash's tail), spool copies by queue item, and
  bodies stored before this layout existed (bare SHA-256 hex, still valid and still read).

- The octets a message was imported with, when they had bare LF line ends, are kept beside its
  body as ``original-<the body's SHA-256>`` (flat): the body holds the CRLF form every door
  serves (IMAP, POP3, sizes, sections, search), and `mailyard export` gives back the original.
  Its name follows from the body's, so no row (and no schema change) records it: gc keeps it
  exactly as long as its body, fsck checks that its CRLF form is the message, and export uses
  it only when that holds. Two imports whose CRLF forms are one message share one body, and so
  one side blob: the export of either gives the octets of one of them.

No other form is accepted: ids reach file paths and object keys, so "..", empty segments,
absolute paths and control characters must never get through (`check`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

BODIES = "bodies/"
"""The first segment of every body id: the key prefix (after the store's own) of all bodies."""

_FLAT = re.compile(r"[A-Za-z0-9_-]{8,128}")
_BODY = re.compile(r"bodies/([0-9]{4})/(0[1-9]|1[0-2])/(0[1-9]|[12][0-9]|3[01])/([0-9a-f]{64})")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BARE_LF = re.compile(rb"(?<!\r)\n")
ORIGINAL = "original-"
"""The prefix of a side blob holding a message's octets as imported (see the module doc)."""
_LAST_MS = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() * 1000)


def body_id(sha256_hex: str, received_at_ms: int) -> str:
    """The id of a body whose octets hash to `sha256_hex`, received at `received_at_ms`
    (milliseconds since the epoch, UTC). A date outside years 1970..9999 (an IMAP APPEND or
    JMAP import may name any) is clamped to that range so the id stays in its fixed form."""
    if not _SHA256.fullmatch(sha256_hex):
        raise ValueError(f"not a SHA-256 hex digest: {sha256_hex!r}")
    day = datetime.fromtimestamp(min(max(received_at_ms, 0), _LAST_MS) / 1000, UTC)
    return f"{BODIES}{day.year:04d}/{day.month:02d}/{day.day:02d}/{sha256_hex}"


def is_body(blob_id: str) -> bool:
    """True for a well-formed dated body id."""
    return _BODY.fullmatch(blob_id) is not None


def is_flat(blob_id: str) -> bool:
    """True for a well-formed flat id (attachments, uploads, spools, bodies of old stores)."""
    return _FLAT.fullmatch(blob_id) is not None


def check(blob_id: str) -> str:
    """`blob_id` itself if it is of either form; ValueError otherwise."""
    if _FLAT.fullmatch(blob_id) or _BODY.fullmatch(blob_id):
        return blob_id
    raise ValueError(f"invalid blob id {blob_id!r}")


def content_sha256(blob_id: str) -> str | None:
    """The SHA-256 hex the blob's octets must hash to, when its id names one: the tail of a
    body id, or a flat id that is a SHA-256 hex itself (attachments, old bodies). None for
    ids that are not content-addressed (spool copies)."""
    if m := _BODY.fullmatch(blob_id):
        return m.group(4)
    if _SHA256.fullmatch(blob_id):
        return blob_id
    return None


def original_id(body: str) -> str | None:
    """The id of the side blob that keeps the imported octets of the message whose body
    (skeleton) is `body`; None for a body id that names no SHA-256 (none is ever written)."""
    digest = content_sha256(body)
    return None if digest is None else ORIGINAL + digest


def original_of(blob_id: str) -> str | None:
    """The body SHA-256 a side blob id names, or None if `blob_id` is no such id."""
    digest = blob_id.removeprefix(ORIGINAL)
    if blob_id.startswith(ORIGINAL) and _SHA256.fullmatch(digest):
        return digest
    return None


def served_form(raw: bytes) -> bytes:
    """`raw` with every bare LF made CRLF: the form a message is stored and served in (RFC
    5322 §2.3, IMAP and POP3 send CRLF lines), and what an original side blob must come to."""
    return _BARE_LF.sub(b"\r\n", raw) if b"\n" in raw else raw
