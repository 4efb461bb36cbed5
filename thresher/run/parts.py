"""The end of a phase: blocks → part files → whole shards (compaction).

The last operator of a phase writes one part file per shard present in its block; the part's
name says which rows it holds (:func:`thresher.run.layout.part_name`), so the worker whose part
completes a shard sees it from the names alone and compacts the shard: concatenates its parts,
checks that every position arrived exactly once, writes the documents and dropped files and
then the shard's completion record (its counters), which is what ``--resume`` and the run's
statistics read. Exactly one worker compacts a shard: it claims it by creating the shard's
claim file, which fails for everyone else (an exclusive create on a local disk, a conditional PUT,
``If-None-Match: *``, on S3: :meth:`thresher.io.Store.create_new`).

Nothing here renames: every file is published whole by the layout's store (temporary + rename on
a local disk, one PUT on an object store), and a shard exists for a reader only through its
completion record, written last. Documents or parts a killed attempt left without a record are
never read as data: the shard is redone under the same names (``--resume``) and its leftovers
removed. A claim whose answer was lost (a PUT retried after it had succeeded reads as taken) or
whose claimant died leaves the shard to :func:`finish_phase`, which compacts every whole shard
that has no record once no worker runs.
"""

from __future__ import annotations

import logging
from pathlib import PurePath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from thresher.document import dropped_table, kept_table, table_to_documents
from thresher.run.blocks import stats_of
from thresher.run.layout import PARQUET, PhaseLayout, RunLayout, part_rows

logger = logging.getLogger(__name__)

PARTS_SCHEMA = pa.schema([("shard", pa.string()), ("rows", pa.int64()), ("compacted", pa.bool_())])


class ShardIncomplete(RuntimeError):
    pass


def write_parts(table: pa.Table, phase: PhaseLayout) -> pa.Table:
    """Last operator of a phase: one part file per shard present in the block (payload dropped);
    the worker that writes a shard's last part compacts the shard."""
    if "html" in table.column_names:
        table = table.drop_columns(["html"])
    out_rows = []
    for shard in sorted(set(table.column("shard").to_pylist())):
        part = table.filter(pc.equal(table.column("shard"), shard))
        first = pc.min(part.column("pos")).as_py()
        total = part.column("shard_rows")[0].as_py()
        phase.run.write_parquet(phase.part(shard, first, part.num_rows, total), part)
        compacted = try_compact(shard, phase)
        out_rows.append({"shard": shard, "rows": part.num_rows, "compacted": compacted})
    return pa.Table.from_pylist(out_rows, schema=PARTS_SCHEMA)


def _part_names(run: RunLayout, parts_dir: PurePath) -> list[str]:
    return [n for n in run.names(parts_dir) if n.endswith(PARQUET) and not n.startswith(".")]


def _complete(run: RunLayout, parts_dir: PurePath) -> bool:
    counts = [part_rows(n) for n in _part_names(run, parts_dir)]
    return bool(counts) and sum(r for r, _ in counts) >= counts[0][1]


def try_compact(shard: str, phase: PhaseLayout) -> bool:
    """Compact ``shard`` if all its rows have arrived and no other worker has claimed it."""
    run = phase.run
    if not _complete(run, phase.shard_parts(shard)) or not run.store.create_new(run.key(phase.claim(shard))):
        return False
    compact_shard(shard, phase)
    return True


def compact_shard(shard: str, phase: PhaseLayout) -> dict[str, Any]:
    """Assemble a shard from its parts, check every position arrived exactly once, write the
    documents and dropped files, then the completion record with the shard's stage counters."""
    run = phase.run
    parts_dir = phase.shard_parts(shard)
    files = [parts_dir / n for n in sorted(_part_names(run, parts_dir))]
    table = pa.concat_tables([run.read_table(f) for f in files], promote_options="permissive").sort_by("pos")
    positions = table.column("pos").to_pylist()
    expected = table.column("shard_rows")[0].as_py() if table.num_rows else 0
    if positions != list(range(expected)):
        raise ShardIncomplete(
            f"shard {shard}: expected positions 0..{expected - 1} exactly once, got {positions[:20]}…"
        )
    stats = {label: s.to_dict() for label, s in stats_of(table).items()}
    docs = table_to_documents(table)
    write_rows(run, kept_table(docs), phase.documents(shard), phase.compression)
    dropped = phase.dropped(shard)
    if dropped is not None:
        write_rows(run, dropped_table(docs), dropped, phase.compression)
    summary = {
        "shard": shard,
        "rows": len(docs),
        "kept": sum(1 for d in docs if d.drop is None),
        "stats": stats,
    }
    run.write_json(phase.shard_record(shard), summary, ensure_ascii=False)
    run.rm(parts_dir, recursive=True)
    return summary


def write_rows(run: RunLayout, table: pa.Table, path: PurePath, compression: str = "zstd") -> None:
    """An output data file, or none when there are no rows: a zero-row Parquet file is valid,
    but ``datasets.load_dataset("parquet", ...)`` fails on one (``BatchSize must be greater
    than 0``), and the shard's completion record counts its rows anyway. A file left at that
    path by an earlier try is removed, so a redone shard never keeps stale rows."""
    if table.num_rows:
        run.write_parquet(path, table, compression=compression)
    else:
        run.rm(path)


def finish_phase(phase: PhaseLayout) -> None:
    """After every block of the phase is written (no worker runs any more): compact the shards
    whose claimant died before finishing, drop the parts a retried block wrote after its shard
    was compacted, and fail on a shard that is still missing rows."""
    run = phase.run
    shards = sorted(
        {n for n in run.names(phase.parts) if not n.endswith(".claim") and not n.startswith(".")}
        | set(_shards_with_parts(phase))
    )
    for shard in shards:
        parts_dir = phase.shard_parts(shard)
        if run.exists(phase.shard_record(shard)):  # compacted; these parts are a retry's copies
            run.rm(parts_dir, recursive=True)
        elif _complete(run, parts_dir):
            logger.warning("shard %s: compacting after its worker stopped", shard)
            compact_shard(shard, phase)
        else:
            raise ShardIncomplete(f"shard {shard}: some of its rows never arrived")
    _remove_uncommitted(phase)


def _remove_uncommitted(phase: PhaseLayout) -> None:
    """Documents and dropped files of the phase whose shard has no completion record: what a
    killed attempt wrote of a shard it never committed (never read as data, never kept)."""
    run = phase.run
    committed = {n.removesuffix(".json") for n in run.names(phase.shard_records) if n.endswith(".json")}
    stale = [p for p in phase.document_files() if p.name.split(".", 1)[0] not in committed]
    if phase.write_dropped:
        suffix = PARQUET if phase.index == 0 else f".phase{phase.index}{PARQUET}"
        for name in run.names(run.dropped_dir):
            shard, _, rest = name.partition(".")
            if "." + rest == suffix and shard not in committed:
                stale.append(run.dropped_dir / name)
    for path in stale:
        logger.warning("%s: left by an attempt that never committed its shard; removed", run.uri_of(path))
        run.rm(path)


def _shards_with_parts(phase: PhaseLayout) -> list[str]:
    """Shards that have part files (a listing of the parts tree: on an object store a "directory"
    exists only through the keys below it)."""
    base = phase.run.key(phase.parts)
    found = phase.run.store.find(base)
    return sorted({k[len(base) :].strip("/").split("/", 1)[0] for k in found if k.endswith(PARQUET)})
