"""The clean-result cache, as clamd's: objects already found clean are not scanned again.

Mail gateways and file servers see the same attachments, libraries and archive members over
and over; clamd remembers the MD5 of every clean layer and skips it next time. Vigil keys
by SHA-256 (faster than MD5 on CPUs with SHA extensions, and not open to the chosen-prefix
collisions that let a crafted file ride on a clean one's MD5) plus the size, and by what can
change a layer's verdict besides its bytes: the containers above it (logical signatures with
``Container``/``Intermediates`` conditions and .cdb signatures depend on them), a forced
file type and the all-match mode. The cache belongs to one engine, so a reload empties it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["CleanCache", "DEFAULT_ENTRIES"]

# clamd's cache holds 256 trees of 256 nodes
DEFAULT_ENTRIES = 65536


class CleanCache:
    """A bounded, thread-safe set of keys, least recently used dropped first."""

    __slots__ = ("_entries", "_lock", "_max", "hits", "misses")

    def __init__(self, max_entries: int = DEFAULT_ENTRIES) -> None:
        self._entries: OrderedDict[Hashable, None] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries
        self.hits = 0
        self.misses = 0

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return True
            self.misses += 1
            return False

    def add(self, key: Hashable) -> None:
        with self._lock:
            self._entries[key] = None
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
