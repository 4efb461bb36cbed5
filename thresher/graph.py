"""The stage graph: configured stages wired into a streaming Ray Data pipeline (or run in-process).

Data flow of a run::

    input files ─read─▶ shards of ≤ docs_per_shard documents (named FILEIDX-CHUNK)
        ─repartition─▶ small blocks ─stage 1─▶ … ─stage n─▶ part files per (shard, block)
        ─compact─▶ OUTPUT/documents/SHARD.parquet + OUTPUT/dropped/SHARD.parquet

Blocks are small so that the expensive stages (extraction) spread over every core even when the
input is one file; compaction puts each shard back together and checks that every position of
every shard arrived exactly once. Stages that must see the whole dataset (dedup) split the run
into phases: the shards of one phase are the input of the next, with the dataset stage's
decisions applied while they are read.

Each stage's counters travel inside the blocks (one JSON cell per block and stage), so the final
statistics are the stages' own counts, whichever worker ran them and however often Ray retried.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from thresher.config import PipelineConfig, StageSpec
from thresher.document import (
    DOCUMENT_SCHEMA,
    DROPPED_SCHEMA,
    Document,
    Drop,
    documents_to_table,
    dropped_table,
    kept_table,
    table_to_documents,
)
from thresher.readers import expand_inputs, read_documents
from thresher.registry import stage_class
from thresher.stage import DatasetStage, Stage, StageStats

logger = logging.getLogger(__name__)


def quiet_noisy_loggers() -> None:
    """Libraries that log a warning per page would drown a run's own messages."""
    for name in ("trafilatura", "htmldate", "courlan", "readability", "justext"):
        logging.getLogger(name).setLevel(logging.ERROR)

READ_STAGE = "read"
CARRY_COLUMNS = ("shard", "pos", "shard_rows")
STATS_PREFIX = "_stats:"


# --------------------------------------------------------------------------- plan


@dataclass
class Phase:
    """Per-document stages that stream together, optionally preceded by a dataset stage."""

    index: int
    stages: list[StageSpec]
    dataset_stage: StageSpec | None = None


def plan_phases(specs: list[StageSpec]) -> list[Phase]:
    phases = [Phase(0, [])]
    for spec in specs:
        if issubclass(stage_class(spec.name), DatasetStage):
            phases.append(Phase(len(phases), [], dataset_stage=spec))
        else:
            phases[-1].stages.append(spec)
    return phases


def stage_label(index: int, spec: StageSpec) -> str:
    """Unique label of a stage in the run (a stage type may appear twice)."""
    return spec.name if index < 0 else f"{index:02d}-{spec.name}"


# --------------------------------------------------------------------------- block functions


def _stats_cell(stats: StageStats) -> str:
    return json.dumps(stats.to_dict())


def _with_stats_column(table: pa.Table, label: str, stats: StageStats) -> pa.Table:
    cells = [None] * table.num_rows
    if cells:
        cells[0] = _stats_cell(stats)
    return table.append_column(STATS_PREFIX + label, pa.array(cells, pa.string()))


def _flight_table(docs: list[Document], shard: str, label: str, stats: StageStats) -> pa.Table:
    table = documents_to_table(docs, shard)
    table = table.append_column("pos", pa.array(range(len(docs)), pa.int32()))
    table = table.append_column("shard_rows", pa.array([len(docs)] * len(docs), pa.int32()))
    return _with_stats_column(table, label, stats)


def read_shards(
    path: str, file_index: int, fmt: str, docs_per_shard: int, max_bytes: int, decisions: dict | None = None
) -> Iterator[pa.Table]:
    """One input file → in-flight tables of at most ``docs_per_shard`` documents / ``max_bytes``."""
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
            yield _flight_table(batch, f"{file_index:05d}-{chunk:05d}", READ_STAGE, stats)
            chunk, batch, size, stats, start = chunk + 1, [], 0, StageStats(READ_STAGE), time.perf_counter()
    if batch or chunk == 0:
        stats.seconds = time.perf_counter() - start
        yield _flight_table(batch, f"{file_index:05d}-{chunk:05d}", READ_STAGE, stats)


def read_phase_shard(shard_file: str, label: str, decisions_dir: str | None) -> pa.Table:
    """A shard written by the previous phase, with the dataset stage's decisions applied."""
    shard = Path(shard_file).stem
    docs = table_to_documents(pq.read_table(shard_file))
    stats = StageStats(label)
    decided: dict[str, dict] = {}
    if decisions_dir:
        dfile = Path(decisions_dir) / f"{shard}.parquet"
        if dfile.exists():
            decided = {row["id"]: row for row in pq.read_table(dfile).to_pylist()}
    for doc in docs:
        row = decided.get(doc.id)
        if row is not None:
            doc.mark_dropped(
                Drop(row["reason"], kind=row["kind"] or "dropped", value=row["value"], detail=row["detail"], stage=label)
            )
        stats.record(doc.drop)
    return _flight_table(docs, shard, label, stats)


class StageRunner:
    """Applies one configured stage to in-flight tables. Used as a Ray Data callable class (so a
    model loads once per worker) and directly in local runs."""

    def __init__(self, label: str, name: str, config: Any) -> None:
        quiet_noisy_loggers()
        self.label = label
        self.stage: Stage = stage_class(name)(config)
        self.stage.stats.name = label

    def __call__(self, table: pa.Table) -> pa.Table:
        docs = table_to_documents(table)
        self.stage.stats = StageStats(self.label)
        self.stage.apply(docs)
        out = documents_to_table(docs).drop_columns(["shard"])
        for name in table.column_names:
            if name in CARRY_COLUMNS or name.startswith(STATS_PREFIX):
                out = out.append_column(name, table.column(name))
        return _with_stats_column(out, self.label, self.stage.stats)


def write_parts(table: pa.Table, parts_dir: str) -> pa.Table:
    """Last operator of a phase: one part file per shard present in the block (payload dropped)."""
    if "html" in table.column_names:
        table = table.drop_columns(["html"])
    out_rows = []
    for shard in sorted(set(table.column("shard").to_pylist())):
        part = table.filter(pc.equal(table.column("shard"), shard))
        first = min(part.column("pos").to_pylist()) if part.num_rows else 0
        target = Path(parts_dir) / shard / f"{first:07d}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        pq.write_table(part, tmp, compression="zstd")
        os.replace(tmp, target)
        out_rows.append({"shard": shard, "rows": part.num_rows})
    return pa.Table.from_pylist(out_rows, schema=pa.schema([("shard", pa.string()), ("rows", pa.int64())]))


def _empty_parts_table() -> pa.Table:
    return pa.table({"shard": pa.array([], pa.string()), "rows": pa.array([], pa.int64())})


class ShardIncomplete(RuntimeError):
    pass


def compact_shard(
    shard: str, parts_dir: str, out_dir: str, dropped_dir: str | None, dropped_suffix: str = ""
) -> dict[str, Any]:
    """Assemble a shard from its parts, check exactly-once delivery, write documents + dropped,
    and return the shard's stage counters."""
    files = sorted((Path(parts_dir) / shard).glob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
    table = table.sort_by("pos")
    positions = table.column("pos").to_pylist()
    expected = table.column("shard_rows")[0].as_py() if table.num_rows else 0
    if positions != list(range(expected)):
        raise ShardIncomplete(
            f"shard {shard}: expected positions 0..{expected - 1} exactly once, got {len(positions)} rows"
        )
    stats: dict[str, dict] = {}
    for name in table.column_names:
        if name.startswith(STATS_PREFIX):
            label = name[len(STATS_PREFIX):]
            agg = StageStats(label)
            for cell in table.column(name).to_pylist():
                if cell:
                    agg.merge(StageStats.from_dict(label, json.loads(cell)))
            stats[label] = agg.to_dict()
    docs = table_to_documents(table)
    out = Path(out_dir)
    _write_atomic(kept_table(docs), out / "documents" / f"{shard}.parquet")
    if dropped_dir:
        _write_atomic(dropped_table(docs), Path(dropped_dir) / f"{shard}{dropped_suffix}.parquet")
    shutil.rmtree(Path(parts_dir) / shard)
    kept = sum(1 for d in docs if d.drop is None)
    return {"shard": shard, "rows": len(docs), "kept": kept, "stats": stats}


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- results


@dataclass
class RunResult:
    output: Path
    stages: dict[str, StageStats] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    shards: int = 0
    documents: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        lines = [f"{'stage':<22}{'in':>9}{'kept':>9}{'dropped':>9}{'errors':>8}  top reasons"]
        for label in self.order:
            s = self.stages[label]
            reasons = (s.dropped + s.errors).most_common(3)
            top = ", ".join(f"{r} {n}" for r, n in reasons)
            lines.append(
                f"{label:<22}{s.docs_in:>9}{s.kept:>9}{sum(s.dropped.values()):>9}{sum(s.errors.values()):>8}  {top}"
            )
        return lines


def check_accounting(order: list[str], stages: dict[str, StageStats]) -> None:
    """Each stage adds up, and each stage saw exactly what the previous one kept."""
    previous = None
    for label in order:
        s = stages[label]
        s.check()
        if previous is not None and s.docs_in != previous.kept:
            from thresher.stage import AccountingError

            raise AccountingError(
                f"stage {label!r} received {s.docs_in} documents but {previous.name!r} kept {previous.kept}"
            )
        previous = s


# --------------------------------------------------------------------------- execution

_STAGE_CACHE: dict[str, StageRunner] = {}


def run_stage(table: pa.Table, label: str, name: str, config: Any) -> pa.Table:
    """Ray task body: stages are built once per worker process and reused across blocks."""
    runner = _STAGE_CACHE.get(label)
    if runner is None:
        runner = _STAGE_CACHE[label] = StageRunner(label, name, config)
    return runner(table)


def _read_files_batch(batch: pa.Table, fmt: str, docs_per_shard: int, max_bytes: int) -> Iterator[pa.Table]:
    for path, index in zip(batch.column("path").to_pylist(), batch.column("index").to_pylist(), strict=True):
        yield from read_shards(path, index, fmt, docs_per_shard, max_bytes)


def _read_phase_batch(batch: pa.Table, label: str, decisions_dir: str | None) -> Iterator[pa.Table]:
    for path in batch.column("path").to_pylist():
        yield read_phase_shard(path, label, decisions_dir)


@dataclass
class Runner:
    """Executes a :class:`PipelineConfig`, with Ray (default) or in-process (``local=True``)."""

    config: PipelineConfig
    local: bool = False
    block_docs: int = 64
    """Documents per block between stages: small, so one input file still uses every core."""

    def __post_init__(self) -> None:
        # Relative output paths are relative to where the command runs, like any CLI's.
        self.output = Path(self.config.output.path).absolute()

    # ----------------------------------------------------------------- public

    def run(self) -> RunResult:
        cfg = self.config
        start = time.perf_counter()
        files = expand_inputs(cfg.input.paths, cfg.base_dir)
        logger.info("%d input file(s); output in %s", len(files), self.output)
        work = self.output / "_work"
        for sub in ("documents", "dropped", "_work"):
            shutil.rmtree(self.output / sub, ignore_errors=True)
        phases = plan_phases(cfg.stages)
        result = RunResult(self.output)
        result.order.append(READ_STAGE)
        summaries: list[dict] = []
        source_dir: Path | None = None
        label_index = 0
        for phase in phases:
            last = phase is phases[-1]
            phase_out = self.output if last else work / f"phase{phase.index}"
            decisions_dir = None
            ds_label = None
            if phase.dataset_stage is not None:
                label_index += 1
                ds_label = stage_label(label_index, phase.dataset_stage)
                decisions_dir = self._run_dataset_stage(phase.dataset_stage, ds_label, source_dir, work, result)
                result.order.append(ds_label)
            labels = []
            for spec in phase.stages:
                label_index += 1
                labels.append((stage_label(label_index, spec), spec))
            result.order += [label for label, _ in labels]
            parts = work / f"parts{phase.index}"
            if phase.index == 0:
                inputs = files
            else:
                inputs = sorted(str(p) for p in (source_dir / "documents").glob("*.parquet"))
            summaries = self._run_phase(phase, inputs, labels, parts, phase_out, ds_label, decisions_dir, last)
            self._merge_phase_stats(summaries, result, phase)
            source_dir = phase_out
        result.shards = len(summaries)
        result.documents = sum(s["kept"] for s in summaries)
        result.seconds = time.perf_counter() - start
        check_accounting(result.order, result.stages)
        shutil.rmtree(work, ignore_errors=True)
        self._write_stats(result, files)
        return result

    # ----------------------------------------------------------------- phases

    def _run_phase(self, phase, inputs, labels, parts, phase_out, ds_label, decisions_dir, last) -> list[dict]:
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True, exist_ok=True)
        dropped = None
        if self.config.output.write_dropped:
            dropped = (str(self.output / "dropped"), "" if phase.index == 0 else f".phase{phase.index}")
        if self.local:
            return self._run_phase_local(phase, inputs, labels, parts, phase_out, ds_label, decisions_dir, dropped)
        return self._run_phase_ray(phase, inputs, labels, parts, phase_out, ds_label, decisions_dir, dropped)

    def _input_tables(self, phase, inputs, ds_label, decisions_dir) -> Iterator[pa.Table]:
        cfg = self.config.input
        if phase.index == 0:
            for index, path in enumerate(inputs):
                yield from read_shards(path, index, cfg.format, cfg.docs_per_shard, cfg.max_bytes_per_shard)
        else:
            for path in inputs:
                yield read_phase_shard(path, ds_label, decisions_dir)

    def _run_phase_local(self, phase, inputs, labels, parts, phase_out, ds_label, decisions_dir, dropped):
        runners = [StageRunner(label, spec.name, spec.config) for label, spec in labels]
        shards = []
        for table in self._input_tables(phase, inputs, ds_label, decisions_dir):
            for runner in runners:
                table = runner(table)
            shards += write_parts(table, str(parts)).column("shard").to_pylist()
        return [compact_shard(s, str(parts), str(phase_out), *(dropped or (None,))) for s in sorted(set(shards))]

    def _run_phase_ray(self, phase, inputs, labels, parts, phase_out, ds_label, decisions_dir, dropped):
        import ray

        from thresher.raycontext import init_ray

        rc = self.config.ray
        init_ray(rc.address, num_cpus=rc.num_cpus, object_store_memory=rc.object_store_memory, progress=rc.progress)
        cfg = self.config.input
        items = [{"path": p, "index": i} for i, p in enumerate(inputs)]
        if not items:
            return []
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        # Readers ask for less than a core: this keeps them from fusing with the stages, so the
        # repartitioned blocks fan out to every worker.
        if phase.index == 0:
            ds = ds.map_batches(
                _read_files_batch,
                fn_kwargs={"fmt": cfg.format, "docs_per_shard": cfg.docs_per_shard, "max_bytes": cfg.max_bytes_per_shard},
                batch_size=1,
                batch_format="pyarrow",
                num_cpus=0.5,
            )
        else:
            ds = ds.map_batches(
                _read_phase_batch,
                fn_kwargs={"label": ds_label, "decisions_dir": str(decisions_dir) if decisions_dir else None},
                batch_size=1,
                batch_format="pyarrow",
                num_cpus=0.5,
            )
        ds = ds.repartition(target_num_rows_per_block=self.block_docs)
        concurrency = rc.concurrency
        for label, spec in labels:
            ds = ds.map_batches(
                run_stage,
                fn_args=(label, spec.name, spec.config),
                batch_size=None,
                batch_format="pyarrow",
                concurrency=concurrency,
            )
        ds = ds.map_batches(write_parts, fn_args=(str(parts),), batch_size=None, batch_format="pyarrow")
        shards = sorted({row["shard"] for row in ds.iter_rows()})
        compacted = ray.data.from_items([{"shard": s} for s in shards], override_num_blocks=max(1, min(len(shards), 64)))
        compacted = compacted.map(
            lambda row: {"summary": json.dumps(compact_shard(row["shard"], str(parts), str(phase_out), *(dropped or (None,))))}
        )
        return sorted((json.loads(r["summary"]) for r in compacted.iter_rows()), key=lambda s: s["shard"])

    def _run_dataset_stage(self, spec: StageSpec, label: str, source_dir: Path, work: Path, result: RunResult) -> Path:
        """Run a whole-dataset stage over the previous phase's documents; decisions grouped by shard."""
        stage: DatasetStage = stage_class(spec.name)(spec.config)
        decisions_dir = work / f"decisions-{label}"
        decisions_dir.mkdir(parents=True, exist_ok=True)
        files = sorted(str(p) for p in (source_dir / "documents").glob("*.parquet"))
        stage_work = work / f"stage-{label}"
        stage_work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        if self.local:
            docs: list[Document] = []
            shard_of: dict[str, str] = {}
            for f in files:
                for doc in table_to_documents(pq.read_table(f)):
                    docs.append(doc)
                    shard_of[doc.id] = Path(f).stem
            stage.run_local(docs)
            rows = [
                {"id": d.id, "shard": shard_of[d.id], "kind": d.drop.kind, "reason": d.drop.reason,
                 "value": d.drop.value, "detail": d.drop.detail}
                for d in docs if d.drop is not None
            ]
        else:
            import ray

            if not files:
                rows = []
            else:
                ds = ray.data.read_parquet(files, include_paths=True)
                ds = ds.map_batches(_add_shard_column, batch_format="pyarrow")
                rows = stage.run_ray(ds, str(stage_work)).take_all()
        by_shard: dict[str, list[dict]] = {}
        for row in rows:
            by_shard.setdefault(row["shard"], []).append(row)
        from thresher.stage import DECISION_SCHEMA

        for shard, shard_rows in by_shard.items():
            _write_atomic(pa.Table.from_pylist(shard_rows, schema=DECISION_SCHEMA), decisions_dir / f"{shard}.parquet")
        extra = stage.extra_stats()
        extra["seconds"] = round(time.perf_counter() - start, 3)
        result.extra[label] = extra
        return decisions_dir

    # ----------------------------------------------------------------- stats

    def _merge_phase_stats(self, summaries: list[dict], result: RunResult, phase: Phase) -> None:
        for summary in summaries:
            for label, d in summary["stats"].items():
                if label not in result.stages:
                    result.stages[label] = StageStats(label)
                result.stages[label].merge(StageStats.from_dict(label, d))
        for label in result.order:
            result.stages.setdefault(label, StageStats(label))
        if phase.dataset_stage is not None:
            label = next(lbl for lbl in result.order if lbl.endswith(phase.dataset_stage.name))
            secs = result.extra.get(label, {}).get("seconds", 0.0)
            result.stages[label].seconds += secs

    def _write_stats(self, result: RunResult, files: list[str]) -> None:
        stats = {
            "name": self.config.name,
            "output": str(self.output),
            "inputs": files,
            "shards": result.shards,
            "documents": result.documents,
            "seconds": round(result.seconds, 3),
            "stages": {label: result.stages[label].to_dict() for label in result.order},
            "order": result.order,
            "extra": result.extra,
            "config": self.config.to_dict(),
        }
        self.output.mkdir(parents=True, exist_ok=True)
        tmp = self.output / ".stats.json.tmp"
        tmp.write_text(json.dumps(stats, indent=2, ensure_ascii=False))
        os.replace(tmp, self.output / "stats.json")


def _add_shard_column(table: pa.Table) -> pa.Table:
    shards = [Path(p).stem for p in table.column("path").to_pylist()]
    return table.drop_columns(["path"]).append_column("shard", pa.array(shards, pa.string()))


def run_pipeline(config: PipelineConfig, *, local: bool = False) -> RunResult:
    return Runner(config, local=local).run()
