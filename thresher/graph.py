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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from thresher.config import PipelineConfig, StageSpec
from thresher.document import (
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


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class PhaseLayout:
    """Where a phase keeps its files. Everything lives under the run's output directory, so on a
    cluster it is on the storage every node shares."""

    parts: Path  # parts/SHARD/FIRSTPOS-ROWSofSHARDROWS.parquet, written by the workers
    out: Path  # out/documents/SHARD.parquet
    dropped: Path | None  # dropped/SHARD{suffix}.parquet
    dropped_suffix: str
    progress: Path  # progress/SHARD.json: the compacted shard's counters (its completion record)
    files: Path  # files/FILEIDX.json: the shards of an input file that was read to its end
    compression: str = "zstd"  # codec of the documents and dropped files (output.compression)

    def make_dirs(self) -> None:
        for d in (self.parts, self.out / "documents", self.progress, self.files):
            d.mkdir(parents=True, exist_ok=True)
        if self.dropped:
            self.dropped.mkdir(parents=True, exist_ok=True)


def _write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, ensure_ascii=False))
    os.replace(tmp, path)


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
    path: str, file_index: int, fmt: str, docs_per_shard: int, max_bytes: int, layout: PhaseLayout | None = None
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
            yield _flight_table(batch, f"{file_index:05d}-{chunk:05d}", READ_STAGE, stats)
            chunk, batch, size, stats, start = chunk + 1, [], 0, StageStats(READ_STAGE), time.perf_counter()
    if batch or chunk == 0:
        stats.seconds = time.perf_counter() - start
        yield _flight_table(batch, f"{file_index:05d}-{chunk:05d}", READ_STAGE, stats)
        chunk += 1
    if layout is not None:
        shards = [f"{file_index:05d}-{c:05d}" for c in range(chunk)]
        _write_json_atomic(layout.files / f"{file_index:05d}.json", {"path": path, "shards": shards})


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
    """Applies one configured stage to in-flight tables. Ray tasks keep one per worker process
    (:func:`run_stage`), so a model loads once per worker; local runs use it directly."""

    def __init__(self, label: str, name: str, config: Any) -> None:
        quiet_noisy_loggers()
        self.label = label
        self.stage: Stage = stage_class(name)(config)
        self.stage.preflight()
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


def write_parts(table: pa.Table, layout: PhaseLayout) -> pa.Table:
    """Last operator of a phase: one part file per shard present in the block (payload dropped);
    the worker that writes a shard's last part compacts the shard."""
    if "html" in table.column_names:
        table = table.drop_columns(["html"])
    out_rows = []
    for shard in sorted(set(table.column("shard").to_pylist())):
        part = table.filter(pc.equal(table.column("shard"), shard))
        first = pc.min(part.column("pos")).as_py()
        total = part.column("shard_rows")[0].as_py()
        target = layout.parts / shard / f"{first:07d}-{part.num_rows}of{total}.parquet"
        _write_atomic(part, target)
        compacted = try_compact(shard, layout)
        out_rows.append({"shard": shard, "rows": part.num_rows, "compacted": compacted})
    schema = pa.schema([("shard", pa.string()), ("rows", pa.int64()), ("compacted", pa.bool_())])
    return pa.Table.from_pylist(out_rows, schema=schema)


def _part_rows(name: str) -> tuple[int, int]:
    rows, _, total = name.split("-", 1)[1].removesuffix(".parquet").partition("of")
    return int(rows), int(total)


def try_compact(shard: str, layout: PhaseLayout) -> bool:
    """Compact ``shard`` if all its rows have arrived. Safe under races: the parts directory is
    claimed by an atomic rename, so exactly one worker compacts it."""
    shard_dir = layout.parts / shard
    try:
        names = [p.name for p in shard_dir.iterdir() if p.suffix == ".parquet"]
    except FileNotFoundError:
        return False
    if not names:
        return False
    counts = [_part_rows(n) for n in names]
    if sum(r for r, _ in counts) < counts[0][1]:
        return False
    claimed = shard_dir.with_name(f"{shard}.claimed-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(shard_dir, claimed)
    except OSError:  # another worker got there first
        return False
    compact_shard(shard, claimed, layout)
    return True


class ShardIncomplete(RuntimeError):
    pass


def compact_shard(shard: str, parts_dir: Path, layout: PhaseLayout) -> dict[str, Any]:
    """Assemble a shard from its parts, check every position arrived exactly once, write the
    documents and dropped files, then the completion record with the shard's stage counters."""
    files = sorted(parts_dir.glob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive").sort_by("pos")
    positions = table.column("pos").to_pylist()
    expected = table.column("shard_rows")[0].as_py() if table.num_rows else 0
    if positions != list(range(expected)):
        raise ShardIncomplete(f"shard {shard}: expected positions 0..{expected - 1} exactly once, got {positions[:20]}…")
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
    _write_atomic(kept_table(docs), layout.out / "documents" / f"{shard}.parquet", layout.compression)
    if layout.dropped:
        _write_atomic(dropped_table(docs), layout.dropped / f"{shard}{layout.dropped_suffix}.parquet", layout.compression)
    summary = {"shard": shard, "rows": len(docs), "kept": sum(1 for d in docs if d.drop is None), "stats": stats}
    _write_json_atomic(layout.progress / f"{shard}.json", summary)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return summary


def _write_atomic(table: pa.Table, path: Path, compression: str = "zstd") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{uuid.uuid4().hex[:8]}")
    pq.write_table(table, tmp, compression=compression)
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
    resumed_files: int = 0
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
    from thresher.stage import AccountingError

    previous = None
    for label in order:
        s = stages[label]
        s.check()
        if previous is not None and s.docs_in != previous.kept:
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


def _read_files_batch(batch: pa.Table, fmt: str, docs_per_shard: int, max_bytes: int, layout: PhaseLayout) -> Iterator[pa.Table]:
    for path, index in zip(batch.column("path").to_pylist(), batch.column("index").to_pylist(), strict=True):
        yield from read_shards(path, index, fmt, docs_per_shard, max_bytes, layout)


def _read_phase_batch(batch: pa.Table, label: str, decisions_dir: str | None) -> Iterator[pa.Table]:
    for path in batch.column("path").to_pylist():
        yield read_phase_shard(path, label, decisions_dir)


class ResumeError(RuntimeError):
    pass


def preflight(specs: list[StageSpec]) -> None:
    """Build every per-document stage once on the driver, so a missing model fails the run at once."""
    for spec in specs:
        cls = stage_class(spec.name)
        if issubclass(cls, Stage):
            stage = cls(spec.config)
            stage.preflight()
            stage.close()


@dataclass
class Runner:
    """Executes a :class:`PipelineConfig`, with Ray (default) or in-process (``local=True``).

    ``resume=True`` continues an interrupted run in the same output directory: input files whose
    shards were all compacted are not read again, every other file is processed from its start
    (its shards are rewritten with the same names and content), so the output equals that of an
    uninterrupted run.
    """

    config: PipelineConfig
    local: bool = False
    resume: bool = False
    def __post_init__(self) -> None:
        # Relative output paths are relative to where the command runs, like any CLI's.
        self.output = Path(self.config.output.path).absolute()
        self.progress = self.output / "_progress"
        self.work = self.output / "_work"

    # ----------------------------------------------------------------- public

    def run(self) -> RunResult:
        cfg = self.config
        start = time.perf_counter()
        files = expand_inputs(cfg.input.paths, cfg.base_dir)
        logger.info("%d input file(s); output in %s", len(files), self.output)
        preflight(cfg.stages)
        self._prepare(files)
        phases = plan_phases(cfg.stages)
        result = RunResult(self.output)
        result.order.append(READ_STAGE)
        source: Path | None = None
        label_index = 0
        for phase in phases:
            last = phase is phases[-1]
            layout = self._layout(phase, last)
            ds_label, decisions_dir = None, None
            if phase.dataset_stage is not None:
                label_index += 1
                ds_label = stage_label(label_index, phase.dataset_stage)
                result.order.append(ds_label)
            labels = []
            for spec in phase.stages:
                label_index += 1
                labels.append((stage_label(label_index, spec), spec))
            result.order += [label for label, _ in labels]
            done_marker = self.progress / f"phase{phase.index}.done"
            if not (self.resume and done_marker.exists()):
                if phase.dataset_stage is not None:
                    decisions_dir = self._run_dataset_stage(phase.dataset_stage, ds_label, source, result)
                self._run_phase(phase, files, labels, layout, ds_label, decisions_dir, result)
                _write_json_atomic(done_marker, {"phase": phase.index})
            elif phase.dataset_stage is not None:
                result.extra[ds_label] = json.loads((self.progress / f"extra-{ds_label}.json").read_text())
            summaries = [json.loads(p.read_text()) for p in sorted(layout.progress.glob("*.json"))]
            self._merge_phase_stats(summaries, result)
            if last:
                result.shards = len(summaries)
                result.documents = sum(s["kept"] for s in summaries)
            source = layout.out
        check_accounting(result.order, result.stages)
        if cfg.tokenize is not None:
            result.extra["tokenize"] = self._run_tokenize()
        result.seconds = time.perf_counter() - start
        shutil.rmtree(self.work, ignore_errors=True)
        self._write_stats(result, files)
        self._write_report()
        return result

    def _write_report(self) -> None:
        try:
            from thresher.report import write_report

            write_report(self.output)
        except Exception as exc:  # a finished run must not fail because of its report
            logger.warning("run report not written: %r", exc)

    # ----------------------------------------------------------------- setup

    def _prepare(self, files: list[str]) -> None:
        fingerprint = {"inputs": files, "config": self.config.to_dict()}
        run_file = self.progress / "run.json"
        if self.resume and run_file.exists():
            previous = json.loads(run_file.read_text())
            if previous != json.loads(json.dumps(fingerprint)):
                raise ResumeError(
                    f"--resume: {self.output} was written by a run with other inputs or another config; "
                    "run without --resume to start over"
                )
            return
        for sub in ("documents", "dropped", "_work", "_progress", "stats.json", "tokens", "tokenizer", "report.html"):
            target = self.output / sub
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        _write_json_atomic(run_file, fingerprint)

    def _layout(self, phase: Phase, last: bool) -> PhaseLayout:
        out = self.output if last else self.work / f"phase{phase.index}"
        dropped = self.output / "dropped" if self.config.output.write_dropped else None
        layout = PhaseLayout(
            parts=self.work / f"parts{phase.index}",
            out=out,
            dropped=dropped,
            dropped_suffix="" if phase.index == 0 else f".phase{phase.index}",
            progress=self.progress / f"phase{phase.index}",
            files=self.progress / f"phase{phase.index}-files",
            compression=self.config.output.compression,
        )
        return layout

    def _pending_files(self, files: list[str], layout: PhaseLayout) -> list[tuple[int, str]]:
        """Input files (with their index in the full list) that still need processing; clears the
        partial state of those."""
        pending = []
        for index, path in enumerate(files):
            record = layout.files / f"{index:05d}.json"
            if self.resume and record.exists():
                shards = json.loads(record.read_text())["shards"]
                if all((layout.progress / f"{s}.json").exists() for s in shards):
                    continue
            prefix = f"{index:05d}-"
            for stale in list(layout.parts.glob(prefix + "*")) + list(layout.progress.glob(prefix + "*.json")):
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
            record.unlink(missing_ok=True)
            pending.append((index, path))
        return pending

    # ----------------------------------------------------------------- phases

    def _run_phase(self, phase, files, labels, layout: PhaseLayout, ds_label, decisions_dir, result) -> None:
        if phase.index > 0:  # a phase after a dataset stage is redone whole
            shutil.rmtree(layout.progress, ignore_errors=True)
            shutil.rmtree(layout.parts, ignore_errors=True)
            shutil.rmtree(layout.files, ignore_errors=True)
        layout.make_dirs()
        if phase.index == 0:
            items = self._pending_files(files, layout)
            result.resumed_files = len(files) - len(items)
            if result.resumed_files:
                logger.info("resuming: %d of %d input files already done", result.resumed_files, len(files))
        else:
            shard_files = sorted(str(p) for p in (self.work / f"phase{phase.index - 1}" / "documents").glob("*.parquet"))
            items = [(i, p) for i, p in enumerate(shard_files)]
        if self.local:
            self._run_phase_local(phase, items, labels, layout, ds_label, decisions_dir)
        else:
            self._run_phase_ray(phase, items, labels, layout, ds_label, decisions_dir)
        # Shards whose last part landed while no worker could compact them (should not happen).
        for shard_dir in sorted(p for p in layout.parts.iterdir() if p.is_dir() and ".claimed-" not in p.name):
            if not try_compact(shard_dir.name, layout):
                raise ShardIncomplete(f"shard {shard_dir.name}: some of its rows never arrived")
        if phase.index == 0:
            missing = [i for i, _ in items if not (layout.files / f"{i:05d}.json").exists()]
            if missing:
                raise ShardIncomplete(f"input files {missing} were not read to their end")

    def _run_phase_local(self, phase, items, labels, layout, ds_label, decisions_dir) -> None:
        cfg = self.config.input
        runners = [StageRunner(label, spec.name, spec.config) for label, spec in labels]
        for index, path in items:
            if phase.index == 0:
                tables = read_shards(path, index, cfg.format, cfg.docs_per_shard, cfg.max_bytes_per_shard, layout)
            else:
                tables = iter([read_phase_shard(path, ds_label, decisions_dir)])
            for table in tables:
                for runner in runners:
                    table = runner(table)
                write_parts(table, layout)

    def _run_phase_ray(self, phase, items, labels, layout, ds_label, decisions_dir) -> None:
        import ray

        if not items:
            return
        self._init_ray()
        cfg = self.config.input
        ds = ray.data.from_items([{"path": p, "index": i} for i, p in items], override_num_blocks=len(items))
        # Readers ask for less than a core: this keeps them from fusing with the stages, so the
        # repartitioned blocks fan out to every worker.
        if phase.index == 0:
            reader, kwargs = _read_files_batch, {
                "fmt": cfg.format, "docs_per_shard": cfg.docs_per_shard,
                "max_bytes": cfg.max_bytes_per_shard, "layout": layout,
            }
        else:
            reader, kwargs = _read_phase_batch, {
                "label": ds_label, "decisions_dir": str(decisions_dir) if decisions_dir else None
            }
        ds = ds.map_batches(reader, fn_kwargs=kwargs, batch_size=1, batch_format="pyarrow", num_cpus=0.5)
        ds = ds.repartition(target_num_rows_per_block=self.config.ray.block_docs)
        for label, spec in labels:
            ds = ds.map_batches(
                run_stage,
                fn_args=(label, spec.name, spec.config),
                batch_size=None,
                batch_format="pyarrow",
                concurrency=self.config.ray.concurrency,
            )
        ds = ds.map_batches(write_parts, fn_args=(layout,), batch_size=None, batch_format="pyarrow")
        for _ in ds.iter_batches(batch_size=None):
            pass

    def _run_tokenize(self) -> dict[str, Any]:
        from thresher.tokenize.step import run_tokenize

        marker = self.progress / "tokens.done"
        if self.resume and marker.exists():
            return json.loads(marker.read_text())
        if not self.local:
            self._init_ray()
        figures = run_tokenize(self.config.tokenize, self.output, self.config.to_dict(), local=self.local)
        _write_json_atomic(marker, figures)
        return figures

    def _init_ray(self) -> None:
        from thresher.raycontext import init_ray

        rc = self.config.ray
        init_ray(rc.address, num_cpus=rc.num_cpus, object_store_memory=rc.object_store_memory, progress=rc.progress)

    def _run_dataset_stage(self, spec: StageSpec, label: str, source_dir: Path, result: RunResult) -> Path:
        """Run a whole-dataset stage over the previous phase's documents; decisions grouped by shard."""
        from thresher.stage import DECISION_SCHEMA

        stage: DatasetStage = stage_class(spec.name)(spec.config)
        decisions_dir = self.work / f"decisions-{label}"
        shutil.rmtree(decisions_dir, ignore_errors=True)
        decisions_dir.mkdir(parents=True, exist_ok=True)
        files = sorted(str(p) for p in (source_dir / "documents").glob("*.parquet"))
        stage_work = self.work / f"stage-{label}"
        stage_work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        if self.local:
            docs: list[Document] = []
            shard_of: dict[int, str] = {}
            for f in files:
                for doc in table_to_documents(pq.read_table(f)):
                    shard_of[len(docs)] = Path(f).stem
                    docs.append(doc)
            stage.run_local(docs)
            rows = [
                {"id": d.id, "shard": shard_of[i], "kind": d.drop.kind, "reason": d.drop.reason,
                 "value": d.drop.value, "detail": d.drop.detail}
                for i, d in enumerate(docs) if d.drop is not None
            ]
        elif files:
            import ray

            self._init_ray()
            ds = ray.data.read_parquet(files, include_paths=True)
            ds = ds.map_batches(_add_shard_column, batch_format="pyarrow")
            rows = stage.run_ray(ds, str(stage_work)).take_all()
        else:
            rows = []
        by_shard: dict[str, list[dict]] = {}
        for row in rows:
            by_shard.setdefault(row["shard"], []).append(row)
        for shard, shard_rows in by_shard.items():
            _write_atomic(pa.Table.from_pylist(shard_rows, schema=DECISION_SCHEMA), decisions_dir / f"{shard}.parquet")
        extra = stage.extra_stats()
        extra["seconds"] = round(time.perf_counter() - start, 3)
        result.extra[label] = extra
        _write_json_atomic(self.progress / f"extra-{label}.json", extra)
        return decisions_dir

    # ----------------------------------------------------------------- stats

    def _merge_phase_stats(self, summaries: list[dict], result: RunResult) -> None:
        for summary in summaries:
            for label, d in summary["stats"].items():
                result.stages.setdefault(label, StageStats(label)).merge(StageStats.from_dict(label, d))
        for label in result.order:
            result.stages.setdefault(label, StageStats(label))
        for label, extra in result.extra.items():
            if label in result.stages and not result.stages[label].seconds:
                result.stages[label].seconds = extra.get("seconds", 0.0)

    def _write_stats(self, result: RunResult, files: list[str]) -> None:
        stats = {
            "name": self.config.name,
            "output": str(self.output),
            "inputs": files,
            "shards": result.shards,
            "documents": result.documents,
            "seconds": round(result.seconds, 3),
            "resumed_files": result.resumed_files,
            "stages": {label: result.stages[label].to_dict() for label in result.order},
            "order": result.order,
            "extra": result.extra,
            "config": self.config.to_dict(),
        }
        _write_json_atomic(self.output / "stats.json", stats)


def _add_shard_column(table: pa.Table) -> pa.Table:
    shards = [Path(p).stem for p in table.column("path").to_pylist()]
    return table.drop_columns(["path"]).append_column("shard", pa.array(shards, pa.string()))


def run_pipeline(config: PipelineConfig, *, local: bool = False, resume: bool = False) -> RunResult:
    return Runner(config, local=local, resume=resume).run()
