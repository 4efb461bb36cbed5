"""Rank-ordered merging of new pieces, compiled with numba.

A piece seen for the first time must be merged from its bytes: repeatedly join the adjacent pair
of parts whose concatenation has the lowest rank (the leftmost on a tie). In Python that is a dict
lookup per pair and a rescan per merge, ~15 µs for a word; numpy can merge a batch of pieces in
lock-step rounds, but every round pays for whole-array passes and the result was still ~5 µs a
piece. On a long stream of web text about one piece in twelve is new, so this cost decided the
encoder's speed against tiktoken. Here the same loop (tiktoken's, part by part) is a numba
function over one flat byte array for the whole batch: ~1 µs a piece, most of it the pair lookups.

The rank of a pair of tokens comes from an open-addressing hash table of every ``(left, right)``
whose concatenated bytes form a token — one entry per split point of each token where both halves
are tokens too. Key and rank share one 64-bit word (``key << bits | rank``, ``bits`` wide enough
for any id), so a probe is one memory access; at 32,768 ids the table (under half full) is 1 MiB,
the size of one core's L2 cache on the machine measured. A first version, with keys and ranks in
two arrays and a quarter-full table (4 MiB), merged ~2× slower.

Compiled code is cached on disk (``cache=True``): the first use on a machine compiles for a few
seconds, later processes load it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numba
import numpy as np

_FIBONACCI = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15 as int64: multiplicative hashing
NO_RANK = np.int64(1 << 62)
"""Compares above every real rank."""


def _table_bits(entries: int) -> int:
    """log2 of a hash table's size that keeps it at most half full."""
    return max(4, (2 * entries).bit_length())


def _flat(pieces: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """All pieces in one byte array, and where each starts (``offsets[-1]`` is the end)."""
    offsets = np.zeros(len(pieces) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, pieces), np.int64, len(pieces)), out=offsets[1:])
    return np.frombuffer(b"".join(pieces), np.uint8), offsets


@numba.njit(cache=True, inline="always")
def _key_slot(key, shift):
    return np.int64(np.uint64(key * _FIBONACCI) >> np.uint64(shift))


@numba.njit(cache=True, inline="always")
def _rank(table, shift, bits, key):
    mask = len(table) - 1
    slot = _key_slot(key, shift)
    while True:
        entry = table[slot]
        if entry >> bits == key:
            return entry & ((np.int64(1) << bits) - 1)
        if entry < 0:
            return NO_RANK
        slot = (slot + 1) & mask


@numba.njit(cache=True)
def _fill_table(keys, values, table, shift, bits):
    mask = len(table) - 1
    for i in range(len(keys)):
        slot = _key_slot(keys[i], shift)
        while table[slot] >= 0:
            slot = (slot + 1) & mask
        table[slot] = (keys[i] << bits) | values[i]


@numba.njit(cache=True)
def _merge(raw, offsets, byte_ids, table, shift, bits, out, counts):
    """Merge piece ``p`` (``raw[offsets[p]:offsets[p + 1]]``); its ids go to ``out`` one piece
    after the other, their number to ``counts[p]``. Returns the number of ids written."""
    longest = 0
    for p in range(len(offsets) - 1):
        longest = max(longest, offsets[p + 1] - offsets[p])
    ids = np.empty(longest + 1, np.int64)
    ranks = np.empty(longest + 1, np.int64)  # ranks[i]: rank of merging parts i and i + 1
    written = 0
    for p in range(len(offsets) - 1):
        start = offsets[p]
        n = offsets[p + 1] - start
        for i in range(n):
            ids[i] = byte_ids[raw[start + i]]
        for i in range(n - 1):
            ranks[i] = _rank(table, shift, bits, (ids[i] << bits) | ids[i + 1])
        while n > 1:
            best = NO_RANK
            at = -1
            for i in range(n - 1):
                if ranks[i] < best:  # strict: the leftmost of equal ranks
                    best = ranks[i]
                    at = i
            if at < 0:
                break
            ids[at] = best  # a rank is the id of the merged token
            n -= 1
            for i in range(at + 1, n):
                ids[i] = ids[i + 1]
            for i in range(at + 1, n - 1):
                ranks[i] = ranks[i + 1]
            if at < n - 1:
                ranks[at] = _rank(table, shift, bits, (ids[at] << bits) | ids[at + 1])
            if at > 0:
                ranks[at - 1] = _rank(table, shift, bits, (ids[at - 1] << bits) | ids[at])
        out[written : written + n] = ids[:n]
        written += n
        counts[p] = n
    return written


@numba.njit(cache=True, inline="always")
def _bytes_slot(flat, start, end, mask):
    h = np.uint64(14695981039346656037)  # FNV-1a
    for i in range(start, end):
        h = (h ^ np.uint64(flat[i])) * np.uint64(1099511628211)
    return np.int64(h & np.uint64(mask))


@numba.njit(cache=True)
def _find_token(flat, offsets, slots, start, end):
    """Index of the token whose bytes are ``flat[start:end]``, or -1."""
    mask = len(slots) - 1
    slot = _bytes_slot(flat, start, end, mask)
    while slots[slot] >= 0:
        t = slots[slot]
        if offsets[t + 1] - offsets[t] == end - start:
            same = True
            for i in range(end - start):
                if flat[offsets[t] + i] != flat[start + i]:
                    same = False
                    break
            if same:
                return t
        slot = (slot + 1) & mask
    return -1


@numba.njit(cache=True)
def _token_splits(flat, offsets, ids, bits):
    """(left id, right id, id) for every cut of every token (``flat[offsets[t]:offsets[t + 1]]``,
    id ``ids[t]``) into two tokens; tokens are found by a hash table of their bytes."""
    n = len(offsets) - 1
    slots = np.full(1 << bits, -1, np.int64)
    mask = len(slots) - 1
    cuts = 0
    for t in range(n):
        slot = _bytes_slot(flat, offsets[t], offsets[t + 1], mask)
        while slots[slot] >= 0:
            slot = (slot + 1) & mask
        slots[slot] = t
        cuts += max(0, offsets[t + 1] - offsets[t] - 1)
    left = np.empty(cuts, np.int64)
    right = np.empty(cuts, np.int64)
    value = np.empty(cuts, np.int64)
    k = 0
    for t in range(n):
        for cut in range(offsets[t] + 1, offsets[t + 1]):
            a = _find_token(flat, offsets, slots, offsets[t], cut)
            if a < 0:
                continue
            b = _find_token(flat, offsets, slots, cut, offsets[t + 1])
            if b < 0:
                continue
            left[k] = ids[a]
            right[k] = ids[b]
            value[k] = ids[t]
            k += 1
    return left[:k], right[:k], value[:k]


class PairRanks:
    """(left id, right id) → rank of their concatenation, for every pair whose concatenation is a
    token, and the merging of pieces with it."""

    def __init__(self, ranks: Mapping[bytes, int]) -> None:
        n_ids = max(ranks.values()) + 1
        self._bits = max(8, n_ids.bit_length())
        if 3 * self._bits > 63:
            raise ValueError(f"{n_ids} ids do not fit the 64-bit pair table (at most {1 << 21})")
        left, right, values = self._pairs(ranks)
        keys = (left << self._bits) | right
        table_bits = _table_bits(len(keys))
        self._shift = 64 - table_bits
        self._table = np.full(1 << table_bits, -1, np.int64)
        _fill_table(keys, values, self._table, self._shift, self._bits)
        self.byte_ids = np.array([ranks[bytes([b])] for b in range(256)], np.int64)

    @staticmethod
    def _pairs(ranks: Mapping[bytes, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Left ids, right ids and ranks of every split of every token into two tokens."""
        flat, offsets = _flat(list(ranks))
        ids = np.fromiter(ranks.values(), np.int64, len(ranks))
        return _token_splits(flat, offsets, ids, _table_bits(len(ranks)))

    def merge_pieces(self, pieces: Sequence[bytes], dtype: np.dtype) -> list[bytes]:
        """Ids of each piece (none may be a token itself), packed as ``dtype`` machine integers.
        Merging costs O(length²) a piece: long pieces belong to ``bpe.merge_piece``'s heap."""
        if not pieces:
            return []
        raw, offsets = _flat(pieces)
        out = np.empty(len(raw), dtype)  # the kernel is compiled for each id dtype
        counts = np.empty(len(pieces), np.int64)
        written = _merge(raw, offsets, self.byte_ids, self._table, self._shift, self._bits, out, counts)
        packed = out[:written].tobytes()
        counts *= np.dtype(dtype).itemsize
        ends = np.cumsum(counts)
        return list(map(packed.__getitem__, map(slice, (ends - counts).tolist(), ends.tolist())))
