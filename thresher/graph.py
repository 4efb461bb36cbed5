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

import functools
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
from thresher.output_dir import (
    RUN_LAYOUT,
    OutputDirError,
    check_inputs_outside,
    clear,
    refuse_unless_free,
)
from thresher.readers import expand_inputs, read_documents
from thresher.registry import stage_class
from thresher.stage import DECISION_SCHEMA, DatasetStage, Stage, StageStats

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


RENAME = "rename"
"""Decision kind of a document whose id an earlier document of the run already has: it gets
``detail`` as its id and keeps the one it came with in ``metadata["original_id"]``."""


class DecisionError(RuntimeError):
    """A dataset stage's decisions do not match the shard they are for (a bug, never bad input)."""


def read_phase_shard(shard_file: str, label: str, decisions_dir: str | None) -> pa.Table:
    """A shard written by the previous phase, with the dataset stage's decisions applied. A
    decision names its document by position in the shard, never by id: ids are data, and two
    documents may come with the same one."""
    shard = Path(shard_file).stem
    docs = table_to_documents(pq.read_table(shard_file))
    stats = StageStats(label)
    decided: dict[int, dict] = {}
    if decisions_dir:
        dfile = Path(decisions_dir) / f"{shard}.parquet"
        if dfile.exists():
            rows = pq.read_table(dfile).to_pylist()
            # Renames first: the stage decided on the renamed documents.
            for row in sorted(rows, key=lambda r: r["kind"] != RENAME):
                doc = docs[row["pos"]] if 0 <= row["pos"] < len(docs) else None
                if doc is None or doc.id != row["id"]:
                    raise DecisionError(f"shard {shard}: the decision for {row['id']!r} at {row['pos']} matches no document")
                if row["kind"] == RENAME:
                    doc.metadata["original_id"] = doc.id
                    doc.id = row["detail"]
                    stats.extra["renamed_duplicate_id"] += 1
                elif row["pos"] in decided:
                    raise DecisionError(f"shard {shard}: two decisions for the document at {row['pos']}")
                else:
                    decided[row["pos"]] = row
    for pos, doc in enumerate(docs):
        row = decided.get(pos)
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
    write_rows(kept_table(docs), layout.out / "documents" / f"{shard}.parquet", layout.compression)
    if layout.dropped:
        write_rows(dropped_table(docs), layout.dropped / f"{shard}{layout.dropped_suffix}.parquet", layout.compression)
    summary = {"shard": shard, "rows": len(docs), "kept": sum(1 for d in docs if d.drop is None), "stats": stats}
    _write_json_atomic(layout.progress / f"{shard}.json", summary)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return summary


def _write_atomic(table: pa.Table, path: Path, compression: str = "zstd") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{uuid.uuid4().hex[:8]}")
    pq.write_table(table, tmp, compression=compression)
    os.replace(tmp, path)


def write_rows(table: pa.Table, path: Path, compression: str = "zstd") -> None:
    """An output data file, or none when there are no rows: a zero-row Parquet file is valid,
    but ``datasets.load_dataset("parquet", ...)`` fails on one (``BatchSize must be greater
    than 0``), and the shard's completion record counts its rows anyway. A file left at that
    path by an earlier try is removed, so a redone shard never keeps stale rows."""
    if table.num_rows:
        _write_atomic(table, path, compression)
    else:
        path.unlink(missing_ok=True)



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


def check_decisions_applied(label: str, stats: StageStats, extra: dict[str, Any]) -> None:
    """A dataset stage's documents dropped, counted shard by shard, are the ones it decided to
    drop (``removed``): each decision dropped exactly one document."""
    from thresher.stage import AccountingError

    dropped = sum(stats.dropped.values()) + sum(stats.errors.values())
    if "removed" in extra and dropped != extra["removed"]:
        raise AccountingError(f"stage {label!r} decided to drop {extra['removed']} documents but {dropped} were dropped")


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


class ResumeError(OutputDirError):
    """``--resume`` into an output written by a run with other inputs or another config."""


IN_PLACE_HINT = "write the new dataset to another --output (e.g. OUTPUT-dedup)"


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

    An output directory that holds a run's files is refused unless ``overwrite=True`` (its run
    files are removed, nothing else: see :mod:`thresher.output_dir`) or ``resume=True``; an
    input inside the run's own output entries is always refused. Both checks come before any
    work (models, Ray).
    """

    config: PipelineConfig
    local: bool = False
    resume: bool = False
    overwrite: bool = False

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
        resuming = self.check_output(files)
        preflight(cfg.stages)
        self._prepare(files, resuming)
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
            if ds_label is not None:
                check_decisions_applied(ds_label, result.stages[ds_label], result.extra[ds_label])
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

    def _fingerprint(self, files: list[str]) -> dict[str, Any]:
        return json.loads(json.dumps({"inputs": files, "config": self.config.to_dict()}))

    def check_output(self, files: list[str]) -> bool:
        """Refuse what would destroy data (see the class docstring); True when this run resumes
        the run in the output directory."""
        check_inputs_outside(files, self.output, RUN_LAYOUT, IN_PLACE_HINT)
        run_file = self.progress / "run.json"
        if self.resume and run_file.exists():
            if json.loads(run_file.read_text()) == self._fingerprint(files):
                refuse_unless_free(self.output, RUN_LAYOUT, True, "a run")  # foreign files only
                return True
            if not self.overwrite:
                raise ResumeError(
                    f"--resume: {self.output} was written by a run with other inputs or another config; "
                    "give --overwrite instead to start over, or another --output"
                )
        refuse_unless_free(self.output, RUN_LAYOUT, self.overwrite, "a run")
        return False

    def _prepare(self, files: list[str], resuming: bool) -> None:
        if resuming:
            return
        clear(self.output, RUN_LAYOUT)  # only what a run wrote: check_output refused anything else
        _write_json_atomic(self.progress / "run.json", self._fingerprint(files))

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
        """Run a whole-dataset stage over the previous phase's documents; decisions grouped by shard.

        Both paths read the same input (:func:`read_stage_input`: each document with its place
        in the run) and make ids unique the same way (:func:`unique_id_renames`) before the
        stage sees them, so ``--local`` and Ray write the same dataset."""
        stage: DatasetStage = stage_class(spec.name)(spec.config)
        decisions_dir = self.work / f"decisions-{label}"
        shutil.rmtree(decisions_dir, ignore_errors=True)
        decisions_dir.mkdir(parents=True, exist_ok=True)
        files = sorted(str(p) for p in (source_dir / "documents").glob("*.parquet"))
        offsets = [0]
        for f in files:
            offsets.append(offsets[-1] + pq.ParquetFile(f).metadata.num_rows)
        stage_work = self.work / f"stage-{label}"
        stage_work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        if self.local:
            places = [read_stage_input(f, o, columns=("id",)) for f, o in zip(files, offsets, strict=False)]
            all_ids = {i for t in places for i in t.column("id").to_pylist()}
            renames = unique_id_renames(_duplicate_id_rows(places), lambda ids: set(ids) & all_ids)
            tables = [
                _rename_ids(read_stage_input(f, o), _rename_map(renames)) for f, o in zip(files, offsets, strict=False)
            ]
            rows = [r for t in stage.run_batches(tables) for r in t.to_pylist()]
        elif files:
            import ray

            self._init_ray()
            items = [{"path": f, "offset": o} for f, o in zip(files, offsets, strict=False)]
            places = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                _read_stage_input_batch, fn_kwargs={"columns": ("id",)}, batch_size=1, batch_format="pyarrow"
            ).materialize()
            renames = unique_id_renames(_duplicate_id_rows_ray(places), functools.partial(_existing_ids_ray, places))
            ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                _read_stage_input_batch, batch_size=1, batch_format="pyarrow"
            )
            if renames:
                ds = ds.map_batches(_rename_ids, fn_args=(_rename_map(renames),), batch_format="pyarrow")
            rows = stage.run_ray(ds, str(stage_work)).take_all()
        else:
            renames, rows = [], []
        by_shard: dict[str, list[dict]] = {}
        for row in renames + rows:
            by_shard.setdefault(row["shard"], []).append(row)
        for shard, shard_rows in by_shard.items():
            _write_atomic(pa.Table.from_pylist(shard_rows, schema=DECISION_SCHEMA), decisions_dir / f"{shard}.parquet")
        extra = stage.extra_stats()
        if renames:
            extra["renamed_duplicate_ids"] = len(renames)
            logger.warning("%s: %d documents had an id an earlier document has; renamed ID#N", label, len(renames))
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


# --------------------------------------------------------------------------- dataset stage input

STAGE_INPUT_COLUMNS = ("id", "text", "url", "scores")


def read_stage_input(path: str, offset: int, columns: tuple[str, ...] = STAGE_INPUT_COLUMNS) -> pa.Table:
    """A previous phase's documents shard as a dataset stage's input: ``columns`` and each
    document's place: ``shard``, ``pos`` (position in the shard) and ``row`` (``offset`` + pos,
    its ordinal in the stage's whole input)."""
    table = pq.read_table(path, columns=list(columns))
    n = table.num_rows
    table = table.append_column("shard", pa.array([Path(path).stem] * n, pa.string()))
    table = table.append_column("pos", pa.array(range(n), pa.int64()))
    return table.append_column("row", pa.array(range(offset, offset + n), pa.int64()))


def _read_stage_input_batch(batch: pa.Table, columns: tuple[str, ...] = STAGE_INPUT_COLUMNS) -> pa.Table:
    tables = [
        read_stage_input(p, o, columns)
        for p, o in zip(batch.column("path").to_pylist(), batch.column("offset").to_pylist(), strict=True)
    ]
    return pa.concat_tables(tables)


def unique_id_renames(dup_rows: list[dict], existing: Any) -> list[dict]:
    """Rename decisions that make a run's ids unique. ``dup_rows``: (id, shard, pos) of every
    document whose id several documents have. The first of them by (shard, pos) keeps it; the
    others become ``ID#2``, ``ID#3``, … in that order, skipping any name ``existing(names)``
    (→ the subset already taken by a document) reports. Derived names never collide with each
    other: the part after the last ``#`` is the number."""
    groups: dict[str, list[dict]] = {}
    for row in sorted(dup_rows, key=lambda r: (r["shard"], r["pos"])):
        groups.setdefault(row["id"], []).append(row)
    pending = [(doc_id, row) for doc_id, rows in groups.items() for row in rows[1:]]
    number = dict.fromkeys(groups, 2)
    renames: list[dict] = []
    while pending:
        proposals = []
        for doc_id, row in pending:
            proposals.append((f"{doc_id}#{number[doc_id]}", doc_id, row))
            number[doc_id] += 1
        taken = existing([name for name, _, _ in proposals])
        renames += [
            {"id": doc_id, "shard": row["shard"], "pos": row["pos"], "kind": RENAME, "reason": "duplicate_id",
             "value": None, "detail": name}
            for name, doc_id, row in proposals if name not in taken
        ]
        pending = [(doc_id, row) for name, doc_id, row in proposals if name in taken]
    return renames


def _duplicate_id_rows(places: list[pa.Table]) -> list[dict]:
    from collections import Counter

    counts = Counter(i for t in places for i in t.column("id").to_pylist())
    dups = pa.array([i for i, n in counts.items() if n > 1], pa.string())
    return [r for t in places for r in t.filter(pc.is_in(t.column("id"), dups)).to_pylist()] if len(dups) else []


def _duplicate_id_rows_ray(places: Any) -> list[dict]:
    partitions = min(200, places.count() // 1_000_000 + 1)  # Ray's default of 200 costs seconds on small runs
    counts = places.groupby("id", num_partitions=partitions).count()
    several = counts.map_batches(lambda t: t.filter(pc.greater(t.column("count()"), 1)), batch_format="pyarrow")
    dups = [r["id"] for r in several.take_all()]
    if not dups:
        return []
    return _ids_in_ray(places, dups).take_all()


def _ids_in_ray(places: Any, ids: list[str]) -> Any:
    wanted = pa.array(ids, pa.string())
    return places.map_batches(lambda t: t.filter(pc.is_in(t.column("id"), wanted)), batch_format="pyarrow")


def _existing_ids_ray(places: Any, names: list[str]) -> set[str]:
    return {r["id"] for r in _ids_in_ray(places, names).take_all()}


def _rename_map(renames: list[dict]) -> dict[tuple[str, int], str]:
    return {(r["shard"], r["pos"]): r["detail"] for r in renames}


def _rename_ids(table: pa.Table, renames: dict[tuple[str, int], str]) -> pa.Table:
    """The stage's input with the renamed documents' new ids (the stage's ``detail`` then names
    the kept document as the output will)."""
    if not renames or table.num_rows == 0:
        return table
    places = zip(table.column("shard").to_pylist(), table.column("pos").to_pylist(), strict=True)
    ids = [renames.get(place, i) for place, i in zip(places, table.column("id").to_pylist(), strict=True)]
    return table.set_column(table.column_names.index("id"), "id", pa.array(ids, pa.string()))


def run_pipeline(
    config: PipelineConfig, *, local: bool = False, resume: bool = False, overwrite: bool = False
) -> RunResult:
    return Runner(config, local=local, resume=resume, overwrite=overwrite).run()
