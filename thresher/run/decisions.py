"""Running a dataset stage (dedup): the previous phase's documents in, decisions by shard out.

Both paths, ``--local`` and Ray, read the same input (:func:`read_stage_input`: each document
with its place in the run) and make ids unique the same way (:func:`unique_id_renames`) before
the stage sees them, so they write the same dataset. The decisions are written one file per
shard, so the next phase's reader of a shard reads only its own. A run without a dataset stage
gets the same renames after its last phase (:func:`make_ids_unique`), so every run's output ids
are unique.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from thresher.document import kept_table, table_to_documents
from thresher.run.blocks import RENAME, DecisionError, rename_document
from thresher.run.layout import PARQUET, PhaseLayout, RunLayout
from thresher.run.parts import write_rows
from thresher.stage import DECISION_SCHEMA, DatasetStage

logger = logging.getLogger(__name__)

STAGE_INPUT_COLUMNS = ("id", "text", "url", "scores")
UNIQUE_IDS = "unique_ids"
"""The pass that makes ids unique in a run without a dataset stage (:func:`make_ids_unique`):
its decisions' directory, progress records and key in ``stats.json``'s ``extra``."""


def run_dataset_stage(
    stage: DatasetStage,
    label: str,
    files: list[PurePath],
    layout: RunLayout,
    *,
    local: bool,
    init_ray: Callable[[], None],
) -> dict[str, Any]:
    """Run ``stage`` over the documents ``files`` (paths of ``layout``); writes its decisions and
    returns its figures."""
    layout.rm(layout.decisions_dir(label), recursive=True)
    layout.makedirs(layout.decisions_dir(label))
    names = [str(f) for f in files]
    offsets = [0]
    for f in names:
        offsets.append(offsets[-1] + layout.parquet_rows(f))
    if layout.is_local:
        stage_work = Path(layout.stage_work(label))
        stage_work.mkdir(parents=True, exist_ok=True)
    else:  # scratch space of the driver's stage object only: never shared between nodes
        stage_work = Path(tempfile.mkdtemp(prefix=f"thresher-{label}-"))
    start = time.perf_counter()
    renames = duplicate_id_renames(
        names, layout, offsets[:-1], local=local, init_ray=init_ray, documents=offsets[-1]
    )
    if local:
        tables = [
            rename_ids(read_stage_input(f, o, layout=layout), _rename_map(renames))
            for f, o in zip(names, offsets, strict=False)
        ]
        rows = [r for t in stage.run_batches(tables) for r in t.to_pylist()]
    elif names:
        import ray

        init_ray()
        items = [{"path": f, "offset": o} for f, o in zip(names, offsets, strict=False)]
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _read_stage_input_batch, fn_kwargs={"layout": layout}, batch_size=1, batch_format="pyarrow"
        )
        if renames:
            ds = ds.map_batches(rename_ids, fn_args=(_rename_map(renames),), batch_format="pyarrow")
        rows = stage.run_ray(ds, str(stage_work)).take_all()
    else:
        rows = []
    if not layout.is_local:
        shutil.rmtree(stage_work, ignore_errors=True)
    by_shard: dict[str, list[dict]] = {}
    for row in renames + rows:
        by_shard.setdefault(row["shard"], []).append(row)
    for shard, shard_rows in by_shard.items():
        layout.write_parquet(
            layout.decisions(label, shard), pa.Table.from_pylist(shard_rows, schema=DECISION_SCHEMA)
        )
    extra = stage.extra_stats()
    if renames:
        extra["renamed_duplicate_ids"] = len(renames)
        logger.warning(
            "%s: %d documents had an id an earlier document has; renamed ID#N", label, len(renames)
        )
    extra["seconds"] = round(time.perf_counter() - start, 3)
    layout.write_json(layout.stage_extra(label), extra, ensure_ascii=False)
    return extra


def read_stage_input(
    path: str, offset: int, columns: tuple[str, ...] = STAGE_INPUT_COLUMNS, *, layout: RunLayout
) -> pa.Table:
    """A previous phase's documents shard (a path of ``layout``) as a dataset stage's input:
    ``columns`` and each document's place: ``shard``, ``pos`` (position in the shard) and ``row``
    (``offset`` + pos, its ordinal in the stage's whole input)."""
    table = layout.read_table(path, columns=list(columns))
    n = table.num_rows
    table = table.append_column("shard", pa.array([PurePath(path).stem] * n, pa.string()))
    table = table.append_column("pos", pa.array(range(n), pa.int64()))
    return table.append_column("row", pa.array(range(offset, offset + n), pa.int64()))


def _read_stage_input_batch(
    batch: pa.Table, columns: tuple[str, ...] = STAGE_INPUT_COLUMNS, *, layout: RunLayout
) -> pa.Table:
    tables = [
        read_stage_input(p, o, columns, layout=layout)
        for p, o in zip(batch.column("path").to_pylist(), batch.column("offset").to_pylist(), strict=True)
    ]
    return pa.concat_tables(tables)


DRIVER_ID_PASS_MAX_DOCS = 500_000
"""Up to this many documents on a local (or shared) disk, a Ray run's ids pass reads the ``id``
columns on the driver (at most tens of MB of ids): Ray Data's groupby took 4.8-7.6 s however small
the run (3 shards on 2 cores). Beyond it, or on an object store (where a shard is read whole),
the cluster counts the ids."""


def duplicate_id_renames(
    files: list[str],
    layout: RunLayout,
    offsets: list[int] | None = None,
    *,
    local: bool,
    init_ray: Callable[[], None],
    documents: int | None = None,
) -> list[dict]:
    """The rename decisions (:func:`unique_id_renames`) that make the ids of the ``documents``
    (when known) of ``files`` unique, from one pass that reads their ``id`` column only.
    In-process, and on Ray for a small run on a disk (:data:`DRIVER_ID_PASS_MAX_DOCS`), the ids
    are held in memory; otherwise the cluster counts them with a groupby and the driver holds
    only the documents whose id several have. Both give the same decisions."""
    if not files:
        return []
    offsets = offsets or [0] * len(files)
    small = layout.is_local and documents is not None and documents <= DRIVER_ID_PASS_MAX_DOCS
    if local or small:
        places = [
            read_stage_input(f, o, columns=("id",), layout=layout)
            for f, o in zip(files, offsets, strict=True)
        ]
        all_ids = {i for t in places for i in t.column("id").to_pylist()}
        return unique_id_renames(_duplicate_id_rows(places), lambda ids: set(ids) & all_ids)
    import ray

    init_ray()
    items = [{"path": f, "offset": o} for f, o in zip(files, offsets, strict=True)]
    places = (
        ray.data.from_items(items, override_num_blocks=len(items))
        .map_batches(
            _read_stage_input_batch,
            fn_kwargs={"columns": ("id",), "layout": layout},
            batch_size=1,
            batch_format="pyarrow",
        )
        .materialize()
    )
    return unique_id_renames(_duplicate_id_rows_ray(places), functools.partial(_existing_ids_ray, places))


def unique_id_renames(dup_rows: list[dict], existing: Any) -> list[dict]:
    """Rename decisions that make a run's ids unique. ``dup_rows``: (id, shard, pos) of every
    document whose id several documents have. The first of them by (shard, pos) keeps it; the
    others become ``ID#2``, ``ID#3``, … in that order, skipping any name ``existing(names)``
    (→ the subset already taken by a document) reports: the k-th copy gets the k-th free name.
    Derived names never collide with each other: the part after the last ``#`` is the number."""
    groups: dict[str, list[dict]] = {}
    for row in sorted(dup_rows, key=lambda r: (r["shard"], r["pos"])):
        groups.setdefault(row["id"], []).append(row)
    free: dict[str, list[str]] = {doc_id: [] for doc_id in groups}
    number = dict.fromkeys(groups, 2)
    short = {doc_id: len(rows) - 1 for doc_id, rows in groups.items()}
    while short:  # one existence query per round, for every name still missing
        proposals = []
        for doc_id, missing in short.items():
            proposals += [f"{doc_id}#{n}" for n in range(number[doc_id], number[doc_id] + missing)]
            number[doc_id] += missing
        taken = existing(proposals)
        for name in proposals:
            if name not in taken:
                free[name.rsplit("#", 1)[0]].append(name)
        short = {d: len(groups[d]) - 1 - len(free[d]) for d in short if len(free[d]) < len(groups[d]) - 1}
    return [
        {
            "id": doc_id,
            "shard": row["shard"],
            "pos": row["pos"],
            "kind": RENAME,
            "reason": "duplicate_id",
            "value": None,
            "detail": name,
        }
        for doc_id, rows in groups.items()
        for row, name in zip(rows[1:], free[doc_id], strict=True)
    ]


def _duplicate_id_rows(places: list[pa.Table]) -> list[dict]:
    counts = Counter(i for t in places for i in t.column("id").to_pylist())
    dups = pa.array([i for i, n in counts.items() if n > 1], pa.string())
    return (
        [r for t in places for r in t.filter(pc.is_in(t.column("id"), dups)).to_pylist()] if len(dups) else []
    )


def _duplicate_id_rows_ray(places: Any) -> list[dict]:
    partitions = min(200, places.count() // 1_000_000 + 1)  # Ray's default of 200 costs seconds on small runs
    counts = places.groupby("id", num_partitions=partitions).count()
    several = counts.map_batches(
        lambda t: t.filter(pc.greater(t.column("count()"), 1)), batch_format="pyarrow"
    )
    dups = [r["id"] for r in several.take_all()]
    if not dups:
        return []
    return _ids_in_ray(places, dups).take_all()


def _ids_in_ray(places: Any, ids: list[str]) -> Any:
    wanted = pa.array(ids, pa.string())
    return places.map_batches(lambda t: t.filter(pc.is_in(t.column("id"), wanted)), batch_format="pyarrow")


def _existing_ids_ray(places: Any, names: list[str]) -> set[str]:
    return {r["id"] for r in _ids_in_ray(places, names).take_all()}


def _rename_map(renames: list[dict]) -> dict[tuple[str, int], str]:
    return {(r["shard"], r["pos"]): r["detail"] for r in renames}


def rename_ids(table: pa.Table, renames: dict[tuple[str, int], str]) -> pa.Table:
    """The stage's input with the renamed documents' new ids (the stage's ``detail`` then names
    the kept document as the output will)."""
    if not renames or table.num_rows == 0:
        return table
    places = zip(table.column("shard").to_pylist(), table.column("pos").to_pylist(), strict=True)
    ids = [renames.get(place, i) for place, i in zip(places, table.column("id").to_pylist(), strict=True)]
    return table.set_column(table.column_names.index("id"), "id", pa.array(ids, pa.string()))


# --------------------------------------------------------------------------- runs without a dataset stage


def make_ids_unique(
    phase: PhaseLayout, *, local: bool, init_ray: Callable[[], None], documents: int | None = None
) -> dict[str, int]:
    """Unique ids in the output of a run that has no dataset stage (whose first phase would have
    renamed them): after the last phase, one ids-only pass over ``documents/`` finds the
    documents whose id an earlier one (by shard, then position) has, and only the shards that
    hold one are written again, with the same :data:`RENAME` decisions a dataset stage applies
    (``ID#2``…, ``metadata.original_id``). ``documents``: how many the phase kept (from its shard
    records). Returns ``{"renamed_duplicate_ids": N}``.

    ``--resume`` safe: the decisions are written (then committed by their figures,
    ``_progress/extra-unique_ids.json``) before any shard is touched, a resumed run applies the
    committed ones again and a shard that already carries them is left as it is; the pass's done
    marker (``_progress/unique_ids.done``) ends it."""
    run = phase.run
    done = run.step_done(UNIQUE_IDS)
    if run.exists(done):
        return run.read_json(done)
    committed = run.stage_extra(UNIQUE_IDS)
    decisions_dir = run.decisions_dir(UNIQUE_IDS)
    if run.exists(committed):
        figures = run.read_json(committed)
    else:  # nothing renamed yet: decide now (over what a killed attempt decided, if it did)
        run.rm(decisions_dir, recursive=True)
        run.makedirs(decisions_dir)
        files = [str(f) for f in phase.document_files()]
        renames = duplicate_id_renames(files, run, local=local, init_ray=init_ray, documents=documents)
        by_shard: dict[str, list[dict]] = {}
        for row in renames:
            by_shard.setdefault(row["shard"], []).append(row)
        for shard, rows in sorted(by_shard.items()):
            run.write_parquet(
                run.decisions(UNIQUE_IDS, shard), pa.Table.from_pylist(rows, schema=DECISION_SCHEMA)
            )
        figures = {"renamed_duplicate_ids": len(renames)}
        run.write_json(committed, figures)
    items = [
        {"path": str(phase.documents(PurePath(d).stem)), "decisions": str(d)}
        for d in run.files(decisions_dir, PARQUET)
    ]
    if items and local:
        for item in items:
            rename_shard(item["path"], item["decisions"], phase)
    elif items:
        import ray

        init_ray()
        renamed = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _rename_shards_batch, fn_kwargs={"phase": phase}, batch_size=1, batch_format="pyarrow"
        )
        for _ in renamed.iter_batches(batch_size=None):
            pass
    if figures["renamed_duplicate_ids"]:
        logger.warning(
            "%d documents had an id an earlier document has; renamed ID#N (original in metadata.original_id)",
            figures["renamed_duplicate_ids"],
        )
    run.write_json(done, figures)
    return figures


def rename_shard(documents_file: str, decisions_file: str, phase: PhaseLayout) -> bool:
    """Apply a shard's :data:`RENAME` decisions to its documents file and write it again; a
    shard that already carries all of them (written by an attempt stopped after it) is left as
    it is. True when the file was written."""
    run = phase.run
    shard = PurePath(documents_file).stem
    docs = table_to_documents(run.read_table(documents_file))
    rows = run.read_table(decisions_file).to_pylist()
    applied = 0
    for row in rows:
        doc = docs[row["pos"]] if 0 <= row["pos"] < len(docs) else None
        if doc is not None and doc.id == row["detail"] and doc.metadata.get("original_id") == row["id"]:
            applied += 1
        elif doc is None or doc.id != row["id"]:
            raise DecisionError(
                f"shard {shard}: the rename of {row['id']!r} at {row['pos']} matches no document"
            )
    if applied == len(rows):
        return False
    if applied:
        raise DecisionError(f"shard {shard}: {applied} of its {len(rows)} renames are already applied")
    for row in rows:
        rename_document(docs[row["pos"]], row["detail"])
    write_rows(run, kept_table(docs), PurePath(documents_file), phase.compression)
    return True


def _rename_shards_batch(batch: pa.Table, phase: PhaseLayout) -> pa.Table:
    written = [
        rename_shard(p, d, phase)
        for p, d in zip(batch.column("path").to_pylist(), batch.column("decisions").to_pylist(), strict=True)
    ]
    return pa.table({"written": pa.array(written, pa.bool_())})
