"""Connected components of a graph given as an edge list split over partitions, by the
alternating large-star / small-star contraction of Kiveris et al. (SoCC 2014).

Each step is one shuffle: edges go, in both directions, to the partition of their source
node; a partition only ever holds the edges of its own nodes, as flat uint64 arrays, and
turns them into new edges with a sort and a segment minimum. No step needs a node's whole
component, the node set, or all edges in one process. The steps preserve connectivity and
converge to a forest of stars, each centred on its component's smallest node; convergence is
detected from an order-independent fingerprint of each step's edge set (count and a sum of
mixed hashes), unchanged across one large-star and one small-star step.

The functions here are the map and reduce halves of those steps; :mod:`thresher.dedup.engine`
runs them in-process or as Ray tasks.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from thresher.dedup.signatures import fmix64

EDGE_SCHEMA = pa.schema([pa.field("u", pa.uint64()), pa.field("v", pa.uint64())])


def partition_of(values: np.ndarray, partitions: int) -> np.ndarray:
    """Partition of each uint64 hash value: its top 32 bits scaled to [0, partitions), so a
    partition is a contiguous key range (which lets persistent indexes be read by range)."""
    return ((values >> np.uint64(32)) * np.uint64(partitions) >> np.uint64(32)).astype(np.int64)


def key_range(p: int, partitions: int) -> tuple[int, int | None]:
    """[low, high) of the uint64 values :func:`partition_of` puts in partition ``p`` (high is
    None for the last partition)."""
    span = 1 << 32
    low = -(-p * span // partitions) << 32
    high = None if p == partitions - 1 else (-(-(p + 1) * span // partitions) << 32)
    return low, high


def split_by(table: pa.Table, column: str, partitions: int) -> list[pa.Table]:
    """Rows of ``table`` by :func:`partition_of` its uint64 ``column``; one partition is the
    table itself (no copy: the in-process path must not double the memory of what it splits)."""
    if partitions == 1:
        return [table]
    return split_table(table, partition_of(table.column(column).to_numpy(), partitions), partitions)


def split_table(table: pa.Table, part: np.ndarray, partitions: int) -> list[pa.Table]:
    """Rows of ``table`` by partition number. Each piece is a fresh table (not a slice), so
    shipping one piece to another process does not ship the others' buffers."""
    if partitions == 1:
        return [table]
    order = np.argsort(part, kind="stable")
    bounds = np.zeros(partitions + 1, dtype=np.int64)
    np.cumsum(np.bincount(part, minlength=partitions), out=bounds[1:])
    return [table.take(order[bounds[p] : bounds[p + 1]]) for p in range(partitions)]


def edges_table(u: np.ndarray, v: np.ndarray) -> pa.Table:
    return pa.table({"u": pa.array(u, pa.uint64()), "v": pa.array(v, pa.uint64())}, schema=EDGE_SCHEMA)


def unique_edges(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (u, v) pairs, sorted by u then v."""
    if len(u) == 0:
        return u, v
    order = np.lexsort((v, u))
    u, v = u[order], v[order]
    keep = np.ones(len(u), dtype=bool)
    keep[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
    return u[keep], v[keep]


def fingerprint(u: np.ndarray, v: np.ndarray) -> tuple[int, int]:
    """(count, sum of mixed hashes mod 2**64) of distinct undirected edges given with u < v."""
    with np.errstate(over="ignore"):
        mixed = fmix64(u ^ fmix64(v + np.uint64(0x9E3779B97F4A7C15)))
        return len(u), int(mixed.sum(dtype=np.uint64))


def star_map(edges: pa.Table, partitions: int) -> list[pa.Table]:
    """Both directions of every edge, by the partition of the source (column ``u``)."""
    u = edges.column("u").to_numpy()
    v = edges.column("v").to_numpy()
    src = np.concatenate((u, v))
    dst = np.concatenate((v, u))
    return split_by(edges_table(src, dst), "u", partitions)


def _gather(parts: list[pa.Table]) -> tuple[np.ndarray, np.ndarray]:
    if not parts:
        return np.empty(0, np.uint64), np.empty(0, np.uint64)
    table = pa.concat_tables(parts)
    src = table.column("u").to_numpy()
    dst = table.column("v").to_numpy()
    return unique_edges(src, dst)


def _group_firsts(src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by src: a mask of each group's first row, and each row's group number."""
    first = np.ones(len(src), dtype=bool)
    first[1:] = src[1:] != src[:-1]
    return first, np.cumsum(first) - 1


def large_star_reduce(p: int, partitions: int, parts: list[pa.Table]) -> tuple[pa.Table, dict]:
    """Every node links its larger neighbours to the smallest node of its neighbourhood."""
    src, dst = _gather(parts)
    info = dict(zip(("edges", "fingerprint"), fingerprint(src[src < dst], dst[src < dst]), strict=True))
    if len(src) == 0:
        return edges_table(src, dst), info
    first, group = _group_firsts(src)
    smallest = np.minimum(src[first], dst[first])[group]  # rows are sorted by dst within a group
    larger = dst > src
    return edges_table(smallest[larger], dst[larger]), info


def small_star_reduce(p: int, partitions: int, parts: list[pa.Table]) -> tuple[pa.Table, dict]:
    """Every node and its smaller neighbours are linked to the smallest of them."""
    src, dst = _gather(parts)
    info = dict(zip(("edges", "fingerprint"), fingerprint(src[src < dst], dst[src < dst]), strict=True))
    smaller = dst < src
    src, dst = src[smaller], dst[smaller]
    if len(src) == 0:
        return edges_table(src, dst), info
    first, group = _group_firsts(src)
    smallest = dst[first][group]
    others = dst != smallest
    u = np.concatenate((smallest[others], dst[first]))
    v = np.concatenate((dst[others], src[first]))
    return edges_table(u, v), info
