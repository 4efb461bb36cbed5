"""The dedup stages: :class:`ExactDedup` and :class:`MinHashDedup`.

Both turn each document into a row of keys (:func:`exact_doc_table`, :func:`minhash_doc_table`)
and hand those rows to :mod:`thresher.dedup.engine`, which finds clusters of documents sharing
keys and keeps one per cluster. The kept document is the first in the run, by (shard, pos) —
or the longest, or the highest score, ties broken by (shard, pos) — so results do not depend
on worker count, block layout, or the documents' ids (a document is never confused with another
that has the same id). Documents run through ``run_local`` are placed by their list position.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pyarrow as pa

from thresher.dataconfig import option
from thresher.dedup.engine import (
    DOC_TABLE_SCHEMA,
    EngineResult,
    EngineSettings,
    index_store,
    run_engine,
    sig_array,
)
from thresher.dedup.executor import LocalExecutor, RayExecutor
from thresher.dedup.signatures import (
    BAND_KEY_VERSION,
    SIGNATURE_VERSION,
    LshParams,
    MinHasher,
    band_keys,
    fmix64,
    hash64,
    low_bits,
    optimal_params,
)
from thresher.dedup.text import NORMALIZATION_VERSION, normalize, shingle_batch
from thresher.document import Document, Drop
from thresher.stage import DECISION_SCHEMA, DatasetStage

logger = logging.getLogger(__name__)

KeepPolicy = Literal["first", "longest", "score"]
INPUT_COLUMNS = ("id", "text", "shard", "pos", "row", "url", "scores")
PLACE_COLUMNS = ("shard", "pos", "row")


@dataclass
class _CommonConfig:
    keep: KeepPolicy = "first"
    """Which document of a cluster survives: first (smallest shard, then position in it), longest,
    or highest ``score_key`` score (documents without the score rank last)."""
    score_key: str = "quality"
    mode: Literal["auto", "local", "ray"] = "auto"
    """auto: cluster in the driver process up to ``local_max_docs`` documents, else as Ray tasks."""
    local_max_docs: int = option(200_000, ge=0)
    partitions: int = option(0, ge=0)
    """Shuffle partitions of the Ray path; 0 picks 2 per CPU, at least one per million documents."""

    def _validate_common(self, where: str) -> None:
        if self.keep == "score" and not self.score_key:
            raise ValueError(f"{where}.score_key: required with keep: score")


@dataclass
class ExactDedupConfig(_CommonConfig):
    url: bool = False
    """Also treat documents with the same normalised URL as duplicates."""

    def validate(self, where: str) -> None:
        self._validate_common(where)


@dataclass
class MinHashDedupConfig(_CommonConfig):
    num_perm: int = option(112, ge=1)
    seed: int = option(1, ge=0)
    shingle_size: int = option(5, ge=1)
    bands: int = option(14, ge=1)
    rows: int = option(8, ge=1)
    threshold: float | None = option(None, gt=0, lt=1)
    """Target Jaccard similarity; when set, bands × rows come from datasketch's optimiser for
    ``num_perm`` and override ``bands``/``rows`` (weighted for recall when ``verify`` is on,
    since verification removes the extra candidates)."""
    verify: bool = True
    """Keep a candidate pair only when its signatures agree on at least ``verify_threshold`` of
    their values (the MinHash estimate of Jaccard). Without it every pair sharing a band
    counts, and the S-curve's tail below the threshold costs precision."""
    verify_threshold: float | None = option(None, gt=0, le=1)
    """Estimated Jaccard a candidate pair needs; defaults to ``threshold``, else 0.8."""
    pair_group_max: int = option(16, ge=2)
    """Verification compares every pair of documents sharing a band up to this many documents
    per band key, a star and a chain above it."""
    against: str | list[str] | None = None
    """Index directories (``index_output`` of earlier runs; paths or URIs such as
    ``s3://bucket/index``): documents duplicating any of their documents are dropped, the earlier
    documents always being the ones kept."""
    index_output: str | None = None
    """Directory (a path or a URI) to save this run's band keys to, for later runs' ``against``."""
    max_cc_steps: int = option(64, ge=1)

    def validate(self, where: str) -> None:
        self._validate_common(where)
        if self.threshold is None and self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"{where}: bands × rows ({self.bands} × {self.rows}) must be between 1 and num_perm ({self.num_perm})"
            )

    def lsh(self) -> LshParams:
        if not self.threshold:
            return LshParams(self.bands, self.rows)
        return optimal_params(self.threshold, self.num_perm, recall_weight=0.95 if self.verify else 0.5)

    def verify_at(self) -> float | None:
        if not self.verify:
            return None
        return self.verify_threshold or self.threshold or 0.8

    def against_list(self) -> list[str]:
        if not self.against:
            return []
        return [self.against] if isinstance(self.against, str) else list(self.against)

    def index_params(self) -> dict[str, Any]:
        lsh = self.lsh()
        return {
            "format": "thresher-minhash-index-1",
            "num_perm": self.num_perm,
            "seed": self.seed,
            "shingle_size": self.shingle_size,
            "bands": lsh.bands,
            "rows": lsh.rows,
            "normalization": NORMALIZATION_VERSION,
            "band_key": BAND_KEY_VERSION,
            "hash": "datasketch-sha1_hash32-affine32",
            "signatures": SIGNATURE_VERSION if self.verify else None,
        }


# --------------------------------------------------------------------------- key rows


def _column(batch: pa.Table, name: str, default: Any) -> list:
    if name in batch.column_names:
        return batch.column(name).to_pylist()
    return [default] * batch.num_rows


def _scores(batch: pa.Table, key: str | None) -> pa.Array:
    if not key:
        return pa.nulls(batch.num_rows, pa.float64())
    out: list[float | None] = []
    for raw in _column(batch, "scores", None):
        try:
            value = (json.loads(raw) if isinstance(raw, str) else (raw or {})).get(key)
            score = None if value is None else float(value)
        except (ValueError, TypeError, AttributeError, OverflowError, RecursionError):
            score = None  # malformed scores, or a number with no float (10**400), rank like missing ones
        out.append(score if score is not None and math.isfinite(score) else None)
    return pa.array(out, pa.float64())


def _doc_table(
    batch: pa.Table, texts: list[str], offsets: np.ndarray, keys: np.ndarray, score_key: str | None
):
    missing = [c for c in PLACE_COLUMNS if c not in batch.column_names]
    if missing:
        raise ValueError(f"dedup input lacks {missing}: every document needs its place (shard, pos, row)")
    ids = [str(i) for i in _column(batch, "id", "")]
    rows = batch.column("row").to_numpy(zero_copy_only=False).astype(np.uint64)
    return pa.table(
        {
            "node": pa.array(fmix64(rows), pa.uint64()),  # a bijection: one node per document
            "id": pa.array(ids, pa.string()),
            "shard": pa.array([s or "" for s in _column(batch, "shard", "")], pa.string()),
            "pos": batch.column("pos").cast(pa.int64()),
            "length": pa.array([len(t) for t in texts], pa.int64()),
            "score": _scores(batch, score_key),
            "keys": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(keys, pa.uint64())),
        },
        schema=DOC_TABLE_SCHEMA,
    )


def normalize_url(url: str) -> str:
    """Scheme and host lower-cased, default port, fragment and trailing slash dropped."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if parts.port and (parts.scheme, parts.port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{parts.port}"
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((parts.scheme.lower(), host, path, parts.query, ""))


def exact_doc_table(batch: pa.Table, url: bool, score_key: str | None) -> pa.Table:
    texts = [t or "" for t in _column(batch, "text", "")]
    keys: list[str] = []
    offsets = [0]
    urls = _column(batch, "url", None)
    for text, u in zip(texts, urls, strict=True):
        norm = normalize(text)
        if norm:
            keys.append("t\x00" + norm)
        if url and u:
            keys.append("u\x00" + normalize_url(u))
        offsets.append(len(keys))
    return _doc_table(batch, texts, np.array(offsets), hash64(keys), score_key)


@functools.lru_cache(maxsize=4)
def _hasher(num_perm: int, seed: int, shingle_size: int) -> MinHasher:
    return MinHasher(num_perm, seed, shingle_size)


def minhash_doc_table(batch: pa.Table, config: MinHashDedupConfig, score_key: str | None) -> pa.Table:
    texts = [t or "" for t in _column(batch, "text", "")]
    hasher = _hasher(config.num_perm, config.seed, config.shingle_size)
    shingles = shingle_batch(texts, config.shingle_size)
    sig = hasher.signatures_of(shingles)
    lsh = config.lsh()
    has_shingles = np.diff(shingles.doc_offsets) > 0
    keys = band_keys(sig[has_shingles], lsh).reshape(-1)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.where(has_shingles, lsh.bands, 0), out=offsets[1:])
    table = _doc_table(batch, texts, offsets, keys, score_key)
    if config.verify:
        table = table.append_column("sig", sig_array(low_bits(sig)))
    return table


# --------------------------------------------------------------------------- stages


def _documents_table(docs: list[Document], positions: list[int] | None = None) -> pa.Table:
    """Key-row input for documents; their place is ``positions`` (default: list order)."""
    positions = list(range(len(docs))) if positions is None else positions
    return pa.table(
        {
            "id": [d.id for d in docs],
            "text": [d.text for d in docs],
            "shard": [""] * len(docs),
            "pos": pa.array(positions, pa.int64()),
            "row": pa.array(positions, pa.int64()),
            "url": [d.url for d in docs],
            "scores": [json.dumps(d.scores) if d.scores else None for d in docs],
        }
    )


class _KeyDedup(DatasetStage):
    """Shared driver: key rows (in Ray Data or in-process) → engine → decisions."""

    reason: str = ""
    block_size = 1024

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.result: EngineResult | None = None
        self.executor_used = ""

    # subclasses
    def doc_table(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError

    def settings(self) -> EngineSettings:
        return EngineSettings(reason=self.reason, keep=self.config.keep)

    def prepare(self) -> None:
        """Set-up when the stage starts (its output directories), after :meth:`preflight`'s checks."""

    def _score_key(self) -> str | None:
        return self.config.score_key if self.config.keep == "score" else None

    def _executor(self, n_docs: int):
        mode = self.config.mode
        if mode == "local" or (mode == "auto" and n_docs <= self.config.local_max_docs):
            return LocalExecutor()
        import ray

        partitions = self.config.partitions
        if not partitions:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            partitions = min(512, max(2 * cpus, math.ceil(n_docs / 1_000_000)))
        return RayExecutor(partitions)

    def _record(self, result: EngineResult, n_docs: int, started: float) -> None:
        self.result = result
        removed = int(result.stats.get("removed", 0))
        self.stats.docs_in += n_docs
        self.stats.kept += n_docs - removed
        if removed:
            self.stats.dropped[self.reason] += removed
        self.stats.seconds += time.perf_counter() - started
        self.stats.extra.update({"clusters": int(result.stats.get("clusters", 0))})
        self.stats.check()

    def decide(self, tables: list[pa.Table]) -> list[pa.Table]:
        """Decisions for in-memory key tables (``doc_table`` output); Ray tasks when the
        input is larger than ``local_max_docs`` (Ray must then be initialised)."""
        started = time.perf_counter()
        self.prepare()
        n_docs = sum(t.num_rows for t in tables)
        executor = self._executor(n_docs)
        self.executor_used = "local" if isinstance(executor, LocalExecutor) else f"ray:{executor.partitions}"
        if isinstance(executor, LocalExecutor):
            result = run_engine(tables, self.settings(), executor)
            decisions = result.decisions
        else:
            import ray

            result = run_engine([ray.put(t) for t in tables], self.settings(), executor)
            decisions = ray.get(result.decisions)
        self._record(result, n_docs, started)
        return decisions

    def run_batches(self, tables: list[pa.Table]) -> list[pa.Table]:
        started = time.perf_counter()
        self.prepare()
        keyed = [
            self.doc_table(t.slice(i, self.block_size))
            for t in tables
            for i in range(0, t.num_rows, self.block_size)
        ]
        self.executor_used = "local"
        result = run_engine(keyed, self.settings(), LocalExecutor())
        self._record(result, sum(t.num_rows for t in keyed), started)
        return result.decisions

    def run_local(self, docs: list[Document]) -> list[Document]:
        positions = [i for i, d in enumerate(docs) if d.drop is None]
        live = [docs[i] for i in positions]
        decisions = self.run_batches([_documents_table(live, positions)])
        for table in decisions:
            for row in table.to_pylist():
                docs[row["pos"]].mark_dropped(
                    Drop(row["reason"], value=row["value"], detail=row["detail"], stage=self.name)
                )
        return docs

    def run_ray(self, ds: Any, workdir: str) -> Any:
        import ray

        started = time.perf_counter()
        self.prepare()
        present = [c for c in INPUT_COLUMNS if c in ds.schema().names]
        keyed = ds.select_columns(present).map_batches(
            _apply_doc_table, fn_args=(self,), batch_format="pyarrow", batch_size=self.block_size
        )
        keyed = keyed.materialize()
        n_docs = keyed.count()
        refs = keyed.to_arrow_refs()
        executor = self._executor(n_docs)
        self.executor_used = "local" if isinstance(executor, LocalExecutor) else f"ray:{executor.partitions}"
        logger.info("%s: %d documents, clustering with %s", self.name, n_docs, self.executor_used)
        if isinstance(executor, LocalExecutor):
            result = run_engine(ray.get(refs), self.settings(), executor)
            tables = [t for t in result.decisions if t.num_rows] or [DECISION_SCHEMA.empty_table()]
            out = ray.data.from_arrow(tables)
        else:
            result = run_engine(refs, self.settings(), executor)
            out = ray.data.from_arrow_refs(result.decisions)
        self._record(result, n_docs, started)
        return out

    def extra_stats(self) -> dict[str, Any]:
        if self.result is None:
            return {}
        s = self.result.stats
        hist = self.result.histogram
        return {
            "clusters": int(s.get("clusters", 0)),
            "removed": int(s.get("removed", 0)),
            "cluster_size_histogram": dict(sorted(hist.items(), key=lambda kv: int(kv[0].split("-")[0]))),
            "clusters_matching_index": int(s.get("clusters_matching_index", 0)),
            "executor": self.executor_used,
        }

    def __getstate__(self):  # shipped to Ray workers for the key-row map: drop run state
        state = self.__dict__.copy()
        state["result"] = None
        return state


def _apply_doc_table(batch: pa.Table, stage: _KeyDedup) -> pa.Table:
    return stage.doc_table(batch)


class ExactDedup(_KeyDedup):
    """Drops documents whose normalised text (and optionally URL) equals another's."""

    name = "exact_dedup"
    Config = ExactDedupConfig
    reason = "exact_duplicate"

    def doc_table(self, batch: pa.Table) -> pa.Table:
        return exact_doc_table(batch, self.config.url, self._score_key())


class MinHashDedup(_KeyDedup):
    """Drops near-duplicates: documents sharing a MinHash LSH band with another whose
    signature agrees with theirs on at least ``verify_threshold`` of its values, transitively."""

    name = "minhash_dedup"
    Config = MinHashDedupConfig
    reason = "minhash_duplicate"

    def doc_table(self, batch: pa.Table) -> pa.Table:
        return minhash_doc_table(batch, self.config, self._score_key())

    def settings(self) -> EngineSettings:
        return EngineSettings(
            reason=self.reason,
            keep=self.config.keep,
            against=self.config.against_list(),
            index_output=self.config.index_output,
            max_cc_steps=self.config.max_cc_steps,
            verify_threshold=self.config.verify_at(),
            pair_group_max=self.config.pair_group_max,
        )

    def preflight(self) -> None:
        """The read-only index checks, before any data moves (see :meth:`_checked_index_params`)."""
        self._checked_index_params()

    def _checked_index_params(self) -> dict[str, Any]:
        """The parameters this run's index records, once every ``against`` index is known to be
        built with this run's settings and ``index_output`` to hold no index yet. Either may be
        a local directory or a URI: an ``against`` on an object store that is not there (a
        missing bucket, a denied read) is an input error, an ``index_output`` there must pass a
        probe write (a missing bucket, refused credentials, a denied write: an output error)."""
        from thresher.config import ConfigError

        params = self.config.index_params()
        for path in self.config.against_list():
            store = index_store(path)
            try:
                theirs = store.read_json("params.json")
            except FileNotFoundError:
                if not store.is_local and not store.exists():
                    store.probe(write=False)
                raise ConfigError(
                    f"{self.name}.against: {path} is not a dedup index (no params.json)"
                ) from None
            theirs = {"signatures": None, **theirs}  # indexes from before verification existed
            if theirs["signatures"] and not params["signatures"]:
                # An index with signatures serves runs with or without verification.
                params = {**params, "signatures": theirs["signatures"]}
            if theirs != params:
                diff = {k: (theirs.get(k), v) for k, v in params.items() if theirs.get(k) != v}
                raise ConfigError(
                    f"{self.name}.against: {path} was built with other settings (index, this run): {diff}"
                )
        out = self.config.index_output
        if out:
            store = index_store(out)
            if not store.is_local:
                store.probe()
            if store.find("keys"):
                raise ConfigError(
                    f"{self.name}.index_output: {out} already holds an index; choose a new directory"
                )
        return params

    def prepare(self) -> None:
        params = self._checked_index_params()  # again: the run may have started long ago
        out = self.config.index_output
        if out:
            store = index_store(out)
            store.makedirs("keys")
            if self.config.verify:
                store.makedirs("sigs")
            store.write_json("params.json", params, indent=2, sort_keys=True)

    def extra_stats(self) -> dict[str, Any]:
        out = super().extra_stats()
        if out:
            lsh = self.config.lsh()
            s = self.result.stats
            out.update(
                bands=lsh.bands,
                rows=lsh.rows,
                num_perm=self.config.num_perm,
                verify_threshold=self.config.verify_at(),
                candidate_edges=int(s.get("candidate_edges", s.get("band_edges", 0))),
            )
            if self.config.verify:
                out["verified_edges"] = int(s.get("verified_edges", 0))
        return out


__all__ = ["ExactDedup", "ExactDedupConfig", "MinHashDedup", "MinHashDedupConfig", "normalize_url"]
