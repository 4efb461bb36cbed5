"""MinHash signatures equal to datasketch's, computed for a batch of documents at once, and
the LSH band keys derived from them.

datasketch 2.x (default scheme ``affine32``) computes, for shingle hash ``h =
sha1_hash32(shingle)``, ``fmix32(h) * a_k + b_k mod 2**32`` for each permutation ``k`` and keeps
the minimum over the document's shingles. We take ``a`` and ``b`` from datasketch itself (so
a change in its parameter generation cannot silently diverge), hash every shingle of the
batch with the numpy SHA-1, and then loop over permutations rather than shingles: one
multiply-add over all shingles of the batch and one segment-wise minimum
(``np.minimum.reduceat``) per permutation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from thresher.dedup.sha1 import sha1_hash32_batch
from thresher.dedup.text import ShingleBatch, shingle_batch

EMPTY = np.uint32(0xFFFFFFFF)
"""Every value of the signature of a document without shingles (as datasketch's empty MinHash)."""

SIGNATURE_VERSION = "low16-v1"
"""Stored with persistent indexes: what verification keeps of a signature (:func:`low_bits`)."""

BAND_KEY_VERSION = "fmix64-v1"
"""Stored with persistent indexes: how a band's values are folded into a 64-bit key."""

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, a bijection that spreads every input bit."""
    h = h ^ (h >> np.uint64(33))
    h *= _M1
    h ^= h >> np.uint64(33)
    h *= _M2
    h ^= h >> np.uint64(33)
    return h


def hash64(values: list[str] | list[bytes]) -> np.ndarray:
    """A stable 64-bit hash (BLAKE2b) of each string: document ids, normalised texts, URLs."""
    out = np.empty(len(values), dtype=np.uint64)
    for i, v in enumerate(values):
        data = v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v
        out[i] = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
    return out


@dataclass(frozen=True)
class LshParams:
    bands: int
    rows: int


class MinHasher:
    """Signatures of ``num_perm`` permutations for seed ``seed``, datasketch-compatible."""

    def __init__(self, num_perm: int = 112, seed: int = 1, shingle_size: int = 5) -> None:
        from datasketch import MinHash

        reference = MinHash(num_perm=num_perm, seed=seed)
        if getattr(reference, "scheme", "legacy") != "affine32":
            raise RuntimeError("datasketch's default MinHash scheme is not affine32; signatures would differ")
        a, b = reference.permutations
        self.a = np.asarray(a, dtype=np.uint32)
        self.b = np.asarray(b, dtype=np.uint32)
        self.num_perm = num_perm
        self.seed = seed
        self.shingle_size = shingle_size

    def signatures(self, texts: list[str], normalized: bool = False) -> np.ndarray:
        """(len(texts), num_perm) uint32 signatures of the texts' word shingles."""
        return self.signatures_of(shingle_batch(texts, self.shingle_size, normalized))

    def signatures_of(self, batch: ShingleBatch) -> np.ndarray:
        n_docs = len(batch.doc_offsets) - 1
        sig = np.full((n_docs, self.num_perm), EMPTY, dtype=np.uint32)
        if len(batch.starts) == 0:
            return sig
        hashed = _fmix32(sha1_hash32_batch(batch.buffer, batch.starts, batch.ends))
        nonempty = np.flatnonzero(np.diff(batch.doc_offsets) > 0)
        offsets = batch.doc_offsets[nonempty]
        permuted = np.empty_like(hashed)
        for k in range(self.num_perm):
            np.multiply(hashed, self.a[k], out=permuted)
            permuted += self.b[k]
            sig[nonempty, k] = np.minimum.reduceat(permuted, offsets)
        return sig


def band_keys(sig: np.ndarray, params: LshParams) -> np.ndarray:
    """(n_docs, bands) uint64 keys: band ``i``'s ``rows`` values folded into 64 bits, with the
    band number mixed in so that equal values in different bands never share a key."""
    n = sig.shape[0]
    keys = np.empty((n, params.bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(params.bands):
            h = np.full(n, fmix64(np.array([i + 1], dtype=np.uint64))[0], dtype=np.uint64)
            for j in range(i * params.rows, (i + 1) * params.rows):
                h ^= sig[:, j].astype(np.uint64)
                h *= _GOLDEN
                h = fmix64(h)
            keys[:, i] = h
    return keys


def optimal_params(threshold: float, num_perm: int, recall_weight: float = 0.5) -> LshParams:
    """Bands × rows that minimise the weighted false-positive and false-negative areas of the
    S-curve around ``threshold`` (datasketch's optimiser). Equal weights centre the curve on
    the threshold; a recall weight near 1 moves it left, for runs whose candidates are
    verified (0.95 gives FineWeb's 14 × 8 at 0.8)."""
    from datasketch.lsh import _optimal_param

    bands, rows = _optimal_param(threshold, num_perm, 1.0 - recall_weight, recall_weight)
    return LshParams(int(bands), int(rows))


def low_bits(sig: np.ndarray) -> np.ndarray:
    """The low 16 bits of each signature value: what verification compares. Two different
    minima agree there by chance with probability 2**-16, so the estimated Jaccard similarity
    is off by at most (1 - J) / 65536, and a signature costs 2 bytes per permutation, not 4.
    (The high bits would not do: minima are small numbers, their top bits mostly zero.)"""
    return (sig & np.uint32(0xFFFF)).astype(np.uint16)


def candidate_probability(jaccard: float, params: LshParams) -> float:
    """The S-curve: probability that two documents of this Jaccard similarity share a band."""
    return 1.0 - (1.0 - jaccard**params.rows) ** params.bands
