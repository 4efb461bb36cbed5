"""The flat token files that nanoGPT and llm.c train from: each split as one stream of tokens.

Documents follow each other in manifest order, each with its trailing ``<|endoftext|>``; a file
boundary may fall inside a document (these trainers read a stream, not documents).

* ``llmc``: ``train_000000.bin``, ``train_000001.bin``, ... and ``val_000000.bin`` ... (llm.c's
  data loader takes a glob: ``-i 'DIR/train_*.bin' -j 'DIR/val_*.bin'``). Each has a header of
  256 little-endian int32 - ``[0]`` magic, ``[1]`` version, ``[2]`` number of tokens that follow -
  then the tokens. uint16 tokens use magic 20240520 / version 1 (llm.c's GPT-2 files), uint32
  tokens magic 20240801 / version 7 (its LLaMA-3 files). llm.c reads at most 2**31 - 1 tokens per
  file, so larger splits are cut into several.
* ``nanogpt``: ``train.bin`` and ``val.bin``, the tokens alone as uint16, which nanoGPT's
  ``train.py`` reads from its data directory with ``np.memmap(path, dtype=np.uint16, mode="r")``.
  Cut into ``train_000000.bin`` ... only when ``max_file_bytes`` is given and exceeded.
"""

from __future__ import annotations

import os

import numpy as np

from thresher.errors import UsageError
from thresher.shards.exports.publish import ExportDir, ExportedFile
from thresher.shards.exports.source import ExportSource

HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
LLMC_HEADER = {"uint16": (20240520, 1), "uint32": (20240801, 7)}
LLMC_MAX_TOKENS = (1 << 31) - 1
FILE_STEM = {"train": "train", "validation": "val"}


def read_llmc_header(path: str | os.PathLike) -> tuple[int, int, int]:
    """(magic, version, token count) of an llm.c ``.bin`` file."""
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header.size != HEADER_INTS:
        raise ValueError(f"{path}: shorter than the {HEADER_BYTES}-byte llm.c header")
    return int(header[0]), int(header[1]), int(header[2])


def _file_names(split: str, n_files: int, numbered: bool) -> list[str]:
    stem = FILE_STEM[split]
    if not numbered and n_files == 1:
        return [f"{stem}.bin"]
    return [f"{stem}_{i:06d}.bin" for i in range(n_files)]


def _write_split(
    source: ExportSource, out: ExportDir, split: str, fmt: str, tokens_per_file: int
) -> list[ExportedFile]:
    total = sum(s.tokens for s in source.shards(split))
    n_files = max(1, -(-total // tokens_per_file))
    names = _file_names(split, n_files, numbered=fmt == "llmc")
    sizes = [min(tokens_per_file, total - i * tokens_per_file) for i in range(n_files)]
    dtype = np.dtype(f"<{source.dtype.str[1:]}")
    blocks = source.token_blocks(split, columns=("tokens",))
    pending, pending_ends = np.zeros(0, dtype), np.zeros(0, np.int64)
    files = []
    for name, size in zip(names, sizes, strict=True):
        documents = 0
        with open(out.path(name), "wb") as f:
            if fmt == "llmc":
                header = np.zeros(HEADER_INTS, dtype="<i4")
                header[0], header[1] = LLMC_HEADER[source.dtype.name]
                header[2] = size
                f.write(header.tobytes())
            written = 0
            while written < size:
                if pending.size == 0:
                    block = next(blocks)
                    pending, pending_ends = block.tokens, block.offsets[1:]
                take = pending[: size - written]
                f.write(take.astype(dtype, copy=False).tobytes())
                documents += int(np.count_nonzero(pending_ends <= take.size))  # documents ending here
                pending, pending_ends = (
                    pending[take.size :],
                    pending_ends[pending_ends > take.size] - take.size,
                )
                written += take.size
        out.finished(name)
        files.append(ExportedFile(name, split, documents=documents, tokens=size))
    return files


def write_flat(
    source: ExportSource, out: ExportDir, fmt: str, max_file_bytes: int | None
) -> list[ExportedFile]:
    if fmt == "nanogpt" and source.dtype != np.uint16:
        raise UsageError("nanoGPT reads uint16 tokens; this vocabulary needs uint32 (export llmc instead)")
    itemsize = source.dtype.itemsize
    if fmt == "llmc":
        limit = LLMC_MAX_TOKENS
        if max_file_bytes is not None:
            limit = min(limit, (max_file_bytes - HEADER_BYTES) // itemsize)
    else:
        limit = max_file_bytes // itemsize if max_file_bytes is not None else None
    if limit is not None and limit < 1:
        raise UsageError(f"--max-file-bytes {max_file_bytes} holds no token")
    files = []
    for split in source.splits():
        total = sum(s.tokens for s in source.shards(split))
        files += _write_split(source, out, split, fmt, limit or max(total, 1))
    return files


def write_llmc(source: ExportSource, out: ExportDir, max_file_bytes: int | None) -> list[ExportedFile]:
    return write_flat(source, out, "llmc", max_file_bytes)


def write_nanogpt(source: ExportSource, out: ExportDir, max_file_bytes: int | None) -> list[ExportedFile]:
    return write_flat(source, out, "nanogpt", max_file_bytes)
