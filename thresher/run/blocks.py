"""What runs on a block of documents: reading input into shards, a stage over a block, the
counters each block carries.

A block in flight is an Arrow table of documents with three carry columns: ``shard`` (its shard's
name), ``pos`` (the document's position in the shard) and ``shard_rows`` (the shard's size), so
the parts written at the end of a phase can be put back together into whole shards whatever way
Ray split and merged the blocks. Each stage appends one stats cell per block
(``_stats:LABEL``, JSON, in the block's first row), so the run's statistics are the stages' own
counts, whichever worker ran them and however often Ray retried.

The same functions serve ``--local`` (called in a loop) and Ray (as ``map_batches`` bodies).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import PurePath
from typing import Any

import pyarrow as pa

from thresher.document import Document, Drop, documents_to_table, table_to_documents
from thresher.readers import read_documents
from thresher.registry import stage_class
from thresher.run.layout import PhaseLayout, RunLayout, shard_name
from thresher.run.plan import READ_STAGE
from thresher.stage import Stage, StageStats

logger = logging.getLogger(__name__)

CARRY_COLUMNS = ("shard", "pos", "shard_rows")
STATS_PREFIX = "_stats:"

RENAME = "rename"
"""Decision kind of a document whose id an earlier document of the run already has: it gets
``detail`` as its id and keeps the one it came with in ``metadata["original_id"]``."""


def rename_document(doc: Document, new_id: str) -> None:
    """A :data:`RENAME` decision applied: ``doc`` gets ``new_id`` and keeps the id it came with
    in ``metadata["original_id"]``."""
    doc.metadata["original_id"] = doc.id
    doc.id = new_id


def quiet_noisy_loggers() -> None:
    """Libraries that log a warning per page would drown a run's own messages."""
    for name in ("trafilatura", "htmldate", "courlan", "readability", "justext"):
        logging.getLogger(name).setLevel(logging.ERROR)


# --------------------------------------------------------------------------- stats cells


def with_stats_column(table: pa.Table, label: str, stats: StageStats) -> pa.Table:
    cells = [None] * table.num_rows
    if cells:
        cells[0] = json.dumps(stats.to_dict())
    return table.append_column(STATS_PREFIX + label, pa.array(cells, pa.string()))


def stats_of(table: pa.Table) -> dict[str, StageStats]:
    """The counters of every stage carried by ``table``'s stats cells, summed per label."""
    stats: dict[str, StageStats] = {}
    for name in table.column_names:
        if name.startswith(STATS_PREFIX):
            label = name[len(STATS_PREFIX) :]
            total = stats[label] = StageStats(label)
            for cell in table.column(name).to_pylist():
                if cell:
                    total.merge(StageStats.from_dict(label, json.loads(cell)))
    return stats


def flight_table(docs: list[Document], shard: str, label: str, stats: StageStats) -> pa.Table:
    """A whole shard as a block in flight, with the counters of the step that made it."""
    table = documents_to_table(docs, shard)
    table = table.append_column("pos", pa.array(range(len(docs)), pa.int32()))
    table = table.append_column("shard_rows", pa.array([len(docs)] * len(docs), pa.int32()))
    return with_stats_column(table, label, stats)


# --------------------------------------------------------------------------- phase input


def read_shards(
    path: str,
    file_index: int,
    fmt: str,
    docs_per_shard: int,
    max_bytes: int,
    phase: PhaseLayout | None = None,
) -> Iterator[pa.Table]:
    """One input file → in-flight tables of at most ``docs_per_shard`` documents / ``max_bytes``.
    When the file is read to its end, its list of shards is recorded (for ``--resume``)."""
    chunk = 0
    batch: list[Document] = []
    size = 0
    stats = StageStats(READ_STAGE)
    start = time.perf_counter()
    for doc in read_documents(path, fmt):
        stats.record(doc.drop)
        batch.append(doc)
        size += len(doc.html or b"") + len(doc.text)
        if len(batch) >= docs_per_shard or size >= max_bytes:
            stats.seconds = time.perf_counter() - start
            yield flight_table(batch, shard_name(file_index, chunk), READ_STAGE, stats)
            chunk, batch, size, stats, start = chunk + 1, [], 0, StageStats(READ_STAGE), time.perf_counter()
    if batch or chunk == 0:
        stats.seconds = time.perf_counter() - start
        yield flight_table(batch, shard_name(file_index, chunk), READ_STAGE, stats)
        chunk += 1
    if phase is not None:
        shards = [shard_name(file_index, c) for c in range(chunk)]
        phase.run.write_json(
            phase.file_record(file_index), {"path": path, "shards": shards}, ensure_ascii=False
        )


class DecisionError(RuntimeError):
    """A dataset stage's decisions do not match the shard they are for (a bug, never bad input)."""


def read_phase_shard(shard_file: str, label: str, decisions_file: str | None, run: RunLayout) -> pa.Table:
    """A shard written by the previous phase, with the dataset stage's decisions applied (both
    paths of the run's layout ``run``). A decision names its document by position in the shard,
    never by id: ids are data, and two documents may come with the same one."""
    shard = PurePath(shard_file).stem
    docs = table_to_documents(run.read_table(shard_file))
    stats = StageStats(label)
    decided: dict[int, dict] = {}
    if decisions_file and run.exists(decisions_file):
        rows = run.read_table(decisions_file).to_pylist()
        # Renames first: the stage decided on the renamed documents.
        for row in sorted(rows, key=lambda r: r["kind"] != RENAME):
            doc = docs[row["pos"]] if 0 <= row["pos"] < len(docs) else None
            if doc is None or doc.id != row["id"]:
                raise DecisionError(
                    f"shard {shard}: the decision for {row['id']!r} at {row['pos']} matches no document"
                )
            if row["kind"] == RENAME:
                rename_document(doc, row["detail"])
                stats.extra["renamed_duplicate_id"] += 1
            elif row["pos"] in decided:
                raise DecisionError(f"shard {shard}: two decisions for the document at {row['pos']}")
            else:
                decided[row["pos"]] = row
    for pos, doc in enumerate(docs):
        row = decided.get(pos)
        if row is not None:
            doc.mark_dropped(
                Drop(
                    row["reason"],
                    kind=row["kind"] or "dropped",
                    value=row["value"],
                    detail=row["detail"],
                    stage=label,
                )
            )
        stats.record(doc.drop)
    return flight_table(docs, shard, label, stats)


def read_files_batch(
    batch: pa.Table, fmt: str, docs_per_shard: int, max_bytes: int, phase: PhaseLayout
) -> Iterator[pa.Table]:
    """Ray body of the first phase's reader: a batch of (path, index) rows → shards."""
    for path, index in zip(batch.column("path").to_pylist(), batch.column("index").to_pylist(), strict=True):
        yield from read_shards(path, index, fmt, docs_per_shard, max_bytes, phase)


def read_phase_batch(batch: pa.Table, label: str, run: RunLayout) -> Iterator[pa.Table]:
    """Ray body of a later phase's reader: a batch of (path, decisions) rows → shards."""
    for path, decisions in zip(
        batch.column("path").to_pylist(), batch.column("decisions").to_pylist(), strict=True
    ):
        yield read_phase_shard(path, label, decisions, run)


# --------------------------------------------------------------------------- stages


class StageRunner:
    """One configured stage, built once. Ray tasks keep one per worker process
    (:func:`run_stages`), so a model loads once per worker; local runs use it directly."""

    def __init__(self, label: str, name: str, config: Any) -> None:
        quiet_noisy_loggers()
        self.label = label
        self.stage: Stage = stage_class(name)(config)
        self.stage.preflight()
        self.stage.stats.name = label

    def apply(self, docs: list[Document]) -> StageStats:
        """Run the stage over ``docs`` in place; the counters of this batch alone."""
        self.stage.stats = StageStats(self.label)
        self.stage.apply(docs)
        return self.stage.stats


def run_chain(table: pa.Table, runners: list[StageRunner]) -> pa.Table:
    """Every per-document stage of a phase over one block, in order, with one conversion from
    Arrow to documents and one back, not one pair per stage.
    Each stage still appends its own stats cell, so the counters are per stage label as if each
    stage had run as its own task."""
    if not runners:
        return table
    docs = table_to_documents(table)
    stats = [runner.apply(docs) for runner in runners]
    out = documents_to_table(docs).drop_columns(["shard"])
    for name in table.column_names:
        if name in CARRY_COLUMNS or name.startswith(STATS_PREFIX):
            out = out.append_column(name, table.column(name))
    for runner, counted in zip(runners, stats, strict=True):
        out = with_stats_column(out, runner.label, counted)
    return out


def config_key(name: str, config: Any) -> str:
    """What identifies a configured stage: its name and a hash of its configuration."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    text = json.dumps([name, config], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_STAGE_CACHE: dict[str, tuple[str, StageRunner]] = {}
"""The stage this worker process built for a label, with its :func:`config_key`. The label alone
is not enough: a reused Ray (a notebook, a test session) runs the next run's stages in the same
workers, and the same label may then come with another configuration."""


def cached_runner(label: str, name: str, config: Any) -> StageRunner:
    """The stage this worker process built for ``label`` with this configuration (built now if
    none, or if the one cached was built for another configuration, which is then closed)."""
    key = config_key(name, config)
    cached = _STAGE_CACHE.get(label)
    if cached is None or cached[0] != key:
        if cached is not None:
            cached[1].stage.close()
        cached = _STAGE_CACHE[label] = (key, StageRunner(label, name, config))
    return cached[1]


def run_stages(table: pa.Table, stages: list[tuple[str, str, Any]]) -> pa.Table:
    """Ray task body: a phase's per-document stages, given as (label, name, config), over one
    block (:func:`run_chain`). Stages are built once per worker process and reused across blocks
    (and runs, while the configuration is the same)."""
    return run_chain(table, [cached_runner(label, name, config) for label, name, config in stages])
