"""The loaders reading token shards from S3 (a real moto server over HTTP, tests/s3.py): the same
batches as from the local copy, two ranks disjoint, exact resume across local and S3, a bounded
cache, faults on the wire (tests/s3faults.py), and a shard changed after its manifest."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.s3faults import FaultPlan, FaultProxy  # noqa: E402
from thresher.io import StorageConfig  # noqa: E402
from thresher.shards.sample import small_sample_tokens  # noqa: E402
from thresher.shards.stream import ConsumerEpoch, TokenCorpus  # noqa: E402
from thresher.shards.tokens import ShardError, verify_tokens_dir  # noqa: E402
from thresher.shards.torch import TokenDataset, TokenLoader  # noqa: E402

SEQ, BATCH = 96, 4
FAST = StorageConfig(retries=8, backoff_base_s=0.01, backoff_max_s=0.05)
WORKER_START = multiprocessing.get_context("forkserver")


@pytest.fixture(scope="session")
def tokens_dir(tmp_path_factory, shared_data):
    data = shared_data("lid-lingua-testdata").parent
    return small_sample_tokens(tmp_path_factory.getbasetemp() / "shards-sample", data)


def upload(s3_server, bucket_uri: str, tokens_dir: Path, prefix: str = "tokens") -> str:
    """The tokens directory copied to the bucket with boto3 directly (not through our code)."""
    client, bucket = s3_server.client(), bucket_uri[len("s3://") :]
    for p in sorted(tokens_dir.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            client.upload_file(str(p), bucket, f"{prefix}/{p.name}")
    return f"{bucket_uri}/{prefix}"


@pytest.fixture
def s3_tokens(s3_server, s3_bucket, tokens_dir) -> str:
    return upload(s3_server, s3_bucket, tokens_dir)


def batches(ds, n=None):
    out = []
    for inputs, targets in ds:
        out.append((inputs.numpy().copy(), targets.numpy().copy()))
        if n is not None and len(out) == n:
            break
    return out


def same(a, b) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True)
    )


def test_s3_loader_equals_local_and_ranks_are_disjoint(tokens_dir, s3_tokens, tmp_path):
    kw = dict(batch_size=BATCH, world_size=2, seed=3, shuffle_buffer_tokens=20_000, tail="drop")
    local = [batches(TokenDataset(tokens_dir, SEQ, rank=r, **kw)) for r in range(2)]
    remote_ds = [TokenDataset(s3_tokens, SEQ, rank=r, cache_dir=tmp_path / "cache", **kw) for r in range(2)]
    remote = [batches(ds) for ds in remote_ds]
    assert all(same(a, b) for a, b in zip(local, remote, strict=True))
    assert remote[0] and not same(remote[0], remote[1])
    # disjoint: with tail=drop and no shuffle across ranks, no window of rank 0 is a window of rank 1
    seen0 = {w.tobytes() for x, _ in remote[0] for w in x}
    assert not seen0 & {w.tobytes() for x, _ in remote[1] for w in x}
    # both ranks share one cache: every shard fetched once
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        f"{s.sha256}-{s.bytes}.parquet" for s in remote_ds[0].corpus.shards
    )


def test_resume_from_a_local_state_on_s3_gives_the_same_batches(tokens_dir, s3_tokens, tmp_path):
    """A loader's position saved while reading from disk resumes the S3 loader at the same batch."""
    kw = dict(batch_size=BATCH, seed=5, shuffle_buffer_tokens=20_000)
    full = batches(TokenDataset(tokens_dir, SEQ, **kw))
    local = TokenDataset(tokens_dir, SEQ, **kw)
    head = batches(local, 7)
    remote = TokenDataset(s3_tokens, SEQ, cache_dir=tmp_path / "cache", **kw)
    remote.load_state_dict(local.state_dict())
    assert same(head + batches(remote), full)


def test_torch_loader_workers_over_s3(tokens_dir, s3_tokens, tmp_path):
    """DataLoader workers (new processes) get the dataset pickled and reconnect to S3 themselves;
    together they deliver what the plan gives their two consumers from the local shards."""
    kw = dict(batch_size=BATCH, seed=1, shuffle_buffer_tokens=20_000)
    local = TokenDataset(tokens_dir, SEQ, **kw)
    want = [x for c in range(2) for x, _ in ConsumerEpoch(local.corpus, local.cfg, 0, c, 2).pairs()]
    ds = TokenDataset(s3_tokens, SEQ, cache_dir=tmp_path / "cache", **kw)
    got = batches(TokenLoader(ds, num_workers=2, multiprocessing_context=WORKER_START))
    assert sorted(x.tobytes() for x, _ in got) == sorted(x.astype(np.int64).tobytes() for x in want)


def test_cache_stays_bounded(tokens_dir, s3_tokens, tmp_path):
    corpus_bytes = sorted(s.bytes for s in TokenCorpus(tokens_dir).shards)
    limit = corpus_bytes[-1] + 1  # room for the largest shard only
    kw = dict(batch_size=BATCH, seed=2, shuffle_buffer_tokens=20_000)
    ds = TokenDataset(s3_tokens, SEQ, cache_dir=tmp_path / "cache", cache_bytes=limit, prefetch_files=1, **kw)
    assert same(batches(ds), batches(TokenDataset(tokens_dir, SEQ, **kw)))
    cached = [p for p in (tmp_path / "cache").iterdir()]
    assert sum(p.stat().st_size for p in cached) <= limit and len(cached) == 1


def test_s3_loader_through_faults(s3_server, tokens_dir, s3_tokens, s3_env, tmp_path):
    kw = dict(batch_size=BATCH, seed=4, shuffle_buffer_tokens=20_000)
    want = batches(TokenDataset(tokens_dir, SEQ, **kw))
    plan = FaultPlan(seed=11, slowdown=0.05, error500=0.1, reset=0.1, truncate=0.2, delay=0.05)
    with FaultProxy((s3_server.host, s3_server.port), plan) as proxy:
        s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        ds = TokenDataset(s3_tokens, SEQ, cache_dir=tmp_path / "cache", storage=FAST, **kw)
        assert same(batches(ds), want)
        assert verify_tokens_dir(s3_tokens) == []
    assert proxy.counts["truncate"] and proxy.counts["error500"], proxy.counts


def test_a_shard_changed_on_s3_is_refused(s3_server, s3_bucket, tokens_dir, tmp_path):
    """A real shard overwritten on S3 with bytes of the same size (flipped in the middle) after its
    manifest: the download fails the sha256 check, names the shard, and is not left in the cache."""
    uri = upload(s3_server, s3_bucket, tokens_dir)
    ds = TokenDataset(uri, SEQ, batch_size=BATCH, cache_dir=tmp_path / "cache", shuffle=False)
    shard = ds.corpus.shards[0]
    data = bytearray((tokens_dir / shard.path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    s3_server.client().put_object(Bucket=s3_bucket[5:], Key=f"tokens/{shard.path}", Body=bytes(data))
    with pytest.raises(ShardError, match=f"{shard.path}.*the manifest says"):
        batches(ds)
    assert not (tmp_path / "cache" / f"{shard.sha256}-{shard.bytes}.parquet").exists()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no temporary
    assert verify_tokens_dir(uri) == [f"sha256 differs from manifest: {uri}/{shard.path}"]


def test_missing_shard_on_s3_fails_at_construction(s3_server, s3_bucket, tokens_dir):
    uri = upload(s3_server, s3_bucket, tokens_dir)
    shard = TokenCorpus(tokens_dir).shards[0]
    s3_server.client().delete_object(Bucket=s3_bucket[5:], Key=f"tokens/{shard.path}")
    with pytest.raises(ShardError, match="missing"):
        TokenDataset(uri, SEQ, batch_size=BATCH)
