"""What a run report shows, gathered from a run's output directory.

``stats.json`` gives the exact counts; the Parquet outputs give distributions. Those are read
column by column in batches and sampled, so a report over billions of documents costs a bounded
amount of memory and a pass over a few narrow columns, never the text.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from thresher.errors import InputProblem
from thresher.io import Store
from thresher.run.layout import DOCUMENTS, DROPPED, PARQUET, STATS, TOKENS
from thresher.shards.tokens import MANIFEST_NAME

logger = logging.getLogger(__name__)

MAX_SCORE_ROWS = 200_000
"""Kept documents whose scores are parsed (an even stride over all of them)."""
MAX_VALUES_PER_RULE = 50_000
"""Measured values kept per drop rule; a rare rule keeps all of its values."""
BATCH_ROWS = 65_536
NO_LANGUAGE = "(none)"


class ReportError(InputProblem):
    """The directory is not the output of a run (no readable ``stats.json``)."""


@dataclass
class StageFigures:
    """One stage's line of the funnel, as ``stats.json`` recorded it."""

    label: str
    docs_in: int
    kept: int
    dropped: dict[str, int]
    errors: dict[str, int]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())

    @property
    def docs_per_second(self) -> float | None:
        return self.docs_in / self.seconds if self.seconds > 0 else None


@dataclass
class TokenShard:
    name: str
    split: str
    tokens: int
    rows: int | None


@dataclass
class RunFacts:
    output: Path | str
    """The run's output: a local directory or a URI (``s3://BUCKET/RUN``)."""
    name: str
    inputs: list[str]
    shards: int
    documents: int
    seconds: float
    stages: list[StageFigures]
    stage_extra: dict[str, dict[str, Any]]
    config: dict[str, Any]
    languages: Counter = field(default_factory=Counter)
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    score_rows: int = 0
    """Kept documents whose scores were read (all of them unless there are more than MAX_SCORE_ROWS)."""
    kept_rows: int = 0
    dropped_values: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    dropped_rows: int = 0
    has_documents: bool = False
    has_dropped: bool = False
    tokens: list[TokenShard] | None = None
    problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- sampling


class StrideSample:
    """Every k-th value of a stream, k doubling whenever more than ``cap`` are held.

    An even systematic sample of a stream of unknown length in bounded memory: the kept
    positions are always the multiples of the current stride."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.stride = 1
        self.seen = 0
        self._chunks: list[np.ndarray] = []
        self._held = 0

    def add(self, values: np.ndarray) -> None:
        start = (-self.seen) % self.stride
        taken = values[start :: self.stride]
        self.seen += len(values)
        if len(taken):
            self._chunks.append(taken)
            self._held += len(taken)
        while self._held > self.cap:
            merged = self.values()[::2]
            self.stride *= 2
            self._chunks, self._held = [merged], len(merged)

    def values(self) -> np.ndarray:
        if not self._chunks:
            return np.empty(0, dtype=np.float64)
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0]


# --------------------------------------------------------------------------- readers


def parquet_files(store: Store, directory: str) -> list[str]:
    """Complete Parquet files below ``directory`` of the run's store, as paths relative to it
    (temporary files of unfinished writes start with a dot); [] when there is no directory."""
    try:
        names = store.ls(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [store.join(directory, n) for n in names if n.endswith(PARQUET) and not n.startswith(".")]


@contextmanager
def _parquet(store: Store, rel: str) -> Iterator[pq.ParquetFile]:
    """A Parquet file of the run: opened by path on a local disk, by ranged reads on an object
    store (only the footer and the wanted columns travel)."""
    local = store.local_path(rel)
    if local is not None:
        yield pq.ParquetFile(local)
        return
    with store.open_input(rel) as f:
        yield pq.ParquetFile(f)


def _iter_batches(store: Store, rel: str, wanted: tuple[str, ...], facts: RunFacts):
    """Batches of the wanted columns that the file has; an unreadable file becomes a problem note."""
    try:
        with _parquet(store, rel) as f:
            columns = [c for c in wanted if c in f.schema_arrow.names]
            if not columns:
                return
            yield from f.iter_batches(batch_size=BATCH_ROWS, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        facts.problems.append(f"could not read {rel.rsplit('/', 1)[-1]}: {exc}")
        logger.warning("report: could not read %s: %s", store.uri_of(rel), exc)


def _finite(values: list[Any]) -> np.ndarray:
    arr = np.array(
        [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)], dtype=np.float64
    )
    return arr[np.isfinite(arr)]


def read_kept(facts: RunFacts) -> None:
    """Language counts over every kept document; scores over an even sample of them."""
    store = Store.from_uri(facts.output)
    files = parquet_files(store, DOCUMENTS)
    total = 0
    for path in files:
        try:
            with _parquet(store, path) as f:
                total += f.metadata.num_rows
        except (OSError, pa.ArrowException):
            pass  # reported when its batches are read
    row_stride = max(1, math.ceil(total / MAX_SCORE_ROWS))
    samples: dict[str, list[np.ndarray]] = {}
    parsed: dict[str, list[float]] = {}
    position = 0
    for path in files:
        for batch in _iter_batches(store, path, ("language", "language_score", "scores"), facts):
            n = batch.num_rows
            facts.kept_rows += n
            names = batch.schema.names
            if "language" in names:
                for item in pc.value_counts(batch.column("language")).to_pylist():
                    facts.languages[item["values"] or NO_LANGUAGE] += item["counts"]
            picked = np.arange((-position) % row_stride, n, row_stride)
            position += n
            facts.score_rows += len(picked)
            if "language_score" in names:
                column = batch.column("language_score").take(pa.array(picked))
                lang_scores = column.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
                samples.setdefault("language_score", []).append(lang_scores[np.isfinite(lang_scores)])
            if "scores" in names:
                for cell in batch.column("scores").take(pa.array(picked)).to_pylist():
                    if not cell:
                        continue
                    try:
                        scores = json.loads(cell)
                    except ValueError:
                        continue
                    if isinstance(scores, dict):
                        for key, value in scores.items():
                            parsed.setdefault(key, []).append(value)
    facts.has_documents = facts.kept_rows > 0
    for key, chunks in samples.items():
        values = np.concatenate(chunks) if chunks else np.empty(0)
        if len(values):
            facts.scores[key] = values
    for key in sorted(parsed):
        values = _finite(parsed[key])
        if len(values):
            facts.scores[key] = values


def read_dropped(facts: RunFacts) -> None:
    """Each drop rule's measured values (the ``value`` column), sampled per rule."""
    store = Store.from_uri(facts.output)
    files = parquet_files(store, DROPPED)
    facts.has_dropped = bool(files) or store.isdir(DROPPED)
    samples: dict[tuple[str, str], StrideSample] = {}
    for path in files:
        for batch in _iter_batches(store, path, ("stage", "reason", "value"), facts):
            facts.dropped_rows += batch.num_rows
            names = batch.schema.names
            if "value" not in names or "reason" not in names:
                continue
            values = batch.column("value")
            has_value = pc.is_valid(values)
            if not pc.any(has_value).as_py():
                continue
            batch = batch.filter(has_value)
            stage = batch.column("stage") if "stage" in names else pa.nulls(batch.num_rows, pa.string())
            keys = pc.binary_join_element_wise(
                pc.fill_null(stage, ""), pc.fill_null(batch.column("reason"), ""), "\x1f"
            )
            for key in pc.unique(keys).to_pylist():
                selected = batch.column("value").filter(pc.equal(keys, key)).to_numpy(zero_copy_only=False)
                selected = selected.astype(np.float64)
                stage_name, _, reason = key.partition("\x1f")
                sampler = samples.setdefault((stage_name, reason), StrideSample(MAX_VALUES_PER_RULE))
                sampler.add(selected[np.isfinite(selected)])
    for key in sorted(samples):
        values = samples[key].values()
        if len(values):
            facts.dropped_values[key] = values


def _first(entry: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if entry.get(key) is not None:
            return entry[key]
    return None


def read_tokens(facts: RunFacts) -> None:
    """Tokens per shard from ``tokens/manifest.json``, whatever the exact key names."""
    store = Store.from_uri(facts.output)
    rel = store.join(TOKENS, MANIFEST_NAME)
    path = store.uri_of(rel)
    try:
        manifest = json.loads(store.read_bytes(rel))
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        facts.problems.append(f"could not read tokens/manifest.json: {exc}")
        logger.warning("report: could not read %s: %s", path, exc)
        return
    entries = manifest.get("shards") if isinstance(manifest, dict) else None
    if not isinstance(entries, list):
        facts.problems.append("tokens/manifest.json has no list of shards")
        return
    shards = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        tokens = _first(entry, ("tokens", "n_tokens", "num_tokens"))
        if not isinstance(tokens, (int, float)):
            continue
        rows = _first(entry, ("rows", "documents", "n_documents", "num_rows"))
        shards.append(
            TokenShard(
                name=str(_first(entry, ("path", "name", "file", "filename")) or f"shard {i}"),
                split=str(entry.get("split") or "train"),
                tokens=int(tokens),
                rows=int(rows) if isinstance(rows, (int, float)) else None,
            )
        )
    facts.tokens = shards


# --------------------------------------------------------------------------- entry point


def _stage_figures(label: str, d: dict[str, Any]) -> StageFigures:
    return StageFigures(
        label=label,
        docs_in=int(d.get("in", 0)),
        kept=int(d.get("kept", 0)),
        dropped={str(k): int(v) for k, v in (d.get("dropped") or {}).items()},
        errors={str(k): int(v) for k, v in (d.get("errors") or {}).items()},
        seconds=float(d.get("seconds") or 0.0),
        extra=dict(d.get("extra") or {}),
    )


def load_stats(output: Path | str) -> dict[str, Any]:
    store = Store.from_uri(output)
    path = store.uri_of(STATS)
    try:
        stats = json.loads(store.read_bytes(STATS))
    except FileNotFoundError:
        raise ReportError(f"{path} not found: is {output} the output directory of a finished run?") from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(stats, dict) or not isinstance(stats.get("stages", {}), dict):
        raise ReportError(f"{path} does not look like the statistics of a thresher run")
    return stats


def collect(output: str | Path) -> RunFacts:
    """The facts of a finished run, from a local directory or a URI."""
    store = Store.from_uri(output)
    output = store.local_path() or store.uri
    stats = load_stats(output)
    stage_stats = stats.get("stages") or {}
    order = [label for label in stats.get("order") or [] if label in stage_stats]
    order += [label for label in stage_stats if label not in order]
    facts = RunFacts(
        output=output,
        name=str(stats.get("name") or store.uri.rstrip("/").rsplit("/", 1)[-1]),
        inputs=[str(p) for p in stats.get("inputs") or []],
        shards=int(stats.get("shards") or 0),
        documents=int(stats.get("documents") or 0),
        seconds=float(stats.get("seconds") or 0.0),
        stages=[_stage_figures(label, stage_stats[label]) for label in order],
        stage_extra={k: v for k, v in (stats.get("extra") or {}).items() if isinstance(v, dict)},
        config=stats.get("config") or {},
    )
    read_kept(facts)
    read_dropped(facts)
    read_tokens(facts)
    return facts
