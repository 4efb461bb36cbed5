"""``thresher shards ...``: export token shards to .bin, verify them, build a sample tokens dir."""

from __future__ import annotations

import argparse
import json
import logging

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("shards", help="token shards: export to .bin, verify, sample")
    sub = parser.add_subparsers(dest="shards_command", metavar="SUBCOMMAND", required=True)

    export = sub.add_parser("export-bin", help="write a split as a nanoGPT / llm.c .bin file")
    export.add_argument("tokens_dir", help="a tokens directory with manifest.json")
    export.add_argument("out", help="output .bin path (numbered files beside it if one file cannot hold all)")
    export.add_argument("--split", default="train", choices=["train", "validation"])
    export.add_argument(
        "--format",
        dest="fmt",
        default="llmc",
        choices=["llmc", "nanogpt"],
        help="llmc: 256 x int32 header then tokens; nanogpt: raw uint16 tokens",
    )
    export.add_argument("--max-tokens-per-file", type=int, default=None)
    export.set_defaults(func=_export)

    verify = sub.add_parser("verify", help="check every shard against manifest.json (size, sha256)")
    verify.add_argument("tokens_dir")
    verify.set_defaults(func=_verify)

    sample = sub.add_parser(
        "sample",
        help="tokenize the shared real text into a small tokens dir (for the examples; needs `tokenizers`)",
    )
    sample.add_argument("out_dir")
    sample.add_argument("--data", default="../shared/data", help="the shared data folder")
    sample.add_argument(
        "--languages", type=int, default=8, help="how many Lingua languages to add to the articles"
    )
    sample.add_argument("--vocab-size", type=int, default=4096)
    sample.set_defaults(func=_sample)


def _tokens_dir_problem(exc: Exception, tokens_dir: str) -> Exception:
    """A tokens directory without a usable manifest, or with shards that do not match it, as the
    input error it is (one line, exit 3; see :mod:`thresher.cli`)."""
    from thresher.errors import InputProblem

    return InputProblem(f"{tokens_dir}: not a usable tokens directory: {exc}")


def _export(args: argparse.Namespace) -> int:
    from thresher.errors import UsageError
    from thresher.shards.export import export_bin
    from thresher.shards.tokens import ShardError, load_manifest

    try:
        load_manifest(args.tokens_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise _tokens_dir_problem(exc, args.tokens_dir) from exc
    try:
        paths = export_bin(
            args.tokens_dir,
            args.out,
            split=args.split,
            fmt=args.fmt,
            max_tokens_per_file=args.max_tokens_per_file,
        )
    except ShardError as exc:
        raise _tokens_dir_problem(exc, args.tokens_dir) from exc
    except ValueError as exc:  # a split with no shards, --format nanogpt on uint32 tokens
        raise UsageError(str(exc)) from exc
    for p in paths:
        print(p)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from thresher.shards.tokens import verify_tokens_dir

    try:
        problems = verify_tokens_dir(args.tokens_dir)
    except (FileNotFoundError, ValueError) as exc:  # no manifest, or not ours
        raise _tokens_dir_problem(exc, args.tokens_dir) from exc
    for p in problems:
        logger.error("%s", p)
    if not problems:
        logger.info("all shards match %s/manifest.json", args.tokens_dir)
    return 1 if problems else 0


def _sample(args: argparse.Namespace) -> int:
    from thresher.shards.sample import build_sample_tokens

    manifest = build_sample_tokens(
        args.out_dir, args.data, vocab_size=args.vocab_size, languages=args.languages
    )
    print(json.dumps(manifest["totals"], indent=1))
    return 0
