"""Framework-neutral core of the loaders: epoch plans, document shuffling, packing, resume.

How an epoch is cut (all of it a pure function of the manifest, the seed, the epoch and the
number of consumers, so every process computes the same plan without talking to the others):

1. The *units* of the split are the shards' row groups (token counts come from the manifest, so
   no file is opened to plan). With ``shuffle`` they are permuted by ``(seed, epoch)``.
2. Their tokens, in that order, form one epoch stream of ``N`` tokens. Consumer ``c`` of ``C``
   (``C = world_size * DataLoader workers`` in PyTorch, ``process_count`` in JAX) owns the
   contiguous range ``[c*N//C, (c+1)*N//C)`` - a document on a boundary is split between two
   consumers. Ranges do not overlap and cover the stream, hence exactly-once delivery.
3. A consumer groups its range into *chunks* of at least ``shuffle_buffer_tokens`` tokens and,
   with ``shuffle``, permutes the documents inside each chunk by ``(seed, epoch, consumer, chunk)``.
   A chunk is a full shuffle buffer whose size is known from the manifest, so the token position
   of any batch maps to (chunk, offset) without reading data: resuming costs at most one chunk.
4. Tokens are packed into non-overlapping windows of ``seq_len + 1`` (inputs are the first
   ``seq_len``, targets the last ``seq_len``); documents keep their trailing ``<|endoftext|>``
   and run on across window boundaries. ``batch_size`` windows make a batch.

Tail policy. Every consumer yields the same number of batches per epoch, so data-parallel ranks
never wait on each other at the end of an epoch. ``tail="pad"`` (default) delivers every token
of the split exactly once: the last batches are filled with padding whose inputs are
``<|endoftext|>`` and whose targets are ``IGNORE_INDEX`` (-100, PyTorch's ``cross_entropy``
default), and a consumer whose range ended a batch early gets one batch of padding only.
``tail="drop"`` yields only full batches of real tokens and drops what is left of each
consumer's range: fewer than ``batch_size * (seq_len + 1)`` tokens plus the difference between
the consumers' ranges (at most one token each).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from thresher.io import StorageConfig, Store
from thresher.shards.cache import DEFAULT_CACHE_BYTES, ShardCache
from thresher.shards.tokens import MANIFEST_NAME, SPLITS, ShardError, ShardInfo, load_manifest

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
PAD = -1  # marks padding inside a window before it is split into inputs and targets
DEFAULT_SHUFFLE_BUFFER_TOKENS = 1 << 24
GATHER_BLOCK_TOKENS = 1 << 20  # bounds the int64 index arrays of the document shuffle
OPEN_FILES = 16
DEFAULT_READ_THREADS = 2
DEFAULT_READ_AHEAD = 8  # row groups decoded ahead of the packer (~2 MiB each at the default size)
DEFAULT_PREFETCH_FILES = 4  # shards downloaded ahead from an object store


@dataclass(frozen=True)
class PackingConfig:
    """Everything besides the data and the consumer that decides which tokens a batch holds."""

    seq_len: int
    batch_size: int
    seed: int = 0
    split: str = "train"
    shuffle: bool = True
    tail: str = "pad"
    shuffle_buffer_tokens: int = DEFAULT_SHUFFLE_BUFFER_TOKENS

    def __post_init__(self) -> None:
        if self.seq_len < 1 or self.batch_size < 1:
            raise ValueError(f"seq_len and batch_size must be positive: {self.seq_len}, {self.batch_size}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.tail not in ("pad", "drop"):
            raise ValueError(f"tail must be 'pad' or 'drop', got {self.tail!r}")
        if self.shuffle_buffer_tokens < 1:
            raise ValueError("shuffle_buffer_tokens must be positive")

    @property
    def window(self) -> int:
        return self.seq_len + 1

    @property
    def batch_tokens(self) -> int:
        return self.batch_size * self.window


class TokenCorpus:
    """The shards of one split as a list of row-group units; reads them with errors naming files.

    ``path`` is a local tokens directory or a URI (``s3://``, ``gs://``, any fsspec URI). Shards on
    an object store are read from a bounded local cache (:class:`~thresher.shards.cache.ShardCache`,
    ``cache_dir`` and ``cache_bytes``): each is downloaded whole, checked against the manifest's
    sha256 and read from disk after that; the plan, the batches and the resume state are the same
    as from a local copy of the same shards.

    Construction opens no Parquet file (the manifest has every count) but checks that each shard
    exists with the size the manifest recorded (one listing on an object store), so a missing or
    truncated file fails at once. Picklable: DataLoader workers get a copy without open file handles."""

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        *,
        cache_dir: str | os.PathLike | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        storage: StorageConfig | None = None,
    ) -> None:
        self.store = Store.from_uri(path, storage)
        self.root = self.store.local_path() or self.store.uri
        manifest = load_manifest(self.store)
        self.split = split
        self.eot_id = int(manifest["tokenizer"]["eot_id"])
        self.vocab_size = int(manifest["tokenizer"]["vocab_size"])
        self.shards = [ShardInfo.from_dict(s) for s in manifest["shards"] if s["split"] == split]
        if not self.shards:
            raise ValueError(f"no {split} shards listed in {self.store.uri_of(MANIFEST_NAME)}")
        self.dtype = np.dtype(manifest["tokenizer"]["dtype"])
        sizes = self.store.sizes()
        for s in self.shards:
            size = sizes.get(s.path)
            if size is None:
                raise ShardError(
                    f"token shard listed in the manifest is missing: {self.store.uri_of(s.path)}"
                )
            if size != s.bytes:
                raise ShardError(
                    f"token shard {self.store.uri_of(s.path)} is {size} bytes, the manifest says {s.bytes}: "
                    "the file was changed or truncated after the manifest was written"
                )
        self.cache: ShardCache | None = None
        if not self.store.is_local:
            self.cache = ShardCache(self.store, cache_dir, cache_bytes)
            split_bytes = sum(s.bytes for s in self.shards)
            if split_bytes > cache_bytes:
                logger.warning(
                    "the %s split is %d bytes, the shard cache holds %d: shards may be downloaded "
                    "more than once per epoch (raise cache_bytes)",
                    split,
                    split_bytes,
                    cache_bytes,
                )
        shard_ix, rg_ix, tokens = [], [], []
        for i, s in enumerate(self.shards):
            for j, n in enumerate(s.row_group_tokens):
                shard_ix.append(i)
                rg_ix.append(j)
                tokens.append(n)
        self.unit_shard = np.asarray(shard_ix, dtype=np.int64)
        self.unit_row_group = np.asarray(rg_ix, dtype=np.int64)
        self.unit_tokens = np.asarray(tokens, dtype=np.int64)
        self.total_tokens = int(self.unit_tokens.sum())
        ident = [(s.path, s.sha256) for s in self.shards]
        self.fingerprint = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]
        self._local = threading.local()

    def local_file(self, shard: int) -> Path:
        """Where shard ``shard`` is read from: the file itself, or its copy in the cache
        (downloaded now if needed, so calling this ahead of time prefetches it)."""
        info = self.shards[shard]
        if self.cache is None:
            return Path(self.root) / info.path
        return self.cache.path(info.path, info.bytes, info.sha256)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _file(self, shard: int) -> pq.ParquetFile:
        """An open file, cached per thread: reader threads never share a ParquetFile."""
        files: OrderedDict[int, pq.ParquetFile] | None = getattr(self._local, "files", None)
        if files is None:
            files = self._local.files = OrderedDict()
        pf = files.get(shard)
        if pf is None:
            if self.cache is None:
                source = self.local_file(shard)
            else:  # opened at once: a copy another reader evicts stays readable to this one
                info = self.shards[shard]
                source = self.cache.open(info.path, info.bytes, info.sha256)
            pf = pq.ParquetFile(source, page_checksum_verification=True)
            files[shard] = pf
            if len(files) > OPEN_FILES:
                files.popitem(last=False)[1].close(force=True)
        else:
            files.move_to_end(shard)
        return pf

    def read_unit(self, unit: int) -> tuple[np.ndarray, np.ndarray]:
        """A row group's tokens, flat, and its document offsets (``len(docs) + 1`` entries)."""
        shard, rg = int(self.unit_shard[unit]), int(self.unit_row_group[unit])
        path = self.store.uri_of(self.shards[shard].path)
        try:
            column = self._file(shard).read_row_group(rg, columns=["tokens"]).column(0).combine_chunks()
        except Exception as exc:
            getattr(self._local, "files", {}).pop(shard, None)
            raise ShardError(f"cannot read row group {rg} of token shard {path}: {exc}") from exc
        flat = column.flatten().to_numpy()
        offsets = column.offsets.to_numpy().astype(np.int64)
        offsets -= offsets[0]
        if flat.size != self.unit_tokens[unit]:
            raise ShardError(
                f"row group {rg} of token shard {path} holds {flat.size} tokens, "
                f"the manifest says {self.unit_tokens[unit]}"
            )
        return flat, offsets


def consumer_range(total: int, consumer: int, n_consumers: int) -> tuple[int, int]:
    return consumer * total // n_consumers, (consumer + 1) * total // n_consumers


def batches_per_consumer(total: int, n_consumers: int, cfg: PackingConfig) -> int:
    """The same for every consumer of an epoch (see the module docstring's tail policy).

    Consumer ranges hold ``total // n_consumers`` or one token more."""
    if cfg.tail == "drop":
        return (total // n_consumers) // cfg.batch_tokens
    largest = -(-total // n_consumers)
    return -(-largest // cfg.batch_tokens)


class ConsumerEpoch:
    """One consumer's share of one epoch: its pieces of units, grouped into shuffle chunks."""

    def __init__(
        self,
        corpus: TokenCorpus,
        cfg: PackingConfig,
        epoch: int,
        consumer: int,
        n_consumers: int,
        *,
        read_threads: int = DEFAULT_READ_THREADS,
        read_ahead: int = DEFAULT_READ_AHEAD,
        prefetch_files: int = DEFAULT_PREFETCH_FILES,
    ):
        if read_threads < 1 or read_ahead < 1 or prefetch_files < 1:
            raise ValueError("read_threads, read_ahead and prefetch_files must be positive")
        self.read_threads, self.read_ahead, self.prefetch_files = read_threads, read_ahead, prefetch_files
        if not 0 <= consumer < n_consumers:
            raise ValueError(f"consumer {consumer} outside [0, {n_consumers})")
        self.corpus, self.cfg, self.epoch, self.consumer = corpus, cfg, epoch, consumer
        self.n_batches = batches_per_consumer(corpus.total_tokens, n_consumers, cfg)
        lo, hi = consumer_range(corpus.total_tokens, consumer, n_consumers)
        order = np.arange(len(corpus.unit_tokens))
        if cfg.shuffle:
            order = np.random.default_rng([cfg.seed, epoch]).permutation(order)
        sizes = corpus.unit_tokens[order]
        ends = np.cumsum(sizes)
        starts = ends - sizes
        first, last = np.searchsorted(ends, lo, "right"), np.searchsorted(starts, hi, "left")
        # (unit, first token, end token) in unit-local coordinates, in stream order
        self.pieces = [
            (int(order[i]), int(max(lo - starts[i], 0)), int(min(hi - starts[i], sizes[i])))
            for i in range(first, last)
        ]
        self.pieces = [p for p in self.pieces if p[2] > p[1]]
        self.chunks: list[list[tuple[int, int, int]]] = []
        self.chunk_tokens: list[int] = []
        current, n = [], 0
        for piece in self.pieces:
            current.append(piece)
            n += piece[2] - piece[1]
            if n >= cfg.shuffle_buffer_tokens:
                self.chunks.append(current)
                self.chunk_tokens.append(n)
                current, n = [], 0
        if current:
            self.chunks.append(current)
            self.chunk_tokens.append(n)
        self.n_tokens = hi - lo

    def _chunk_blocks(self, index: int, reads: list[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        """The chunk's tokens with its documents permuted, in blocks of about a million tokens."""
        flats, doc_starts, doc_ends, base = [], [], [], 0
        for (_unit, a, b), (flat, offsets) in zip(self.chunks[index], reads, strict=True):
            s, e = offsets[:-1], offsets[1:]
            keep = (e > a) & (s < b)
            doc_starts.append(np.maximum(s[keep], a) - a + base)
            doc_ends.append(np.minimum(e[keep], b) - a + base)
            flats.append(flat[a:b])
            base += b - a
        if not self.cfg.shuffle:
            for flat in flats:
                yield flat
            return
        flat = flats[0] if len(flats) == 1 else np.concatenate(flats)
        starts, ends = np.concatenate(doc_starts), np.concatenate(doc_ends)
        perm = np.random.default_rng([self.cfg.seed, self.epoch, self.consumer, index]).permutation(
            starts.size
        )
        starts, lengths = starts[perm], (ends - starts)[perm]
        out_ends = np.cumsum(lengths)
        cut = 0
        while cut < starts.size:
            block_start = int(out_ends[cut - 1]) if cut else 0
            stop = max(int(np.searchsorted(out_ends, block_start + GATHER_BLOCK_TOKENS, "right")), cut + 1)
            lens = lengths[cut:stop]
            # output position p of document k reads flat[starts[k] + p - (its first output position)]
            shift = starts[cut:stop] - (out_ends[cut:stop] - lens - block_start)
            yield flat[np.repeat(shift, lens) + np.arange(int(out_ends[stop - 1]) - block_start)]
            cut = stop

    def tokens_from(self, offset: int) -> Iterator[np.ndarray]:
        """The consumer's packed token stream from ``offset`` on, as consecutive arrays.

        Row groups are decoded by ``read_threads`` threads (Arrow releases the GIL) up to
        ``read_ahead`` units ahead, so decoding overlaps packing and the trainer's step. From an
        object store, ``prefetch_files`` more threads download the shards into the cache in the
        order this consumer first needs them, up to ``prefetch_files`` shards ahead of the one
        being read, so a download overlaps the reading of the shards before it."""
        ends = np.cumsum(self.chunk_tokens)
        chunk = int(np.searchsorted(ends, offset, "right"))
        skip = offset - (int(ends[chunk - 1]) if chunk else 0)
        units = [unit for index in range(chunk, len(self.chunks)) for unit, _, _ in self.chunks[index]]
        todo = iter(units)
        pool = ThreadPoolExecutor(self.read_threads, thread_name_prefix="thresher-shard-read")
        futures: deque[Future] = deque()
        files: ThreadPoolExecutor | None = None
        if self.corpus.cache is not None:
            file_order = list(dict.fromkeys(int(self.corpus.unit_shard[u]) for u in units))
            first_use = {shard: i for i, shard in enumerate(file_order)}
            files = ThreadPoolExecutor(self.prefetch_files, thread_name_prefix="thresher-shard-fetch")
        fetched = 0

        def fill() -> None:
            nonlocal fetched
            while len(futures) < self.read_ahead and (unit := next(todo, None)) is not None:
                if files is not None:
                    upto = min(
                        first_use[int(self.corpus.unit_shard[unit])] + self.prefetch_files, len(file_order)
                    )
                    while fetched < upto:  # errors are left to read_unit, which names the shard
                        files.submit(self.corpus.local_file, file_order[fetched])
                        fetched += 1
                futures.append(pool.submit(self.corpus.read_unit, unit))

        try:
            for index in range(chunk, len(self.chunks)):
                reads = []
                for _ in self.chunks[index]:
                    fill()
                    reads.append(futures.popleft().result())
                fill()
                for block in self._chunk_blocks(index, reads):
                    if skip >= block.size:
                        skip -= block.size
                        continue
                    yield block[skip:] if skip else block
                    skip = 0
        finally:
            if not sys.is_finalizing():  # a generator collected at interpreter exit: threads are gone
                pool.shutdown(wait=True, cancel_futures=True)
                if files is not None:
                    files.shutdown(wait=True, cancel_futures=True)

    def _filled(self, start: int) -> Iterator[tuple[np.ndarray, int]]:
        """Contiguous ``batch_tokens`` buffers (token dtype) from batch ``start`` on, and how many
        of their tokens are real (fewer only at the end). Buffers may be views: read, don't write."""
        bt = self.cfg.batch_tokens
        stream = self.tokens_from(start * bt)
        head = np.zeros(0, dtype=self.corpus.dtype)
        try:
            for _ in range(start, self.n_batches):
                while head.size == 0 and (block := next(stream, None)) is not None:
                    head = block
                if head.size >= bt:  # the whole batch lies in one block: no copy
                    out, head = head[:bt], head[bt:]
                    yield out, bt
                    continue
                out = np.empty(bt, dtype=self.corpus.dtype)
                filled = 0
                while filled < bt:
                    if head.size == 0:
                        block = next(stream, None)
                        if block is None:
                            break
                        head = block
                    take = min(head.size, bt - filled)
                    out[filled : filled + take] = head[:take]
                    filled += take
                    head = head[take:]
                yield out, filled
        finally:
            stream.close()

    def batches(self, start: int = 0, dtype: Any = np.int64) -> Iterator[np.ndarray]:
        """Windows ``[batch_size, seq_len + 1]`` from batch ``start`` on; padding is ``PAD``."""
        for buf, n in self._filled(start):
            out = np.full(self.cfg.batch_tokens, PAD, dtype=dtype)
            out[:n] = buf[:n]
            yield out.reshape(self.cfg.batch_size, self.cfg.window)

    def pairs(self, start: int = 0, dtype: Any = np.int64) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(inputs, targets) ``[batch_size, seq_len]`` from batch ``start`` on (see :func:`split_windows`)."""
        shape = (self.cfg.batch_size, self.cfg.window)
        for buf, n in self._filled(start):
            if n == self.cfg.batch_tokens:  # the common case: one conversion pass per array
                w = buf.reshape(shape)
                yield w[:, :-1].astype(dtype, order="C"), w[:, 1:].astype(dtype, order="C")
            else:
                out = np.full(self.cfg.batch_tokens, PAD, dtype=dtype)
                out[:n] = buf[:n]
                yield split_windows(out.reshape(shape), self.corpus.eot_id)


def split_windows(windows: np.ndarray, eot_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``[B, T+1]`` windows → (inputs, targets) ``[B, T]``; padding becomes EOT / ``IGNORE_INDEX``."""
    inputs = np.ascontiguousarray(windows[:, :-1])
    targets = np.ascontiguousarray(windows[:, 1:])
    if windows[-1, -1] == PAD:  # padding only ever fills a batch's end
        inputs[inputs == PAD] = eot_id
        targets[targets == PAD] = IGNORE_INDEX
    return inputs, targets


@dataclass
class Position:
    """Where a rank (or JAX host) stands: ``batches`` of ``epoch`` delivered to the trainer.

    Every rank delivers the same number of batches per epoch, so rank 0's position is every
    rank's position and may be saved once and restored everywhere."""

    epoch: int = 0
    batches: int = 0


def fingerprint(corpus: TokenCorpus, cfg: PackingConfig, **consumers: int) -> dict[str, Any]:
    """What must be equal for a saved position to mean the same batches after a restart."""
    return {"data": corpus.fingerprint, **asdict(cfg), **consumers}


def make_state(position: Position, fp: dict[str, Any]) -> dict[str, Any]:
    return {"epoch": position.epoch, "batches": position.batches, "fingerprint": fp}


def check_state(state: dict[str, Any], fp: dict[str, Any], ignore: tuple[str, ...] = ()) -> Position:
    """The position of a saved state, after checking it was saved under the same plan."""
    saved = state.get("fingerprint", {})
    differ = {k: (saved.get(k), v) for k, v in fp.items() if k not in ignore and saved.get(k) != v}
    if differ:
        detail = ", ".join(f"{k}: saved {a!r} now {b!r}" for k, (a, b) in sorted(differ.items()))
        raise ValueError(f"loader state does not match this loader, exact resume impossible ({detail})")
    return Position(epoch=int(state["epoch"]), batches=int(state["batches"]))
