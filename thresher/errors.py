"""Errors a user can fix, and the exit code each kind gives on the command line.

``thresher`` reports an expected error as one line on stderr, ``thresher: …``, and exits with
the code of its kind (``-v`` adds the traceback); anything else is a bug and keeps its traceback.

====  ============================================================================================
code  meaning
====  ============================================================================================
0     success
1     the command ran but found problems (``shards verify`` mismatches, failed crawl partitions),
      or an unexpected error (a bug: the traceback is printed)
2     config or usage error: bad YAML, unknown key, a value out of range, bad arguments
3     input error: input missing, format unknown, not a run's or a token-shard directory
4     output or file-system error: the output cannot be written (permissions, read-only file
      system, disk full)
5     ``--resume`` on an output written by another config or other inputs
6     a missing optional dependency (``s3fs`` for ``s3://`` inputs) or model file (lid.176)
130   interrupted (Ctrl-C)
====  ============================================================================================
"""

from __future__ import annotations

OK = 0
PROBLEMS_FOUND = 1
CONFIG_ERROR = 2
INPUT_ERROR = 3
OUTPUT_ERROR = 4
RESUME_MISMATCH = 5
MISSING_DEPENDENCY = 6
INTERRUPTED = 130


class ThresherError(Exception):
    """An expected failure: the CLI prints ``thresher: {prefix}{message}`` and exits ``exit_code``."""

    exit_code = PROBLEMS_FOUND
    prefix = ""


class UsageError(ThresherError):
    """Arguments that cannot work together (config problems are :class:`thresher.dataconfig.ConfigError`)."""

    exit_code = CONFIG_ERROR
    prefix = "usage error: "


class InputProblem(ThresherError):
    """What a command was given to read is not there or not what it needs."""

    exit_code = INPUT_ERROR
    prefix = "input error: "


class OutputProblem(ThresherError):
    """The output cannot be written."""

    exit_code = OUTPUT_ERROR
    prefix = "output error: "


class MissingDependency(ThresherError):
    """An optional package the command needs is not installed."""

    exit_code = MISSING_DEPENDENCY
    prefix = "missing dependency: "
