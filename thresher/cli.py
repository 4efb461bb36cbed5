"""The ``thresher`` command line.

Each area contributes its own subcommands through a ``register(subparsers)`` function in its
``cli`` module (``thresher/<area>/cli.py``); this file assembles them and reports their errors.

An expected error (a bad config, a missing input, an unwritable output, a ``--resume`` that does
not match, a missing optional package, Ctrl-C) is one line on stderr, ``thresher: …``, and an exit
code of its kind (the table is in :mod:`thresher.errors`); ``-v`` prints the traceback above that
line. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
import traceback

from thresher.errors import (
    INPUT_ERROR,
    INTERRUPTED,
    MISSING_DEPENDENCY,
    OUTPUT_ERROR,
    RESUME_MISMATCH,
    ThresherError,
)

COMMAND_MODULES = [
    "thresher.commands",  # run, models
    "thresher.report.cli",  # report
    "thresher.crawlers.cli",  # crawl
    "thresher.filters.cli",  # quality train
    "thresher.dedup.cli",  # dedup
    "thresher.tokenize.cli",  # tokenize, tokenizer train / encode
    "thresher.shards.cli",  # shards export
    "thresher.ablate.cli",  # ablate
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thresher",
        description="Turn web pages into LLM pretraining data: crawl, extract, filter, dedup, tokenize, shard.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # the area has no commands yet
                continue
            raise
        module.register(sub)
    return parser


# Errors defined by modules that the CLI does not import up front: (module, class, exit code,
# prefix). An instance can only exist once its module is loaded, so none is imported to check.
KNOWN_ERRORS = [
    ("thresher.readers.inputs", "InputError", INPUT_ERROR, "input error: "),
    ("thresher.run.ownership", "ResumeError", RESUME_MISMATCH, ""),
    ("thresher.run.ownership", "OutputDirError", OUTPUT_ERROR, ""),
    ("thresher.models", "ModelNotFound", MISSING_DEPENDENCY, "missing model: "),
]
FILE_SYSTEM_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _missing_package(exc: ImportError) -> str | None:
    """The top-level package an ImportError says is missing (fsspec's "Install s3fs to access S3"
    carries the ModuleNotFoundError as its cause); None for our own modules, whose absence is a bug."""
    for err in (exc, exc.__cause__):
        name = getattr(err, "name", None) if isinstance(err, ModuleNotFoundError) else None
        if name and name.split(".")[0] != "thresher":
            return name.split(".")[0]
    return None


def describe_error(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, the line after ``thresher: ``) for an expected error; None for a bug."""
    cause = getattr(exc, "cause", None)  # a Ray task's error wraps the worker's exception
    if isinstance(cause, Exception) and type(exc).__module__.startswith("ray."):
        exc = cause
    if isinstance(exc, ThresherError):
        return exc.exit_code, exc.prefix + _one_line(exc)
    for module, name, code, prefix in KNOWN_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return code, prefix + _one_line(exc)
    if isinstance(exc, ImportError):
        package = _missing_package(exc)
        if package:
            return MISSING_DEPENDENCY, f"missing dependency: {_one_line(exc)} (pip install {package})"
    if isinstance(exc, OSError) and exc.errno in FILE_SYSTEM_ERRNOS:
        return OUTPUT_ERROR, f"{exc.filename}: {exc.strerror}" if exc.filename else _one_line(exc)
    return None


def report_error(exc: BaseException, verbose: bool) -> int | None:
    """Print an expected error as one line (after its traceback with ``-v``) and return its exit
    code; None, printing nothing, for anything else."""
    known = (INTERRUPTED, "interrupted") if isinstance(exc, KeyboardInterrupt) else describe_error(exc)
    if known is None:
        return None
    if verbose:
        traceback.print_exception(exc)
    print(f"thresher: {known[1]}", file=sys.stderr, flush=True)
    return known[0]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:
        code = report_error(exc, args.verbose)
        if code is None:
            raise  # a bug: its traceback
        return code


if __name__ == "__main__":
    sys.exit(main())
