"""``thresher dedup``: exact + MinHash dedup of existing Parquet/JSONL documents.

The command is a pipeline config (``exact_dedup`` then ``minhash_dedup`` with its flags, as
``pipeline/configs/dedup.yaml``) run by the same runner as ``thresher run``: the same output
(``documents/FILE-CHUNK.parquet``, ``dropped/``, ``stats.json``, ``report.html``), the same
refusals (an input inside the output, an output holding a run without ``--overwrite``) and the
same summary. Documents are named by their place in the run, never by id. Small inputs (up to
``--local-max-docs`` documents) run in this process, larger ones on Ray.
"""

from __future__ import annotations

import argparse
import logging
import os

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dedup",
        help="remove exact and near-duplicate documents from Parquet/JSONL files",
        description="Exact (normalised text) then MinHash LSH dedup; writes OUTPUT/documents/*.parquet, "
        "OUTPUT/dropped/*.parquet (id, reason, kept id) and OUTPUT/stats.json, as `thresher run` does.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="Parquet/JSONL files, directories or globs")
    p.add_argument("--output", required=True, help="output directory (a new one: not where the inputs are)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run's output in --output")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="target Jaccard similarity (bands × rows from datasketch's optimiser); default 14 × 8 bands",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="count every pair sharing a band (no signature check of candidate pairs)",
    )
    p.add_argument(
        "--verify-threshold",
        type=float,
        default=None,
        help="estimated Jaccard a candidate pair needs (default: --threshold, else 0.8)",
    )
    p.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="INDEX",
        help="index directory (or URI) of an earlier run (repeatable): drop documents duplicating it",
    )
    p.add_argument(
        "--index-output",
        default=None,
        help="save this run's band keys here (a path or a URI) for later --against",
    )
    p.add_argument("--keep", choices=["first", "longest", "score"], default="first")
    p.add_argument("--score-key", default="quality")
    p.add_argument("--no-exact", action="store_true", help="skip the exact-text pass")
    p.add_argument("--url", action="store_true", help="exact pass: also same normalised URL")
    p.add_argument(
        "--local-max-docs",
        type=int,
        default=200_000,
        help="run in this process up to this many documents, else on Ray",
    )
    p.set_defaults(func=run)


def _absolute(path: str) -> str:
    """A local path made absolute; a URI (``s3://bucket/index``, ``file://...``) as given."""
    return path if "://" in path else os.path.abspath(path)


def dedup_config(args: argparse.Namespace) -> dict:
    """The pipeline config (as YAML would give it) that the flags describe."""
    common = {"keep": args.keep, "score_key": args.score_key, "local_max_docs": args.local_max_docs}
    near = {
        **common,
        "verify": not args.no_verify,
        "against": [_absolute(a) for a in args.against] or None,
        "index_output": _absolute(args.index_output) if args.index_output else None,
    }
    for key in ("threshold", "verify_threshold"):
        if getattr(args, key) is not None:
            near[key] = getattr(args, key)
    stages = [] if args.no_exact else [{"exact_dedup": {**common, "url": args.url}}]
    return {
        "name": "dedup",
        "input": {"paths": [_absolute(p) for p in args.inputs]},
        "output": {"path": args.output, "write_dropped": True},
        "ray": {"progress": False},
        "stages": [*stages, {"minhash_dedup": near}],
    }


def fits_in_process(files: list[str], limit: int) -> bool:
    """True when the inputs hold at most ``limit`` documents (counted until ``limit`` is passed;
    Parquet from its metadata). Remote inputs count as large."""
    import pyarrow.parquet as pq

    from thresher.readers import input_format, read_documents

    total = 0
    for path in files:
        if "://" in path and not path.startswith("file://"):
            return False
        if input_format(path) == "parquet":
            total += pq.ParquetFile(path).metadata.num_rows
        else:
            for _ in read_documents(path):
                total += 1
                if total > limit:
                    return False
        if total > limit:
            return False
    return True


def run(args: argparse.Namespace) -> int:
    from thresher.commands import check_run_inputs, print_summary
    from thresher.config import parse_config
    from thresher.readers import expand_inputs
    from thresher.run import run_pipeline

    cfg = parse_config(dedup_config(args))
    check_run_inputs(cfg)
    local = fits_in_process(expand_inputs(cfg.input.paths), args.local_max_docs)
    result = run_pipeline(cfg, local=local, overwrite=args.overwrite)
    print_summary(result)
    return 0
