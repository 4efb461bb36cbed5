"""Run-level steps: what a run does once its phases are done (tokenize, stats.json, the report).

A step is small on purpose: a ``name`` (its key in ``stats.json``'s ``extra`` and its resume
marker, :meth:`RunLayout.step_done`), :meth:`wanted` (does this run do it) and :meth:`run`
(returns its figures, or None). A resumable step that finished is not redone by ``--resume``:
its figures are read back from the marker. The runner runs :data:`STEPS` in order; a new
step (an export, a manifest) is one more class here, not a new method of the runner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from thresher.config import PipelineConfig
from thresher.errors import UsageError
from thresher.run.layout import RunLayout
from thresher.run.result import RunResult

logger = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What a step may use: the run's config, paths, mode and result so far."""

    config: PipelineConfig
    layout: RunLayout
    inputs: list[str]
    result: RunResult
    local: bool
    started: float
    """``time.perf_counter()`` when the run started."""
    init_ray: Callable[[], None]


class RunStep:
    name: ClassVar[str] = "step"
    resumable: ClassVar[bool] = False
    """Write a done marker with the figures, and skip the step when ``--resume`` finds it."""

    def wanted(self, context: RunContext) -> bool:
        return True

    def run(self, context: RunContext) -> dict[str, Any] | None:
        raise NotImplementedError


class TokenizeStep(RunStep):
    """Train (or load) the tokenizer, then encode the documents into token shards."""

    name = "tokenize"
    resumable = True

    def wanted(self, context: RunContext) -> bool:
        return context.config.tokenize is not None

    def run(self, context: RunContext) -> dict[str, Any]:
        from thresher.tokenize.step import run_tokenize

        if not context.local:
            context.init_ray()
        cfg = context.config
        return run_tokenize(cfg.tokenize, context.layout, cfg.to_dict(), local=context.local)


class ExportStep(RunStep):
    """The config's ``export.formats``, each into ``OUTPUT/exports/FORMAT``, after the tokens and
    before ``stats.json``: a run is finished only with its exports. An export a killed run left
    is replaced (it is the run's own)."""

    name = "export"
    resumable = True

    def wanted(self, context: RunContext) -> bool:
        return context.config.export is not None and bool(context.config.export.formats)

    def run(self, context: RunContext) -> dict[str, Any]:
        from thresher.shards.exports import export

        cfg = context.config.export
        if not context.layout.is_local:
            raise UsageError(
                f"export: writing exports to {context.layout.uri} (object storage) is not supported yet"
            )
        figures = {}
        for fmt in cfg.formats:
            dst = context.layout.export_dir(fmt)
            manifest = export(
                fmt,
                context.layout.root,
                dst,
                overwrite=True,
                max_file_bytes=cfg.max_file_bytes,
                finished=False,
            )
            figures[fmt] = {"path": str(dst), "splits": manifest["splits"]}
        return figures


class StatsStep(RunStep):
    """``stats.json``: the last file a run writes before its report, so its presence means the
    dataset is complete."""

    name = "stats"

    def run(self, context: RunContext) -> None:
        result = context.result
        result.seconds = time.perf_counter() - context.started
        stats = result.stats_json(context.config.name, context.inputs, context.config.to_dict())
        context.layout.write_json(context.layout.stats, stats, ensure_ascii=False)
        return None


class ReportStep(RunStep):
    """``report.html``; a finished run must not fail because of its report."""

    name = "report"

    def run(self, context: RunContext) -> None:
        try:
            from thresher.report import write_report

            write_report(context.layout.store.uri)
        except Exception as exc:
            logger.warning("run report not written: %r", exc)
        return None


STEPS: tuple[RunStep, ...] = (TokenizeStep(), ExportStep(), StatsStep(), ReportStep())


def run_steps(context: RunContext, resume: bool, steps: tuple[RunStep, ...] = STEPS) -> None:
    for step in steps:
        if not step.wanted(context):
            continue
        marker = context.layout.step_done(step.name)
        if step.resumable and resume and context.layout.exists(marker):
            figures = context.layout.read_json(marker)
        else:
            figures = step.run(context)
            if step.resumable:
                context.layout.write_json(marker, figures, ensure_ascii=False)
        if figures is not None:
            context.result.extra[step.name] = figures
