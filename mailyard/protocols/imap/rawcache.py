"""The octets of messages this IMAP process fetched lately, kept for the next FETCH of them.

A mail client reads the same message several times in a short while (the header block for the
list, then the text when it is opened, then again from a second device or after a reconnect),
and each read re-assembled it from its blobs: a stat, an open and a read per blob, and the
skeleton's assembly, all on the event loop (FETCH of header and text was a fifth of the
listener's time under bench/imap_load.py's imaptest mix). A message's octets never change
once stored (the skeleton's blob id is its content's hash), so keying them by that id needs no
invalidation: an expunged message simply ages out. The cache is bounded in bytes and skips
large messages, which the blob store reads off the loop anyway.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_BYTES = 8 * 1024 * 1024
"""Octets kept in all (per IMAP process)."""
MAX_MESSAGE = 128 * 1024
"""Larger messages are not kept: a few attachments would push every small message out."""


class RawCache:
    """Least recently used message octets by skeleton blob id, at most `max_bytes` in all."""

    __slots__ = ("_entries", "_size", "max_bytes", "max_message")

    def __init__(self, max_bytes: int = MAX_BYTES, max_message: int = MAX_MESSAGE) -> None:
        self.max_bytes = max_bytes
        self.max_message = max_message
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    def get(self, blob_id: str) -> bytes | None:
        raw = self._entries.get(blob_id)
        if raw is not None:
            self._entries.move_to_end(blob_id)
        return raw

    def put(self, blob_id: str, raw: bytes) -> None:
        if len(raw) > self.max_message or blob_id in self._entries:
            return
        self._entries[blob_id] = raw
        self._size += len(raw)
        while self._size > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self._size -= len(old)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Octets held now."""
        return self._size
