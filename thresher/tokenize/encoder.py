"""Documents → token id arrays, for the run's tokenize step (step.py).

Each document becomes ``encode_ordinary(text) + [<|endoftext|>]`` as a numpy array of the
tokenizer's dtype (uint16 when every id fits, else uint32). Special-token names inside web text
are encoded as plain text: a page quoting ``<|endoftext|>`` must not split a document.

One :class:`DocumentEncoder` per worker: its per-piece cache (bounded, see
``BPETokenizer(cache_size=...)``) is what makes encoding fast, so it should live as long as the
worker does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from thresher.tokenize.bpe import DEFAULT_CACHE_SIZE, BPETokenizer
from thresher.tokenize.files import load_tokenizer


@dataclass
class EncodeStats:
    documents: int = 0
    tokens: int = 0
    bytes: int = 0


DEFAULT_BATCH_SIZE = 256
"""Documents per ``encode_ordinary_arrays`` call. Pieces new to the cache are merged together per
call, so a call has some fixed cost. It was chosen when merging ran in numpy rounds, each with a
fixed cost: on bench/tokenizer.py's text, after the cache saw 10 MB, 256 documents encoded ≈ 15%
faster than 64 in the same runs, and 1,024 was no faster. The compiled merger's fixed cost per call
is far smaller, so the size matters less now."""


class DocumentEncoder:
    """Encodes batches of document texts; ``tokenizer`` is a :class:`BPETokenizer` or the
    directory of a saved one."""

    def __init__(
        self,
        tokenizer: BPETokenizer | str | os.PathLike,
        cache_size: int = DEFAULT_CACHE_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.tokenizer = (
            tokenizer if isinstance(tokenizer, BPETokenizer) else load_tokenizer(tokenizer, cache_size)
        )
        self.eot_id = self.tokenizer.eot_id
        self.dtype = self.tokenizer.dtype
        self.batch_size = batch_size
        self.stats = EncodeStats()

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One array per text, each ending with the end-of-text id. Texts must be ``str``."""
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"document {i}: text is {type(text).__name__}, not str")
        out: list[np.ndarray] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            out += self.tokenizer.encode_ordinary_arrays(chunk, end_id=self.eot_id)
            self.stats.bytes += sum(len(t.encode("utf-8", "surrogatepass")) for t in chunk)
        self.stats.documents += len(out)
        self.stats.tokens += sum(len(a) for a in out)
        return out

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """All texts' tokens in one array, and ``offsets`` (len(texts) + 1) so that document ``i``
        is ``tokens[offsets[i]:offsets[i + 1]]``."""
        arrays = self.encode(texts)
        offsets = np.zeros(len(arrays) + 1, np.int64)
        np.cumsum([len(a) for a in arrays], out=offsets[1:])
        tokens = np.concatenate(arrays) if arrays else np.zeros(0, self.dtype)
        return tokens, offsets
