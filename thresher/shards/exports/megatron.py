"""Megatron-LM's indexed dataset: ``PREFIX.bin`` (the tokens) and ``PREFIX.idx`` (where each is).

The layout is Megatron-Core's ``megatron/core/datasets/indexed_dataset.py`` (``IndexedDataset``,
what ``tools/preprocess_data.py`` writes and ``GPTDataset`` reads), all little-endian::

    .idx  b"MMIDIDX\\x00\\x00"             9 bytes
          version                        uint64, 1
          dtype code                     uint8: 8 uint16, 4 int32 (Megatron has no uint32)
          sequence count N               uint64
          document count N + 1           uint64 (length of the document index)
          sequence lengths               N x int32, in tokens
          sequence pointers              N x int64, byte offset of each sequence in .bin
          document indices               (N + 1) x int64: 0, 1, ..., N
    .bin  the sequences' tokens back to back in the dtype

One document is one sequence (its ``<|endoftext|>`` kept, as ``preprocess_data.py --append-eod``
does), so the document index is 0..N. A split is cut into several prefixes
(``train/train-00000``, ``train/train-00001`` ...) at document boundaries so that no ``.bin`` is
larger than ``max_file_bytes`` (a document larger than that gets a file of its own); Megatron
blends prefixes by weight, and the export manifest gives each one's token count.
"""

from __future__ import annotations

import struct

import numpy as np

from thresher.errors import UsageError
from thresher.shards.exports.publish import ExportDir, ExportedFile
from thresher.shards.exports.source import ExportSource

INDEX_HEADER = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
DTYPE_CODES = {"uint16": 8, "int32": 4}
"""Megatron's ``DType`` codes for the two dtypes tokens are written in."""


def disk_dtype(tokens: np.dtype) -> np.dtype:
    """uint16 tokens stay uint16; uint32 tokens become int32, the wider dtype Megatron reads."""
    return np.dtype("<u2") if tokens == np.uint16 else np.dtype("<i4")


class _Prefix:
    """One ``.bin`` being written and the lengths of its sequences, for the ``.idx`` at close."""

    def __init__(self, out: ExportDir, rel: str, split: str, dtype: np.dtype) -> None:
        self.out, self.rel, self.split, self.dtype = out, rel, split, dtype
        self.bin = open(out.path(f"{rel}.bin"), "wb")
        self.lengths: list[np.ndarray] = []
        self.documents = 0
        self.tokens = 0

    @property
    def nbytes(self) -> int:
        return self.tokens * self.dtype.itemsize

    def write(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        if tokens.size and self.dtype == np.int32 and int(tokens.max()) > np.iinfo(np.int32).max:
            raise UsageError(f"token id {int(tokens.max())} does not fit Megatron's int32 tokens")
        self.bin.write(tokens.astype(self.dtype, copy=False).tobytes())
        self.lengths.append(lengths.astype(np.int64, copy=False))
        self.documents += len(lengths)
        self.tokens += int(tokens.size)

    def close(self) -> list[ExportedFile]:
        self.bin.close()
        self.out.finished(f"{self.rel}.bin")
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.int64)
        pointers = np.zeros(len(lengths), np.int64)
        np.cumsum(lengths[:-1] * self.dtype.itemsize, out=pointers[1:])
        n = len(lengths)
        with open(self.out.path(f"{self.rel}.idx"), "wb") as idx:
            idx.write(INDEX_HEADER)
            idx.write(struct.pack("<Q", INDEX_VERSION))
            idx.write(struct.pack("<B", DTYPE_CODES[self.dtype.name]))
            idx.write(struct.pack("<Q", n))
            idx.write(struct.pack("<Q", n + 1))
            idx.write(lengths.astype("<i4").tobytes())
            idx.write(pointers.astype("<i8").tobytes())
            idx.write(np.arange(n + 1, dtype="<i8").tobytes())
        self.out.finished(f"{self.rel}.idx")
        return [
            ExportedFile(f"{self.rel}.bin", self.split, documents=self.documents, tokens=self.tokens),
            ExportedFile(f"{self.rel}.idx", self.split, role="index"),
        ]


def write_megatron(source: ExportSource, out: ExportDir, max_file_bytes: int) -> list[ExportedFile]:
    """Write every split as ``out/SPLIT/SPLIT-NNNNN.{bin,idx}``; returns the files written."""
    dtype = disk_dtype(source.dtype)
    files: list[ExportedFile] = []
    for split in source.splits():
        part: _Prefix | None = None
        count = 0
        for block in source.token_blocks(split, columns=("tokens",)):
            lengths, offsets = block.lengths, block.offsets
            start = 0
            while start < len(lengths):
                if part is None:
                    part = _Prefix(out, f"{split}/{split}-{count:05d}", split, dtype)
                    count += 1
                room = max_file_bytes - part.nbytes
                fit = int(np.searchsorted(np.cumsum(lengths[start:]) * dtype.itemsize, room, side="right"))
                if fit == 0 and part.documents == 0:
                    fit = 1  # a document larger than a file: it alone
                end = start + fit
                if fit:
                    part.write(block.tokens[offsets[start] : offsets[end]], lengths[start:end])
                if end < len(lengths):  # the next document does not fit: this file is full
                    files += part.close()
                    part = None
                start = end
        if part is not None:
            files += part.close()
    return files
