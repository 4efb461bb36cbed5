"""A run's tokenize step, its last phase: a tokenizer (given, or trained on the run's own
documents) encodes every kept document into token shards under ``OUTPUT/tokens`` with their
``manifest.json``. A config's ``tokenize:`` section runs it at the end of ``thresher run``;
``thresher tokenize OUTPUT`` runs it on a finished run.

Token shards follow the documents shards: the documents of ``documents/SHARD.parquet`` go to
``tokens/shard-SHARD-NNNNN.parquet`` (and ``val-SHARD-NNNNN.parquet`` for the held-out split, chosen
per document by a hash of its id), so every worker writes its own files and a resumed run finds
the shards it already wrote complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from thresher.dataconfig import option
from thresher.shards.tokens import MAX_SHARD_TOKENS, TokenShardWriter, write_manifest
from thresher.tokenize.encoder import DocumentEncoder
from thresher.tokenize.files import fingerprint, load_tokenizer, save_tokenizer
from thresher.tokenize.train import train_from_files

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    vocab_size: int = 8192
    min_frequency: int = option(2, ge=1)

    def validate(self, where: str) -> None:
        if self.vocab_size < 257:
            raise ValueError(
                f"{where}.vocab_size: at least 257 (256 bytes + <|endoftext|>), got {self.vocab_size}"
            )


@dataclass
class TokenizeConfig:
    tokenizer: str | None = None
    """Directory of a trained tokenizer (``thresher tokenizer train``); when empty, one is trained
    on this run's documents with ``train`` and saved in ``OUTPUT/tokenizer``."""
    train: TrainConfig = field(default_factory=TrainConfig)
    validation_fraction: float = option(0.01, ge=0, lt=1)
    target_tokens_per_shard: int = option(64 * 1024 * 1024, ge=1, le=MAX_SHARD_TOKENS)


_ENCODERS: dict[str, DocumentEncoder] = {}
"""This process's encoder, by the fingerprint of its tokenizer (at most one: a run uses one
tokenizer). The key is the content, not the directory: a Ray worker, or the driver of a local run,
outlives a run (a notebook, a test session, a reused Ray), and a tokenizer re-trained into the same
directory must not be served by the encoder of the old one. Kept across runs because the encoder's
piece cache is what makes encoding fast."""


def _encoder(tokenizer_dir: str, tokenizer_hash: str) -> DocumentEncoder:
    """The encoder of the tokenizer whose fingerprint is ``tokenizer_hash``, loaded from
    ``tokenizer_dir`` unless this process already holds it."""
    encoder = _ENCODERS.get(tokenizer_hash)
    if encoder is None:
        encoder = DocumentEncoder(tokenizer_dir)
        if fingerprint(encoder.tokenizer) != tokenizer_hash:
            raise ValueError(f"{tokenizer_dir}: the tokenizer changed on disk while this run was encoding")
        _ENCODERS.clear()
        _ENCODERS[tokenizer_hash] = encoder
    return encoder


def _encode_shard(
    path: str,
    tokenizer_dir: str,
    tokenizer_hash: str,
    tokens_dir: str,
    validation_fraction: float,
    target: int,
    layout: Any = None,
) -> list[dict]:
    """Encode one documents shard into token shards named after it; returns their ShardInfo dicts.
    With a ``layout`` on an object store, ``path`` is one of its documents and the token shards
    are written to a local temporary directory of this worker, uploaded, and removed."""
    if layout is not None and not layout.is_local:
        import shutil
        import tempfile

        local = tempfile.mkdtemp(prefix="thresher-tokens-")
        try:
            table = layout.read_table(path, columns=["id", "text"])
            infos = _encode_table(
                table, Path(path).stem, tokenizer_dir, tokenizer_hash, local, validation_fraction, target
            )
            for info in infos:
                layout.store.upload(Path(local) / info["path"], layout.key(layout.tokens_dir / info["path"]))
            return infos
        finally:
            shutil.rmtree(local, ignore_errors=True)
    table = pq.read_table(path, columns=["id", "text"])
    return _encode_table(
        table, Path(path).stem, tokenizer_dir, tokenizer_hash, tokens_dir, validation_fraction, target
    )


def _encode_table(
    table: Any,
    prefix: str,
    tokenizer_dir: str,
    tokenizer_hash: str,
    tokens_dir: str,
    validation_fraction: float,
    target: int,
) -> list[dict]:
    encoder = _encoder(tokenizer_dir, tokenizer_hash)
    writer = TokenShardWriter(
        tokens_dir,
        dtype=encoder.dtype,
        eot_id=encoder.eot_id,
        validation_fraction=validation_fraction,
        target_tokens=target,
        prefix=prefix,
    )
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
    for start in range(0, len(ids), 256):
        writer.add_batch(ids[start : start + 256], encoder.encode(texts[start : start + 256]))
    return [info.to_dict() for info in writer.close()]


def run_tokenize(
    config: TokenizeConfig, output: Any, pipeline_config: dict, *, local: bool
) -> dict[str, Any]:
    """Train or load the tokenizer, encode ``output/documents`` into ``output/tokens``; returns
    figures. ``output``: a local directory or a run's :class:`~thresher.run.layout.RunLayout`
    (any store: on an object store the documents are read from it and the tokens uploaded)."""
    from thresher.run.layout import RunLayout

    layout = output if isinstance(output, RunLayout) else RunLayout.at(output)
    remote = not layout.is_local
    docs = [layout.uri_of(p) if remote else str(p) for p in layout.document_files()]
    figures: dict[str, Any] = {}
    start = time.perf_counter()
    if config.tokenizer:
        tok_dir = Path(config.tokenizer).absolute()
        tokenizer = load_tokenizer(tok_dir)
    else:
        tok_dir = layout.uri_of(layout.tokenizer_dir) if remote else layout.tokenizer_dir
        tokenizer, counted = train_from_files(
            docs, config.train.vocab_size, min_frequency=config.train.min_frequency, use_ray=not local
        )
        save_tokenizer(tokenizer, tok_dir)
        figures["train_seconds"] = round(time.perf_counter() - start, 3)
        figures["train_documents"] = counted.documents
    tokenizer_hash = fingerprint(tokenizer)
    tokens_dir = Path(tempfile.mkdtemp(prefix="thresher-manifest-")) if remote else layout.tokens_dir
    tokens_dir.mkdir(parents=True, exist_ok=True)
    if remote:
        docs = [str(p) for p in layout.document_files()]  # keys of the layout, read by the workers
    args = (
        str(tok_dir),
        tokenizer_hash,
        str(tokens_dir),
        config.validation_fraction,
        config.target_tokens_per_shard,
    )
    encode_start = time.perf_counter()
    if remote:
        args = (*args, layout)
    if local:
        infos = [info for path in docs for info in _encode_shard(path, *args)]
    else:
        import ray

        ds = ray.data.from_items([{"path": p} for p in docs], override_num_blocks=max(1, len(docs)))
        ds = ds.map(lambda row: {"infos": json.dumps(_encode_shard(row["path"], *args))})
        infos = [info for row in ds.iter_rows() for info in json.loads(row["infos"])]
    config_hash = hashlib.sha256(json.dumps(pipeline_config, sort_keys=True).encode()).hexdigest()
    write_manifest(
        tokens_dir,
        tokenizer={
            "path": str(tok_dir),
            "hash": tokenizer_hash,
            "vocab_size": tokenizer.vocab_size,
            "eot_id": tokenizer.eot_id,
            "dtype": tokenizer.dtype.name,
        },
        config_hash=config_hash,
        validation_fraction=config.validation_fraction,
        shards=infos,
        verify=not remote,  # on an object store the files are not here; their sha256 is the writers'
    )
    if remote:
        layout.store.upload(tokens_dir / "manifest.json", layout.key(layout.tokens_manifest))
        shutil.rmtree(tokens_dir, ignore_errors=True)
    tokens = sum(s.get("tokens", 0) for s in infos)
    figures.update(
        tokenizer=str(tok_dir),
        vocab_size=tokenizer.vocab_size,
        shards=len(infos),
        documents=sum(s.get("rows", 0) for s in infos),
        tokens=tokens,
        encode_seconds=round(time.perf_counter() - encode_start, 3),
        seconds=round(time.perf_counter() - start, 3),
        manifest=layout.uri_of(layout.tokens_manifest) if remote else str(layout.tokens_manifest),
    )
    logger.info("tokenized %d documents into %d tokens (%d shards)", figures["documents"], tokens, len(infos))
    return figures
