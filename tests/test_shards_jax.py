"""JAX loader: each host's share of the global batch, same plan as the core, exact resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from thresher.shards.jax import batches, global_array  # noqa: E402
from thresher.shards.sample import small_sample_tokens  # noqa: E402
from thresher.shards.stream import PAD, ConsumerEpoch, TokenCorpus  # noqa: E402
from thresher.shards.tokens import ShardError  # noqa: E402

SEQ, GLOBAL = 64, 16


@pytest.fixture(scope="session")
def tokens_dir(tmp_path_factory, shared_data):
    """Real tokens dir, built once per session and shared by the test_shards_* modules."""
    data = shared_data("lid-lingua-testdata").parent
    return small_sample_tokens(tmp_path_factory.getbasetemp() / "shards-sample", data)


@pytest.mark.parametrize("hosts", [1, 2, 4])
def test_hosts_share_the_split_exactly_once(tokens_dir, hosts):
    corpus = TokenCorpus(tokens_dir, "train")
    streams, counts = [], set()
    for host in range(hosts):
        data = batches(tokens_dir, SEQ, GLOBAL, seed=1, process_index=host, process_count=hosts)
        got = list(data)
        counts.add(len(got))
        assert data.position.epoch == 1
        windows = list(ConsumerEpoch(corpus, data.cfg, 0, host, hosts).batches())
        assert len(windows) == len(got)
        for (x, y), w in zip(got, windows, strict=True):
            assert x.dtype == np.int32 and x.shape == (GLOBAL // hosts, SEQ)
            assert np.array_equal(y, np.where(w[:, 1:] == PAD, -100, w[:, 1:]))
        real = np.concatenate([w.reshape(-1) for w in windows])
        streams.append(real[real != PAD])
    assert len(counts) == 1
    everything = np.concatenate(streams)
    assert everything.size == corpus.total_tokens
    expected = np.concatenate([corpus.read_unit(u)[0] for u in range(len(corpus.unit_tokens))])
    assert np.array_equal(np.bincount(everything), np.bincount(expected))


def test_resume_equals_uninterrupted_run(tokens_dir):
    kw = dict(seed=2, process_index=1, process_count=2, shuffle_buffer_tokens=20_000)
    full = batches(tokens_dir, SEQ, GLOBAL, **kw)
    stream = list(full) + list(full)
    for stop in (5, len(stream) // 2 + 3):
        data = batches(tokens_dir, SEQ, GLOBAL, **kw)
        taken = 0
        while taken < stop:
            for _ in data:
                taken += 1
                if taken == stop:
                    break
        state = json.loads(json.dumps(data.state_dict()))
        fresh = batches(tokens_dir, SEQ, GLOBAL, **kw)
        fresh.load_state_dict(state)
        rest = list(fresh) + (list(fresh) if state["epoch"] == 0 else [])
        assert len(rest) == len(stream) - stop
        for (x, y), (ex, ey) in zip(rest, stream[stop:], strict=True):
            assert np.array_equal(x, ex) and np.array_equal(y, ey)


def test_global_array_from_host_share(tokens_dir):
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    data = batches(tokens_dir, SEQ, GLOBAL, seed=0)  # process_index/count from jax itself
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    x, y = next(iter(data))
    gx = global_array(x, sharding)
    assert gx.shape == (GLOBAL, SEQ) and gx.sharding == sharding
    assert np.array_equal(np.asarray(gx), x)


def test_prefetch_thread_stops_and_reports_errors(tokens_dir, tmp_path):
    import threading

    data = batches(tokens_dir, SEQ, GLOBAL, process_index=0, process_count=1, prefetch=4)
    for i, _ in enumerate(data):
        if i == 3:
            break
    assert data.position.batches == 4
    assert not [t for t in threading.enumerate() if t.name == "thresher-token-prefetch"]
    copy = tmp_path / "tokens"
    shutil.copytree(tokens_dir, copy)
    victim = copy / "shard-00000.parquet"
    raw = bytearray(victim.read_bytes())
    for i in range(1000, len(raw) // 2, 97):
        raw[i] ^= 0x5A
    victim.write_bytes(bytes(raw))
    broken = batches(copy, SEQ, GLOBAL, process_index=0, process_count=1, shuffle=False, prefetch=2)
    with pytest.raises(ShardError, match="shard-00000.parquet"):
        list(broken)
