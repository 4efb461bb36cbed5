"""``thresher dedup``: exact + MinHash dedup of existing Parquet/JSONL documents.

Two passes over the input: the first keeps only ids and keys (no text) in memory, the second
re-reads the files and writes the kept documents, one Parquet file per input file, ids as
given. Documents the reader cannot use (no id, no text, bad JSON) are counted, not fatal.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq

from thresher.document import dropped_table, kept_table

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dedup",
        help="remove exact and near-duplicate documents from Parquet/JSONL files",
        description="Exact (normalised text) then MinHash LSH dedup; writes OUTPUT/documents/*.parquet, "
        "OUTPUT/dropped/*.parquet (id, reason, kept id) and OUTPUT/stats.json.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="Parquet/JSONL files, directories or globs")
    p.add_argument("--output", required=True, help="output directory")
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
        help="index directory of an earlier run (repeatable): drop documents duplicating it",
    )
    p.add_argument("--index-output", default=None, help="save this run's band keys here for later --against")
    p.add_argument("--keep", choices=["first", "longest", "score"], default="first")
    p.add_argument("--score-key", default="quality")
    p.add_argument("--no-exact", action="store_true", help="skip the exact-text pass")
    p.add_argument("--url", action="store_true", help="exact pass: also same normalised URL")
    p.add_argument(
        "--local-max-docs",
        type=int,
        default=200_000,
        help="cluster in this process up to this many documents, else on Ray",
    )
    p.set_defaults(func=run)


def _batches(path: str, size: int = 1024):
    from thresher.readers.records import read_documents

    batch = []
    for doc in read_documents(path):
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _key_input(docs, shard: str) -> pa.Table:
    live = [d for d in docs if d.drop is None]
    return pa.table(
        {
            "id": [d.id for d in live],
            "text": [d.text for d in live],
            "shard": [shard] * len(live),
            "url": [d.url for d in live],
            "scores": [json.dumps(d.scores) if d.scores else None for d in live],
        }
    )


def run(args: argparse.Namespace) -> int:
    from thresher.config import check_config
    from thresher.dedup import ExactDedup, ExactDedupConfig, MinHashDedup, MinHashDedupConfig
    from thresher.document import Drop
    from thresher.readers.inputs import InputError, expand_inputs

    started = time.perf_counter()
    try:
        files = expand_inputs(args.inputs)
        common = dict(keep=args.keep, score_key=args.score_key, local_max_docs=args.local_max_docs)
        exact = None if args.no_exact else ExactDedup(ExactDedupConfig(url=args.url, **common))
        near_config = MinHashDedupConfig(
            threshold=args.threshold,
            verify=not args.no_verify,
            verify_threshold=args.verify_threshold,
            against=args.against or None,
            index_output=args.index_output,
            **common,
        )
        check_config(near_config, "dedup")  # the limits its fields declare, then its own checks
        near = MinHashDedup(near_config)
    except (InputError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    read_stats = {"files": len(files), "documents": 0, "unreadable": {}}
    exact_tables, near_tables = [], []
    for i, path in enumerate(files):
        shard = f"{i:05d}"
        for docs in _batches(path):
            read_stats["documents"] += len(docs)
            for d in docs:
                if d.drop is not None:
                    read_stats["unreadable"][d.drop.reason] = (
                        read_stats["unreadable"].get(d.drop.reason, 0) + 1
                    )
            batch = _key_input(docs, shard)
            if exact:
                exact_tables.append(exact.doc_table(batch))
            near_tables.append(near.doc_table(batch))
    if sum(t.num_rows for t in near_tables) > args.local_max_docs:
        from thresher.raycontext import init_ray

        init_ray()
    try:
        decisions: dict[str, dict] = {}
        if exact:
            for table in exact.decide(exact_tables):
                for row in table.to_pylist():
                    decisions[row["id"]] = row
            gone = pa.array(list(decisions), pa.string())
            near_tables = [
                t.filter(pa.compute.invert(pa.compute.is_in(t.column("id"), gone))) for t in near_tables
            ]
        for table in near.decide(near_tables):
            for row in table.to_pylist():
                decisions[row["id"]] = row
    except ValueError as exc:  # incompatible --against index, occupied --index-output
        logger.error("%s", exc)
        return 2
    os.makedirs(os.path.join(args.output, "documents"), exist_ok=True)
    os.makedirs(os.path.join(args.output, "dropped"), exist_ok=True)
    kept = 0
    for i, path in enumerate(files):
        kept_parts, dropped_parts = [], []
        for docs in _batches(path):
            for d in docs:
                row = decisions.get(d.id) if d.drop is None else None
                if row:
                    d.mark_dropped(
                        Drop(
                            row["reason"],
                            value=row["value"],
                            detail=row["detail"],
                            stage="exact_dedup" if row["reason"] == "exact_duplicate" else "minhash_dedup",
                        )
                    )
            kept_parts.append(kept_table(docs))
            dropped_parts.append(dropped_table(docs))
        kept_all = pa.concat_tables(kept_parts) if kept_parts else kept_table([])
        kept += kept_all.num_rows
        pq.write_table(
            kept_all, os.path.join(args.output, "documents", f"part-{i:05d}.parquet"), compression="zstd"
        )
        pq.write_table(
            pa.concat_tables(dropped_parts) if dropped_parts else dropped_table([]),
            os.path.join(args.output, "dropped", f"part-{i:05d}.parquet"),
            compression="zstd",
        )
    stats = {
        "read": read_stats,
        "kept": kept,
        "stages": {s.name: {**s.stats.to_dict(), "extra": s.extra_stats()} for s in (exact, near) if s},
        "seconds": round(time.perf_counter() - started, 2),
    }
    with open(os.path.join(args.output, "stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=2)
    logger.info(
        "dedup: %d documents read, %d kept, %d dropped as duplicates -> %s",
        read_stats["documents"],
        kept,
        len(decisions),
        args.output,
    )
    return 0
