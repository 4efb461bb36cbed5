"""The pipeline on a real multi-node Ray: `ray start` head + worker with `ray job submit`, and
`ray.cluster_utils.Cluster` with work landing on both nodes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.demo_data import demo_warc_subset
from thresher.models import lid_model_path

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
pytestmark = pytest.mark.slow
DEMO_PAGES = 80


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")


def _demo_config(tmp_path: Path, extra_stage: str | None = None) -> Path:
    import yaml

    data = yaml.safe_load((ROOT / "pipeline" / "configs" / "demo.yaml").read_text())
    # 80 of the demo's pages: enough blocks for both nodes, a third of the demo's time
    data["input"]["paths"] = [str(demo_warc_subset(tmp_path / "demo-80.warc.gz", DEMO_PAGES))]
    data.pop("tokenize", None)  # the cluster tests are about where stages run
    data["ray"] = {"block_docs": 8}  # many small blocks: both one-CPU nodes must take some
    if extra_stage:
        data["stages"].append({extra_stage: {}})
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def ray_cluster(tmp_path):
    """`ray start --head` and a second `ray start --address` node on 127.0.0.1, in the foreground
    (--block) so that the test ends them without `ray stop` touching any other Ray on the machine."""
    import tempfile

    port, dash = _free_port(), _free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # Ray's socket paths must stay short
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--block", "--disable-usage-stats"]
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            f"--port={port}",
            f"--dashboard-port={dash}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--temp-dir={temp_dir}",
            "--min-worker-port=31000",
            "--max-worker-port=31999",
            *common,
        ],
        env=_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs = [head]
    try:
        from ray.job_submission import JobSubmissionClient

        deadline = time.time() + 180
        client = None
        while time.time() < deadline:
            try:
                client = JobSubmissionClient(f"http://127.0.0.1:{dash}")
                break
            except Exception:
                time.sleep(1)
        assert client is not None, "the head node's job server never came up"
        worker = subprocess.Popen(
            [
                RAY,
                "start",
                f"--address=127.0.0.1:{port}",
                "--min-worker-port=32000",
                "--max-worker-port=32999",
                *common,
            ],
            env=_env(),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(worker)
        yield client, port
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # `ray start --block` can leave its GCS behind on SIGTERM
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_submit_runs_the_driver_on_a_two_node_cluster(ray_cluster, tmp_path):
    from ray.job_submission import JobStatus

    client, port = ray_cluster
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for the second node to join
        out = subprocess.run(
            [RAY, "status", f"--address=127.0.0.1:{port}"], env=_env(), capture_output=True, text=True
        )
        if out.stdout.count("node_") >= 2 or "2.0 CPU" in out.stdout or "0.0/2.0 CPU" in out.stdout:
            break
        time.sleep(2)
    out_dir = tmp_path / "out"
    job = client.submit_job(
        entrypoint=f"{sys.executable} pipeline/run.py {_demo_config(tmp_path)} --output {out_dir} --set ray.progress=false",
        runtime_env={
            "working_dir": str(ROOT),
            "excludes": [".venv*", "out/", "bench/.cache/", ".git/"],
            # The model file is not in git, so it is not shipped with the working dir.
            "env_vars": {"THRESHER_LID_MODEL": str(lid_model_path()), "RAY_AUTH_MODE": "disabled"},
        },
    )
    deadline = time.time() + 900
    while client.get_job_status(job) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.time() < deadline, "job did not finish"
        time.sleep(2)
    logs = client.get_job_logs(job)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, logs[-3000:]
    stats = json.loads((out_dir / "stats.json").read_text())
    assert stats["stages"]["read"]["in"] == DEMO_PAGES
    assert stats["documents"] > 20
    assert "documents:" in logs


def test_tasks_run_on_both_nodes_of_a_cluster_utils_cluster(tmp_path):
    config = _demo_config(tmp_path, extra_stage="tests.faults:RecordNode")
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "two_node_run.py"), str(config), str(tmp_path / "out")],
        env=dict(_env(), PYTHONPATH=str(ROOT)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["cluster_nodes"]) == 2
    assert set(result["nodes"]) == set(result["cluster_nodes"]), "every node processed documents"
    assert sum(result["nodes"].values()) == result["documents"] > 20
