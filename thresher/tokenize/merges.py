"""The merge phase of BPE training, with incremental pair counts.

Every distinct pre-token (a "word") is laid out once in flat numpy arrays, separated by
sentinels, with its corpus count attached to each of its symbols. Symbols form a doubly linked
list (``nxt``/``prv``) so a merge rewrites two slots without moving anything. Kept between merges:

* ``pair_count``: pair → occurrences weighted by word counts;
* ``slots``: pair → where it was created (entries may go stale; they are checked against the
  current symbols when used, which is cheaper than deleting them);
* a heap of pairs by count with lazy invalidation: the count of a pair only rises during the
  merge that creates one of its tokens, and falls afterwards, so a stale entry always overstates
  its count and is pushed back with the current one when popped.

Merging ``(a, b)`` into ``n`` touches only the slots of that pair. Around each occurrence
``x a b y`` the pairs ``(x, a)`` and ``(b, y)`` lose the word's count and ``(x, n)`` and ``(n, y)``
gain it, so the changes are sums grouped by the neighbour ``x`` or ``y`` — small integers, grouped
with one radix sort per side — never a recount of the corpus.

Tie-breaking (deterministic, independent of corpus order and of how counting was distributed):
the pair with the highest count wins; among equal counts, the pair ``(left, right)`` with the
smallest ``left`` id, then the smallest ``right`` id. Ids 0-255 are the bytes in byte order and each
merge takes the next id, so an older token beats a newer one. Within a word, overlapping
occurrences of a pair of identical tokens (``a a a``) are merged left to right.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Mapping

import numpy as np

logger = logging.getLogger(__name__)

SHIFT = 24  # pair key = left << SHIFT | right; ids stay below 2**24
MASK = (1 << SHIFT) - 1
KEY_BITS = 2 * SHIFT  # heap entry = -count << KEY_BITS | key: one int compares count, then key
KEY_MASK = (1 << KEY_BITS) - 1
MAX_TOKENS = 1 << SHIFT
SEPARATOR = -1
DEAD = -2
_IS_Q = 1
_IS_P = 2


def _runs(ids: np.ndarray, small: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group equal ids: (order, unique ids, start of each id's run in sorted order)."""
    order = np.argsort(ids.astype(np.uint16) if small else ids, kind="stable")  # uint16: radix sort
    ordered = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    return order, ordered[starts], starts


class MergeLearner:
    """Learns merges over a fixed set of words with counts. ``run`` may be called more than once to
    continue to a larger vocabulary."""

    def __init__(self, word_counts: Mapping[bytes, int]) -> None:
        words = sorted(w for w, c in word_counts.items() if len(w) > 1 and c > 0)
        n = len(words)
        lengths = np.fromiter(map(len, words), np.int64, n)
        counts = np.fromiter((word_counts[w] for w in words), np.int64, n)
        n_bytes = int(lengths.sum())
        total = n_bytes + n + 1  # a sentinel before every word and one at the end
        slots = 1 + np.arange(n_bytes, dtype=np.int64) + np.repeat(np.arange(n, dtype=np.int64), lengths)
        self.sym = np.full(total, SEPARATOR, np.int32)
        self.sym[slots] = np.frombuffer(b"".join(words), np.uint8)
        self.weight = np.zeros(total, np.int64)
        self.weight[slots] = np.repeat(counts, lengths)
        self.nxt = np.arange(1, total + 1, dtype=np.int32)
        self.nxt[-1] = total - 1
        self.prv = np.arange(-1, total - 1, dtype=np.int32)
        self.prv[0] = 0
        self.mark = np.zeros(total, np.int8)
        self.tokens: list[bytes] = [bytes([i]) for i in range(256)]
        self.token_id: dict[bytes, int] = {t: i for i, t in enumerate(self.tokens)}
        self.n_words = n
        self.merges_done = 0
        self._count_initial_pairs()

    def _count_initial_pairs(self) -> None:
        sym = self.sym
        starts = np.flatnonzero((sym[:-1] >= 0) & (sym[1:] >= 0)).astype(np.int32)
        keys = (sym[starts].astype(np.int64) << SHIFT) | sym[starts + 1]
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        run_starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        run_ends = np.append(run_starts[1:], len(ordered))
        sums = np.add.reduceat(self.weight[starts][order], run_starts) if len(order) else []
        sorted_slots = starts[order]
        keys_list = ordered[run_starts].tolist()
        # pair → (array, start, stop), or a list of them when a pair is created again later
        self.slots: dict[int, tuple | list] = {
            k: (sorted_slots, s, e)
            for k, s, e in zip(keys_list, run_starts.tolist(), run_ends.tolist(), strict=True)
        }
        self.pair_count: dict[int, int] = dict(zip(keys_list, np.asarray(sums).tolist(), strict=True))
        self.heap = [(-c << KEY_BITS) | k for k, c in self.pair_count.items()]
        heapq.heapify(self.heap)

    def _pop_best(self) -> tuple[int, int] | None:
        heap, pair_count = self.heap, self.pair_count
        while heap:
            entry = heapq.heappop(heap)
            key = entry & KEY_MASK
            current = pair_count.get(key)
            if current is None:
                continue
            if current != -(entry >> KEY_BITS):  # stale: the count fell since this entry was pushed
                heapq.heappush(heap, (-current << KEY_BITS) | key)
                continue
            return key, current
        return None

    def _take_slots(self, key: int) -> np.ndarray:
        held = self.slots.pop(key)
        if isinstance(held, tuple):
            arr, s, e = held
            return arr[s:e]
        return np.concatenate([arr[s:e] for arr, s, e in held])

    def _add_slots(self, key: int, segment: tuple) -> None:
        held = self.slots.get(key)
        if held is None:
            self.slots[key] = segment
        elif isinstance(held, tuple):
            self.slots[key] = [held, segment]
        else:
            held.append(segment)

    def _non_overlapping(self, p: np.ndarray) -> np.ndarray:
        """For a pair of identical tokens: in each run ``a a a ...`` keep every other start,
        beginning with the leftmost, which is what merging left to right does."""
        p = np.sort(p)
        follows = np.zeros(len(p), bool)
        follows[1:] = self.prv[p[1:]] == p[:-1]
        if not follows.any():
            return p
        index = np.arange(len(p))
        run_start = np.maximum.accumulate(np.where(follows, 0, index))
        return p[(index - run_start) % 2 == 0]

    def _merge(self, key: int, new: int) -> None:
        a, b = key >> SHIFT, key & MASK
        sym, nxt, prv, mark = self.sym, self.nxt, self.prv, self.mark
        p = self._take_slots(key)
        p = p[(sym[p] == a) & (sym[nxt[p]] == b)]
        if a == b and len(p) > 1:
            p = self._non_overlapping(p)
        q = nxt[p]
        left = prv[p]
        right = nxt[q]
        w = self.weight[p]
        mark[q] = _IS_Q
        mark[p] = _IS_P
        # (x, a) before / (x, new) after, unless x is the right half of an adjacent merge: that pair
        # is the previous occurrence's (b, y)
        has_left = (sym[left] >= 0) & (mark[left] != _IS_Q)
        has_right = sym[right] >= 0
        right_before = sym[right]
        mark_right_p = mark[right] == _IS_P
        mark[q] = 0
        mark[p] = 0
        sym[p] = new
        sym[q] = DEAD
        nxt[p] = right
        prv[right] = p

        self.pair_count.pop(key, None)
        small = len(self.tokens) <= 1 << 16
        left, w_left = left[has_left], w[has_left]
        if len(left):
            order, xs, starts = _runs(sym[left], small)
            sums = np.add.reduceat(w_left[order], starts)
            self._move_all(
                ((x << SHIFT) | a for x in xs.tolist()),
                ((x << SHIFT) | new for x in xs.tolist()),
                sums,
                starts,
                left[order],
                key,
            )
        adjacent = mark_right_p[has_right]
        p_right, w_right, ys = p[has_right], w[has_right], right_before[has_right]
        if adjacent.any():  # ``a b a b``: the pair (b, a) between two merges becomes (new, new)
            self._move(
                (b << SHIFT) | a,
                (new << SHIFT) | new,
                int(w_right[adjacent].sum()),
                (p_right[adjacent], 0, None),
                key,
            )
            keep = ~adjacent
            p_right, w_right, ys = p_right[keep], w_right[keep], ys[keep]
        if len(p_right):
            order, ys, starts = _runs(ys, small)
            sums = np.add.reduceat(w_right[order], starts)
            self._move_all(
                ((b << SHIFT) | y for y in ys.tolist()),
                ((new << SHIFT) | y for y in ys.tolist()),
                sums,
                starts,
                p_right[order],
                key,
            )

    def _move_all(self, gone_keys, born_keys, sums, starts, slots, merged_key) -> None:
        ends = starts[1:].tolist() + [len(slots)]
        move = self._move
        for gone, born, d, s, e in zip(
            gone_keys, born_keys, sums.tolist(), starts.tolist(), ends, strict=True
        ):
            move(gone, born, d, (slots, s, e), merged_key)

    def _move(self, gone: int, born: int, d: int, segment: tuple, merged_key: int) -> None:
        """Move ``d`` occurrences from pair ``gone`` to pair ``born``, created at ``segment``."""
        pair_count = self.pair_count
        if gone != merged_key:
            c = pair_count[gone] - d
            if c > 0:
                pair_count[gone] = c
            else:
                del pair_count[gone]
                self.slots.pop(gone, None)
        c = pair_count.get(born, 0) + d
        pair_count[born] = c
        heapq.heappush(self.heap, (-c << KEY_BITS) | born)
        self._add_slots(born, segment)

    def run(self, n_tokens: int, min_frequency: int = 2) -> list[bytes]:
        """Merge until there are ``n_tokens`` tokens (256 bytes included) or no pair occurs
        ``min_frequency`` times. Returns the tokens in rank order (index = id)."""
        if n_tokens > MAX_TOKENS:
            raise ValueError(f"at most {MAX_TOKENS} tokens are supported, asked for {n_tokens}")
        started = time.perf_counter()
        tokens, token_id = self.tokens, self.token_id
        while len(tokens) < n_tokens:
            best = self._pop_best()
            if best is None or best[1] < min_frequency:
                logger.info(
                    "no pair occurs %d times any more: stopping at %d tokens", min_frequency, len(tokens)
                )
                break
            key, _ = best
            merged = tokens[key >> SHIFT] + tokens[key & MASK]
            new = token_id.get(merged)
            if new is None:  # the same bytes can come from two different pairs: one id for both
                new = len(tokens)
                tokens.append(merged)
                token_id[merged] = new
            self._merge(key, new)
            self.merges_done += 1
            if self.merges_done % 5000 == 0:
                logger.info(
                    "%d merges, %d tokens (%.1fs)",
                    self.merges_done,
                    len(tokens),
                    time.perf_counter() - started,
                )
        logger.info(
            "%d tokens from %d distinct words in %.1fs",
            len(tokens),
            self.n_words,
            time.perf_counter() - started,
        )
        return list(tokens)


def learn_merges(word_counts: Mapping[bytes, int], n_tokens: int, min_frequency: int = 2) -> list[bytes]:
    """Token byte strings in rank order: the 256 single bytes, then one per learned merge."""
    if n_tokens < 256:
        raise ValueError(f"a byte-level vocabulary needs at least 256 tokens, asked for {n_tokens}")
    return MergeLearner(word_counts).run(n_tokens, min_frequency)
