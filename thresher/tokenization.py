"""The run's last phase: a tokenizer (given, or trained on the run's own documents) encodes every
kept document into token shards under ``OUTPUT/tokens`` with their ``manifest.json``.

Token shards follow the documents shards: the documents of ``documents/SHARD.parquet`` go to
``tokens/shard-SHARD-NNNNN.parquet`` (and ``val-SHARD-NNNNN.parquet`` for the held-out split, chosen
per document by a hash of its id), so every worker writes its own files and a resumed run finds
the shards it already wrote complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    vocab_size: int = 8192
    min_frequency: int = 2

    def validate(self, where: str) -> None:
        if self.vocab_size < 257:
            raise ValueError(f"{where}.vocab_size: at least 257 (256 bytes + <|endoftext|>), got {self.vocab_size}")


@dataclass
class TokenizeConfig:
    tokenizer: str | None = None
    """Directory of a trained tokenizer (``thresher tokenizer train``); when empty, one is trained
    on this run's documents with ``train`` and saved in ``OUTPUT/tokenizer``."""
    train: TrainConfig = field(default_factory=TrainConfig)
    validation_fraction: float = 0.01
    target_tokens_per_shard: int = 64 * 1024 * 1024

    def validate(self, where: str) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"{where}.validation_fraction: must be in [0, 1), got {self.validation_fraction}")


def _encode_shard(path: str, tokenizer_dir: str, tokens_dir: str, validation_fraction: float, target: int) -> list[dict]:
    import pyarrow.parquet as pq

    from thresher.shards.tokens import TokenShardWriter
    from thresher.tokenize.stage import DocumentEncoder

    encoder = _ENCODERS.get(tokenizer_dir)
    if encoder is None:
        encoder = _ENCODERS[tokenizer_dir] = DocumentEncoder(tokenizer_dir)
    table = pq.read_table(path, columns=["id", "text"])
    writer = TokenShardWriter(
        tokens_dir,
        dtype=str(encoder.dtype),
        eot_id=encoder.eot_id,
        validation_fraction=validation_fraction,
        target_tokens=target,
        prefix=Path(path).stem,
    )
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
    for start in range(0, len(ids), 256):
        writer.add_batch(ids[start : start + 256], encoder.encode(texts[start : start + 256]))
    return [info.to_dict() for info in writer.close()]


_ENCODERS: dict[str, Any] = {}


def run_tokenize(config: TokenizeConfig, output: Path, pipeline_config: dict, *, local: bool) -> dict[str, Any]:
    """Train or load the tokenizer, encode ``output/documents`` into ``output/tokens``; returns figures."""
    from thresher.shards.tokens import write_manifest
    from thresher.tokenize import BPETokenizer, train_from_files
    from thresher.tokenize.files import fingerprint

    docs = sorted(str(p) for p in (output / "documents").glob("*.parquet"))
    figures: dict[str, Any] = {}
    start = time.perf_counter()
    if config.tokenizer:
        tok_dir = Path(config.tokenizer).absolute()
        tokenizer = BPETokenizer.load(tok_dir)
    else:
        tok_dir = output / "tokenizer"
        tokenizer, counted = train_from_files(
            docs, config.train.vocab_size, min_frequency=config.train.min_frequency, use_ray=not local
        )
        tokenizer.save(tok_dir)
        figures["train_seconds"] = round(time.perf_counter() - start, 3)
        figures["train_documents"] = counted.documents
    tokens_dir = output / "tokens"
    tokens_dir.mkdir(parents=True, exist_ok=True)
    args = (str(tok_dir), str(tokens_dir), config.validation_fraction, config.target_tokens_per_shard)
    encode_start = time.perf_counter()
    if local:
        infos = [info for path in docs for info in _encode_shard(path, *args)]
    else:
        import ray

        ds = ray.data.from_items([{"path": p} for p in docs], override_num_blocks=max(1, len(docs)))
        ds = ds.map(lambda row: {"infos": json.dumps(_encode_shard(row["path"], *args))})
        infos = [info for row in ds.iter_rows() for info in json.loads(row["infos"])]
    config_hash = hashlib.sha256(json.dumps(pipeline_config, sort_keys=True).encode()).hexdigest()
    manifest = write_manifest(
        tokens_dir,
        tokenizer={
            "path": str(tok_dir),
            "hash": fingerprint(tokenizer),
            "vocab_size": tokenizer.vocab_size,
            "eot_id": tokenizer.eot_id,
            "dtype": str(tokenizer.dtype),
        },
        config_hash=config_hash,
        validation_fraction=config.validation_fraction,
        shards=infos,
    )
    tokens = sum(s.get("tokens", 0) for s in infos)
    figures.update(
        tokenizer=str(tok_dir),
        vocab_size=tokenizer.vocab_size,
        shards=len(infos),
        documents=sum(s.get("rows", 0) for s in infos),
        tokens=tokens,
        encode_seconds=round(time.perf_counter() - encode_start, 3),
        seconds=round(time.perf_counter() - start, 3),
        manifest=str(tokens_dir / "manifest.json"),
    )
    logger.info("tokenized %d documents into %d tokens (%d shards)", figures["documents"], tokens, len(infos))
    del manifest
    return figures
