"""Two Ray nodes that share no disk (issue #18): a head node, and a worker node started in its own
mount namespace (``unshare --mount``) with private tmpfs mounts over ``/tmp`` (so over this test's
directories, the reference run and the head's Ray temp dir too). Input and output are on S3 (moto
over HTTP, reached by both nodes through the shared network), the driver runs in an empty
directory. The run succeeds, documents are processed on both nodes, the dataset equals the local
run's, and no file of the run is left on a local disk outside Ray's own temp dirs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.test_run_s3 import (  # noqa: F401 (local_run and small_warc are fixtures)
    DEMO_CONFIG,
    SMALL,
    _counters,
    _files,
    _table,
    local_run,
    small_warc,
)
from thresher.io import Store

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _can_unshare() -> bool:
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs t /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


def _keep_checkout_visible(hide_tmp: str) -> str:
    """``hide_tmp`` (a tmpfs over /tmp), keeping this checkout (the code and its .venv) visible
    when it lives under /tmp, as a CI clone may: a node needs the code, not the run's files."""
    if not str(ROOT).startswith("/tmp/"):
        return hide_tmp
    keep = f"/run/thresher-keep-{os.getpid()}"
    return (
        f"mkdir -p {keep} && mount --rbind {ROOT} {keep} && {hide_tmp} && mkdir -p {ROOT} && "
        f"mount --rbind {keep} {ROOT} && umount -l {keep} && rmdir {keep}"
    )


def _env() -> dict:
    return dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(ROOT))


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _without_node(rows: list[dict]) -> list[dict]:
    nodes = []
    for row in rows:
        meta = json.loads(row["metadata"]) if isinstance(row.get("metadata"), str) else None
        if meta is not None and "ray_node" in meta:
            nodes.append(meta.pop("ray_node"))
            row["metadata"] = json.dumps(meta, ensure_ascii=False, sort_keys=True)
        elif meta is not None:
            row["metadata"] = json.dumps(meta, ensure_ascii=False, sort_keys=True)
    return nodes


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare --mount (private mount namespaces)")
def test_two_nodes_without_a_shared_disk_write_the_local_run_to_s3(
    s3_server,
    s3_bucket,
    small_warc,  # noqa: F811 (fixtures)
    local_run,  # noqa: F811
    tmp_path,
):
    inputs = Store.from_uri(s3_bucket)
    inputs.upload(small_warc, f"in/{small_warc.name}")
    config = tmp_path / "demo.yaml"
    config.write_text(
        DEMO_CONFIG.read_text().replace("- pii: {}", "- pii: {}\n  - tests.faults:RecordNode: {}")
    )
    driver_dir = tmp_path / "driver"
    driver_dir.mkdir()
    out = f"{s3_bucket}/cluster"
    port = _free_port()
    head_temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    worker_temp = "/tmp/rtw"  # inside the worker's private /tmp
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--block", "--disable-usage-stats"]
    marker = time.time()
    procs: list[subprocess.Popen] = []
    try:
        procs.append(
            subprocess.Popen(
                [
                    RAY,
                    "start",
                    "--head",
                    f"--port={port}",
                    "--include-dashboard=false",
                    f"--temp-dir={head_temp}",
                    "--min-worker-port=33000",
                    "--max-worker-port=33999",
                    *common,
                ],
                env=_env(),
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        time.sleep(8)
        worker_cmd = (
            f"{_keep_checkout_visible('mount -t tmpfs tmpfs /tmp')} && mkdir -p {worker_temp} && "
            f"exec {RAY} start --address=127.0.0.1:{port} --temp-dir={worker_temp} "
            f"--min-worker-port=34000 --max-worker-port=34999 {' '.join(common)}"
        )
        worker = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", worker_cmd],
            env=_env(),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(worker)
        deadline = time.time() + 120
        while time.time() < deadline:
            status = subprocess.run(
                [RAY, "status", f"--address=127.0.0.1:{port}"], env=_env(), capture_output=True, text=True
            )
            if "2.0 CPU" in status.stdout:
                break
            time.sleep(2)
        assert "2.0 CPU" in status.stdout, status.stdout[-2000:]
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "thresher.cli",
                "run",
                str(config),
                "--address",
                f"127.0.0.1:{port}",
                "--output",
                out,
                "--set",
                f"input.paths=[{s3_bucket}/in/{small_warc.name}]",
                *[a for s in SMALL for a in ("--set", s)],
            ],
            cwd=driver_dir,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        # the worker node's private /tmp (``sh`` exec'd ``ray start``: the same pid), nothing of
        # the run outside its Ray temp dir
        scan = subprocess.run(
            [
                "nsenter",
                f"--target={worker.pid}",
                "--mount",
                "find",
                "/tmp",
                "-type",
                "f",
                "-not",
                "-path",
                f"{worker_temp}/*",
                "-not",
                "-path",
                f"{ROOT}/*",  # the code the node runs (a CI checkout may live under /tmp)
            ],
            capture_output=True,
            text=True,
        )
        assert scan.returncode == 0 and scan.stdout.strip() == "", scan.stdout[-2000:] + scan.stderr[-500:]
    finally:
        _stop(procs)
        shutil.rmtree(head_temp, ignore_errors=True)
    assert list(driver_dir.iterdir()) == [], "the driver wrote to its working directory"
    stray = [p for p in Path("/tmp").glob("thresher-*") if p.stat().st_mtime >= marker]
    assert stray == [], stray

    a, b = _files(local_run), _files(Store.from_uri(out))
    assert not [k for k in b if k.startswith("_work/")]
    docs_a, docs_b = _table(a, "documents"), _table(b, "documents")
    _without_node(docs_a)
    nodes = _without_node(docs_b)
    assert docs_a == docs_b and len(docs_b) > 0
    assert len(set(nodes)) == 2, "documents were processed on both nodes"
    assert _table(a, "dropped") == _table(b, "dropped")
    counters = _counters(json.loads(b["stats.json"]))
    counters.pop("tests.faults:RecordNode", None)
    counters = {k: v for k, v in counters.items() if "record" not in k.lower()}
    assert _counters(json.loads(a["stats.json"])) == counters
    tokens = [k for k in a if k.startswith(("tokens/shard-", "tokens/val-"))]
    assert tokens and all(a[k] == b[k] for k in tokens)
