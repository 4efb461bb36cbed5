"""The runner: a :class:`PipelineConfig` in, a dataset in the output directory out.

Data flow of a run::

    input files ─read─▶ shards of ≤ docs_per_shard documents (named FILE-CHUNK)
        ─repartition─▶ small blocks ─stage 1─▶ … ─stage n─▶ part files per (shard, block)
        ─compact─▶ OUTPUT/documents/SHARD.parquet + OUTPUT/dropped/SHARD.parquet

Blocks are small so that the expensive stages (extraction) spread over every core even when the
input is one file; compaction (:mod:`thresher.run.parts`) puts each shard back together and
checks that every position of every shard arrived exactly once. A dataset stage (dedup) starts
a new phase (:mod:`thresher.run.plan`): the shards of one phase are the input of the next, with
the dataset stage's decisions (:mod:`thresher.run.decisions`) applied while they are read. Then
the run-level steps (:mod:`thresher.run.steps`): tokenize, ``stats.json``, the report.

Before any of it: the output directory is claimed (:mod:`thresher.run.ownership`) and every
stage's :meth:`preflight` runs on the driver, so a missing model or an unusable dedup index
stops the run with one line before a document is read. ``--local`` runs the same functions in
this process, in the same order, and writes the same dataset byte for byte.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from thresher.config import PipelineConfig
from thresher.errors import UsageError
from thresher.io import PROBE_PREFIX
from thresher.readers import expand_inputs
from thresher.registry import stage_class
from thresher.run import blocks
from thresher.run.decisions import UNIQUE_IDS, make_ids_unique, run_dataset_stage
from thresher.run.layout import PhaseLayout, RunLayout, file_prefix
from thresher.run.ownership import RUN_LAYOUT, claim_output, clear
from thresher.run.parts import ShardIncomplete, finish_phase, write_parts
from thresher.run.plan import PhasePlan, plan_run, stage_order
from thresher.run.result import RunResult, check_accounting, check_decisions_applied
from thresher.run.steps import RunContext, run_steps

logger = logging.getLogger(__name__)


@dataclass
class Runner:
    """Executes a :class:`PipelineConfig`, with Ray (default) or in-process (``local=True``).

    ``resume=True`` continues an interrupted run in the same output directory: input files whose
    shards were all compacted are not read again, every other file is processed from its start
    (its shards are rewritten with the same names and content), so the output equals that of an
    uninterrupted run.

    An output directory that holds a run's files is refused unless ``overwrite=True`` (its run
    files are removed, nothing else) or ``resume=True``; an input inside the run's own output
    entries is always refused. Both checks come before any work (models, Ray).
    """

    config: PipelineConfig
    local: bool = False
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.layout = RunLayout.at(self.config.output.path, self.config.storage)
        # what the run's result and stats.json call the output: a local path or a URI (no secrets)
        self.output = self.layout.root if self.layout.is_local else self.layout.uri

    def run(self) -> RunResult:
        cfg = self.config
        start = time.perf_counter()
        files = expand_inputs(cfg.input.paths, cfg.base_dir)
        logger.info("%d input file(s); output in %s", len(files), self.output)
        if not self.layout.is_local:
            # A missing bucket, missing or refused credentials, a denied write: one line now.
            self.layout.store.probe()
            if cfg.export is not None and cfg.export.formats:
                raise UsageError(
                    f"export: exports to object storage ({self.layout.uri}) are not supported yet"
                )
        resuming = claim_output(
            self.layout, files, self._fingerprint(files), resume=self.resume, overwrite=self.overwrite
        )
        phases = plan_run(cfg.stages)
        self.preflight(phases, resuming)
        self._remove_probe_leftovers()
        if not resuming:
            clear(self.layout, RUN_LAYOUT)  # only what a run wrote: claim_output refused anything else
            self.layout.write_json(self.layout.run_record, self._fingerprint(files), ensure_ascii=False)
        result = RunResult(self.output, order=stage_order(phases))
        for phase in phases:
            self._phase(phase, files, result)
        check_accounting(result.order, result.stages)
        if not any(p.dataset_stage for p in phases):  # else the first dataset stage's phase did it
            unique = make_ids_unique(
                self._phase_layout(phases[-1]),
                local=self.local,
                init_ray=self._init_ray,
                documents=result.documents,
            )
            if unique["renamed_duplicate_ids"]:
                result.extra[UNIQUE_IDS] = unique
        self.layout.rm(self.layout.work, recursive=True)
        context = RunContext(cfg, self.layout, files, result, self.local, start, self._init_ray)
        run_steps(context, resume=self.resume)
        return result

    # ----------------------------------------------------------------- setup

    def _fingerprint(self, files: list[str]) -> dict[str, Any]:
        return json.loads(json.dumps({"inputs": files, "config": self.config.to_dict()}))

    def _phase_done(self, phase: PhasePlan) -> bool:
        return self.resume and self.layout.exists(self.layout.phase_done(phase.index))

    def _remove_probe_leftovers(self) -> None:
        """Probe objects (:meth:`thresher.io.Store.probe`) a killed run left at the output's root."""
        if not self.layout.is_local:
            for name in self.layout.names(self.layout.root):
                if name.startswith(PROBE_PREFIX):
                    self.layout.rm(self.layout.root / name)

    def preflight(self, phases: list[PhasePlan], resuming: bool) -> None:
        """Build every stage once on the driver and run its read-only checks, so a stage that
        cannot work fails the run before any data moves. A dataset stage whose phase a resumed
        run already finished is not checked again (its index output is its own now)."""
        for phase in phases:
            planned = list(phase.stages)
            if phase.dataset_stage is not None and not (resuming and self._phase_done(phase)):
                planned.insert(0, phase.dataset_stage)
            for spec in planned:
                stage = stage_class(spec.name)(spec.config)
                try:
                    stage.preflight()
                finally:
                    stage.close()

    def _phase_layout(self, phase: PhasePlan) -> PhaseLayout:
        out = self.config.output
        return self.layout.phase(
            phase.index, last=phase.last, write_dropped=out.write_dropped, compression=out.compression
        )

    def _init_ray(self) -> None:
        from thresher.raycontext import init_ray

        rc = self.config.ray
        init_ray(
            rc.address, num_cpus=rc.num_cpus, object_store_memory=rc.object_store_memory, progress=rc.progress
        )

    # ----------------------------------------------------------------- phases

    def _phase(self, phase: PhasePlan, files: list[str], result: RunResult) -> None:
        layout = self._phase_layout(phase)
        ds = phase.dataset_stage
        if not self._phase_done(phase):
            if ds is not None:
                source = self.layout.phase(phase.index - 1, last=False, write_dropped=False).document_files()
                stage = stage_class(ds.name)(ds.config)
                result.extra[ds.label] = run_dataset_stage(
                    stage, ds.label, source, self.layout, local=self.local, init_ray=self._init_ray
                )
            self._run_phase(phase, files, layout, result)
            self.layout.write_json(self.layout.phase_done(phase.index), {"phase": phase.index})
        elif ds is not None:
            result.extra[ds.label] = self.layout.read_json(self.layout.stage_extra(ds.label))
        # a shard exists only through its completion record, written last
        records = [self.layout.read_json(p) for p in self.layout.files(layout.shard_records, ".json")]
        result.add_shard_records(records)
        if ds is not None:
            check_decisions_applied(ds.label, result.stages[ds.label], result.extra[ds.label])
        if phase.last:
            result.shards = len(records)
            result.documents = sum(r["kept"] for r in records)

    def _pending_files(self, files: list[str], layout: PhaseLayout) -> list[tuple[int, str]]:
        """Input files (with their index in the full list) that still need processing; clears the
        partial state of those."""
        run = self.layout
        pending = []
        parts = run.names(layout.parts)  # one listing each, not one per file
        records = set(run.names(layout.shard_records))
        for index, path in enumerate(files):
            record = layout.file_record(index)
            if self.resume and run.exists(record):
                shards = run.read_json(record)["shards"]
                if all(f"{s}.json" in records for s in shards):
                    continue
            prefix = file_prefix(index)
            for name in parts:  # parts and claims of a killed attempt
                if name.startswith(prefix):
                    run.rm(layout.parts / name, recursive=True)
            for name in records:
                if name.startswith(prefix) and name.endswith(".json"):
                    run.rm(layout.shard_records / name)
            run.rm(record)
            pending.append((index, path))
        return pending

    def _run_phase(self, phase: PhasePlan, files: list[str], layout: PhaseLayout, result: RunResult) -> None:
        if phase.index > 0:  # a phase after a dataset stage is redone whole
            layout.clear()
        layout.make_dirs()
        if phase.index == 0:
            items = self._pending_files(files, layout)
            result.resumed_files = len(files) - len(items)
            if result.resumed_files:
                logger.info("resuming: %d of %d input files already done", result.resumed_files, len(files))
        else:
            source = self.layout.phase(phase.index - 1, last=False, write_dropped=False).document_files()
            items = [(i, str(p)) for i, p in enumerate(source)]
        if self.local:
            self._run_phase_local(phase, items, layout)
        else:
            self._run_phase_ray(phase, items, layout)
        finish_phase(layout)
        if phase.index == 0:
            missing = [i for i, _ in items if not self.layout.exists(layout.file_record(i))]
            if missing:
                raise ShardIncomplete(f"input files {missing} were not read to their end")

    def _decisions(self, phase: PhasePlan, shard_file: str) -> str:
        """The decisions file for a shard of the previous phase (absent when nothing was decided)."""
        return str(self.layout.decisions(phase.dataset_stage.label, PurePath(shard_file).stem))

    def _run_phase_local(self, phase: PhasePlan, items: list[tuple[int, str]], layout: PhaseLayout) -> None:
        cfg = self.config.input
        runners = [blocks.StageRunner(s.label, s.name, s.config) for s in phase.stages]
        try:
            for index, path in items:
                if phase.index == 0:
                    tables = blocks.read_shards(
                        path, index, cfg.format, cfg.docs_per_shard, cfg.max_bytes_per_shard, layout
                    )
                else:
                    tables = iter(
                        [
                            blocks.read_phase_shard(
                                path, phase.dataset_stage.label, self._decisions(phase, path), self.layout
                            )
                        ]
                    )
                for table in tables:
                    write_parts(blocks.run_chain(table, runners), layout)
        finally:
            for runner in runners:
                runner.stage.close()

    def _run_phase_ray(self, phase: PhasePlan, items: list[tuple[int, str]], layout: PhaseLayout) -> None:
        import ray

        if not items:
            return
        self._init_ray()
        cfg = self.config.input
        # Readers ask for less than a core: this keeps them from fusing with the stages, so the
        # repartitioned blocks fan out to every worker.
        if phase.index == 0:
            rows = [{"path": p, "index": i} for i, p in items]
            reader, kwargs = (
                blocks.read_files_batch,
                {
                    "fmt": cfg.format,
                    "docs_per_shard": cfg.docs_per_shard,
                    "max_bytes": cfg.max_bytes_per_shard,
                    "phase": layout,
                },
            )
        else:
            rows = [{"path": p, "decisions": self._decisions(phase, p)} for _, p in items]
            reader, kwargs = blocks.read_phase_batch, {"label": phase.dataset_stage.label, "run": self.layout}
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map_batches(reader, fn_kwargs=kwargs, batch_size=1, batch_format="pyarrow", num_cpus=0.5)
        ds = ds.repartition(target_num_rows_per_block=self.config.ray.block_docs)
        if phase.stages:  # one task per block for all of them: one Arrow ↔ Document conversion
            ds = ds.map_batches(
                blocks.run_stages,
                fn_args=([(s.label, s.name, s.config) for s in phase.stages],),
                batch_size=None,
                batch_format="pyarrow",
                concurrency=self.config.ray.concurrency,
            )
        ds = ds.map_batches(write_parts, fn_args=(layout,), batch_size=None, batch_format="pyarrow")
        for _ in ds.iter_batches(batch_size=None):
            pass


def run_pipeline(
    config: PipelineConfig, *, local: bool = False, resume: bool = False, overwrite: bool = False
) -> RunResult:
    return Runner(config, local=local, resume=resume, overwrite=overwrite).run()
