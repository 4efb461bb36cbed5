"""thresher.io.Store against a local directory and a real S3 API server (moto over HTTP, tests/s3.py),
directly and through the fault-injecting proxy (tests/s3faults.py)."""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.s3faults import FaultPlan, FaultProxy
from thresher.errors import InputProblem, MissingDependency, OutputProblem, UsageError
from thresher.io import StorageConfig, Store

FAST = StorageConfig(retries=8, backoff_base_s=0.01, backoff_max_s=0.05)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> Store:
    if request.param == "local":
        return Store.from_uri(tmp_path / "root")
    bucket = request.getfixturevalue("s3_bucket")
    return Store.from_uri(f"{bucket}/root")


def test_same_calls_on_local_and_s3(store):
    """Every call means the same on both backends: write, read, list, find, size, remove."""
    store.probe()
    store.write_bytes("a/x.bin", b"\x00\x01payload")
    store.write_json("a/meta.json", {"n": 1}, indent=1)
    store.write_text("b/c/t.txt", "é\n")
    table = pa.table({"id": ["1", "2"], "n": [1, 2]})
    store.write_parquet("p/part-0.parquet", table)
    with store.open_output("s/stream.bin") as f:
        f.write(b"streamed")
    with store.open_output("s/stream.txt", "w") as f:
        f.write("text ü")

    assert store.read_bytes("a/x.bin") == b"\x00\x01payload"
    assert store.read_json("a/meta.json") == {"n": 1}
    assert store.read_text("b/c/t.txt") == "é\n"
    assert store.read_text("s/stream.txt") == "text ü"
    with store.open_input("p/part-0.parquet") as f:
        assert pq.read_table(f).equals(table)
    assert store.ls() == ["a", "b", "p", "s"]
    assert store.ls("a") == ["meta.json", "x.bin"]
    assert store.find("b") == ["b/c/t.txt"]
    assert store.size("s/stream.bin") == 8
    assert store.exists("a/x.bin") and not store.exists("a/nope")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("a/nope")
    store.rm("a/x.bin")
    store.rm("a/x.bin")  # already gone: nothing happens
    assert store.ls("a") == ["meta.json"]
    store.rm("b", recursive=True)
    assert not store.exists("b/c/t.txt") and store.find("b") == []
    assert store.child("s").read_bytes("stream.bin") == b"streamed"
    assert store.child("s").uri == store.uri_of("s")


def test_failed_stream_write_publishes_nothing(store):
    """A writer that fails mid-stream leaves no object or file under the final name, on both."""
    with pytest.raises(RuntimeError), store.open_output("out/data.bin") as f:
        f.write(b"half")
        raise RuntimeError("writer died")
    assert not store.exists("out/data.bin")
    assert [n for n in store.find() if "data.bin" in n] == []


def test_s3_write_is_one_object_no_temporary(s3_server, s3_bucket):
    """On S3 publishing is the PUT itself: the bucket holds the final key only, never a temporary."""
    store = Store.from_uri(f"{s3_bucket}/run")
    store.write_bytes("tokens/manifest.json", b"{}")
    with store.open_output("report.html", "w") as f:
        f.write("<html></html>")
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket[5:])["Contents"]]
    assert sorted(keys) == ["run/report.html", "run/tokens/manifest.json"]


def test_store_pickles_and_reconnects(s3_bucket):
    """A Store goes to another process (Ray, DataLoader workers) without its client or secrets."""
    store = Store.from_uri(s3_bucket, FAST)
    store.write_bytes("k", b"v")
    blob = pickle.dumps(store)
    assert os.environ["AWS_SECRET_ACCESS_KEY"].encode() not in blob
    assert os.environ["AWS_ENDPOINT_URL"].encode() not in blob
    again = pickle.loads(blob)
    assert again == store and again.config == FAST and again.read_bytes("k") == b"v"


def test_stores_share_one_client_per_environment(s3_server, s3_bucket, s3_env):
    """Every Store of a process on the same backend, config and environment uses one client (a new
    one costs botocore's service model, credentials and connections: about a second on a busy
    machine, once per Store a run made); another endpoint or other credentials get their own."""
    a = Store.from_uri(f"{s3_bucket}/run", FAST)
    b = pickle.loads(pickle.dumps(Store.from_uri(f"{s3_bucket}/run/tokenizer", FAST)))
    assert a.fs is b.fs
    assert Store.from_uri(s3_bucket, StorageConfig(retries=1)).fs is not a.fs
    s3_env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{s3_server.port}/")
    moved = Store.from_uri(f"{s3_bucket}/run", FAST)
    assert moved.fs is not a.fs
    moved.write_bytes("k", b"v")
    assert a.read_bytes("k") == b"v"


def test_probe_missing_bucket(s3_server):
    store = Store.from_uri("s3://thresher-no-such-bucket/out")
    with pytest.raises(OutputProblem, match="the bucket does not exist"):
        store.probe()
    with pytest.raises(InputProblem):
        store.probe(write=False)


def test_probe_denied_write_leaves_nothing(s3_server, s3_bucket, s3_env):
    """Credentials that may read but not write: one clear line, and no object was created."""
    with FaultProxy((s3_server.host, s3_server.port), FaultPlan(deny_writes=True)) as proxy:
        s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        store = Store.from_uri(f"{s3_bucket}/out", FAST)
        Store.from_uri(s3_bucket, FAST).probe(write=False)  # reading works
        with pytest.raises(OutputProblem, match="permission denied"):
            store.probe()
    assert s3_server.client().list_objects_v2(Bucket=s3_bucket[5:]).get("KeyCount", 0) == 0


def test_probe_no_credentials(s3_bucket, s3_env):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        s3_env.delenv(name, raising=False)
    with pytest.raises(OutputProblem, match="no credentials found"):
        Store.from_uri(s3_bucket).probe()


def test_probe_endpoint_unreachable_is_one_line_without_the_endpoint(s3_bucket, s3_env):
    s3_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    store = Store.from_uri(s3_bucket, StorageConfig(retries=1, connect_timeout_s=1))
    with pytest.raises(OutputProblem) as err:
        store.probe()
    assert "cannot reach the storage service" in str(err.value)
    assert "127.0.0.1:9" not in str(err.value)


def test_probe_local_unwritable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputProblem):
        Store.from_uri(blocker / "out").probe()


@pytest.mark.parametrize(
    "uri", ["s3://", "s3:///key", "s3://key:secret@bucket/x", "no such scheme://x", "nosuchscheme://b/x"]
)
def test_malformed_uri_is_a_usage_error(uri):
    with pytest.raises(UsageError) as err:
        Store.from_uri(uri)
    assert "secret" not in str(err.value)


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed")
def test_gcs_without_gcsfs_is_a_missing_dependency():
    with pytest.raises(MissingDependency, match="gcsfs is needed for gs:// URIs"):
        Store.from_uri("gs://bucket/out")


def test_faults_are_retried_and_content_is_identical(s3_server, s3_bucket, s3_env, caplog, tmp_path):
    """503 SlowDown, 500, resets before an answer and downloads broken off mid-stream: every read and
    write still succeeds with the right bytes (botocore retries the requests, Store._retry the
    broken-off bodies), and no log line shows the endpoint or a key."""
    payloads = {f"obj/{i}.bin": os.urandom(2000 + 5000 * i) for i in range(12)}
    plan = FaultPlan(seed=7, slowdown=0.12, error500=0.08, reset=0.08, truncate=0.12, delay=0.05)
    caplog.set_level(logging.DEBUG, logger="thresher")
    with FaultProxy((s3_server.host, s3_server.port), plan) as proxy:
        s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        store = Store.from_uri(f"{s3_bucket}/faulty", FAST)
        store.probe()
        for rel, data in payloads.items():
            store.write_bytes(rel, data)
        got = {rel: store.read_bytes(rel) for rel in payloads}
        for i, rel in enumerate(payloads):
            if i % 3 == 0:
                assert store.download(rel, tmp_path / f"{i}.bin").read_bytes() == payloads[rel]
        assert store.find("obj") == sorted(payloads)
    assert got == payloads
    assert proxy.counts["truncate"] and proxy.counts["slowdown"] and proxy.counts["reset"], proxy.counts
    assert "retry" in caplog.text  # ours: a body broken off mid-stream
    for secret in (proxy.endpoint, os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["AWS_ACCESS_KEY_ID"]):
        assert secret not in caplog.text


def test_store_calls_are_one_request_each(s3_server, s3_bucket, s3_env):
    """A run makes hundreds of these calls and each request costs a round trip (and, on a shared
    machine, the S3 server's CPU): a whole read is one GET, a listing one LIST whether or not
    anything is there, removing a file one DELETE, removing a tree one LIST and one bulk DELETE
    (s3fs alone: HEAD + GET, LIST + HEAD + LIST, and LIST + HEAD + LIST + DELETE)."""
    Store.from_uri(s3_bucket).write_bytes("seed", b"")
    store = Store.from_uri(f"{s3_bucket}/run", FAST)
    for rel in ("parts1/a.parquet", "parts1/b/c.parquet", "parts10/d.parquet", "stats.json"):
        store.write_bytes(rel, rel.encode())
    with FaultProxy((s3_server.host, s3_server.port), FaultPlan()) as proxy:
        s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        store = Store.from_uri(f"{s3_bucket}/run", FAST)

        def requests(call):
            before = proxy.counts["pass"]
            result = call()
            return result, proxy.counts["pass"] - before

        assert requests(lambda: store.read_bytes("stats.json")) == (b"stats.json", 1)
        assert requests(lambda: store.find("parts1")) == (["parts1/a.parquet", "parts1/b/c.parquet"], 1)
        assert requests(lambda: store.find("nothing-here")) == ([], 1)
        assert requests(lambda: store.sizes("parts10")) == ({"parts10/d.parquet": 17}, 1)
        assert requests(lambda: store.rm("stats.json")) == (None, 1)
        assert requests(lambda: store.rm("parts1", recursive=True)) == (None, 2)
        assert requests(lambda: store.rm("nothing-here", recursive=True)) == (None, 1)
        assert store.find() == ["parts10/d.parquet"]


def test_shard_sized_download_is_one_streamed_get(s3_server, s3_bucket, s3_env, tmp_path):
    """A token shard (~70-130 MiB) is downloaded in one GET: s3fs alone opens a GET, drops it and
    fetches 50 MiB ranges in parallel, and a server that reads the object for each range (moto)
    took 2.5x as long for the loader's cold cache."""
    data = os.urandom(1 << 20) * 51  # just over s3fs's 50 MiB split
    Store.from_uri(s3_bucket).write_bytes("shard.parquet", data)
    with FaultProxy((s3_server.host, s3_server.port), FaultPlan()) as proxy:
        s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        store = Store.from_uri(s3_bucket, FAST)
        assert store.download("shard.parquet", tmp_path / "copy").read_bytes() == data
    assert proxy.counts["pass"] == 1


def test_downloads_survive_truncated_bodies(s3_server, s3_bucket, s3_env, tmp_path):
    data = os.urandom(300_000)
    Store.from_uri(s3_bucket).write_bytes("big.bin", data)
    with FaultProxy((s3_server.host, s3_server.port), FaultPlan(seed=3, truncate=0.5)) as proxy:
        s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        store = Store.from_uri(s3_bucket, FAST)
        for i in range(6):
            store.download("big.bin", tmp_path / f"copy{i}.bin")
            assert (tmp_path / f"copy{i}.bin").read_bytes() == data
    assert proxy.counts["truncate"] >= 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_without_our_retry_a_truncated_body_fails(s3_server, s3_bucket, s3_env):
    """The proxy really breaks bodies off, and botocore alone does not recover them: with our
    retries at 0 the same read fails (so the test above proves Store._retry's work)."""
    Store.from_uri(s3_bucket).write_bytes("big.bin", os.urandom(300_000))
    with FaultProxy((s3_server.host, s3_server.port), FaultPlan(seed=3, truncate=1.0)) as proxy:
        s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        store = Store.from_uri(s3_bucket, StorageConfig(retries=0))
        with pytest.raises(Exception) as err:
            store.read_bytes("big.bin")
    assert not isinstance(err.value, AssertionError)
