"""Keys → duplicate clusters → one kept document per cluster, for exact and MinHash dedup.

Input: *document tables* (one per block of documents), one row per document with its node
(a 64-bit hash of its id), id, shard, length, optional score and its list of keys (MinHash
band keys, or the hash of its normalised text). Documents that share a key are duplicates;
duplicates of duplicates too (connected components). Output: one decision row per document to
drop (``DECISION_SCHEMA``), naming the kept document of its cluster.

Phases, each one shuffle (see :mod:`thresher.dedup.executor`):

1. *group*: (key, node) pairs by key range; a partition sorts its pairs and links every node
   of a key to the key's smallest node (star edges). With ``against``, the persistent index's
   pairs of the same key range are read (row-group pushdown on sorted files) and join in as
   nodes of earlier runs.
2. *components*: large-star / small-star contraction (:mod:`thresher.dedup.components`).
3. *attach*: star edges and document rows by node: each node of a cluster gets its id, shard,
   length and score; documents in no cluster are dropped here, never shuffled again.
4. *keep*: cluster rows by cluster; the kept document is chosen by the keep policy and the
   others become decisions.

Memory model: phase 1 moves 16 bytes per (document, band) — 224 bytes per document with
14 bands — and a partition holds 1/P of them plus a sort permutation (8 bytes per pair).
Phases 2-4 hold only edges (16 bytes per edge, at most one per duplicate document and band
after de-duplication) and the rows of documents that are in clusters. The driver holds
object references and per-partition counters only. Everything shuffled sits in Ray's object
store, which spills to disk when memory is short.

"First" is defined without reference to processing order: the smallest (shard, id), so the
result does not depend on how Ray splits blocks or on the number of workers.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.dedup import components as cc
from thresher.dedup.executor import LocalExecutor, RayExecutor, Stream
from thresher.dedup.signatures import fmix64
from thresher.stage import DECISION_SCHEMA

logger = logging.getLogger(__name__)

DOC_TABLE_SCHEMA = pa.schema(
    [
        pa.field("node", pa.uint64()),
        pa.field("id", pa.string()),
        pa.field("shard", pa.string()),
        pa.field("length", pa.int64()),
        pa.field("score", pa.float64()),
        pa.field("keys", pa.list_(pa.uint64())),
    ]
)
MEMBER_SCHEMA = pa.schema(
    [pa.field("comp", pa.uint64())]
    + [f for f in DOC_TABLE_SCHEMA if f.name != "keys"]
    + [pa.field("old", pa.bool_())]
)
PAIR_SCHEMA = pa.schema([pa.field("key", pa.uint64()), pa.field("node", pa.uint64())])
INDEX_SCHEMA = pa.schema(
    [pa.field("key", pa.uint64()), pa.field("node", pa.uint64()), pa.field("id", pa.string())]
)

_OLD_SALT = np.uint64(0x6A09E667F3BCC909)


@dataclass
class EngineSettings:
    reason: str
    keep: str = "first"  # first | longest | score
    against: list[str] = field(default_factory=list)
    """Persistent index directories of earlier runs (their ``keys/*.parquet``)."""
    index_output: str | None = None
    max_cc_steps: int = 64


@dataclass
class EngineResult:
    decisions: list  # tables, or Ray object refs to tables
    stats: Counter
    histogram: Counter


# --------------------------------------------------------------------------- phase 1: group


def split_pairs(doc_table: pa.Table, partitions: int, index_output: str | None = None) -> list[pa.Table]:
    keys_col = doc_table.column("keys").combine_chunks()
    keys = keys_col.flatten().to_numpy(zero_copy_only=False).astype(np.uint64, copy=False)
    counts = pc.list_value_length(keys_col).fill_null(0).to_numpy(zero_copy_only=False)
    nodes = np.repeat(doc_table.column("node").to_numpy(), counts)
    pairs = pa.table({"key": keys, "node": nodes}, schema=PAIR_SCHEMA)
    if index_output:
        _write_index_block(pairs, np.repeat(np.arange(len(counts)), counts), doc_table, index_output)
    return cc.split_table(pairs, cc.partition_of(keys, partitions), partitions)


def _write_index_block(pairs: pa.Table, row_of_pair: np.ndarray, doc_table: pa.Table, out: str) -> None:
    import pyarrow.parquet as pq

    order = np.argsort(pairs.column("key").to_numpy(), kind="stable")
    table = pairs.append_column("id", doc_table.column("id").take(row_of_pair)).take(order)
    path = f"{out.rstrip('/')}/keys/part-{uuid.uuid4().hex}.parquet"
    pq.write_table(table.cast(INDEX_SCHEMA), path, row_group_size=65536, compression="zstd")


def _old_pairs(
    against: list[str], p: int, partitions: int, new_keys: np.ndarray
) -> tuple[pa.Table, pa.Table]:
    """Pairs of earlier runs whose key occurs in this partition's new keys, with old nodes
    moved to their own node space, and the matching old documents' rows."""
    import pyarrow.dataset as pads

    low, high = cc.key_range(p, partitions)
    expr = pc.field("key") >= pa.scalar(low, pa.uint64())
    if high is not None:
        expr = expr & (pc.field("key") < pa.scalar(high, pa.uint64()))
    dataset = pads.dataset(
        [pads.dataset(f"{a.rstrip('/')}/keys", format="parquet", schema=INDEX_SCHEMA) for a in against]
    )
    old = dataset.to_table(columns=["key", "node"], filter=expr)
    matched = np.isin(old.column("key").to_numpy(), new_keys)
    old = old.filter(pa.array(matched))
    if old.num_rows:
        old = dataset.to_table(
            filter=expr & pc.field("key").isin(pa.array(np.unique(old.column("key").to_numpy())))
        )
    with np.errstate(over="ignore"):
        old_nodes = fmix64(old.column("node").to_numpy() ^ _OLD_SALT)
    pairs = pa.table({"key": old.column("key"), "node": pa.array(old_nodes)}, schema=PAIR_SCHEMA)
    uniq, first = np.unique(old_nodes, return_index=True)
    n = len(uniq)
    rows = pa.table(
        {
            "node": pa.array(uniq, pa.uint64()),
            "id": old.column("id").take(first) if n else pa.array([], pa.string()),
            "shard": pa.nulls(n, pa.string()),
            "length": pa.nulls(n, pa.int64()),
            "score": pa.nulls(n, pa.float64()),
            "keys": pa.nulls(n, pa.list_(pa.uint64())),
        },
        schema=DOC_TABLE_SCHEMA,
    )
    return pairs, rows


def group_reduce(p: int, partitions: int, pieces: list[pa.Table], against: list[str]) -> tuple[dict, dict]:
    table = pa.concat_tables(pieces) if pieces else PAIR_SCHEMA.empty_table()
    keys = table.column("key").to_numpy()
    nodes = table.column("node").to_numpy()
    info: Counter = Counter(pairs=len(keys))
    old_rows = DOC_TABLE_SCHEMA.empty_table()
    if against and len(keys):
        old_pairs, old_rows = _old_pairs(against, p, partitions, keys)
        info["index_pairs_matched"] = old_pairs.num_rows
        keys = np.concatenate((keys, old_pairs.column("key").to_numpy()))
        nodes = np.concatenate((nodes, old_pairs.column("node").to_numpy()))
    order = np.lexsort((nodes, keys))
    keys, nodes = keys[order], nodes[order]
    del order
    first, group = cc._group_firsts(keys)
    smallest = nodes[first][group]
    linked = nodes != smallest
    u, v = cc.unique_edges(smallest[linked], nodes[linked])
    info["edges"] = len(u)
    return {"edges": cc.edges_table(u, v), "old_rows": old_rows}, dict(info)


# --------------------------------------------------------------------------- phase 3: attach


def _member_split(edges: pa.Table, partitions: int) -> list[pa.Table]:
    u = edges.column("u").to_numpy()
    v = edges.column("v").to_numpy()
    node = np.concatenate((v, u))
    comp = np.concatenate((u, u))
    table = pa.table(
        {"u": pa.array(node, pa.uint64()), "v": pa.array(comp, pa.uint64())}, schema=cc.EDGE_SCHEMA
    )
    return cc.split_table(table, cc.partition_of(node, partitions), partitions)


def _row_split(doc_table: pa.Table, partitions: int) -> list[pa.Table]:
    rows = doc_table.drop_columns(["keys"])
    return cc.split_table(rows, cc.partition_of(rows.column("node").to_numpy(), partitions), partitions)


def _old_row_split(group_payload: dict, partitions: int) -> list[pa.Table]:
    return _row_split(group_payload["old_rows"], partitions)


def attach_reduce(
    p: int, partitions: int, members: list, rows: list, old_rows: list
) -> tuple[pa.Table, dict]:
    member = pa.concat_tables(members) if members else cc.EDGE_SCHEMA.empty_table()
    node, comp = cc.unique_edges(member.column("u").to_numpy(), member.column("v").to_numpy())
    new = pa.concat_tables(rows) if rows else DOC_TABLE_SCHEMA.empty_table().drop_columns(["keys"])
    new = new.append_column("old", pa.array(np.zeros(new.num_rows, dtype=bool)))
    old = pa.concat_tables(old_rows) if old_rows else None
    if old is not None:
        old = old.append_column("old", pa.array(np.ones(old.num_rows, dtype=bool)))
        new = pa.concat_tables([new, old])
    row_nodes = new.column("node").to_numpy()
    in_cluster = np.isin(row_nodes, node)
    joined = new.filter(pa.array(in_cluster))
    where = np.searchsorted(node, joined.column("node").to_numpy())
    joined = joined.add_column(0, "comp", pa.array(comp[where], pa.uint64()))
    return joined.select(MEMBER_SCHEMA.names).cast(MEMBER_SCHEMA), {"members": joined.num_rows}


# --------------------------------------------------------------------------- phase 4: keep


def _member_by_comp(members: pa.Table, partitions: int) -> list[pa.Table]:
    return cc.split_table(members, cc.partition_of(members.column("comp").to_numpy(), partitions), partitions)


def size_bucket(size: int) -> str:
    """Cluster-size histogram bucket: 2, 3-4, 5-8, 9-16, ..."""
    if size <= 2:
        return str(size)
    hi = 1 << math.ceil(math.log2(size))
    return f"{hi // 2 + 1}-{hi}"


def keep_reduce(
    p: int, partitions: int, pieces: list[pa.Table], keep: str, reason: str
) -> tuple[pa.Table, dict]:
    members = pa.concat_tables(pieces) if pieces else MEMBER_SCHEMA.empty_table()
    order = [("comp", "ascending"), ("old", "descending")]
    if keep == "longest":
        order.append(("length", "descending"))
    elif keep == "score":
        order.append(("score", "descending"))
    order += [("shard", "ascending"), ("id", "ascending")]
    members = members.sort_by(order)
    comp = members.column("comp").to_numpy()
    first, group = cc._group_firsts(comp)
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, len(comp)))
    kept_row = starts[group]
    is_old = members.column("old").to_numpy(zero_copy_only=False)
    drop = ~first & ~is_old
    ids = members.column("id")
    decisions = pa.table(
        {
            "id": ids.filter(pa.array(drop)),
            "shard": members.column("shard").filter(pa.array(drop)),
            "kind": pa.array(["dropped"] * int(drop.sum()), pa.string()),
            "reason": pa.array([reason] * int(drop.sum()), pa.string()),
            "value": pa.array(sizes[group][drop].astype(np.float64)),
            "detail": ids.take(pa.array(kept_row[drop])),
        },
        schema=DECISION_SCHEMA,
    )
    old_first = is_old[starts]
    info = Counter(
        clusters=len(starts), removed=int(drop.sum()), clusters_matching_index=int(old_first.sum())
    )
    for size in sizes.tolist():
        info[f"size:{size_bucket(size)}"] += 1
    return decisions, dict(info)


# --------------------------------------------------------------------------- driver


def _merge(infos: list[dict]) -> Counter:
    total: Counter = Counter()
    for info in infos:
        total.update({k: v for k, v in info.items() if k != "fingerprint"})
    return total


def _components(executor, edges: list, max_steps: int) -> list:
    """Star-forest edges (component's smallest node, member) of the graph of ``edges``."""
    history: list[tuple[int, int]] = []
    current = edges
    for step in range(max_steps):
        reduce = cc.large_star_reduce if step % 2 == 0 else cc.small_star_reduce
        nxt, infos = executor.shuffle([Stream(current, cc.star_map)], reduce)
        count = sum(i["edges"] for i in infos)
        fp = sum(i["fingerprint"] for i in infos) % (1 << 64)
        history.append((count, fp))
        if count == 0 or (len(history) >= 3 and history[-1] == history[-2] == history[-3]):
            logger.debug("components converged after %d steps (%d edges)", step + 1, count)
            return current
        current = nxt
    raise RuntimeError(f"connected components did not converge in {max_steps} steps")


def run_engine(
    doc_tables: list, settings: EngineSettings, executor: LocalExecutor | RayExecutor
) -> EngineResult:
    """Decisions for the documents of ``doc_tables`` (tables, or Ray refs with a RayExecutor)."""
    grouped, infos = executor.shuffle(
        [Stream(doc_tables, split_pairs, (settings.index_output,))], group_reduce, (settings.against,)
    )
    stats = _merge(infos)
    edges = executor.map(_take, grouped, ("edges",))
    star = _components(executor, edges, settings.max_cc_steps)
    members, infos = executor.shuffle(
        [Stream(star, _member_split), Stream(doc_tables, _row_split), Stream(grouped, _old_row_split)],
        attach_reduce,
    )
    stats.update(_merge(infos))
    decisions, infos = executor.shuffle(
        [Stream(members, _member_by_comp)], keep_reduce, (settings.keep, settings.reason)
    )
    merged = _merge(infos)
    histogram = Counter({k.split(":", 1)[1]: v for k, v in merged.items() if k.startswith("size:")})
    stats.update({k: v for k, v in merged.items() if not k.startswith("size:")})
    return EngineResult(decisions, stats, histogram)


def _take(payload: dict, key: str):
    return payload[key]
