"""The run engine: a pipeline config in, a dataset out (``thresher run``, ``thresher dedup``).

=================  ===========================================================================
module             what it holds
=================  ===========================================================================
``runner``         :class:`Runner` / :func:`run_pipeline`: the order of a run, local or on Ray
``plan``           the phases (per-document stages stream; a dataset stage starts a phase)
``layout``         :class:`RunLayout`: every path a run reads or writes
``ownership``      which entries of the output directory a run owns; when it must refuse
``blocks``         what runs on a block: reading shards, a stage, the counters' cells
``parts``          part files and their compaction into whole shards
``decisions``      a dataset stage over the previous phase's documents → decisions by shard
``steps``          run-level steps after the phases: tokenize, ``stats.json``, report
``result``         :class:`RunResult` and the accounting checks
=================  ===========================================================================
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "OutputDirError": "thresher.run.ownership",
    "ResumeError": "thresher.run.ownership",
    "RunResult": "thresher.run.result",
    "Runner": "thresher.run.runner",
    "run_pipeline": "thresher.run.runner",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """Imported on first use, so that ``thresher.run.layout`` (the report, the tokenize command)
    does not load the runner and what it needs."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'thresher.run' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
