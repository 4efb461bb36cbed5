"""Byte-level BPE encoding with tiktoken's exact semantics, fast in Python.

The ids for a piece of text are decided as tiktoken decides them: the text is split by the
pre-tokenisation regex; a piece whose bytes are a token becomes that token; any other piece is
merged from single bytes by repeatedly joining the adjacent pair whose concatenation has the lowest
rank (the leftmost on a tie). Ranks are the token ids.

Speed comes from doing almost no Python work per piece. Text is dominated by a small set of
recurring pieces, so a dict maps each piece (a ``str``, straight out of the splitter) to its ids,
already packed as machine integers of the tokenizer's dtype. Encoding a text is then C-level
passes only — the split (pretokenize.py), ``map(cache.__getitem__)`` and one ``bytearray.join`` —
and the joined bytes are the token array itself (``numpy.frombuffer``), or become a list with one
``tolist()``. More work is done only for pieces seen for the first time: they are merged together
by a function compiled with numba (batchmerge.py). The cache starts with every token that is valid
UTF-8, so a piece that is a whole token (tiktoken's own shortcut) is found there; it is bounded in
memory (``DEFAULT_CACHE_SIZE``).
"""

from __future__ import annotations

import heapq
import logging
from array import array
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import compress, islice
from typing import TYPE_CHECKING

import numpy as np

from thresher.tokenize.pretokenize import (
    CL100K_PATTERN,
    ENDOFTEXT,
    PreTokenizer,
    special_splitter,
    without_lone_surrogates,
)

if TYPE_CHECKING:
    from thresher.tokenize.batchmerge import PairRanks

logger = logging.getLogger(__name__)

LONG_PIECE = 256
"""Pieces longer than this (bytes) are merged with a heap in O(n log n) (:func:`merge_piece`)
instead of rescanning all pairs after each merge (batchmerge.py), so a megabyte-long run of letters
cannot stall a worker."""
DEFAULT_CACHE_SIZE = 200_000
"""Cached pieces beyond the vocabulary. When the cache holds more (checked after each batch) it
starts again from the vocabulary alone. An older design kept the previous generation and carried
pieces over from it; with new pieces merged at ~1–2 µs (batchmerge.py), re-merging the pieces in
use after a reset cost less than looking every new piece up in the old generation (a 52 MB stream
encoded ~15% faster). An entry is the piece (a ``str``), its packed ids (a ``bytearray``, see
``_encode_texts``) and a dict slot: measured ~165 bytes on average on the benchmark's web and
documentation text, never more than ~1.5 KB (pieces up to ``MAX_CACHED_PIECE`` UTF-8 bytes). A full
cache is thus ~35 MB in practice and about 300 MB in the worst case."""
MAX_CACHED_PIECE = LONG_PIECE
"""Longer pieces (bytes) are encoded every time they occur rather than cached: they rarely recur."""


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id: uint16 up to 65,536 tokens, else uint32.

    The one rule for the ids' type everywhere: a tokenizer's arrays, token shards and their
    manifest (which records ``token_dtype(...).name``)."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def merge_piece(piece: bytes, ranks: Mapping[bytes, int]) -> list[int]:
    """Ids of ``piece`` (assumed not to be a token itself) by rank-ordered merging, with a heap of
    (rank, start) and a linked list of parts: O(n log n) for pieces of any length."""
    get = ranks.get
    n = len(piece)
    nxt = list(range(1, n + 1))  # part starting at i ends at nxt[i]
    prv = list(range(-1, n))
    alive = [True] * n
    heap = [(r, i) for i in range(n - 1) if (r := get(piece[i : i + 2])) is not None]
    heapq.heapify(heap)
    while heap:
        r, i = heapq.heappop(heap)
        if not alive[i] or nxt[i] >= n:
            continue
        j = nxt[i]
        end = nxt[j]
        if get(piece[i:end]) != r:  # stale: the pair at i changed since this entry was pushed
            continue
        alive[j] = False
        nxt[i] = end
        if end < n:
            prv[end] = i
            if (r2 := get(piece[i : nxt[end]])) is not None:
                heapq.heappush(heap, (r2, i))
        left = prv[i]
        if left >= 0 and (r2 := get(piece[left:end])) is not None:
            heapq.heappush(heap, (r2, left))
    out = []
    i = 0
    while i < n:
        out.append(ranks[piece[i : nxt[i]]])
        i = nxt[i]
    return out


class BPETokenizer:
    """A byte-level BPE tokenizer: ``mergeable_ranks`` (token bytes → id, the 256 single bytes
    included), a pre-tokenisation ``pattern`` and special tokens (name → id, above the ranks).

    Encoding matches ``tiktoken.Encoding(pat_str=pattern, mergeable_ranks=..., special_tokens=...)``
    id for id. Train one with :func:`thresher.tokenize.train.train_tokenizer`; save and load one
    with :func:`thresher.tokenize.files.save_tokenizer` / ``load_tokenizer`` (this module knows no
    files, so the file formats can import it without a circle).
    """

    def __init__(
        self,
        mergeable_ranks: Mapping[bytes, int],
        pattern: str = CL100K_PATTERN,
        special_tokens: Mapping[str, int] | Sequence[str] = (ENDOFTEXT,),
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self._ranks = dict(mergeable_ranks)
        missing = [b for b in range(256) if bytes([b]) not in self._ranks]
        if missing:
            raise ValueError(
                f"mergeable_ranks lacks {len(missing)} single bytes (e.g. {missing[0]}): not byte-level"
            )
        if len(set(self._ranks.values())) != len(self._ranks):
            raise ValueError("mergeable_ranks maps two tokens to the same id")
        n_ranks = max(self._ranks.values()) + 1
        if not isinstance(special_tokens, Mapping):
            special_tokens = {name: n_ranks + i for i, name in enumerate(dict.fromkeys(special_tokens))}
        self._special = dict(special_tokens)
        clash = set(self._special.values()) & set(self._ranks.values())
        if clash:
            raise ValueError(f"special token ids collide with ordinary tokens: {sorted(clash)[:5]}")
        self.pattern = pattern
        self._pretokenizer = PreTokenizer(pattern)
        self._special_regex = special_splitter(self._special)
        self._decoder: list[bytes | None] = [None] * max([n_ranks - 1, *self._special.values()], default=0)
        self._decoder.append(None)
        for token, i in self._ranks.items():
            self._decoder[i] = token
        for name, i in self._special.items():
            self._decoder[i] = name.encode("utf-8")
        self._typecode = next(c for c in "HIL" if array(c).itemsize == self.dtype.itemsize)
        self._base_cache = self._token_pieces()
        self._cache = defaultdict(bytearray, self._base_cache)
        self._pair_ranks: PairRanks | None = None
        self._cache_limit = len(self._base_cache) + cache_size

    def _token_pieces(self) -> dict[str, bytes]:
        pieces = {}
        packed = array(self._typecode, self._ranks.values()).tobytes()
        size = self.dtype.itemsize
        for k, token in enumerate(self._ranks):
            try:
                pieces[token.decode("utf-8")] = packed[k * size : (k + 1) * size]
            except UnicodeDecodeError:
                pass
        return pieces

    # -- vocabulary ------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (ordinary or special): the size of an embedding table."""
        return len(self._decoder)

    @property
    def n_ranks(self) -> int:
        return len(self._ranks)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    @property
    def eot_id(self) -> int:
        """Id of ``<|endoftext|>``, the document separator."""
        try:
            return self._special[ENDOFTEXT]
        except KeyError:
            raise ValueError(f"this tokenizer has no {ENDOFTEXT} special token") from None

    @property
    def dtype(self) -> np.dtype:
        return token_dtype(self.vocab_size)

    def mergeable_ranks(self) -> dict[bytes, int]:
        return dict(self._ranks)

    def token_bytes(self, token_id: int) -> bytes:
        token = self._decoder[token_id] if 0 <= token_id < len(self._decoder) else None
        if token is None:
            raise ValueError(f"unknown token id {token_id}")
        return token

    # -- encoding --------------------------------------------------------------------------------

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of ``text`` with special-token names treated as plain text (what a pipeline wants
        for web text: a page that contains ``<|endoftext|>`` must not end a document early)."""
        return np.frombuffer(self._encode_packed([text])[0], self.dtype).tolist()

    def encode_ordinary_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode_ordinary` of each text. Pieces new to the cache are merged together for
        the whole batch, so batches of documents encode faster than one call per document."""
        dtype = self.dtype
        return [np.frombuffer(ids, dtype).tolist() for ids in self._encode_packed(texts)]

    def encode_ordinary_arrays(self, texts: Sequence[str], end_id: int | None = None) -> list[np.ndarray]:
        """:meth:`encode_ordinary_batch` as arrays of :attr:`dtype` (no list of ints is ever built),
        each followed by ``end_id`` when given — the pipeline's path."""
        packed = self._encode_packed(texts)
        if end_id is not None:
            if not 0 <= end_id < self.vocab_size:
                raise ValueError(f"end_id {end_id} is outside the vocabulary")
            end = array(self._typecode, [end_id]).tobytes()
            for ids in packed:
                ids += end
        dtype = self.dtype
        return [np.frombuffer(ids, dtype) for ids in packed]

    def encode(self, text: str, allowed_special: Iterable[str] | str = "all") -> list[int]:
        """Ids of ``text``; occurrences of the ``allowed_special`` names (default: all) become
        their special ids."""
        if self._special_regex is None or allowed_special != "all" and not allowed_special:
            return self.encode_ordinary(text)
        allowed = self._special if allowed_special == "all" else set(allowed_special)
        if not any(name in text for name in allowed):
            return self.encode_ordinary(text)
        chunks = self._special_regex.split(text)
        plain: list[str] = [chunks[0]]
        specials: list[int] = []
        for name, chunk in zip(chunks[1::2], chunks[2::2], strict=True):
            if name in allowed:
                specials.append(self._special[name])
                plain.append(chunk)
            else:
                plain[-1] += name + chunk
        encoded = self.encode_ordinary_batch(plain)
        out = encoded[0]
        for special, ids in zip(specials, encoded[1:], strict=True):
            out.append(special)
            out += ids
        return out

    def encode_batch(
        self, texts: Sequence[str], allowed_special: Iterable[str] | str = "all"
    ) -> list[list[int]]:
        if self._special_regex is None or allowed_special != "all" and not allowed_special:
            return self.encode_ordinary_batch(texts)
        return [self.encode(t, allowed_special) for t in texts]

    def _encode_packed(self, texts: Sequence[str]) -> list[bytearray]:
        try:
            return self._encode_texts(texts)
        except UnicodeEncodeError:
            return self._encode_texts([without_lone_surrogates(t) for t in texts])

    def _encode_texts(self, texts: Sequence[str]) -> list[bytearray]:
        """The packed ids of each text, with no Python call per piece, new pieces included: the
        cache is a ``defaultdict(bytearray)``, so a missing piece is inserted with an empty
        ``bytearray`` by its own C-level ``__missing__`` during ``map(cache.__getitem__, pieces)``.
        That bytearray is a placeholder: the text's list of ids holds it, and it is filled in
        once the batch's new pieces are merged, before the ids are joined; filled, it stays the
        cached value (tokens of the vocabulary are ``bytes``). The pieces a batch missed need no
        bookkeeping either: they are the keys inserted last."""
        cache = self._cache
        known = len(cache)
        lookup = cache.__getitem__
        try:
            ids = [list(map(lookup, pieces)) for pieces in map(self._pretokenizer.findall, texts)]
            if len(cache) > known:
                self._fill_placeholders(len(cache) - known)
        except BaseException:  # e.g. a lone surrogate, retried cleaned: leave no placeholder behind
            for piece in list(islice(reversed(cache), len(cache) - known)):
                del cache[piece]
            raise
        if len(cache) > self._cache_limit:
            self._cache = defaultdict(bytearray, self._base_cache)
        return list(map(bytearray().join, ids))

    def _fill_placeholders(self, count: int) -> None:
        """Fill in the placeholders of the ``count`` pieces that the batch missed (the keys
        inserted last, read off the end of the dict) with their merged ids. Pieces too long to
        cache leave the cache again (their placeholders, filled, still serve this batch)."""
        cache = self._cache
        missed = list(islice(reversed(cache), count))
        placeholders = list(islice(reversed(cache.values()), count))
        raw = list(map(str.encode, missed))
        list(map(bytearray.extend, placeholders, self._encode_new(raw)))
        if max(map(len, raw)) > MAX_CACHED_PIECE:
            for piece in compress(missed, map(MAX_CACHED_PIECE.__lt__, map(len, raw))):
                del cache[piece]

    def _encode_new(self, pieces: list[bytes]) -> list[bytes]:
        """Packed ids of pieces seen for the first time (UTF-8), in order: merged together by the
        compiled merger (batchmerge.py), or with a heap when long."""
        if self._pair_ranks is None:
            from thresher.tokenize.batchmerge import PairRanks  # imports numba: only when needed

            self._pair_ranks = PairRanks(self._ranks)
        if max(map(len, pieces)) <= LONG_PIECE:  # the usual case
            return self._pair_ranks.merge_pieces(pieces, self.dtype)
        sizes = np.fromiter(map(len, pieces), np.int64, len(pieces))
        long = np.flatnonzero(sizes > LONG_PIECE).tolist()
        short = list(pieces)
        for i in long:
            short[i] = b""  # no ids: merged below
        out = self._pair_ranks.merge_pieces(short, self.dtype)
        for i in long:
            out[i] = array(self._typecode, merge_piece(pieces[i], self._ranks)).tobytes()
        return out

    def clear_cache(self) -> None:
        self._cache = defaultdict(bytearray, self._base_cache)

    # -- decoding --------------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        if isinstance(ids, np.ndarray):
            ids = ids.tolist()
        try:
            return b"".join(map(self._decoder.__getitem__, ids))
        except (TypeError, IndexError):
            bad = next(i for i in ids if not 0 <= i < len(self._decoder) or self._decoder[i] is None)
            raise ValueError(f"unknown token id {bad}") from None

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Text of ``ids``. A sequence cut inside a multi-byte character decodes with U+FFFD for
        the partial character (``errors='replace'``), as tiktoken does."""
        return self.decode_bytes(ids).decode("utf-8", errors)

    def __repr__(self) -> str:
        return f"BPETokenizer(n_ranks={self.n_ranks}, specials={sorted(self._special)}, vocab_size={self.vocab_size})"
