"""The end of a phase: blocks → part files → whole shards (compaction).

The last operator of a phase writes one part file per shard present in its block; the part's
name says which rows it holds (:func:`thresher.run.layout.part_name`), so the worker whose part
completes a shard sees it from the names alone and compacts the shard: concatenates its parts,
checks that every position arrived exactly once, writes the documents and dropped files and
then the shard's completion record (its counters), which is what ``--resume`` and the run's
statistics read. Exactly one worker compacts a shard: it claims it by creating the shard's
claim file, which fails for everyone else.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from thresher.document import dropped_table, kept_table, table_to_documents
from thresher.io import write_json_atomic, write_parquet_atomic
from thresher.run.blocks import stats_of
from thresher.run.layout import PARQUET, PhaseLayout, part_rows

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
        write_parquet_atomic(part, phase.part(shard, first, part.num_rows, total))
        compacted = try_compact(shard, phase)
        out_rows.append({"shard": shard, "rows": part.num_rows, "compacted": compacted})
    return pa.Table.from_pylist(out_rows, schema=PARTS_SCHEMA)


def _complete(parts_dir: Path) -> bool:
    try:
        names = [p.name for p in parts_dir.iterdir() if p.suffix == PARQUET]
    except FileNotFoundError:
        return False
    counts = [part_rows(n) for n in names]
    return bool(counts) and sum(r for r, _ in counts) >= counts[0][1]


def _claim(claim: Path) -> bool:
    """True for the one caller that creates ``claim`` (an exclusive create: atomic on POSIX)."""
    try:
        claim.open("x").close()
    except FileExistsError:  # another worker got there first
        return False
    return True


def try_compact(shard: str, phase: PhaseLayout) -> bool:
    """Compact ``shard`` if all its rows have arrived and no other worker has claimed it."""
    if not _complete(phase.shard_parts(shard)) or not _claim(phase.claim(shard)):
        return False
    compact_shard(shard, phase)
    return True


def compact_shard(shard: str, phase: PhaseLayout) -> dict[str, Any]:
    """Assemble a shard from its parts, check every position arrived exactly once, write the
    documents and dropped files, then the completion record with the shard's stage counters."""
    parts_dir = phase.shard_parts(shard)
    files = sorted(parts_dir.glob("*" + PARQUET))
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive").sort_by("pos")
    positions = table.column("pos").to_pylist()
    expected = table.column("shard_rows")[0].as_py() if table.num_rows else 0
    if positions != list(range(expected)):
        raise ShardIncomplete(f"shard {shard}: expected positions 0..{expected - 1} exactly once, got {positions[:20]}…")
    stats = {label: s.to_dict() for label, s in stats_of(table).items()}
    docs = table_to_documents(table)
    write_rows(kept_table(docs), phase.documents(shard), phase.compression)
    dropped = phase.dropped(shard)
    if dropped is not None:
        write_rows(dropped_table(docs), dropped, phase.compression)
    summary = {"shard": shard, "rows": len(docs), "kept": sum(1 for d in docs if d.drop is None), "stats": stats}
    write_json_atomic(phase.shard_record(shard), summary, ensure_ascii=False)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return summary


def write_rows(table: pa.Table, path: Path, compression: str = "zstd") -> None:
    """An output data file, or none when there are no rows: a zero-row Parquet file is valid,
    but ``datasets.load_dataset("parquet", ...)`` fails on one (``BatchSize must be greater
    than 0``), and the shard's completion record counts its rows anyway. A file left at that
    path by an earlier try is removed, so a redone shard never keeps stale rows."""
    if table.num_rows:
        write_parquet_atomic(table, path, compression=compression)
    else:
        path.unlink(missing_ok=True)


def finish_phase(phase: PhaseLayout) -> None:
    """After every block of the phase is written (no worker runs any more): compact the shards
    whose claimant died before finishing, drop the parts a retried block wrote after its shard
    was compacted, and fail on a shard that is still missing rows."""
    for parts_dir in sorted(p for p in phase.parts.iterdir() if p.is_dir()):
        shard = parts_dir.name
        if phase.shard_record(shard).exists():  # compacted; these parts are a retry's copies
            shutil.rmtree(parts_dir, ignore_errors=True)
        elif _complete(parts_dir):
            logger.warning("shard %s: compacting after its worker stopped", shard)
            compact_shard(shard, phase)
        else:
            raise ShardIncomplete(f"shard {shard}: some of its rows never arrived")
