"""Rank-ordered merging of many pieces at once, vectorised with numpy.

Pieces not seen before cost the most in plain Python (a dict lookup per byte pair and a rescan per
merge). Here they are merged together: all pieces lie in one flat array of token ids, and each round
does, for every piece at once, what one step of the sequential algorithm does — find the adjacent
pair whose concatenation has the lowest rank (the leftmost on a tie) and merge it. A piece with no
mergeable pair left is finished and leaves the arrays. The result is the sequential result exactly:
each piece still takes one merge per round, in the same order. Only the two pairs next to a merge
are looked up again; every other pair keeps its rank.

Every round costs some fixed numpy overhead, and the number of rounds is set by the longest piece,
so once only a few (long) pieces are left they are finished one by one in Python from where the
rounds left them (:func:`merge_bounds`): on web text that halves the rounds of a batch.

The rank of a pair of tokens comes from a table of every ``(left, right)`` whose concatenated
bytes form a token — built once from the vocabulary, one entry per split point of each token where
both halves are tokens too — kept as sorted keys, so that a batch of lookups is one
``searchsorted``. Most pairs asked about are not in the table (a piece near its final ids), and a
64-bit signature per left id (which ``right % 64`` it pairs with) rules most of those out before the
binary search. The first round, where every part is a single byte, reads a dense 256 × 256 table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise, repeat

import numpy as np

_NONE = np.int64((1 << 31) - 1)  # "no rank": compares above every real rank
_POS_BITS = 32
_POS_MASK = (1 << _POS_BITS) - 1
_NO_RANK = 1 << 62  # the same for the one-by-one merging, in Python ints
TAIL = 24
"""When this few pieces of a batch are left, they are finished one by one in Python."""


def merge_bounds(piece: bytes, bounds: list[int], get: Callable[[bytes, int], int]) -> list[int]:
    """Rank-ordered merging of ``piece``, one merge at a time, from the parts that start at
    ``bounds`` (``bounds[-1] == len(piece)``); returns the bounds of the final parts (``bounds``,
    changed in place). ``get`` is the ranks' ``dict.get``."""
    pair_ranks = [get(piece[s:e], _NO_RANK) for s, e in zip(bounds, bounds[2:], strict=False)]
    while pair_ranks:
        best = min(pair_ranks)
        if best == _NO_RANK:
            break
        i = pair_ranks.index(best)  # the leftmost of equal ranks
        del bounds[i + 1]
        del pair_ranks[i]
        if i < len(pair_ranks):
            pair_ranks[i] = get(piece[bounds[i] : bounds[i + 2]], _NO_RANK)
        if i > 0:
            pair_ranks[i - 1] = get(piece[bounds[i - 1] : bounds[i + 1]], _NO_RANK)
    return bounds


class PairRanks:
    """(left id, right id) → rank of their concatenation, for every pair whose concatenation is a
    token; vectorised lookups by binary search in the sorted pair keys."""

    def __init__(self, ranks: Mapping[bytes, int]) -> None:
        self._ranks = ranks
        n_ids = max(ranks.values()) + 1
        self.separator = n_ids
        """An id no pair contains: it stands between pieces in the flat arrays, so that the
        neighbours of a merge can be looked up without checking where a piece ends."""
        # keys are left << bits | right; uint32 when every id and the separator fit in 16 bits
        self._bits = max(16, n_ids.bit_length())
        self._dtype = np.dtype(np.uint32) if self._bits == 16 else np.dtype(np.int64)
        left, right, values = self._pairs(ranks)
        keys = (left << self._bits) | right
        order = np.argsort(keys)
        self._keys = keys[order].astype(self._dtype) if len(keys) else np.zeros(1, self._dtype)
        self._values = values[order] if len(keys) else np.full(1, _NONE)
        # bit r % 64 of _signature[l] is set when some (l, r) is a pair; the separator has none
        self._signature = np.zeros(n_ids + 1, np.int64)
        np.bitwise_or.at(self._signature, left, np.left_shift(1, right & 63))
        self._token_lengths = np.zeros(n_ids + 1, np.int64)
        self._token_lengths[np.fromiter(ranks.values(), np.int64, len(ranks))] = list(map(len, ranks))
        self.byte_ids = np.array([ranks[bytes([b])] for b in range(256)], self._dtype)
        # rank of merging byte a with byte b, at [a * 256 + b]
        self._byte_pairs = self.lookup(np.repeat(self.byte_ids, 256), np.tile(self.byte_ids, 256))

    @staticmethod
    def _pairs(ranks: Mapping[bytes, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Left ids, right ids and ranks of every split of every token into two tokens, one cut
        position at a time over all tokens long enough (C-level ``map`` over the slices rather
        than a Python loop per split)."""
        get = ranks.get
        tokens = sorted((t for t in ranks if len(t) > 1), key=len, reverse=True)
        lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
        lefts, rights, values = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for cut in range(1, int(lengths[0]) if len(tokens) else 1):
            group = tokens[: int(np.count_nonzero(lengths > cut))]
            left = np.fromiter(map(get, [t[:cut] for t in group], repeat(-1)), np.int64, len(group))
            right = np.fromiter(map(get, [t[cut:] for t in group], repeat(-1)), np.int64, len(group))
            both = np.flatnonzero((left >= 0) & (right >= 0))
            lefts.append(left[both])
            rights.append(right[both])
            values.append(np.fromiter(map(get, map(group.__getitem__, both.tolist())), np.int64, len(both)))
        return np.concatenate(lefts), np.concatenate(rights), np.concatenate(values)

    def lookup(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Ranks of the pairs ``(left[i], right[i])`` (ids of this table's dtype), ``_NONE`` for
        a pair that is no token."""
        maybe = np.flatnonzero((self._signature[left] >> (right & 63)) & 1)
        wanted = (left[maybe] << self._bits) | right[maybe]
        keys = self._keys
        at = np.searchsorted(keys, wanted)
        np.minimum(at, len(keys) - 1, out=at)
        out = np.full(len(left), _NONE)
        out[maybe] = np.where(keys[at] == wanted, self._values[at], _NONE)
        return out

    def merge_pieces(self, pieces: Sequence[bytes], dtype: np.dtype) -> list[bytes]:
        """Ids of the pieces (none of which may be empty or a token itself), each packed as
        ``dtype`` machine integers, in the order of ``pieces``.

        The parts of all pieces lie in ``sym``, each piece after a separator, with one more
        separator at the end; ``seglens`` (separator and parts) say where each unfinished piece
        lies. Each round every piece loses one part, so the layout after a round follows from the
        lengths alone, without a pass over the parts."""
        if not pieces:
            return []
        lengths = np.fromiter(map(len, pieces), np.int64, len(pieces))
        raw = np.frombuffer(b"".join(pieces), np.uint8)
        seglens = lengths + 1
        starts = np.cumsum(seglens) - seglens
        is_part = np.ones(len(raw) + len(pieces) + 1, bool)
        is_part[starts] = False
        is_part[-1] = False
        sym = np.full(len(is_part), self.separator, self._dtype)
        sym[is_part] = self.byte_ids[raw]
        # rank[i]: rank of merging parts i and i+1, or _NONE (at the last part and at separators)
        pair_ranks = np.empty(len(raw), np.int64)
        pair_ranks[:-1] = self._byte_pairs[(raw[:-1].astype(np.int64) << 8) | raw[1:]]
        pair_ranks[np.cumsum(lengths) - 1] = _NONE
        rank = np.full(len(sym), _NONE)
        rank[is_part] = pair_ranks
        positions = np.arange(len(sym))
        index = np.arange(len(pieces))
        done_index, done_sym, done_counts = [], [], []
        while True:  # the lowest rank in each piece; on a tie the lowest position, the leftmost
            best = rank << _POS_BITS
            best |= positions[: len(rank)]
            best = np.minimum.reduceat(best, starts)
            finished = best >= _NONE << _POS_BITS
            if finished.any():
                leaving = np.repeat(finished, seglens)
                done_index.append(index[finished])
                done_sym.append(sym[:-1][leaving])
                done_counts.append(seglens[finished] - 1)
                keep = np.empty(len(sym), bool)
                np.logical_not(leaving, out=keep[:-1])
                keep[-1] = True
                alive = ~finished
                best, seglens, index = best[alive], seglens[alive], index[alive]
                if len(index) <= TAIL:
                    break
            else:
                keep = np.ones(len(sym), bool)
            at = best & _POS_MASK
            sym[at] = best >> _POS_BITS
            keep[at + 1] = False
            # the pairs that changed: (previous, new) at at - 1 and (new, next) at at; sym[at + 1]
            # is the part just merged in, so the next part is at at + 2
            near = np.concatenate((at - 1, at, at + 2))
            around = sym[near]
            changed = 2 * len(at)
            rank[near[:changed]] = self.lookup(around[:changed], around[len(at) :])
            sym, rank = sym[keep], rank[keep]
            seglens -= 1
            starts = np.cumsum(seglens) - seglens
        packed = self._packed(done_sym, done_counts, dtype) + self._finish(
            pieces, index, sym[keep], seglens, dtype
        )
        order = np.argsort(np.concatenate([*done_index, index])).tolist()
        return list(map(packed.__getitem__, order))

    def _packed(self, sym, counts, dtype) -> list[bytes]:
        """The finished pieces' ids, separators dropped, packed and cut apart (one ``tolist`` and
        one ``tobytes`` for all)."""
        sym = np.concatenate(sym)
        packed = sym[sym != self.separator].astype(dtype).tobytes()
        counts = np.concatenate(counts) * np.dtype(dtype).itemsize
        ends = np.cumsum(counts)
        return list(map(packed.__getitem__, map(slice, (ends - counts).tolist(), ends.tolist())))

    def _finish(self, pieces, index, sym, seglens, dtype) -> list[bytes]:
        """Ids of the unfinished pieces, merged on one by one from their current parts."""
        ranks = self._ranks
        ends = np.cumsum(seglens)
        out = []
        for i, start, end in zip(index.tolist(), (ends - seglens + 1).tolist(), ends.tolist(), strict=True):
            piece = pieces[i]
            bounds = [0, *np.cumsum(self._token_lengths[sym[start:end]]).tolist()]
            bounds = merge_bounds(piece, bounds, ranks.get)
            out.append(np.array([ranks[piece[s:e]] for s, e in pairwise(bounds)], dtype).tobytes())
        return out
