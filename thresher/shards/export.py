"""Export token shards to the flat ``.bin`` files that nanoGPT and llm.c train from.

Documents are written in manifest order, each with its trailing ``<|endoftext|>``, as one stream.

* ``llmc``: a header of 256 little-endian int32 - ``[0]`` magic, ``[1]`` version, ``[2]`` number
  of tokens that follow - then the tokens. uint16 tokens use magic 20240520 / version 1 (llm.c's
  GPT-2 files), uint32 tokens magic 20240801 / version 7 (its LLaMA-3 files). llm.c reads at most
  2**31 - 1 tokens per file, so larger exports are cut into ``OUT_000000.bin``, ``OUT_000001.bin``...
* ``nanogpt``: the tokens alone as uint16, read by ``np.memmap(path, dtype=np.uint16, mode="r")``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from thresher.io import atomic_open
from thresher.shards.stream import TokenCorpus

logger = logging.getLogger(__name__)

HEADER_INTS = 256
LLMC_HEADER = {"uint16": (20240520, 1), "uint32": (20240801, 7)}
LLMC_MAX_TOKENS = (1 << 31) - 1


def read_llmc_header(path: str | os.PathLike) -> tuple[int, int, int]:
    """(magic, version, token count) of an llm.c ``.bin`` file."""
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header.size != HEADER_INTS:
        raise ValueError(f"{path}: shorter than the {HEADER_INTS * 4}-byte llm.c header")
    return int(header[0]), int(header[1]), int(header[2])


def export_bin(
    tokens_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "train",
    fmt: str = "llmc",
    max_tokens_per_file: int | None = None,
) -> list[Path]:
    """Write the split's tokens to ``out`` (or numbered files beside it); returns the files written."""
    if fmt not in ("llmc", "nanogpt"):
        raise ValueError(f"format must be llmc or nanogpt, got {fmt!r}")
    corpus = TokenCorpus(tokens_dir, split)
    dtype = corpus.shards[0].dtype
    if fmt == "nanogpt" and dtype != "uint16":
        raise ValueError("nanoGPT reads uint16 tokens; this vocabulary needs uint32 (use --format llmc)")
    limit = max_tokens_per_file or (LLMC_MAX_TOKENS if fmt == "llmc" else corpus.total_tokens)
    if fmt == "llmc":
        limit = min(limit, LLMC_MAX_TOKENS)
    out = Path(out)
    n_files = max(1, -(-corpus.total_tokens // limit))
    paths = (
        [out] if n_files == 1 else [out.with_name(f"{out.stem}_{i:06d}{out.suffix}") for i in range(n_files)]
    )
    sizes = [min(limit, corpus.total_tokens - i * limit) for i in range(n_files)]
    units = iter(range(len(corpus.unit_tokens)))
    pending = np.zeros(0, dtype=dtype)
    for path, size in zip(paths, sizes, strict=True):
        with atomic_open(path) as f:
            if fmt == "llmc":
                header = np.zeros(HEADER_INTS, dtype="<i4")
                header[0], header[1] = LLMC_HEADER[dtype]
                header[2] = size
                f.write(header.tobytes())
            written = 0
            while written < size:
                if pending.size == 0:
                    pending, _ = corpus.read_unit(next(units))
                take = pending[: size - written]
                f.write(take.astype(f"<{np.dtype(dtype).str[1:]}", copy=False).tobytes())
                written += take.size
                pending = pending[take.size :]
        logger.info("wrote %s: %d tokens (%s)", path, size, fmt)
    return paths
