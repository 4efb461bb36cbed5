"""JAX loader over token shards: each host reads its share of every global batch, resumably.

::

    data = batches("out/tokens", seq_len=1024, global_batch_size=64, seed=0)
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    for inputs, targets in data:              # numpy int32 [64 // process_count, 1024]
        x = global_array(inputs, sharding)    # one jax.Array [64, 1024] across all hosts
        ...
        state = data.state_dict()             # save with the checkpoint; data.load_state_dict(state)

Host ``process_index`` of ``process_count`` is one consumer of the epoch plan in
:mod:`thresher.shards.stream` (same packing, shuffling and tail policy as the PyTorch loader; with
``tail="pad"`` padded targets are -100, mask them with ``targets >= 0``). All hosts yield the same
number of batches per epoch, so host 0's state restores every host. Batches are prepared by a
background thread (``prefetch`` deep) so reading overlaps the device step.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from thresher.io import StorageConfig
from thresher.shards.cache import DEFAULT_CACHE_BYTES
from thresher.shards.stream import (
    DEFAULT_PREFETCH_FILES,
    DEFAULT_READ_THREADS,
    DEFAULT_SHUFFLE_BUFFER_TOKENS,
    ConsumerEpoch,
    PackingConfig,
    Position,
    TokenCorpus,
    batches_per_consumer,
    check_state,
    fingerprint,
    make_state,
)


class TokenBatches:
    """Iterable over one epoch (from the current position) of this host's batch shares."""

    def __init__(
        self,
        path: str | os.PathLike,
        seq_len: int,
        global_batch_size: int,
        *,
        seed: int = 0,
        split: str = "train",
        shuffle: bool = True,
        tail: str = "pad",
        shuffle_buffer_tokens: int = DEFAULT_SHUFFLE_BUFFER_TOKENS,
        process_index: int | None = None,
        process_count: int | None = None,
        prefetch: int = 2,
        read_threads: int = DEFAULT_READ_THREADS,
        prefetch_files: int = DEFAULT_PREFETCH_FILES,
        cache_dir: str | os.PathLike | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        storage: StorageConfig | None = None,
        dtype: Any = np.int32,
    ) -> None:
        if process_index is None or process_count is None:
            import jax

            process_index, process_count = jax.process_index(), jax.process_count()
        if global_batch_size % process_count:
            raise ValueError(
                f"global_batch_size {global_batch_size} is not divisible by {process_count} hosts"
            )
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} outside process_count {process_count}")
        self.cfg = PackingConfig(
            seq_len, global_batch_size // process_count, seed, split, shuffle, tail, shuffle_buffer_tokens
        )
        self.corpus = TokenCorpus(path, split, cache_dir=cache_dir, cache_bytes=cache_bytes, storage=storage)
        self.prefetch_files = prefetch_files
        self.process_index, self.process_count = process_index, process_count
        self.prefetch = prefetch
        self.read_threads = read_threads
        self.dtype = dtype
        self.position = Position()

    @property
    def eot_id(self) -> int:
        return self.corpus.eot_id

    @property
    def vocab_size(self) -> int:
        return self.corpus.vocab_size

    def batches_per_epoch(self) -> int:
        return batches_per_consumer(self.corpus.total_tokens, self.process_count, self.cfg)

    def __len__(self) -> int:
        return self.batches_per_epoch()

    def state_dict(self) -> dict[str, Any]:
        return make_state(self.position, self._fingerprint())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = check_state(state, self._fingerprint())

    def _fingerprint(self) -> dict[str, Any]:
        return fingerprint(self.corpus, self.cfg, process_count=self.process_count)

    def _produce(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        epoch = ConsumerEpoch(
            self.corpus,
            self.cfg,
            self.position.epoch,
            self.process_index,
            self.process_count,
            read_threads=self.read_threads,
            prefetch_files=self.prefetch_files,
        )
        yield from epoch.pairs(self.position.batches, dtype=self.dtype)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.position.batches >= self.batches_per_epoch():
            self.position = Position(self.position.epoch + 1, 0)
        source = self._produce() if self.prefetch <= 0 else _prefetched(self._produce(), self.prefetch)
        for batch in source:
            self.position.batches += 1
            yield batch
        self.position = Position(self.position.epoch + 1, 0)


def batches(path: str | os.PathLike, seq_len: int, global_batch_size: int, **kwargs: Any) -> TokenBatches:
    """This host's share of each global batch: see :class:`TokenBatches`."""
    return TokenBatches(path, seq_len, global_batch_size, **kwargs)


def global_array(local: np.ndarray, sharding: Any) -> Any:
    """One global ``jax.Array`` from every host's share (rows split along the sharding's first axis)."""
    import jax

    return jax.make_array_from_process_local_data(sharding, local)


_DONE = object()


def _prefetched(source: Iterator[Any], depth: int) -> Iterator[Any]:
    """``source`` run ahead by a thread; errors reach the consumer, stopping early stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in source:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=run, name="thresher-token-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
