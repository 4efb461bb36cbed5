"""MosaicML Streaming's MDS format: ``SPLIT/shard.NNNNN.mds`` files and ``SPLIT/index.json``.

What ``streaming.StreamingDataset(local=DIR, split=SPLIT)`` (LLM Foundry, Composer) reads. Our
own writer rather than ``streaming.MDSWriter``: the format is small and fixed, and a runtime
dependency on ``mosaicml-streaming`` would pin numpy, transformers and torchvision for every user.
The layout follows streaming 0.13's ``streaming/base/format/mds`` (the tests read every export
back with streaming itself). All integers little-endian::

    shard.NNNNN.mds   uint32 sample count S
                      (S + 1) x uint32: byte offset of each sample in the file, then of its end
                      the shard's config as JSON (sorted keys; readers skip it)
                      the samples
    a sample          uint32 size of each variable-size column, in column order, then the columns:
                      id      "str": UTF-8
                      tokens  "ndarray:uint16|uint32": one byte (ndim << 2 | shape dtype code),
                              the length as uint8/16/32 (the smallest that holds it), the tokens
    index.json        {"version": 2, "shards": [each shard's config, sample count and file info]}

Columns are sorted by name (``id``, ``tokens``), as streaming orders them. One sample is one
document with its ``<|endoftext|>``; a shard holds whole samples and ends before it would pass
``max_file_bytes`` (streaming's ``size_limit``; its offsets are uint32, so at most 4 GiB). Each
shard's sha256 is in ``index.json`` too, so ``StreamingDataset(validate_hash="sha256")`` checks it.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from thresher.errors import UsageError
from thresher.shards.exports.publish import ExportDir, ExportedFile
from thresher.shards.exports.source import ExportSource

MDS_VERSION = 2
COLUMNS = ("id", "tokens")
MAX_SHARD_BYTES = (1 << 32) - 1
_SHAPE_DTYPES = ((1 << 8, "<u1", 0), (1 << 16, "<u2", 1), (1 << 32, "<u4", 2))
HASH = "sha256"


def _shape(n: int) -> bytes:
    """The dynamic-shape header of a 1-d ndarray of ``n`` values."""
    for limit, dtype, code in _SHAPE_DTYPES:
        if n < limit:
            return bytes([(1 << 2) | code]) + np.array([n], dtype).tobytes()
    raise UsageError(f"a document of {n} tokens does not fit an MDS sample")


def encode_sample(doc_id: str, tokens: np.ndarray) -> bytes:
    """One document as an MDS sample with columns ``id`` (str) and ``tokens`` (ndarray)."""
    id_bytes = doc_id.encode("utf-8")
    token_bytes = _shape(tokens.size) + tokens.astype(tokens.dtype.newbyteorder("<"), copy=False).tobytes()
    return np.array([len(id_bytes), len(token_bytes)], "<u4").tobytes() + id_bytes + token_bytes


class _ShardWriter:
    def __init__(self, out: ExportDir, split: str, encodings: list[str], size_limit: int) -> None:
        self.out, self.split, self.size_limit = out, split, size_limit
        self.config = {
            "column_encodings": encodings,
            "column_names": list(COLUMNS),
            "column_sizes": [None, None],
            "compression": None,
            "format": "mds",
            "hashes": [HASH],
            "size_limit": size_limit,
            "version": MDS_VERSION,
        }
        self.config_bytes = json.dumps(self.config, sort_keys=True).encode("utf-8")
        self.shards: list[dict] = []
        self.files: list[ExportedFile] = []
        self._reset()

    def _reset(self) -> None:
        self.samples: list[bytes] = []
        self.size = 4 + 4 + len(self.config_bytes)
        self.tokens = 0

    def add(self, doc_id: str, tokens: np.ndarray) -> None:
        sample = encode_sample(doc_id, tokens)
        if self.samples and self.size + len(sample) + 4 > self.size_limit:
            self.flush()
        if self.size + len(sample) + 4 > MAX_SHARD_BYTES:
            raise UsageError(f"document {doc_id!r} is larger than an MDS shard can be (4 GiB)")
        self.samples.append(sample)
        self.size += len(sample) + 4
        self.tokens += int(tokens.size)

    def flush(self) -> None:
        if not self.samples:
            return
        n = len(self.samples)
        sizes = np.fromiter((len(s) for s in self.samples), np.int64, count=n)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(sizes, out=offsets[1:])
        offsets += 4 + 4 * (n + 1) + len(self.config_bytes)
        data = b"".join(
            [
                np.array([n], "<u4").tobytes(),
                offsets.astype("<u4").tobytes(),
                self.config_bytes,
                *self.samples,
            ]
        )
        basename = f"shard.{len(self.shards):05d}.mds"
        self.out.path(f"{self.split}/{basename}").write_bytes(data)
        self.out.finished(f"{self.split}/{basename}")
        info = {"basename": basename, "bytes": len(data), "hashes": {HASH: hashlib.sha256(data).hexdigest()}}
        self.shards.append({**self.config, "raw_data": info, "samples": n, "zip_data": None})
        self.files.append(
            ExportedFile(f"{self.split}/{basename}", self.split, documents=n, tokens=self.tokens)
        )
        self._reset()

    def close(self) -> list[ExportedFile]:
        self.flush()
        index = json.dumps({"shards": self.shards, "version": MDS_VERSION}, sort_keys=True)
        self.out.path(f"{self.split}/index.json").write_text(index)
        self.out.finished(f"{self.split}/index.json")
        return [*self.files, ExportedFile(f"{self.split}/index.json", self.split, role="index")]


def write_mds(source: ExportSource, out: ExportDir, max_file_bytes: int) -> list[ExportedFile]:
    """Write every split as ``out/SPLIT/index.json`` and its shards; returns the files written."""
    if max_file_bytes > MAX_SHARD_BYTES:
        raise UsageError(f"MDS shards hold at most {MAX_SHARD_BYTES} bytes (uint32 offsets)")
    encodings = ["str", f"ndarray:{source.dtype.name}"]
    files: list[ExportedFile] = []
    for split in source.splits():
        writer = _ShardWriter(out, split, encodings, max_file_bytes)
        for block in source.token_blocks(split):
            offsets = block.offsets
            for i, doc_id in enumerate(block.ids):
                writer.add(doc_id, block.tokens[offsets[i] : offsets[i + 1]])
        files += writer.close()
    return files
