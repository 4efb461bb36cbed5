"""Text normalisation and word n-gram shingles, shared by exact and MinHash dedup.

A shingle is ``" ".join(words[i:i + n])`` of the normalised text, as UTF-8 bytes. Because the
normalised text has exactly one space between words, every shingle is a contiguous byte range
of it, so a whole batch of documents can be shingled with numpy offsets instead of building a
Python ``bytes`` object per shingle (that loop, not the hashing, is what makes per-shingle
MinHash slow in Python).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np
import regex

NORMALIZATION_VERSION = "nfkc-lower-alnum-v1"
"""Stored with persistent indexes: a change to :func:`normalize` makes old indexes incompatible."""

_NON_WORD = regex.compile(r"[^\p{L}\p{N}\p{M}]+")


def normalize(text: str) -> str:
    """NFKC, lower case, every run of non-letters/digits (punctuation, spaces, symbols) → one
    space. Crawls of one page differ in exactly these ways (curly vs straight quotes, case in
    titles, whitespace from different extractors), so they must not count as differences."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _NON_WORD.sub(" ", text).strip()


@dataclass
class ShingleBatch:
    """The shingles of a batch of documents as byte ranges of one buffer.

    ``starts[k]:ends[k]`` of ``buffer`` is shingle ``k``; the shingles of document ``i`` are
    ``doc_offsets[i]:doc_offsets[i + 1]``. A document with no words has no shingles.
    """

    buffer: np.ndarray  # uint8
    starts: np.ndarray  # int64
    ends: np.ndarray  # int64
    doc_offsets: np.ndarray  # int64, len = n_docs + 1

    def shingle(self, k: int) -> bytes:
        return self.buffer[self.starts[k] : self.ends[k]].tobytes()

    def doc_shingles(self, i: int) -> list[bytes]:
        return [self.shingle(k) for k in range(self.doc_offsets[i], self.doc_offsets[i + 1])]


def shingle_batch(texts: list[str], n: int = 5, normalized: bool = False) -> ShingleBatch:
    """Word ``n``-gram shingles of each text. Texts with fewer than ``n`` words give one
    shingle, the whole normalised text, so short documents still compare."""
    norm = texts if normalized else [normalize(t) for t in texts]
    encoded = [t.encode("utf-8") for t in norm]
    # One space between documents as well, so word boundaries are found in one pass.
    buffer = np.frombuffer(b" ".join(encoded) + b" ", dtype=np.uint8)
    doc_starts = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) + 1 for e in encoded], out=doc_starts[1:])
    spaces = np.flatnonzero(buffer == 32)
    word_starts = np.concatenate(([0], spaces[:-1] + 1)).astype(np.int64)
    word_ends = spaces.astype(np.int64)
    real = word_ends > word_starts  # an empty document leaves a zero-length "word"
    word_starts, word_ends = word_starts[real], word_ends[real]
    words_per_doc = np.diff(np.searchsorted(word_starts, doc_starts))
    shingles_per_doc = np.where(words_per_doc >= n, words_per_doc - n + 1, np.minimum(words_per_doc, 1))
    doc_offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(shingles_per_doc, out=doc_offsets[1:])
    total = int(doc_offsets[-1])
    # First word of each shingle: the document's first word index plus the shingle's rank.
    first_word_of_doc = np.concatenate(([0], np.cumsum(words_per_doc)[:-1])).astype(np.int64)
    doc_of_shingle = np.repeat(np.arange(len(encoded)), shingles_per_doc)
    rank = np.arange(total, dtype=np.int64) - doc_offsets[:-1][doc_of_shingle]
    first = first_word_of_doc[doc_of_shingle] + rank
    last = first + np.minimum(n, words_per_doc[doc_of_shingle]) - 1
    return ShingleBatch(buffer, word_starts[first], word_ends[last], doc_offsets)
