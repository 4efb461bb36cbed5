"""A small tokens directory built from real text, for tests, the loader benchmark and the examples
when no pipeline output is at hand.

The documents are real: the Zyte article-extraction benchmark's gold article bodies and the
Lingua/Leipzig sentences of 75 languages (grouped into paragraphs of a few to a few dozen
sentences). They are tokenized with a byte-level BPE trained on the same text with Hugging Face
``tokenizers`` (a dev dependency), independent of thresher's own tokenizer. ``repeat`` copies the
corpus under new ids to reach benchmark sizes without re-tokenizing; ``bpe_sample_every`` trains
the BPE on every k-th document only, which keeps test setup to a couple of seconds.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from thresher.shards.tokens import TokenShardWriter, write_manifest
from thresher.tokenize.bpe import token_dtype

EOT = "<|endoftext|>"


def real_documents(data_dir: str | os.PathLike, *, languages: int | None = None) -> Iterator[tuple[str, str]]:
    """(id, text) pairs from the shared evaluation data (``shared/data``)."""
    root = Path(data_dir)
    articles = json.loads((root / "extraction-scrapinghub-aeb" / "ground-truth.json").read_text())
    for key in sorted(articles):
        body = articles[key].get("articleBody") or ""
        if body.strip():
            yield f"aeb/{key}", body
    files = sorted((root / "lid-lingua-testdata" / "sentences").glob("*.txt.gz"))
    rng = np.random.default_rng(0)
    for path in files[:languages]:
        lang = path.name.split(".")[0]
        lines = [s for s in gzip.open(path, "rt", encoding="utf-8").read().splitlines() if s.strip()]
        start, k = 0, 0
        while start < len(lines):
            n = int(rng.integers(3, 40))
            yield f"lingua/{lang}/{k:04d}", " ".join(lines[start : start + n])
            start, k = start + n, k + 1


def train_bpe(texts: list[str], vocab_size: int) -> Any:
    from tokenizers import ByteLevelBPETokenizer

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[EOT], show_progress=False
    )
    return tok


def build_sample_tokens(
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    vocab_size: int = 4096,
    languages: int | None = None,
    validation_fraction: float = 0.1,
    target_tokens: int = 200_000,
    row_group_tokens: int = 16_384,
    repeat: int = 1,
    bpe_sample_every: int = 1,
) -> dict[str, Any]:
    """Tokenize the real documents and write shards + manifest into ``out_dir``; returns the manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = list(real_documents(data_dir, languages=languages))
    texts = [t for _, t in docs]
    tok = train_bpe(texts[::bpe_sample_every], vocab_size)
    tok_path = out / "tokenizer.json"
    tok._tokenizer.save(str(tok_path))
    eot_id = tok.token_to_id(EOT)
    dtype = token_dtype(tok.get_vocab_size())
    encoded = [np.asarray(e.ids + [eot_id], dtype=dtype) for e in tok.encode_batch(texts)]
    with TokenShardWriter(
        out,
        dtype=dtype,
        eot_id=eot_id,
        validation_fraction=validation_fraction,
        target_tokens=target_tokens,
        row_group_tokens=row_group_tokens,
    ) as writer:
        for r in range(repeat):
            suffix = f"#{r}" if r else ""
            for (doc_id, _), ids in zip(docs, encoded, strict=True):
                writer.add(doc_id + suffix, ids)
    tokenizer = {
        "path": str(tok_path),
        "hash": hashlib.sha256(tok_path.read_bytes()).hexdigest(),
        "vocab_size": tok.get_vocab_size(),
        "eot_id": eot_id,
        "dtype": dtype.name,
    }
    config = {"sample": True, "vocab_size": vocab_size, "languages": languages, "repeat": repeat}
    return write_manifest(
        out,
        tokenizer=tokenizer,
        config_hash=hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
        validation_fraction=validation_fraction,
        shards=writer.shards,
    )


def small_sample_tokens(out_dir: str | os.PathLike, data_dir: str | os.PathLike) -> Path:
    """A ~0.7M-token sample that builds in seconds (tests, quick checks); reused when present."""
    out = Path(out_dir)
    if not (out / "manifest.json").exists():
        build_sample_tokens(
            out,
            data_dir,
            vocab_size=1024,
            languages=4,
            bpe_sample_every=4,
            target_tokens=60_000,
            row_group_tokens=8_192,
            validation_fraction=0.1,
        )
    return out
