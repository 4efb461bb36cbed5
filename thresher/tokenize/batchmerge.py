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
both halves are tokens too — kept as sorted keys, so that a batch of lookups is one
``searchsorted``. The first round, where every part is a single byte, reads a dense 256 × 256
table instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat

import numpy as np

_NONE = np.int64((1 << 31) - 1)  # "no rank": compares above every real rank
_POS_BITS = 32
_POS_MASK = (1 << _POS_BITS) - 1


class PairRanks:
    """(left id, right id) → rank of their concatenation, for every pair whose concatenation is a
    token; vectorised lookups by binary search in the sorted pair keys."""

    def __init__(self, ranks: Mapping[bytes, int]) -> None:
        # every split point of every token, one cut position at a time over all tokens long enough
        # (C-level ``map`` over the slices rather than a Python loop per split)
        get = ranks.get
        tokens = sorted((t for t in ranks if len(t) > 1), key=len, reverse=True)
        lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
        keys, values = [], []
        for cut in range(1, int(lengths[0]) if len(tokens) else 1):
            group = tokens[: int(np.count_nonzero(lengths > cut))]
            left = np.fromiter(map(get, [t[:cut] for t in group], repeat(-1)), np.int64, len(group))
            right = np.fromiter(map(get, [t[cut:] for t in group], repeat(-1)), np.int64, len(group))
            both = np.flatnonzero((left >= 0) & (right >= 0))
            keys.append((left[both] << _POS_BITS) | right[both])
            values.append(np.fromiter(map(get, map(group.__getitem__, both.tolist())), np.int64, len(both)))
        keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        values = np.concatenate(values) if values else np.zeros(0, np.int64)
        order = np.argsort(keys)
        self._keys = keys[order] if len(keys) else np.full(1, -1, np.int64)
        self._values = values[order] if len(keys) else np.full(1, _NONE)
        self.byte_ids = np.array([ranks[bytes([b])] for b in range(256)], np.int64)
        # rank of merging byte a with byte b, at [a * 256 + b]
        self._byte_pairs = self.lookup(np.repeat(self.byte_ids, 256), np.tile(self.byte_ids, 256))

    def lookup(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        wanted = (left << _POS_BITS) | right
        at = np.searchsorted(self._keys, wanted)
        np.minimum(at, len(self._keys) - 1, out=at)
        return np.where(self._keys[at] == wanted, self._values[at], _NONE)

    def merge_pieces(
        self, pieces: Sequence[bytes], dtype: np.dtype
    ) -> Iterator[tuple[list[int], list[bytes]]]:
        """Ids of the pieces (none of which may be empty or a token itself), as they finish: batches
        of (indexes into ``pieces``, the ids of each packed as ``dtype`` machine integers).

        The parts of all pieces lie in ``sym``, piece after piece; ``starts``/``lengths`` say where
        each unfinished piece lies. Each round every piece loses one part, so the layout after a
        round follows from the lengths alone, without a pass over the parts."""
        if not pieces:
            return
        lengths = np.fromiter(map(len, pieces), np.int64, len(pieces))
        raw = np.frombuffer(b"".join(pieces), np.uint8)
        sym = self.byte_ids[raw]
        # rank[i]: rank of merging parts i and i+1, or _NONE (also at the last part of a piece)
        rank = np.empty(len(sym), np.int64)
        rank[:-1] = self._byte_pairs[(raw[:-1].astype(np.int64) << 8) | raw[1:]]
        starts = np.cumsum(lengths) - lengths
        rank[starts + lengths - 1] = _NONE
        index = np.arange(len(pieces))
        while True:  # the lowest rank in each piece; on a tie the lowest position, the leftmost
            best = np.minimum.reduceat((rank << _POS_BITS) | np.arange(len(sym)), starts)
            finished = (best >> _POS_BITS) == _NONE
            if finished.any():
                yield self._finished(sym, index, lengths, finished, dtype)
                alive = ~finished
                keep = np.repeat(alive, lengths)
                best, starts, lengths, index = best[alive], starts[alive], lengths[alive], index[alive]
                if not len(index):
                    return
            else:
                keep = np.ones(len(sym), bool)
            at = best & _POS_MASK
            sym[at] = best >> _POS_BITS
            keep[at + 1] = False
            # pairs that changed: (new, next) at ``at`` and (previous, new) at ``at - 1``
            has_next = at + 2 < starts + lengths
            rank[at] = _NONE
            after = at[has_next]
            rank[after] = self.lookup(sym[after], sym[after + 2])
            before = at[at > starts] - 1
            rank[before] = self.lookup(sym[before], sym[before + 1])
            sym, rank = sym[keep], rank[keep]
            lengths = lengths - 1
            starts = np.cumsum(lengths) - lengths

    @staticmethod
    def _finished(sym, index, lengths, finished, dtype) -> tuple[list[int], list[bytes]]:
        packed = sym[np.repeat(finished, lengths)].astype(dtype).tobytes()
        size = np.dtype(dtype).itemsize
        ends = np.cumsum(lengths[finished]) * size
        cut = map(slice, (ends - lengths[finished] * size).tolist(), ends.tolist())
        return index[finished].tolist(), list(map(packed.__getitem__, cut))
