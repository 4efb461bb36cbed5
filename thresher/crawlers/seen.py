"""A compact set of 64-bit URL keys: the crawl's "seen" structure at ~9 bytes per URL.

A Python ``set`` of ints costs ~70-100 bytes per key (a 36-byte int object plus the hash
slot and the table's spare room); 10M URLs would be ~1 GB per partition. Here keys live in
one sorted ``uint64`` numpy array (8 bytes each), and new keys in a small Python set that is
merged into the array once it holds 1/32 of the array's size (at least 65,536 keys). The
merge is a linear ``searchsorted`` + ``insert`` (no re-sort), so adding a key costs amortised
~0.5 µs, and the array only briefly exists twice during a merge.

Nothing here is written to disk: after a crash the set is rebuilt from the work list and the
journal (``frontier.py``), which is what makes resume exact.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

MIN_BUFFER = 1 << 16
"""Keys held in the Python set before a merge, at the least (~6 MB)."""
BUFFER_SHARE = 32
"""The set may hold up to 1/BUFFER_SHARE of the array's keys before a merge (~3 B per key)."""


class SeenSet:
    """Set of 64-bit unsigned ints with ``add`` (True when new), ``in`` and ``len``."""

    __slots__ = ("_checked_at", "_merges", "_recent", "_sorted")

    def __init__(self, keys: Iterable[int] = ()):
        self._sorted = np.empty(0, dtype=np.uint64)
        self._recent: set[int] = set()
        self._merges = 0
        self._checked_at = -1  # self._merges when ``missing`` last looked at the array
        for key in keys:
            self.add(key)

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def __contains__(self, key: int) -> bool:
        if key in self._recent:
            return True
        arr = self._sorted
        if not len(arr):
            return False
        i = int(arr.searchsorted(np.uint64(key)))
        return i < len(arr) and int(arr[i]) == key

    def missing(self, keys: list[int]) -> list[bool]:
        """For each key, True if it is not in the set: one numpy search for the whole list
        (a page's links), ~20x cheaper per key than ``in``."""
        if not keys:
            return []
        recent = self._recent
        arr = self._sorted
        self._checked_at = self._merges
        if not len(arr):
            return [k not in recent for k in keys]
        probe = np.array(keys, dtype=np.uint64)
        at = arr.searchsorted(probe)
        found = arr[np.minimum(at, len(arr) - 1)] == probe
        return [not hit and k not in recent for k, hit in zip(keys, found.tolist(), strict=True)]

    def add(self, key: int) -> bool:
        """Add ``key``; False if it was already there."""
        if key in self:
            return False
        self._insert(key)
        return True

    def add_missing(self, key: int) -> bool:
        """``add`` for a key that ``missing`` just reported absent: only the recent keys
        (grown since by other ``add_missing`` calls) need checking, unless a merge has moved
        them into the array meanwhile. False if it is there."""
        if self._merges != self._checked_at:
            return self.add(key)
        if key in self._recent:
            return False
        self._insert(key)
        return True

    def _insert(self, key: int) -> None:
        self._recent.add(key)
        if len(self._recent) >= max(MIN_BUFFER, len(self._sorted) // BUFFER_SHARE):
            self._merge()

    def _merge(self) -> None:
        new = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
        new.sort()
        self._sorted = np.insert(self._sorted, self._sorted.searchsorted(new), new)
        self._recent = set()
        self._merges += 1

    @property
    def nbytes(self) -> int:
        """Approximate bytes held (array plus the Python set of recent keys)."""
        return self._sorted.nbytes + 100 * len(self._recent)
