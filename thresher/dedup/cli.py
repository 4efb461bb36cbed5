"""``thresher dedup``: exact + MinHash dedup of existing Parquet/JSONL documents.

Two passes over the input: the first keeps only ids and keys (no text) in memory, the second
re-reads the files and writes the kept documents, one Parquet file per input file (none for a
file with no row to write), ids as given. Documents are named by their place (file, position),
never by id, so two documents with the same id are still two documents. Documents the reader
cannot use (no id, no text, bad JSON) are counted, not fatal. The output is a new directory:
an input inside it is refused, and so is an output holding an earlier dedup's files (unless
``--overwrite``) or files this command did not write.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from thresher.document import dropped_table, kept_table
from thresher.run.ownership import OutputDirError, OutputLayout, check_inputs_outside, clear, refuse_unless_free

logger = logging.getLogger(__name__)

DEDUP_LAYOUT = OutputLayout(
    files=("stats.json",),
    trees=(),
    dirs=(("documents", r"^part-\d{5}\.parquet$"), ("dropped", r"^part-\d{5}\.parquet$")),
)
"""What ``thresher dedup`` writes in its output directory."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dedup",
        help="remove exact and near-duplicate documents from Parquet/JSONL files",
        description="Exact (normalised text) then MinHash LSH dedup; writes OUTPUT/documents/*.parquet, "
        "OUTPUT/dropped/*.parquet (id, reason, kept id) and OUTPUT/stats.json.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="Parquet/JSONL files, directories or globs")
    p.add_argument("--output", required=True, help="output directory (a new one: not where the inputs are)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier `thresher dedup` output in --output"
    )
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


def _key_input(docs, shard: str, first_pos: int, first_row: int) -> pa.Table:
    """Key-row input of a batch whose first document is at ``first_pos`` of its file and
    ``first_row`` of the whole input (every document read counts, usable or not)."""
    live = [(i, d) for i, d in enumerate(docs) if d.drop is None]
    return pa.table(
        {
            "id": [d.id for _, d in live],
            "text": [d.text for _, d in live],
            "shard": [shard] * len(live),
            "pos": pa.array([first_pos + i for i, _ in live], pa.int64()),
            "row": pa.array([first_row + i for i, _ in live], pa.int64()),
            "url": [d.url for _, d in live],
            "scores": [json.dumps(d.scores) if d.scores else None for _, d in live],
        }
    )


def _write_rows(table: pa.Table, path: str) -> None:
    """No zero-row files: ``datasets.load_dataset("parquet", ...)`` fails on them."""
    if table.num_rows:
        pq.write_table(table, path, compression="zstd")


def run(args: argparse.Namespace) -> int:
    from thresher.config import check_config
    from thresher.dedup import ExactDedup, ExactDedupConfig, MinHashDedup, MinHashDedupConfig
    from thresher.document import Drop
    from thresher.readers.inputs import InputError, expand_inputs

    started = time.perf_counter()
    output = os.path.abspath(args.output)
    try:
        files = expand_inputs(args.inputs)
        check_inputs_outside(files, Path(output), DEDUP_LAYOUT, "write the deduplicated copy to another --output")
        refuse_unless_free(Path(output), DEDUP_LAYOUT, args.overwrite, "thresher dedup")
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
    except (InputError, ValueError, OutputDirError) as exc:
        logger.error("%s", exc)
        return 2
    read_stats = {"files": len(files), "documents": 0, "unreadable": {}}
    exact_tables, near_tables = [], []
    for i, path in enumerate(files):
        shard, pos = f"{i:05d}", 0
        for docs in _batches(path):
            batch = _key_input(docs, shard, pos, read_stats["documents"])
            pos += len(docs)
            read_stats["documents"] += len(docs)
            for d in docs:
                if d.drop is not None:
                    read_stats["unreadable"][d.drop.reason] = (
                        read_stats["unreadable"].get(d.drop.reason, 0) + 1
                    )
            if exact:
                exact_tables.append(exact.doc_table(batch))
            near_tables.append(near.doc_table(batch))
    if sum(t.num_rows for t in near_tables) > args.local_max_docs:
        from thresher.raycontext import init_ray

        init_ray()
    try:
        decisions: dict[tuple[str, int], dict] = {}  # by (file, position)
        if exact:
            for table in exact.decide(exact_tables):
                for row in table.to_pylist():
                    decisions[(row["shard"], row["pos"])] = row
            near_tables = [_without(t, set(decisions)) for t in near_tables]
        for table in near.decide(near_tables):
            for row in table.to_pylist():
                decisions[(row["shard"], row["pos"])] = row
    except ValueError as exc:  # incompatible --against index, occupied --index-output
        logger.error("%s", exc)
        return 2
    clear(Path(output), DEDUP_LAYOUT)  # an earlier dedup's files (refused above without --overwrite)
    os.makedirs(os.path.join(output, "documents"), exist_ok=True)
    os.makedirs(os.path.join(output, "dropped"), exist_ok=True)
    kept = 0
    for i, path in enumerate(files):
        kept_parts, dropped_parts = [], []
        pos = 0
        for docs in _batches(path):
            for d in docs:
                row = decisions.get((f"{i:05d}", pos)) if d.drop is None else None
                pos += 1
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
        _write_rows(kept_all, os.path.join(output, "documents", f"part-{i:05d}.parquet"))
        _write_rows(
            pa.concat_tables(dropped_parts) if dropped_parts else dropped_table([]),
            os.path.join(output, "dropped", f"part-{i:05d}.parquet"),
        )
    stats = {
        "read": read_stats,
        "kept": kept,
        "stages": {s.name: {**s.stats.to_dict(), "extra": s.extra_stats()} for s in (exact, near) if s},
        "seconds": round(time.perf_counter() - started, 2),
    }
    with open(os.path.join(output, "stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=2)
    logger.info(
        "dedup: %d documents read, %d kept, %d dropped as duplicates -> %s",
        read_stats["documents"],
        kept,
        len(decisions),
        output,
    )
    return 0


def _without(table: pa.Table, gone: set[tuple[str, int]]) -> pa.Table:
    """Key rows of ``table`` except those at the (shard, pos) places in ``gone``."""
    places = zip(table.column("shard").to_pylist(), table.column("pos").to_pylist(), strict=True)
    keep = [place not in gone for place in places]
    return table if all(keep) else table.filter(pa.array(keep, pa.bool_()))
