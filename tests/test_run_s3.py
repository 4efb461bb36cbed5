"""``thresher run`` with its output (and input) on S3: a real S3 API server over HTTP (moto,
tests/s3.py), reached through the pipeline's own client code with the endpoint in
``AWS_ENDPOINT_URL``. The run to S3 must write what the same run writes to a local directory:
the same documents, dropped rows, stage counters and token shards, and no credential or endpoint
in stats.json or the report."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.demo_data import demo_warc_subset
from tests.s3 import DUMMY_ENV
from tests.s3faults import FaultPlan, FaultProxy
from thresher.config import load_config
from thresher.io import Store
from thresher.run import run_pipeline

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "pipeline" / "configs" / "demo.yaml"
PAGES = 30
SMALL = ["input.docs_per_shard=8", "tokenize.train.vocab_size=300", "ray.progress=false", "ray.block_docs=8"]


@pytest.fixture(scope="module")
def small_warc(tmp_path_factory) -> Path:
    return demo_warc_subset(tmp_path_factory.mktemp("warc") / f"demo-{PAGES}.warc.gz", PAGES)


def _config(warc: str, output: str, *extra: str):
    return load_config(DEMO_CONFIG, [f"input.paths=[{warc}]", f"output.path={output}", *SMALL, *extra])


def _files(store: Store) -> dict[str, bytes]:
    return {key: store.read_bytes(key) for key in store.find()}


def _table(files: dict[str, bytes], directory: str) -> list[dict]:
    """The rows of every Parquet file below ``directory``; ``source`` (where a record was read:
    a local path or the input's URI, and its offset) as the file's name and the offset."""
    tables = [
        pq.read_table(io.BytesIO(data))
        for key, data in sorted(files.items())
        if key.startswith(directory + "/")
    ]
    if not tables:
        return []
    rows = pa.concat_tables(tables, promote_options="permissive").to_pylist()
    for row in rows:
        if row.get("source"):
            row["source"] = row["source"].rsplit("/", 1)[-1]
    return rows


def _counters(stats: dict) -> dict:
    return {label: {k: v for k, v in s.items() if k != "seconds"} for label, s in stats["stages"].items()}


def assert_same_run(local: Store, remote: Store) -> dict[str, bytes]:
    """The run in ``remote`` wrote what the run in ``local`` wrote (documents, dropped rows, counters,
    token shards); returns the remote run's files."""
    a, b = _files(local), _files(remote)
    names = lambda files: sorted(k for k in files if not k.startswith(("_progress/", "report.html")))  # noqa: E731
    assert names(a) == names(b)
    assert not [k for k in b if k.startswith("_work/")]
    for directory in ("documents", "dropped"):
        assert _table(a, directory) == _table(b, directory), directory
    stats_a, stats_b = json.loads(a["stats.json"]), json.loads(b["stats.json"])
    assert _counters(stats_a) == _counters(stats_b)
    assert (stats_a["documents"], stats_a["shards"]) == (stats_b["documents"], stats_b["shards"])
    tokens = [k for k in a if k.startswith("tokens/shard-") or k.startswith("tokens/val-")]
    assert tokens and all(a[k] == b[k] for k in tokens)
    manifest_a, manifest_b = json.loads(a["tokens/manifest.json"]), json.loads(b["tokens/manifest.json"])
    assert manifest_a["shards"] == manifest_b["shards"]
    assert stats_a["extra"]["tokenize"]["tokens"] == stats_b["extra"]["tokenize"]["tokens"] > 0
    return b


def assert_no_secrets(files: dict[str, bytes]) -> None:
    secrets = [
        DUMMY_ENV["AWS_ACCESS_KEY_ID"],
        DUMMY_ENV["AWS_SECRET_ACCESS_KEY"],
        os.environ["AWS_ENDPOINT_URL"],
    ]
    for name in ("stats.json", "report.html"):
        text = files[name].decode()
        assert not [s for s in secrets if s in text], name


@pytest.fixture(scope="module")
def local_run(small_warc, tmp_path_factory) -> Store:
    """The reference: the same config, output in a local directory, in this process."""
    out = tmp_path_factory.mktemp("local") / "out"
    run_pipeline(_config(str(small_warc), str(out)), local=True)
    return Store.from_uri(out)


def test_run_to_s3_equals_the_local_run(s3_bucket, small_warc, local_run):
    """--local, input and output on S3 (the WARC uploaded to the bucket first)."""
    inputs = Store.from_uri(s3_bucket)
    inputs.upload(small_warc, f"in/{small_warc.name}")
    out = f"{s3_bucket}/runs/demo"
    result = run_pipeline(_config(f"{s3_bucket}/in/{small_warc.name}", out), local=True)
    assert result.documents > 0 and str(result.output) == out
    files = assert_same_run(local_run, Store.from_uri(out))
    assert_no_secrets(files)
    assert not [k for k in inputs.find() if ".thresher-probe-" in k]


@pytest.mark.slow
@pytest.mark.usefixtures("s3_server", "ray_session")  # the S3 environment before Ray starts its workers
def test_ray_run_to_s3_equals_the_local_run(s3_bucket, small_warc, local_run):
    """On the embedded Ray: the workers write parts, claim and compact shards on S3."""
    out = f"{s3_bucket}/ray"
    run_pipeline(_config(str(small_warc), out))
    assert_no_secrets(assert_same_run(local_run, Store.from_uri(out)))


@pytest.mark.slow
def test_s3_output_with_a_run_is_refused_unless_overwrite(s3_bucket, small_warc, local_run):
    from thresher.run.ownership import OutputExistsError

    out = f"{s3_bucket}/again"
    run_pipeline(_config(str(small_warc), out), local=True)
    with pytest.raises(OutputExistsError, match="already holds a finished run"):
        run_pipeline(_config(str(small_warc), out), local=True)
    store = Store.from_uri(out)
    store.write_bytes("documents/mine.parquet", b"not ours")
    with pytest.raises(OutputExistsError, match="did not write: documents/mine.parquet"):
        run_pipeline(_config(str(small_warc), out), local=True, overwrite=True)
    store.rm("documents/mine.parquet")
    run_pipeline(_config(str(small_warc), out), local=True, overwrite=True)
    assert_same_run(local_run, store)


def test_missing_bucket_is_one_line_before_any_work(s3_server, small_warc):
    from thresher.errors import OutputProblem

    with pytest.raises(OutputProblem, match="the bucket does not exist"):
        run_pipeline(_config(str(small_warc), "s3://no-such-bucket-thresher/out"), local=True)


@pytest.mark.slow
def test_run_through_faults_equals_the_local_run(s3_server, s3_bucket, s3_env, small_warc, local_run):
    """503 SlowDown, 500, resets, bodies broken off and delays on a share of requests: the run
    retries them and writes the same dataset."""
    plan = FaultPlan(seed=7, slowdown=0.06, error500=0.04, reset=0.03, truncate=0.03, delay=0.05)
    with FaultProxy((s3_server.host, s3_server.port), plan) as proxy:
        s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        out = f"{s3_bucket}/faults"
        run_pipeline(
            _config(
                str(small_warc),
                out,
                "storage.backoff_base_s=0.01",
                "storage.backoff_max_s=0.1",
                "storage.retries=10",
            ),
            local=True,
        )
        faults = dict(proxy.counts)
    s3_env.setenv("AWS_ENDPOINT_URL", f"http://{s3_server.host}:{s3_server.port}")
    assert sum(n for kind, n in faults.items() if kind != "pass") >= 10, faults
    assert_same_run(local_run, Store.from_uri(out))


@pytest.mark.slow
def test_killed_driver_resumes_on_s3_to_identical_output(
    s3_server, s3_bucket, small_warc, local_run, tmp_path
):
    """SIGKILL of the driver once some shards are committed, then --resume against S3: the same
    dataset as an uninterrupted run, no parts, claims or probe objects left."""
    out = f"{s3_bucket}/killed"
    store = Store.from_uri(out)
    cli = [
        sys.executable,
        "-m",
        "thresher.cli",
        "run",
        str(DEMO_CONFIG),
        "--local",
        "--output",
        out,
        "--set",
        f"input.paths=[{small_warc}]",
        *[a for s in SMALL for a in ("--set", s)],
    ]
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.Popen(cli, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len([k for k in store.find("_progress/phase0") if k.endswith(".json")]) >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not store.exists("stats.json")
    store.write_bytes(".thresher-probe-1-dead", b"a probe a killed run left")
    # what a killed attempt may leave of a shard it never committed: half a documents file, its
    # dropped rows, a part; none of it may end up in the dataset
    real = next(k for k in Store.from_uri(local_run.uri).find("documents"))
    half = local_run.read_bytes(real)[:200]
    for key in (
        "documents/00000-00042.parquet",
        "dropped/00000-00042.parquet",
        "_work/parts0/00000-00042/0000000-3of9.parquet",
    ):
        store.write_bytes(key, half)
    done = subprocess.run(
        [*cli, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [k for k in store.find() if k.startswith("_work/") or ".thresher-probe-" in k]
    assert_same_run(local_run, store)
    assert list(tmp_path.iterdir()) == [], "the driver wrote to its working directory"
