"""The tokenization commands: ``thresher tokenize OUTPUT`` (a run's tokenize step on a finished
run, step.py) and ``thresher tokenizer train`` / ``thresher tokenizer encode``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from thresher.errors import InputProblem
from thresher.tokenize.pretokenize import CL100K_PATTERN, ENDOFTEXT

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    register_tokenize(subparsers)
    register_tokenizer(subparsers)


def register_tokenize(subparsers) -> None:
    t = subparsers.add_parser(
        "tokenize",
        help="tokenize a finished run's documents into OUTPUT/tokens (train a tokenizer or use one)",
        description="Encode OUTPUT/documents into token shards and manifest.json under OUTPUT/tokens.",
    )
    t.add_argument("output", help="a run's output directory")
    t.add_argument(
        "--tokenizer", help="directory of a trained tokenizer (default: train one on the documents)"
    )
    t.add_argument("--vocab-size", type=int, default=8192, help="vocabulary when training (default 8192)")
    t.add_argument("--validation-fraction", type=float, default=0.01)
    t.add_argument(
        "--address", help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local Ray)"
    )
    t.add_argument("--local", action="store_true", help="without Ray")
    t.set_defaults(func=cmd_tokenize)


def register_tokenizer(subparsers) -> None:
    parser = subparsers.add_parser(
        "tokenizer", help="train a byte-level BPE tokenizer, or encode text with one"
    )
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION")

    train = sub.add_parser(
        "train",
        help="train on documents (Parquet/JSONL with a text column); counting runs on Ray",
        description="Train a byte-level BPE tokenizer. Pre-tokens are counted by Ray tasks (one per "
        "input file), merges are learned on the driver. Writes tokenizer.tiktoken, thresher.json and "
        "a HF tokenizer.json to --output.",
    )
    train.add_argument(
        "--input", nargs="+", required=True, metavar="DOCS", help="files, directories or globs"
    )
    train.add_argument(
        "--vocab-size", type=int, required=True, help="all ids: 256 bytes + merges + special tokens"
    )
    train.add_argument(
        "--output", required=True, metavar="DIR", help="a directory or a URI (s3://BUCKET/PATH)"
    )
    train.add_argument("--text-column", default="text")
    train.add_argument(
        "--special",
        nargs="*",
        default=[ENDOFTEXT],
        metavar="TOKEN",
        help=f"special tokens (default: {ENDOFTEXT})",
    )
    train.add_argument(
        "--pattern", default=CL100K_PATTERN, help="pre-tokenisation regex (default: GPT-4 cl100k)"
    )
    train.add_argument("--min-frequency", type=int, default=2, help="stop when no pair occurs this often")
    train.add_argument("--no-ray", action="store_true", help="count in this process")
    train.add_argument(
        "--ray-address", default=None, help="Ray cluster to join (default: $RAY_ADDRESS or a local Ray)"
    )
    train.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray")
    train.set_defaults(func=cmd_train)

    encode = sub.add_parser("encode", help="print the ids of TEXT (or of stdin)")
    encode.add_argument("--tokenizer", required=True, metavar="DIR")
    encode.add_argument("--ordinary", action="store_true", help="treat special-token names as plain text")
    encode.add_argument("--pieces", action="store_true", help="also print each token's text")
    encode.add_argument("text", nargs="?", help="text to encode (default: read stdin)")
    encode.set_defaults(func=cmd_encode)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def cmd_tokenize(args: argparse.Namespace) -> int:
    """Tokenize a finished run's documents (what a config's ``tokenize:`` section does at the end)."""
    from thresher.run.layout import RunLayout
    from thresher.tokenize.step import TokenizeConfig, TrainConfig, run_tokenize

    layout = RunLayout.at(args.output)
    output, stats_file = layout.root, layout.stats
    if not layout.documents_dir.is_dir():
        raise InputProblem(f"{output} holds no documents/ (not the output of a run)")
    config = TokenizeConfig(
        tokenizer=args.tokenizer,
        train=TrainConfig(vocab_size=args.vocab_size),
        validation_fraction=args.validation_fraction,
    )
    if not args.local:
        from thresher.raycontext import init_ray

        init_ray(args.address, progress=False)
    run_config = json.loads(stats_file.read_text()).get("config", {}) if stats_file.exists() else {}
    figures = run_tokenize(config, output, run_config, local=args.local)
    print(f"{figures['tokens']} tokens in {figures['shards']} token shard(s) → {figures['manifest']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from thresher.readers.inputs import expand_inputs
    from thresher.tokenize.files import save_tokenizer
    from thresher.tokenize.train import train_from_files

    paths = expand_inputs(args.input)  # InputError: one line, exit 3
    unusable = [
        p
        for p in paths
        if not p.lower().endswith((".parquet", ".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz"))
    ]
    if unusable:
        raise InputProblem(
            "tokenizer training reads Parquet or JSONL documents; not usable: " + ", ".join(unusable[:5])
        )
    from thresher.io import Store

    Store.from_uri(args.output).probe()  # a bucket that is missing or not writable fails before training
    if not args.no_ray:
        from thresher.raycontext import init_ray

        init_ray(args.ray_address, num_cpus=args.num_cpus)
    try:
        tok, stats = train_from_files(
            paths,
            args.vocab_size,
            text_column=args.text_column,
            pattern=args.pattern,
            special_tokens=args.special,
            min_frequency=args.min_frequency,
            use_ray=not args.no_ray,
        )
    except ValueError as exc:  # nothing to train on
        raise InputProblem(str(exc)) from exc
    save_tokenizer(tok, args.output)
    logger.info(
        "wrote %s: %d ids (%d ordinary, specials %s), trained on %d documents",
        args.output,
        tok.vocab_size,
        tok.n_ranks,
        tok.special_tokens,
        stats.documents,
    )
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from thresher.tokenize.files import load_tokenizer

    try:
        tok = load_tokenizer(args.tokenizer)
    except (FileNotFoundError, ValueError) as exc:
        raise InputProblem(f"{args.tokenizer}: not a tokenizer directory ({exc})") from exc
    text = args.text if args.text is not None else sys.stdin.read()
    ids = tok.encode_ordinary(text) if args.ordinary else tok.encode(text)
    print(" ".join(map(str, ids)))
    if args.pieces:
        print(json.dumps([tok.token_bytes(i).decode("utf-8", "replace") for i in ids], ensure_ascii=False))
    return 0
