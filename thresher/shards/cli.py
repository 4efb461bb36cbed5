"""``thresher shards ...``: export a run for a trainer, verify token shards, build a sample tokens dir."""

from __future__ import annotations

import argparse
import json
import logging

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "shards", help="token shards: export (megatron, mds, jsonl, llmc, nanogpt), verify, sample"
    )
    sub = parser.add_subparsers(dest="shards_command", metavar="SUBCOMMAND", required=True)

    from thresher.shards.exports import EXPORTERS

    export = sub.add_parser(
        "export",
        help="write a finished run as megatron, mds, jsonl, llmc or nanogpt files",
        description="Export a finished run (or a tokens directory) for a trainer: "
        + "; ".join(f"{e.name}: {e.summary}" for e in EXPORTERS.values())
        + ". DST is a directory, published when complete, with a manifest.json of counts and sha256s.",
    )
    export.add_argument("format", choices=list(EXPORTERS), help="the export format")
    export.add_argument(
        "src",
        help="a finished run's output directory (or, except for jsonl, a tokens directory): a path or a "
        "URI (s3://bucket/run, any fsspec URI)",
    )
    export.add_argument("dst", help="the export directory to create: a path or a URI")
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export in DST")
    export.add_argument(
        "--max-file-bytes",
        type=int,
        default=None,
        help="cut each split into files of at most this size (megatron 1 GiB, mds 64 MiB, jsonl 256 MiB "
        "before gzip, llmc 2**31-1 tokens; nanogpt one file a split unless given)",
    )
    export.set_defaults(func=_export)

    verify = sub.add_parser("verify", help="check every shard against manifest.json (size, sha256)")
    verify.add_argument("tokens_dir", help="a tokens directory: a path or a URI (s3://bucket/run/tokens)")
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
    from thresher.shards.exports import export

    manifest = export(
        args.format, args.src, args.dst, overwrite=args.overwrite, max_file_bytes=args.max_file_bytes
    )
    for split, s in manifest["splits"].items():
        tokens = f", {s['tokens']} tokens" if s["tokens"] is not None else ""
        print(f"{split}: {s['documents']} documents{tokens} in {s['files']} files")
    print(args.dst)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from thresher.io import Store
    from thresher.shards.tokens import verify_tokens_dir

    store = Store.from_uri(args.tokens_dir)  # a malformed URI: a usage error, before any request
    try:
        problems = verify_tokens_dir(store)
    except (FileNotFoundError, ValueError) as exc:  # no manifest, or not ours
        if not store.is_local and not store.exists():
            store.probe(write=False)  # a missing bucket or a denied read says so
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
