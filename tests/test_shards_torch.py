"""Packing core and the PyTorch loader on real token shards: exactly once, no overlap, exact resume."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")

from thresher.shards.sample import small_sample_tokens  # noqa: E402
from thresher.shards.stream import PAD, ConsumerEpoch, PackingConfig, TokenCorpus  # noqa: E402
from thresher.shards.tokens import MANIFEST_NAME, ShardError  # noqa: E402
from thresher.shards.torch import TokenDataset, TokenLoader  # noqa: E402

SEQ, BATCH = 96, 4

# Loader workers start from a forkserver, not as forks of pytest: by the time these tests run,
# other modules have JAX and Ray threads in this process, and forking a threaded process can
# deadlock. Like spawn, the start method of macOS, it needs the dataset to pickle: tested here too.
WORKER_START = multiprocessing.get_context("forkserver")
WORKER_START.set_forkserver_preload(["thresher.shards.torch"])


def make_loader(ds: TokenDataset, workers: int) -> TokenLoader:
    return TokenLoader(ds, num_workers=workers, multiprocessing_context=WORKER_START if workers else None)


@pytest.fixture(scope="session")
def tokens_dir(tmp_path_factory, shared_data):
    """Real tokens dir, built once per session and shared by the test_shards_* modules."""
    data = shared_data("lid-lingua-testdata").parent
    return small_sample_tokens(tmp_path_factory.getbasetemp() / "shards-sample", data)


def split_docs(tokens_dir, split):
    """The split's documents, read straight from the Parquet files the manifest lists."""
    manifest = json.loads((tokens_dir / MANIFEST_NAME).read_text())
    docs = []
    for s in manifest["shards"]:
        if s["split"] == split:
            docs += [
                np.asarray(t) for t in pq.read_table(tokens_dir / s["path"]).column("tokens").to_pylist()
            ]
    return docs


def consumer_stream(windows: list[np.ndarray]) -> np.ndarray:
    """A consumer's real tokens in order; padding may only close the stream."""
    flat = np.concatenate([w.reshape(-1) for w in windows]) if windows else np.zeros(0, np.int64)
    pad = np.flatnonzero(flat == PAD)
    if pad.size:
        assert np.all(flat[pad[0] :] == PAD), "padding inside the stream"
        flat = flat[: pad[0]]
    return flat


def segments(stream: np.ndarray, eot: int) -> list[tuple[int, ...]]:
    cuts = np.flatnonzero(stream == eot) + 1
    return [tuple(s) for s in np.split(stream, cuts) if s.size]


@pytest.mark.parametrize("consumers", [1, 2, 3, 8])
def test_every_token_exactly_once_per_epoch(tokens_dir, consumers):
    docs = split_docs(tokens_dir, "train")
    corpus = TokenCorpus(tokens_dir, "train")
    eot = corpus.eot_id
    cfg = PackingConfig(SEQ, BATCH, seed=7, shuffle_buffer_tokens=50_000)
    streams, counts = [], set()
    for c in range(consumers):
        batches = list(ConsumerEpoch(corpus, cfg, epoch=1, consumer=c, n_consumers=consumers).batches())
        counts.add(len(batches))
        streams.append(consumer_stream(batches))
    assert len(counts) == 1  # every consumer (rank) yields the same number of batches
    everything = np.concatenate(streams)
    expected = np.concatenate(docs)
    assert everything.size == expected.size
    assert np.array_equal(np.bincount(everything), np.bincount(expected))
    # documents arrive whole and shuffled; only those cut at a consumer boundary may be split
    got = Counter(seg for s in streams for seg in segments(s, eot))
    want = Counter(tuple(d) for d in docs)
    assert sum((want - got).values()) <= 2 * (consumers - 1)
    order = [seg for seg in segments(streams[0], eot) if seg in want][:50]
    canonical = [tuple(d) for d in docs]
    positions = [canonical.index(seg) for seg in order]
    assert positions != sorted(positions)  # shuffled, not file order


def test_without_shuffle_consumers_tile_the_split_in_order(tokens_dir):
    expected = np.concatenate(split_docs(tokens_dir, "train"))
    corpus = TokenCorpus(tokens_dir, "train")
    cfg = PackingConfig(SEQ, BATCH, shuffle=False)
    streams = [consumer_stream(list(ConsumerEpoch(corpus, cfg, 0, c, 4).batches())) for c in range(4)]
    assert np.array_equal(np.concatenate(streams), expected)


def test_drop_tail_delivers_full_batches_of_distinct_tokens(tokens_dir):
    corpus = TokenCorpus(tokens_dir, "train")
    cfg = PackingConfig(SEQ, 16, shuffle=False, tail="drop")
    streams = [list(ConsumerEpoch(corpus, cfg, 0, c, 4).batches()) for c in range(4)]
    assert len({len(s) for s in streams}) == 1
    assert all((b != PAD).all() for s in streams for b in s)
    delivered = sum(b.size for s in streams for b in s)
    assert 0 <= corpus.total_tokens - delivered < 4 * (16 * (SEQ + 1) + 1)


LOADER_BATCH = 16  # fewer, larger batches keep the worker-process runs short


def loader_batches(tokens_dir, world, workers, rank, **kw):
    ds = TokenDataset(
        tokens_dir,
        SEQ,
        batch_size=LOADER_BATCH,
        rank=rank,
        world_size=world,
        seed=3,
        shuffle_buffer_tokens=50_000,
        **kw,
    )
    return [(x.numpy(), y.numpy()) for x, y in make_loader(ds, workers)], ds


@pytest.mark.parametrize("world,workers", [(1, 0), (2, 0), (4, 0), (1, 2), (2, 2), (4, 2)])
def test_ranks_and_workers_deliver_the_split_exactly_once(tokens_dir, world, workers):
    corpus = TokenCorpus(tokens_dir, "train")
    per_rank = max(workers, 1)
    n_consumers = world * per_rank
    cfg = PackingConfig(SEQ, LOADER_BATCH, seed=3, shuffle_buffer_tokens=50_000)
    reference = {c: list(ConsumerEpoch(corpus, cfg, 0, c, n_consumers).batches()) for c in range(n_consumers)}
    delivered: dict[int, list] = {c: [] for c in range(n_consumers)}
    sizes = set()
    for rank in range(world):
        batches, ds = loader_batches(tokens_dir, world, workers, rank)
        sizes.add(len(batches))
        assert ds.position.epoch == 1 and ds.position.batches == 0
        for j, (x, y) in enumerate(batches):
            assert x.dtype == np.int64 and x.shape == y.shape == (LOADER_BATCH, SEQ)
            delivered[rank * per_rank + j % per_rank].append((x, y))
    assert len(sizes) == 1  # no rank waits for another at the end of the epoch
    for c in range(n_consumers):
        assert len(delivered[c]) == len(reference[c])
        for (x, y), w in zip(delivered[c], reference[c], strict=True):
            real = w != PAD
            assert np.array_equal(x[real[:, :-1]], w[:, :-1][real[:, :-1]])
            assert np.array_equal(y, np.where(real[:, 1:], w[:, 1:], -100))
    # each consumer's windows reached exactly one rank, in order; with
    # test_every_token_exactly_once_per_epoch (the consumers tile the split) every token came once


def test_epochs_differ_and_seed_reproduces(tokens_dir):
    ds = TokenDataset(tokens_dir, SEQ, batch_size=BATCH, seed=11)
    e0 = [x.numpy() for x, _ in ds]
    e1 = [x.numpy() for x, _ in ds]
    again = [x.numpy() for x, _ in TokenDataset(tokens_dir, SEQ, batch_size=BATCH, seed=11)]
    assert len(e0) == len(e1) and not np.array_equal(e0[0], e1[0])
    assert all(np.array_equal(a, b) for a, b in zip(e0, again, strict=True))


@pytest.mark.parametrize("workers,split", [(0, "train"), (2, "validation")])
def test_resume_equals_uninterrupted_run(tokens_dir, workers, split):
    kw = dict(batch_size=8, rank=1, world_size=2, seed=5, split=split, shuffle_buffer_tokens=8_000)
    full_loader = make_loader(TokenDataset(tokens_dir, SEQ, **kw), workers)
    epoch0 = [(x.numpy(), y.numpy()) for x, y in full_loader]
    epoch1 = [(x.numpy(), y.numpy()) for x, y in full_loader]
    stream = epoch0 + epoch1
    n = len(epoch0)
    for stop in (1, 6, n - 1, n, n + 5) if workers == 0 else (3, n + 4):
        loader = make_loader(TokenDataset(tokens_dir, SEQ, **kw), workers)
        taken = 0
        while taken < stop:  # a pass ends at the epoch's end; the next pass starts the next epoch
            for _batch in loader:
                taken += 1
                if taken == stop:
                    break
        state = json.loads(json.dumps(loader.state_dict()))  # must survive a checkpoint file
        fresh = make_loader(TokenDataset(tokens_dir, SEQ, **kw), workers)
        fresh.load_state_dict(state)
        rest = []
        while len(rest) < len(stream) - stop:
            rest += [(x.numpy(), y.numpy()) for x, y in fresh]
        for (x, y), (ex, ey) in zip(rest, stream[stop:], strict=True):
            assert np.array_equal(x, ex) and np.array_equal(y, ey)


def test_resume_refuses_a_different_plan(tokens_dir):
    ds = TokenDataset(tokens_dir, SEQ, batch_size=BATCH, seed=5)
    it = iter(ds)
    next(it)
    state = ds.state_dict()
    with pytest.raises(ValueError, match="seq_len"):
        TokenDataset(tokens_dir, SEQ * 2, batch_size=BATCH, seed=5).load_state_dict(state)
    other = TokenDataset(tokens_dir, SEQ, batch_size=BATCH, seed=5)
    other.load_state_dict(state)
    with pytest.raises(ValueError, match="same number"):
        next(iter(make_loader(other, 2)))


def test_validation_split_is_disjoint_from_train(tokens_dir):
    manifest = json.loads((tokens_dir / MANIFEST_NAME).read_text())
    ids = {s: set() for s in ("train", "validation")}
    for s in manifest["shards"]:
        ids[s["split"]] |= set(pq.read_table(tokens_dir / s["path"], columns=["id"]).column("id").to_pylist())
    assert ids["validation"] and not ids["train"] & ids["validation"]
    ds = TokenDataset(tokens_dir, SEQ, batch_size=BATCH, split="validation", shuffle=False)
    got = np.concatenate([np.concatenate([x.numpy()[:, :1], y.numpy()], axis=1).reshape(-1) for x, y in ds])
    got = got[got != -100]
    want = np.concatenate(split_docs(tokens_dir, "validation"))
    assert np.array_equal(got[: want.size], want)
    assert ds.corpus.total_tokens == manifest["totals"]["validation"]["tokens"]


def test_missing_shard_is_named(tmp_path, tokens_dir):
    copy = tmp_path / "tokens"
    shutil.copytree(tokens_dir, copy)
    (copy / "shard-00002.parquet").unlink()
    with pytest.raises(ShardError, match="shard-00002.parquet"):
        TokenDataset(copy, SEQ, batch_size=BATCH)


def test_truncated_shard_is_named(tmp_path, tokens_dir):
    copy = tmp_path / "tokens"
    shutil.copytree(tokens_dir, copy)
    victim = copy / "shard-00003.parquet"
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(ShardError, match="shard-00003.parquet"):
        TokenDataset(copy, SEQ, batch_size=BATCH)


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_shard_fails_reading_with_its_name(tmp_path, tokens_dir, workers):
    copy = tmp_path / "tokens"
    shutil.copytree(tokens_dir, copy)
    victim = copy / "shard-00000.parquet"
    data = bytearray(victim.read_bytes())
    for i in range(1000, len(data) // 2, 97):  # damage data pages, keep the size and the footer
        data[i] ^= 0x5A
    victim.write_bytes(bytes(data))
    ds = TokenDataset(copy, SEQ, batch_size=BATCH, shuffle=False)
    with pytest.raises(Exception, match="shard-00000.parquet"):
        for _ in make_loader(ds, workers):
            pass


def test_missing_manifest_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        TokenDataset(tmp_path, SEQ, batch_size=BATCH)
