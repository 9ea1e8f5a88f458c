"""A bounded, byte-counted LRU of small blobs, kept in this process.

Blobs are immutable, so a cached copy never goes stale while its blob exists: the only writer of
change is deletion, done by `mailyard gc` to blobs nothing refers to any more, which no reader
asks for. Bounded by the bytes it holds (not by the number of entries) because blob sizes range
from a few hundred bytes to 35 MB; blobs above `max_item` are never kept, so one big
attachment cannot flush the hot working set of messages and skeletons.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class BlobCache:
    def __init__(self, capacity: int, max_item: int) -> None:
        self.capacity = capacity
        self.max_item = min(max_item, capacity)
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        # The adapter's callers may sit on any thread (the server's loop, a CLI's, a test's).
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Bytes held now (never above `capacity`)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_item:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._items[key] = data
            self._bytes += len(data)
            while self._bytes > self.capacity:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= len(evicted)

    def discard(self, key: str) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
