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

from thresher.run.ownership import OutputDirError, ResumeError
from thresher.run.result import RunResult
from thresher.run.runner import Runner, run_pipeline

__all__ = ["OutputDirError", "ResumeError", "RunResult", "Runner", "run_pipeline"]
