"""Keys → duplicate clusters → one kept document per cluster, for exact and MinHash dedup.

Input: *document tables* (one per block of documents), one row per document with its node
(a bijective mix of its ordinal in the run, so two documents are never one node, whatever
their ids), id, shard, pos (position in the shard), length, optional score, its list of keys (MinHash
band keys, or the hash of its normalised text) and, for verified MinHash, its signature
(``sig``: the low 16 bits of each MinHash value). Documents that share a key are candidate
duplicates; duplicates of duplicates too (connected components). Output: one decision row per
document to drop (``DECISION_SCHEMA``), naming the kept document of its cluster.

Phases, each one shuffle (see :mod:`thresher.dedup.executor`):

1. *group*: (key, node) pairs by key range; a partition sorts its pairs in sub-ranges of at
   most ``group_chunk_pairs`` pairs and turns every key shared by several nodes into edges:
   a star on the key's smallest node, or, when edges are verified, every pair of the key's
   nodes (a star plus a chain above ``pair_group_max`` nodes). With ``against``, the
   persistent index's pairs of the same key range are read (row-group pushdown on sorted
   files) and join in as nodes of earlier runs.
2. *verify* (optional, two shuffles): candidate edges by their first node meet the signatures
   of that node's partition, then by their second node; an edge survives when the fraction of
   equal signature values — the MinHash estimate of Jaccard similarity — reaches the threshold.
3. *components*: large-star / small-star contraction (:mod:`thresher.dedup.components`).
4. *attach*: star edges and document rows by node: each node of a cluster gets its id, shard,
   length and score; documents in no cluster are dropped here, never shuffled again.
5. *keep*: cluster rows by cluster; the kept document is chosen by the keep policy and the
   others become decisions.

Memory model: phase 1 moves 16 bytes per (document, band) through the object store — 224
bytes per document with 14 bands. A group reducer keeps one byte per pair (its sub-range)
and sorts one sub-range at a time, so its working set is bounded by ``group_chunk_pairs``
whatever the partition's size. Verification moves each document's signature (2 bytes ×
num_perm, 224 bytes at 112) into the object store once; a reducer holds the signatures of
the distinct nodes of its candidate edges only (found a record batch at a time), and first
nodes' signatures travel once per (node, partition), not once per edge. Phases 3-5 hold only
edges (16 bytes per edge) and the rows of documents that are in clusters. With one partition
(the in-process path) nothing is copied to be "split". The driver holds object references
and per-partition counters only. Everything shuffled sits in Ray's object store, which
spills to disk when memory is short.

"First" is the document's place in the run: the smallest (shard, pos), so the result does
not depend on how Ray splits blocks, on the number of workers, or on the documents' ids.
Persistent indexes name their documents by id (hashed), which a run keeps unique. An index is a
directory on a local disk or an object store (``s3://bucket/index``, any fsspec URI): its files
are written through :class:`~thresher.io.Store` (one atomic file or object per block) and read
with pyarrow datasets over the store's file system (row-group pushdown by key range either way).
"""

from __future__ import annotations

import functools
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
from thresher.dedup.signatures import fmix64, hash64
from thresher.io import Store
from thresher.stage import DECISION_SCHEMA

logger = logging.getLogger(__name__)

DOC_TABLE_SCHEMA = pa.schema(
    [
        pa.field("node", pa.uint64()),
        pa.field("id", pa.string()),
        pa.field("shard", pa.string()),
        pa.field("pos", pa.int64()),
        pa.field("length", pa.int64()),
        pa.field("score", pa.float64()),
        pa.field("keys", pa.list_(pa.uint64())),
    ]
)
"""Columns every document table has; verified MinHash adds ``sig`` (fixed-size list of uint16)."""
ROW_COLUMNS = ["node", "id", "shard", "pos", "length", "score"]
ROW_SCHEMA = pa.schema([DOC_TABLE_SCHEMA.field(c) for c in ROW_COLUMNS])
MEMBER_SCHEMA = pa.schema([pa.field("comp", pa.uint64()), *ROW_SCHEMA, pa.field("old", pa.bool_())])
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
    verify_threshold: float | None = None
    """Keep a candidate edge only when its nodes' signatures agree on at least this fraction
    of values (None: every candidate edge counts; the tables then need no ``sig``)."""
    pair_group_max: int = 16
    """Verified edges: every pair of a key's nodes up to this many nodes, a star and a chain
    above it (so one key shared by many documents costs linear, not quadratic, edges)."""
    group_chunk_pairs: int = 1 << 16
    """Pairs a group reducer sorts at once (~100 bytes of working set per pair: 6 MiB), or
    1/``group_max_chunks`` of its pairs if that is more: each sub-range costs a pass over
    the partition's sub-range bytes, so their number is capped (1.6 bytes per pair then)."""
    group_max_chunks: int = 64


@dataclass
class EngineResult:
    decisions: list  # tables, or Ray object refs to tables
    stats: Counter
    histogram: Counter


# --------------------------------------------------------------------------- signatures


def sig_array(values: np.ndarray) -> pa.FixedSizeListArray:
    """(n, k) uint16 → fixed-size-list column."""
    n, k = values.shape
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), pa.uint16()), k)


def sig_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Fixed-size-list column → (n, k) uint16 (a view when the column is one chunk)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    k = array.type.list_size
    return array.flatten().to_numpy(zero_copy_only=False).reshape(-1, k)


def _member_mask(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin`` for a sorted, distinct ``sorted_set``, without isin's sort of both arrays."""
    if len(sorted_set) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.searchsorted(sorted_set, values)
    pos[pos == len(sorted_set)] = 0
    return sorted_set[pos] == values


def _rows_with_nodes(pieces: list[pa.Table], nodes: np.ndarray) -> pa.Table | None:
    """Rows of ``pieces`` whose node is in the sorted distinct ``nodes``, a record batch at a
    time (never the pieces' whole node column at once)."""
    out = []
    for piece in pieces:
        for batch in piece.to_batches():
            mask = _member_mask(batch.column("node").to_numpy(), nodes)
            if mask.any():
                out.append(pa.Table.from_batches([batch.filter(pa.array(mask))]))
    return pa.concat_tables(out) if out else None


# --------------------------------------------------------------------------- phase 1: group


def split_pairs(doc_table: pa.Table, partitions: int, index_output: str | None = None) -> list[pa.Table]:
    if index_output:
        _write_index_block(doc_table, index_output)
    if partitions == 1:
        return [doc_table.select(["node", "keys"])]
    keys_col = doc_table.column("keys").combine_chunks()
    keys = keys_col.flatten().to_numpy(zero_copy_only=False).astype(np.uint64, copy=False)
    counts = pc.list_value_length(keys_col).fill_null(0).to_numpy(zero_copy_only=False)
    nodes = np.repeat(doc_table.column("node").to_numpy(), counts)
    pairs = pa.table({"key": keys, "node": nodes}, schema=PAIR_SCHEMA)
    return cc.split_by(pairs, "key", partitions)


def _write_index_block(doc_table: pa.Table, out: str) -> None:
    """This block's (key, node, id) rows sorted by key, and with verification its (node, sig)
    rows sorted by node, so later runs read only the row groups of the keys they look up. The
    index's node is the hash of the id (a run's places mean nothing to a later run); a block
    without keys writes nothing."""
    if doc_table.num_rows == 0:
        return
    doc_table = doc_table.set_column(
        0, "node", pa.array(hash64(doc_table.column("id").to_pylist()), pa.uint64())
    )
    keys_col = doc_table.column("keys").combine_chunks()
    keys = keys_col.flatten().to_numpy(zero_copy_only=False)
    counts = pc.list_value_length(keys_col).fill_null(0).to_numpy(zero_copy_only=False)
    row_of_pair = np.repeat(np.arange(len(counts)), counts)
    order = np.argsort(keys, kind="stable")
    table = pa.table(
        {
            "key": pa.array(keys[order], pa.uint64()),
            "node": doc_table.column("node").take(row_of_pair[order]),
            "id": doc_table.column("id").take(row_of_pair[order]),
        },
        schema=INDEX_SCHEMA,
    )
    if table.num_rows == 0:
        return
    name = f"part-{uuid.uuid4().hex}.parquet"
    store = index_store(out)
    store.write_parquet(f"keys/{name}", table, row_group_size=65536, compression="zstd")
    if "sig" in doc_table.column_names:
        with_keys = doc_table.filter(pa.array(counts > 0)).select(["node", "sig"])
        sigs = with_keys.take(np.argsort(with_keys.column("node").to_numpy(), kind="stable"))
        store.write_parquet(f"sigs/{name}", sigs, row_group_size=8192, compression="snappy")


@functools.lru_cache(maxsize=16)
def index_store(uri: str) -> Store:
    """The store of an index directory (a path or a URI), one per process and index: its client
    is made once, not once per block (a Store makes its client again after a fork)."""
    return Store.from_uri(uri)


def index_dataset(directories: list[str], sub: str, schema: pa.Schema | None = None):
    """The Parquet files of ``sub`` (``keys`` or ``sigs``) of every index, as one pyarrow dataset.
    A local index is a directory dataset (hidden temporary files are skipped by pyarrow); on an
    object store the listing's files are read through the store's fsspec file system."""
    import pyarrow.dataset as pads

    parts = []
    for directory in directories:
        store = index_store(directory)
        if store.is_local:
            parts.append(pads.dataset(str(store.local_path(sub)), format="parquet", schema=schema))
            continue
        files = [
            f"{store.root}/{rel}"
            for rel in store.find(sub)
            if rel.endswith(".parquet") and not rel.rsplit("/", 1)[-1].startswith((".", "_"))
        ]
        if files:
            parts.append(pads.dataset(files, filesystem=store.fs, format="parquet", schema=schema))
    if not parts:
        return pads.dataset([], schema=schema or pa.schema([]), format="parquet")
    return pads.dataset(parts)


class _Pieces:
    """A reducer's (key, node) pairs, from pair tables (several partitions) or document tables
    (one partition), addressable by sub-range without materialising all nodes per pair."""

    def __init__(self, pieces: list[pa.Table]) -> None:
        self.keys: list[np.ndarray] = []
        self.nodes: list[np.ndarray] = []
        self.offsets: list[np.ndarray | None] = []  # per document table row: its first pair
        for piece in pieces:
            for batch in piece.to_batches():
                if "keys" in batch.schema.names:
                    lists = batch.column("keys")
                    counts = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
                    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
                    np.cumsum(counts, out=offsets[1:])
                    self.keys.append(lists.flatten().to_numpy(zero_copy_only=False))
                    self.offsets.append(offsets)
                else:
                    self.keys.append(batch.column("key").to_numpy())
                    self.offsets.append(None)
                self.nodes.append(batch.column("node").to_numpy())
        self.total = sum(len(k) for k in self.keys)

    def sub_ranges(self, p: int, partitions: int, chunks: int) -> list[np.ndarray]:
        """Each pair's sub-range in [0, chunks) of partition ``p``'s key range: the partition of
        its key among ``partitions × chunks`` (a refinement of the partition's range)."""
        dtype = np.uint8 if chunks <= 1 << 8 else np.uint16 if chunks <= 1 << 16 else np.uint32
        return [(cc.partition_of(k, partitions * chunks) - p * chunks).astype(dtype) for k in self.keys]

    def gather(self, subs: list[np.ndarray], chunk: int) -> tuple[np.ndarray, np.ndarray]:
        keys, nodes = [], []
        for k, n, off, sub in zip(self.keys, self.nodes, self.offsets, subs, strict=True):
            sel = np.flatnonzero(sub == chunk)
            keys.append(k[sel])
            nodes.append(n[sel] if off is None else n[np.searchsorted(off, sel, side="right") - 1])
        if not keys:
            return np.empty(0, np.uint64), np.empty(0, np.uint64)
        return np.concatenate(keys), np.concatenate(nodes)


def _index_keys(against: list[str]):
    return index_dataset(against, "keys", INDEX_SCHEMA)


def _old_pairs(dataset, low: int, high: int | None, new_keys: np.ndarray) -> pa.Table:
    """(key, node, id) rows of earlier runs with a key in [low, high) that is among ``new_keys``."""
    expr = pc.field("key") >= pa.scalar(low, pa.uint64())
    if high is not None:
        expr = expr & (pc.field("key") < pa.scalar(high, pa.uint64()))
    old = dataset.to_table(columns=["key", "node"], filter=expr)
    matched = np.isin(old.column("key").to_numpy(), new_keys)
    if not matched.any():
        return INDEX_SCHEMA.empty_table()
    wanted = pa.array(np.unique(old.column("key").to_numpy()[matched]))
    return dataset.to_table(filter=expr & pc.field("key").isin(wanted))


def _salted(nodes: np.ndarray) -> np.ndarray:
    """Earlier runs' nodes in their own node space (an id seen in both runs stays two nodes)."""
    with np.errstate(over="ignore"):
        return fmix64(nodes ^ _OLD_SALT)


def _old_rows(old: pa.Table) -> pa.Table:
    nodes, first = np.unique(_salted(old.column("node").to_numpy()), return_index=True)
    n = len(nodes)
    return pa.table(
        {
            "node": pa.array(nodes, pa.uint64()),
            "id": old.column("id").take(first),
            "shard": pa.nulls(n, pa.string()),
            "pos": pa.nulls(n, pa.int64()),
            "length": pa.nulls(n, pa.int64()),
            "score": pa.nulls(n, pa.float64()),
        },
        schema=ROW_SCHEMA,
    )


def _old_sigs(against: list[str], old: pa.Table) -> pa.Table | None:
    """Saved signatures of the earlier runs' documents in ``old``, keyed by salted node."""
    if old.num_rows == 0:
        return None
    nodes = pa.array(np.unique(old.column("node").to_numpy()))
    dataset = index_dataset(against, "sigs")
    found = dataset.to_table(filter=pc.field("node").isin(nodes))
    return found.set_column(0, "node", pa.array(_salted(found.column("node").to_numpy()), pa.uint64()))


def candidate_edges(keys: np.ndarray, nodes: np.ndarray, all_pairs: bool, pair_group_max: int):
    """Edges between the nodes of each key, for pairs sorted by key: a star on the key's
    smallest node, or with ``all_pairs`` every pair of a key's nodes (star plus chain for keys
    of more than ``pair_group_max`` nodes)."""
    same = keys[1:] == keys[:-1]
    shared = np.zeros(len(keys), dtype=bool)
    shared[1:] |= same
    shared[:-1] |= same
    del same
    keys, nodes = keys[shared], nodes[shared]  # most keys belong to one node: drop them first
    order = np.lexsort((nodes, keys))
    keys, nodes = keys[order], nodes[order]
    first, group = cc._group_firsts(keys)
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, len(keys)))[group]
    smallest = nodes[first][group]
    star = ~first if not all_pairs else ~first & (sizes > pair_group_max)
    us, vs = [smallest[star]], [nodes[star]]
    if all_pairs:
        for d in range(1, min(pair_group_max, len(keys))):
            same = group[d:] == group[:-d]
            if d > 1:
                same &= sizes[d:] <= pair_group_max
            if not same.any():
                break
            us.append(nodes[:-d][same])
            vs.append(nodes[d:][same])
    u, v = np.concatenate(us), np.concatenate(vs)
    distinct = u != v  # a key listed twice for one document
    return cc.unique_edges(u[distinct], v[distinct])


def group_reduce(
    p: int, partitions: int, pieces: list[pa.Table], against: list[str], settings: EngineSettings
) -> tuple[dict, dict]:
    pairs = _Pieces(pieces)
    info: Counter = Counter(pairs=pairs.total)
    chunks = max(1, min(settings.group_max_chunks, math.ceil(pairs.total / settings.group_chunk_pairs)))
    subs = pairs.sub_ranges(p, partitions, chunks)
    verify = settings.verify_threshold is not None
    edges_u, edges_v, old_parts = [], [], []
    index = _index_keys(against) if against else None
    for chunk in range(chunks):
        keys, nodes = pairs.gather(subs, chunk)
        if against and len(keys):
            low, high = cc.key_range(p * chunks + chunk, partitions * chunks)
            old = _old_pairs(index, low, high, keys)
            if old.num_rows:
                old_parts.append(old)
                keys = np.concatenate((keys, old.column("key").to_numpy()))
                nodes = np.concatenate((nodes, _salted(old.column("node").to_numpy())))
        order = np.argsort(keys)
        u, v = candidate_edges(keys[order], nodes[order], verify, settings.pair_group_max)
        del order, keys, nodes
        edges_u.append(u)
        edges_v.append(v)
    del subs, pairs
    u, v = cc.unique_edges(np.concatenate(edges_u), np.concatenate(edges_v))
    info["band_edges"] = len(u)  # an edge found in several partitions' key ranges counts in each
    payload = {"edges": cc.edges_table(u, v), "old_rows": ROW_SCHEMA.empty_table(), "old_sigs": None}
    if old_parts:
        old = pa.concat_tables(old_parts)
        info["index_pairs_matched"] = old.num_rows
        payload["old_rows"] = _old_rows(old)
        if verify:
            payload["old_sigs"] = _old_sigs(against, old)
    return payload, dict(info)


# --------------------------------------------------------------------------- phase 2: verify


def _sig_split(doc_table: pa.Table, partitions: int) -> list[pa.Table]:
    return cc.split_by(doc_table.select(["node", "sig"]), "node", partitions)


def _old_sig_split(group_payload: dict, partitions: int) -> list[pa.Table | None]:
    sigs = group_payload["old_sigs"]
    if sigs is None:
        return [None] * partitions
    return cc.split_by(sigs, "node", partitions)


def _edge_split(edges: pa.Table, partitions: int, by: str) -> list[pa.Table]:
    return cc.split_by(edges, by, partitions)


def _lookup_signatures(sig_pieces: list, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signatures of the sorted distinct nodes ``wanted`` (one row each) and whether each was
    found, filled a record batch at a time: nothing but the result grows with the input."""
    values: np.ndarray | None = None
    found = np.zeros(len(wanted), dtype=bool)
    for piece in sig_pieces:
        if piece is None:
            continue
        for batch in piece.to_batches():
            nodes = batch.column("node").to_numpy()
            hit = np.flatnonzero(_member_mask(nodes, wanted))
            if len(hit) == 0:
                continue
            sigs = batch.column("sig").take(pa.array(hit))
            if values is None:
                values = np.zeros((len(wanted), sigs.type.list_size), dtype=np.uint16)
            rows = np.searchsorted(wanted, nodes[hit])
            values[rows] = sig_values(sigs)
            found[rows] = True
    return (values if values is not None else np.zeros((len(wanted), 1), np.uint16)), found


def first_sigs_reduce(
    p: int, partitions: int, edge_parts: list, sig_parts: list, old_sig_parts: list
) -> tuple[dict, dict]:
    """Distinct candidate edges of this partition's first nodes, with those nodes' signatures
    (one per node, not per edge: a node of many candidate pairs is looked up and shipped once)."""
    edges = pa.concat_tables(edge_parts) if edge_parts else cc.EDGE_SCHEMA.empty_table()
    u, v = cc.unique_edges(edges.column("u").to_numpy(), edges.column("v").to_numpy())
    edges = cc.edges_table(u, v)
    wanted = np.unique(u)
    values, found = _lookup_signatures(sig_parts + old_sig_parts, wanted)
    signed = found[np.searchsorted(wanted, u)] if len(u) else np.zeros(0, dtype=bool)
    sigs = pa.table({"node": pa.array(wanted[found], pa.uint64()), "sig": sig_array(values[found])})
    info = {"candidate_edges": len(u), "unsigned": int((~signed).sum())}
    return {"edges": edges.filter(pa.array(signed)), "sigs": sigs}, info


def _half_split(half: dict, partitions: int) -> list[dict]:
    """First-node signatures go along with the edges of each second-node partition."""
    if partitions == 1:
        return [half]
    edges, sigs = half["edges"], half["sigs"]
    nodes = sigs.column("node").to_numpy()
    out = []
    for piece in _edge_split(edges, partitions, "v"):
        need = _member_mask(nodes, np.unique(piece.column("u").to_numpy()))
        out.append({"edges": piece, "sigs": sigs.filter(pa.array(need))})
    return out


def verify_reduce(
    p: int,
    partitions: int,
    halves: list[dict],
    sig_parts: list,
    old_sig_parts: list,
    threshold: float,
    batch: int = 8192,
) -> tuple[pa.Table, dict]:
    """Edges whose nodes' signatures agree on at least ``threshold`` of their values, compared
    ``batch`` edges at a time."""
    edges = pa.concat_tables([h["edges"] for h in halves]) if halves else cc.EDGE_SCHEMA.empty_table()
    if edges.num_rows == 0:
        return cc.EDGE_SCHEMA.empty_table(), {"verified_edges": 0}
    u = edges.column("u").to_numpy()
    v = edges.column("v").to_numpy()
    signed = [h["sigs"] for h in halves if h["sigs"].num_rows]  # edgeless halves' sigs are untyped
    first = pa.concat_tables(signed)
    u_nodes = first.column("node").to_numpy()
    u_values = sig_values(first.column("sig"))
    if len(signed) > 1:  # one half's nodes are sorted and distinct already
        u_nodes, u_rows = np.unique(u_nodes, return_index=True)
        u_values = u_values[u_rows]
    v_nodes = np.unique(v)
    v_values, v_found = _lookup_signatures(sig_parts + old_sig_parts, v_nodes)
    k = u_values.shape[1]
    need = math.ceil(threshold * k - 1e-9)
    keep = np.zeros(len(u), dtype=bool)
    if v_values.shape[1] == k:
        for start in range(0, len(u), batch):
            iu = np.searchsorted(u_nodes, u[start : start + batch])
            iv = np.searchsorted(v_nodes, v[start : start + batch])
            equal = (u_values[iu] == v_values[iv]).sum(axis=1)
            keep[start : start + batch] = v_found[iv] & (equal >= need)
    info = {"verified_edges": int(keep.sum()), "unsigned": int((~v_found).sum())}
    return cc.edges_table(u[keep], v[keep]), info


def _verify(executor, doc_tables: list, grouped: list, edges: list, threshold: float) -> tuple[list, Counter]:
    """Verified edges; the signature pieces are split once and joined twice."""
    sigs = executor.split(Stream(doc_tables, _sig_split))
    old_sigs = executor.split(Stream(grouped, _old_sig_split))
    half, infos = executor.shuffle(
        [Stream(edges, _edge_split, ("u",))], first_sigs_reduce, presplit=[sigs, old_sigs]
    )
    stats = _merge(infos)
    verified, infos = executor.shuffle(
        [Stream(half, _half_split)], verify_reduce, (threshold,), presplit=[sigs, old_sigs]
    )
    stats.update(_merge(infos))
    return verified, stats


# --------------------------------------------------------------------------- phase 4: attach


def _member_split(edges: pa.Table, partitions: int) -> list[pa.Table]:
    u = edges.column("u").to_numpy()
    v = edges.column("v").to_numpy()
    node = np.concatenate((v, u))
    comp = np.concatenate((u, u))
    return cc.split_by(cc.edges_table(node, comp), "u", partitions)


def _row_split(doc_table: pa.Table, partitions: int) -> list[pa.Table]:
    return cc.split_by(doc_table.select(ROW_COLUMNS), "node", partitions)


def _old_row_split(group_payload: dict, partitions: int) -> list[pa.Table]:
    return _row_split(group_payload["old_rows"], partitions)


def attach_reduce(
    p: int, partitions: int, members: list, rows: list, old_rows: list
) -> tuple[pa.Table, dict]:
    member = pa.concat_tables(members) if members else cc.EDGE_SCHEMA.empty_table()
    node, comp = cc.unique_edges(member.column("u").to_numpy(), member.column("v").to_numpy())
    parts = []
    for flag, pieces in ((False, rows), (True, old_rows)):
        found = _rows_with_nodes(pieces, node)
        if found is not None and flag:  # several group partitions may match one old document
            found = found.take(np.unique(found.column("node").to_numpy(), return_index=True)[1])
        if found is not None:
            parts.append(found.append_column("old", pa.array(np.full(found.num_rows, flag))))
    joined = pa.concat_tables(parts) if parts else MEMBER_SCHEMA.empty_table().drop_columns(["comp"])
    where = np.searchsorted(node, joined.column("node").to_numpy())
    joined = joined.add_column(0, "comp", pa.array(comp[where], pa.uint64()))
    return joined.select(MEMBER_SCHEMA.names).cast(MEMBER_SCHEMA), {"members": joined.num_rows}


# --------------------------------------------------------------------------- phase 5: keep


def _member_by_comp(members: pa.Table, partitions: int) -> list[pa.Table]:
    return cc.split_by(members, "comp", partitions)


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
    order += [("shard", "ascending"), ("pos", "ascending"), ("id", "ascending")]  # id: among old rows
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
            "pos": members.column("pos").filter(pa.array(drop)),
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
        [Stream(doc_tables, split_pairs, (settings.index_output,))],
        group_reduce,
        (settings.against, settings),
    )
    stats = _merge(infos)
    edges = executor.map(_take, grouped, ("edges",))
    if settings.verify_threshold is not None:
        edges, verified = _verify(executor, doc_tables, grouped, edges, settings.verify_threshold)
        stats.update(verified)
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
