"""PyTorch loader over token shards: an ``IterableDataset`` that is sharded, shuffled and resumable.

Usage on each data-parallel rank::

    ds = TokenDataset("out/tokens", seq_len=1024, batch_size=8, rank=rank, world_size=world, seed=0)
    loader = TokenLoader(ds, num_workers=2, pin_memory=True)
    for inputs, targets in loader:            # int64 [8, 1024] each; one epoch per pass
        loss = F.cross_entropy(logits.view(-1, V), targets.view(-1))   # ignores padding (-100)
        ...
        if step % 1000 == 0:
            save({"model": ..., "data": loader.state_dict()})
    # after a restart:
    loader.load_state_dict(saved["data"])    # the next batch is the one that would have come next

Why a :class:`TokenLoader` rather than a plain ``DataLoader``: with worker processes the dataset
object in the trainer's process never sees what the workers produced, so the position (epoch,
batches delivered) is counted where batches arrive, in the trainer's process. Workers produce the
same number of batches and the DataLoader takes them round-robin, so from "k batches delivered"
each worker knows how many of its own were consumed and restarts right after them. A plain
``DataLoader`` with ``num_workers=0`` keeps an exact position too (the dataset counts what it
yields); with workers use :class:`TokenLoader`, which also refuses ``persistent_workers`` (a
persistent worker keeps a stale position at the next epoch).

Each pass over the loader continues from the current position: breaking out after k batches and
iterating again resumes at batch k + 1; a completed pass moves to the next epoch.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

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


class TokenDataset(IterableDataset):
    """Batches ``(input_ids, targets)``, int64 ``[batch_size, seq_len]``, of one rank.

    The split's tokens are divided among ``world_size`` ranks × DataLoader workers without overlap
    (see :mod:`thresher.shards.stream` for the plan and the tail policy: ``tail="pad"`` delivers
    every token once and pads the last batches with targets of -100)."""

    def __init__(
        self,
        path: str | os.PathLike,
        seq_len: int,
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        split: str = "train",
        shuffle: bool = True,
        tail: str = "pad",
        shuffle_buffer_tokens: int = DEFAULT_SHUFFLE_BUFFER_TOKENS,
        read_threads: int = DEFAULT_READ_THREADS,
        prefetch_files: int = DEFAULT_PREFETCH_FILES,
        cache_dir: str | os.PathLike | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        storage: StorageConfig | None = None,
    ) -> None:
        super().__init__()
        self.read_threads = read_threads  # decoding threads per process; changes speed, not batches
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.cfg = PackingConfig(seq_len, batch_size, seed, split, shuffle, tail, shuffle_buffer_tokens)
        self.corpus = TokenCorpus(path, split, cache_dir=cache_dir, cache_bytes=cache_bytes, storage=storage)
        self.prefetch_files = prefetch_files
        self.rank, self.world_size = rank, world_size
        self.position = Position()
        self._num_workers = 0  # the worker count under which ``position`` was counted

    @property
    def eot_id(self) -> int:
        return self.corpus.eot_id

    @property
    def vocab_size(self) -> int:
        return self.corpus.vocab_size

    def batches_per_epoch(self, num_workers: int = 0) -> int:
        """Batches this rank delivers per epoch with ``num_workers`` DataLoader workers."""
        workers = max(num_workers, 1)
        return workers * batches_per_consumer(self.corpus.total_tokens, self.world_size * workers, self.cfg)

    def state_dict(self) -> dict[str, Any]:
        state = make_state(self.position, self._fingerprint())
        state["num_workers"] = self._num_workers
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = check_state(state, self._fingerprint())
        self._num_workers = int(state.get("num_workers", 0))

    def _fingerprint(self) -> dict[str, Any]:
        # rank is left out: all ranks stand at the same position
        return fingerprint(self.corpus, self.cfg, world_size=self.world_size)

    def _enter(self, num_workers: int) -> None:
        """Start a pass with ``num_workers`` workers, rolling over a finished epoch."""
        if self.position.batches and num_workers != self._num_workers:
            raise ValueError(
                f"the loader stopped mid-epoch with {self._num_workers} DataLoader workers; resume with "
                f"the same number (got {num_workers}) or at an epoch boundary"
            )
        self._num_workers = num_workers
        if self.position.batches >= self.batches_per_epoch(num_workers):
            self.position = Position(self.position.epoch + 1, 0)

    def _batches(self, worker: int, num_workers: int, start: int):
        workers = max(num_workers, 1)
        epoch = ConsumerEpoch(
            self.corpus,
            self.cfg,
            self.position.epoch,
            self.rank * workers + worker,
            self.world_size * workers,
            read_threads=self.read_threads,
            prefetch_files=self.prefetch_files,
        )
        for inputs, targets in epoch.pairs(start):
            yield torch.from_numpy(inputs), torch.from_numpy(targets)

    def __iter__(self):
        info = get_worker_info()
        if info is None:
            self._enter(0)
            for batch in self._batches(0, 0, self.position.batches):
                self.position.batches += 1
                yield batch
            self.position = Position(self.position.epoch + 1, 0)
            return
        if info.num_workers != self._num_workers:
            raise RuntimeError("TokenDataset with DataLoader workers must be iterated through TokenLoader")
        # The DataLoader takes batches round-robin starting at worker 0: batch j of a pass from
        # the start of an epoch comes from consumer j % n. After k batches the next one is due
        # from consumer k % n, so worker i plays consumer (i + k) % n and skips what it delivered.
        k, n = self.position.batches, info.num_workers
        consumer = (info.id + k) % n
        yield from self._batches(consumer, n, len(range(consumer, k, n)))


class TokenLoader(DataLoader):
    """A ``DataLoader`` for :class:`TokenDataset` that counts delivered batches for exact resume."""

    def __init__(self, dataset: TokenDataset, *, num_workers: int = 0, **kwargs: Any) -> None:
        if not isinstance(dataset, TokenDataset):
            raise TypeError("TokenLoader takes a TokenDataset")
        if kwargs.pop("persistent_workers", False):
            raise ValueError("persistent_workers would keep a stale position across epochs; leave it off")
        if kwargs.pop("batch_size", None) is not None:
            raise ValueError("set batch_size on the TokenDataset; the loader passes its batches through")
        super().__init__(dataset, batch_size=None, num_workers=num_workers, **kwargs)

    def __len__(self) -> int:
        return self.dataset.batches_per_epoch(self.num_workers)

    def __iter__(self):
        ds: TokenDataset = self.dataset
        if self.num_workers == 0:
            yield from super().__iter__()  # the dataset counts in this process
            return
        ds._enter(self.num_workers)
        for batch in super().__iter__():
            ds.position.batches += 1
            yield batch
        ds.position = Position(ds.position.epoch + 1, 0)

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)
