"""Rank-ordered merging of many pieces at once, vectorised with numpy.

Pieces not seen before cost the most in plain Python (a dict lookup per byte pair and a rescan per
merge). Here they are merged together: all pieces lie in one flat array of token ids, and each round
does, for every piece at once, what one step of the sequential algorithm does — find the adjacent
pair whose concatenation has the lowest rank (the leftmost on a tie) and merge it. A piece with no
mergeable pair left is finished and leaves the arrays. The result is the sequential result exactly:
each piece still takes one merge per round, in the same order. Only the two pairs next to a merge
are looked up again; every other pair keeps its rank.

The rank of a pair of tokens comes from a table of every ``(left, right)`` whose concatenated
bytes form a token — built once from the vocabulary, one entry per split point of each token where
both halves are tokens too — stored as an open-addressing hash table so that a batch of lookups is
a few vectorised gathers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

_NONE = np.int64((1 << 31) - 1)  # "no rank": compares above every real rank
_DONE = np.int64((1 << 63) - 1)
_POS_BITS = 32
_POS_MASK = (1 << _POS_BITS) - 1
_EMPTY = np.int64(-1)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class PairRanks:
    """(left id, right id) → rank of their concatenation, for every pair whose concatenation is a
    token; vectorised lookups in an open-addressing (linear probing) hash table."""

    def __init__(self, ranks: Mapping[bytes, int]) -> None:
        keys: list[int] = []
        values: list[int] = []
        get = ranks.get
        for token, rank in ranks.items():
            for cut in range(1, len(token)):
                left = get(token[:cut])
                if left is None:
                    continue
                right = get(token[cut:])
                if right is not None:
                    keys.append(left << _POS_BITS | right)
                    values.append(rank)
        self.byte_ids = np.array([ranks[bytes([b])] for b in range(256)], np.int64)
        self._build(np.array(keys, np.int64), np.array(values, np.int64))

    def _slot(self, keys: np.ndarray) -> np.ndarray:
        return ((keys.astype(np.uint64) * _GOLDEN) >> np.uint64(64 - self._bits)).astype(np.int64)

    def _build(self, keys: np.ndarray, values: np.ndarray) -> None:
        self._bits = max(4, int(2 * max(len(keys), 1) - 1).bit_length())
        size = 1 << self._bits
        self._keys = np.full(size, _EMPTY)
        self._values = np.full(size, _NONE)
        slot = self._slot(keys)
        pending = np.arange(len(keys))
        self._max_probe = 0
        while len(pending):
            target = slot[pending]
            free = self._keys[target] == _EMPTY
            # one winner per free slot; the others (and those that found it taken) probe on
            _, first = np.unique(target[free], return_index=True)
            winners = pending[free][first]
            self._keys[slot[winners]] = keys[winners]
            self._values[slot[winners]] = values[winners]
            placed = np.zeros(len(keys), bool)
            placed[winners] = True
            pending = pending[~placed[pending]]
            slot[pending] = (slot[pending] + 1) & (size - 1)
            if len(pending):
                self._max_probe += 1

    def lookup(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        wanted = (left << _POS_BITS) | right
        out = np.full(len(wanted), _NONE)
        slot = self._slot(wanted)
        pending = np.arange(len(wanted))
        mask = len(self._keys) - 1
        for _ in range(self._max_probe + 1):
            held = self._keys[slot]
            hit = held == wanted[pending]
            out[pending[hit]] = self._values[slot[hit]]
            go_on = ~hit & (held != _EMPTY)
            pending, slot = pending[go_on], (slot[go_on] + 1) & mask
            if not len(pending):
                break
        return out

    def merge_pieces(self, pieces: Sequence[bytes]) -> Iterator[tuple[list[int], list[list[int]]]]:
        """Ids of the pieces (none of which may be a token itself), as they finish: batches of
        (indexes into ``pieces``, the ids of each)."""
        lengths = np.fromiter(map(len, pieces), np.int64, len(pieces))
        sym = self.byte_ids[np.frombuffer(b"".join(pieces), np.uint8)]
        piece = np.repeat(np.arange(len(pieces), dtype=np.int64), lengths)
        # rank[i]: rank of merging parts i and i+1, or _NONE (also at the last part of a piece)
        rank = np.full(len(sym), _NONE)
        inner = np.flatnonzero(piece[:-1] == piece[1:])
        rank[inner] = self.lookup(sym[inner], sym[inner + 1])
        while len(sym):
            starts = np.flatnonzero(np.concatenate(([True], piece[1:] != piece[:-1])))
            lengths = np.diff(np.append(starts, len(sym)))
            candidate = (rank << _POS_BITS) | np.arange(len(sym))  # ties go to the leftmost
            best = np.minimum.reduceat(candidate, starts)
            finished = (best >> _POS_BITS) == _NONE
            if finished.any():
                yield self._finished(sym, piece, starts, lengths, finished)
                keep = np.repeat(~finished, lengths)
                best = best[~finished]
            else:
                keep = np.ones(len(sym), bool)
            at = best & _POS_MASK
            sym[at] = best >> _POS_BITS
            keep[at + 1] = False
            # pairs that changed: (new, next) at ``at`` and (previous, new) at ``at - 1``
            after = at + 2
            has_next = after < len(sym)
            has_next[has_next] = piece[after[has_next]] == piece[at[has_next]]
            rank[at] = _NONE
            nxt_at = at[has_next]
            rank[nxt_at] = self.lookup(sym[nxt_at], sym[nxt_at + 2])
            before = at - 1
            has_prev = before >= 0
            has_prev[has_prev] = piece[before[has_prev]] == piece[at[has_prev]]
            prev_at = before[has_prev]
            rank[prev_at] = self.lookup(sym[prev_at], sym[prev_at + 1])
            sym, piece, rank = sym[keep], piece[keep], rank[keep]

    @staticmethod
    def _finished(sym, piece, starts, lengths, finished) -> tuple[list[int], list[list[int]]]:
        ids = sym[np.repeat(finished, lengths)].tolist()
        ends = np.cumsum(lengths[finished])
        cut = map(slice, (ends - lengths[finished]).tolist(), ends.tolist())
        return piece[starts[finished]].tolist(), list(map(ids.__getitem__, cut))
