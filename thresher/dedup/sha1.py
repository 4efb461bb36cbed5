"""SHA-1 of many short messages at once, in numpy: ``datasketch.hashfunc.sha1_hash32`` for a
whole batch of shingles without a Python call per shingle.

Signatures must equal datasketch's, which hashes each shingle with SHA-1 and keeps the first
four digest bytes (little-endian). ``hashlib`` costs a Python call, an object and a digest per
shingle; here the 80 rounds run over a column of messages, so the per-shingle cost is a few
hundred simple integer operations on contiguous arrays. Messages up to 55 bytes fit one
SHA-1 block (almost every 5-word shingle); longer ones go through ``hashlib``.
"""

from __future__ import annotations

import hashlib

import numpy as np

_H = [np.uint32(v) for v in (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0)]
_K = [np.uint32(v) for v in (0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xCA62C1D6)]
_ONE_BLOCK = 55
_CHUNK = 16384  # messages per pass: the working set (about 40 arrays of 64 KiB) stays in L2


def _rotl_into(x: np.ndarray, n: int, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    np.right_shift(x, np.uint32(32 - n), out=tmp)
    np.left_shift(x, np.uint32(n), out=out)
    out |= tmp
    return out


def _first_word(w: list[np.ndarray]) -> np.ndarray:
    """SHA-1 of single-block messages given as 16 big-endian message words (each an array over
    messages); returns the first 32-bit digest word. ``w`` is overwritten."""
    m = w[0].shape[0]
    a, b, c, d, e = (np.full(m, h, dtype=np.uint32) for h in _H)
    f = np.empty(m, dtype=np.uint32)
    t1 = np.empty(m, dtype=np.uint32)
    t2 = np.empty(m, dtype=np.uint32)
    for t in range(80):
        wt = w[t & 15]
        if t >= 16:
            wt ^= w[(t - 3) & 15]
            wt ^= w[(t - 8) & 15]
            wt ^= w[(t - 14) & 15]
            np.right_shift(wt, np.uint32(31), out=t1)
            wt <<= np.uint32(1)
            wt |= t1
        if t < 20:  # choose: d ^ (b & (c ^ d))
            np.bitwise_xor(c, d, out=f)
            f &= b
            f ^= d
        elif 40 <= t < 60:  # majority: (b & c) | (d & (b | c))
            np.bitwise_or(b, c, out=f)
            f &= d
            np.bitwise_and(b, c, out=t1)
            f |= t1
        else:  # parity
            np.bitwise_xor(b, c, out=f)
            f ^= d
        # new a = rotl5(a) + f + e + k + w, built in e's buffer (e is not needed afterwards)
        e += f
        e += _K[t // 20]
        e += wt
        e += _rotl_into(a, 5, t1, t2)
        _rotl_into(b, 30, f, t2)
        b, f = f, b  # b now holds rotl30(b); the old b array becomes scratch
        a, b, c, d, e = e, a, b, c, d
    a += _H[0]
    return a


def _padding_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per message length ``L`` and block word ``j``: the mask that keeps the message bytes of
    that word, and the SHA-1 padding bits (0x80 terminator, big-endian bit length) it gets."""
    keep = np.zeros((16, _ONE_BLOCK + 1, 4), dtype=np.uint8)
    pad = np.zeros((16, _ONE_BLOCK + 1, 4), dtype=np.uint8)
    for length in range(_ONE_BLOCK + 1):
        block_keep = np.zeros(64, dtype=np.uint8)
        block_keep[:length] = 0xFF
        block_pad = np.zeros(64, dtype=np.uint8)
        block_pad[length] = 0x80
        block_pad[62:] = np.frombuffer((length * 8).to_bytes(2, "big"), dtype=np.uint8)
        keep[:, length] = block_keep.reshape(16, 4)
        pad[:, length] = block_pad.reshape(16, 4)
    as_words = lambda t: t.view(">u4")[..., 0].astype(np.uint32)  # noqa: E731
    return as_words(keep), as_words(pad)


_KEEP, _PAD = _padding_tables()  # (16, 56) uint32 each


def _word_table(buffer: np.ndarray) -> tuple[np.ndarray, int]:
    """The buffer read as big-endian 32-bit words at each of the four byte alignments, one
    after the other, so the word at any byte offset ``p`` is ``table[(p % 4) * n + p // 4]``."""
    n = len(buffer) // 4 + 17
    padded = np.zeros(4 * n + 4, dtype=np.uint8)
    padded[: len(buffer)] = buffer
    table = np.concatenate([padded[r : r + 4 * n].view(">u4").astype(np.uint32) for r in range(4)])
    return table, n


def _pack(table: np.ndarray, n: int, starts: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Padded single SHA-1 blocks of the messages, as 16 arrays of big-endian message words."""
    base = (starts & 3) * n + (starts >> 2)
    words = []
    for j in range(16):
        w = table.take(base + j)
        w &= _KEEP[j].take(lengths)
        w |= _PAD[j].take(lengths)
        words.append(w)
    return words


def sha1_hash32_batch(buffer: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``sha1_hash32(buffer[starts[k]:ends[k]])`` for every ``k``, as uint32."""
    lengths = (ends - starts).astype(np.int64)
    out = np.empty(len(starts), dtype=np.uint32)
    short = np.flatnonzero(lengths <= _ONE_BLOCK)
    table, n = _word_table(buffer)
    for s in range(0, len(short), _CHUNK):
        sel = short[s : s + _CHUNK]
        first = _first_word(_pack(table, n, starts[sel], lengths[sel]))
        out[sel] = first.byteswap()  # digest bytes 0..3 read as little-endian
    raw = buffer.tobytes() if len(short) < len(starts) else b""
    for k in np.flatnonzero(lengths > _ONE_BLOCK).tolist():
        digest = hashlib.sha1(raw[starts[k] : ends[k]]).digest()
        out[k] = int.from_bytes(digest[:4], "little")
    return out
