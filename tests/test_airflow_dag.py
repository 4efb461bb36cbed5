"""The Airflow DAG (dags/thresher_dag.py), run by a real Airflow from its own venv (.venv-airflow).

Airflow is never imported here: its pins would clash with the main venv's, so every check runs the
Airflow venv's python or ``airflow`` command as a subprocess, with AIRFLOW_HOME (SQLite) in a
temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.demo_data import demo_warc_subset

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_VENV = Path(os.environ.get("THRESHER_AIRFLOW_VENV", ROOT / ".venv-airflow"))
AIRFLOW = AIRFLOW_VENV / "bin" / "airflow"
MAIN_VENV = Path(sys.prefix)  # the venv running these tests is the one the DAG's tasks call
DAG_ID = "thresher_pipeline"

pytestmark = pytest.mark.skipif(
    not AIRFLOW.exists(),
    reason=f"no Airflow venv at {AIRFLOW_VENV} (create it with `make airflow`)",
)


def airflow_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "PYTHONPATH"}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        THRESHER_DAG_RETRIES="0",  # a failing task fails the test now, not after the retry delays
        THRESHER_VENV=str(MAIN_VENV),
    )
    return env


def run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, f"{cmd[:3]} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-6000:]}"
    return proc


# --------------------------------------------------------------------------- the DAG file

INSPECT = r"""
import importlib.util, json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("thresher_pipeline")
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags)}
if dag is not None:
    out["tasks"] = {
        t.task_id: {"upstream": sorted(t.upstream_task_ids), "trigger_rule": str(t.trigger_rule.value),
                    "retries": t.retries, "retry_delay_s": t.retry_delay.total_seconds()}
        for t in dag.tasks
    }
    out["params"] = dag.params.dump()
    out["schedule"] = dag.timetable.expression
    out["catchup"] = dag.catchup
    spec = importlib.util.spec_from_file_location("thresher_dag", sys.argv[1] + "/thresher_dag.py")
    mod = sys.modules["thresher_dag"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    params = dict(out["params"], crawl_seeds="seeds.txt", crawl_max_pages=5, set=["a=b c"], ray_address="http://h:8265")
    plan = mod.RunPlan(params, "scheduled__2026-03-01T00:00:00+00:00", "2026-03-01")
    out["output"] = plan.output
    out["crawl"] = mod.crawl_command(plan)
    out["process"] = mod.process_command(plan)
    out["retry_on_cluster"] = mod.on_cluster(plan, mod.process_command(plan, resume=True), "thresher-x-process", 2)
    for bad in ("s3://bucket/{run_id}", "out/{month}"):
        try:
            mod.RunPlan(dict(params, output=bad), "r", "d").output
        except ValueError as exc:
            out.setdefault("output_errors", []).append(str(exc))
print("RESULT " + json.dumps(out))
"""


def test_dagbag_loads_the_dag_without_import_errors(tmp_path):
    proc = run(
        [str(AIRFLOW_VENV / "bin" / "python"), "-c", INSPECT, str(ROOT / "dags")],
        airflow_env(tmp_path / "home"),
        timeout=300,
    )
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["import_errors"] == {}
    assert result["dags"] == [DAG_ID]
    tasks = result["tasks"]
    assert tasks["crawl"]["upstream"] == []
    assert tasks["process"]["upstream"] == ["crawl"]
    assert tasks["tokenize"]["upstream"] == ["process"]
    assert tasks["publish_manifest"]["upstream"] == ["tokenize"]
    # A skipped crawl (no seeds) or tokenize must not skip the steps after them.
    assert tasks["process"]["trigger_rule"] == "none_failed"
    assert tasks["publish_manifest"]["trigger_rule"] == "none_failed"
    # THRESHER_DAG_RETRIES=0 in this environment; the delay keeps its default.
    assert {t["retries"] for t in tasks.values()} == {0}
    assert {t["retry_delay_s"] for t in tasks.values()} == {300.0}
    assert result["schedule"] == "0 0 1 * *" and result["catchup"] is False
    params = result["params"]
    assert params["config"] == "pipeline/configs/demo.yaml" and params["crawl_seeds"] == ""
    assert params["ray_address"] == "" and params["thresher_venv"] == str(MAIN_VENV)

    assert result["output"] == str(ROOT / "out" / "airflow" / "scheduled__2026-03-01T00_00_00_00_00")
    # On a cluster the entrypoint is the cluster's own `thresher`, and seeds/paths are absolute.
    assert result["crawl"] == [
        "thresher",
        "crawl",
        "--output",
        result["output"] + "/crawl",
        "--seeds",
        str(ROOT / "seeds.txt"),
        "--max-pages",
        "5",
    ]
    assert result["process"][-4:] == ["--input", result["output"] + "/crawl/warc", "--set", "a=b c"]
    uri_error, template_error = result["output_errors"]
    assert "not to an object-store URI" in uri_error and "only {run_id} and {date}" in template_error
    # A retry stops the previous try's Ray job before submitting its own: never two drivers on one output.
    stop, submit = result["retry_on_cluster"].split(" || true; ")
    assert stop.endswith("job stop --address http://h:8265 thresher-x-process-try1")
    assert "--submission-id thresher-x-process-try2 -- thresher run" in submit and "'a=b c'" in submit
    assert " --resume " in submit  # and resumes what the failed try finished


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def airflow_home():
    """One migrated SQLite metadata database for the end-to-end runs of this module."""
    with tempfile.TemporaryDirectory(prefix="airflow-home-") as home:
        home = Path(home)
        run([str(AIRFLOW), "db", "migrate"], airflow_env(home), timeout=600)
        yield home


def dags_test(home: Path, conf: dict, timeout: float = 1200) -> dict[str, str]:
    """``airflow dags test`` with ``conf``; returns the state of each task of that run."""
    before = time.time()
    proc = subprocess.run(
        [str(AIRFLOW), "dags", "test", DAG_ID, "--conf", json.dumps(conf)],
        env=airflow_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    log = (proc.stdout + proc.stderr)[-8000:]
    with sqlite3.connect(home / "airflow.db") as db:
        run_id = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (DAG_ID,)
        ).fetchone()
        assert run_id, f"no DAG run recorded:\n{log}"
        states = dict(
            db.execute("SELECT task_id, state FROM task_instance WHERE run_id = ?", run_id).fetchall()
        )
    assert proc.returncode == 0, f"airflow dags test exited {proc.returncode}, tasks {states}:\n{log}"
    print(f"airflow dags test: {time.time() - before:.0f}s, tasks {states}")
    return states


def check_published(out: Path) -> dict:
    """The run's files exist and manifest.json describes exactly what is on disk."""
    stats = json.loads((out / "stats.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    shards = sorted(out.glob("documents/*.parquet"))
    assert shards and stats["documents"] > 0
    assert [d["path"] for d in manifest["documents"]] == [f"documents/{p.name}" for p in shards]
    for entry in manifest["documents"]:
        assert entry["sha256"] == hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest()
    assert (
        manifest["totals"]["documents"] == stats["documents"] == sum(d["rows"] for d in manifest["documents"])
    )
    assert manifest["run"]["dag_id"] == DAG_ID
    return manifest


def tokenizer_cli_available() -> bool:
    proc = subprocess.run([str(MAIN_VENV / "bin" / "thresher"), "tokenizer", "--help"], capture_output=True)
    return proc.returncode == 0


@pytest.mark.slow
def test_dag_crawls_processes_and_publishes_the_demo_site_locally(airflow_home, tmp_path):
    """crawl (the bundled demo site on 127.0.0.1) → thresher run → [tokenizer] → manifest, in SQLite Airflow."""
    out = tmp_path / "out"
    vocab = 300 if tokenizer_cli_available() else 0
    states = dags_test(
        airflow_home,
        {
            "crawl_seeds": "demo",
            "crawl_max_pages": 10,
            "output": str(out),
            # no tokenize section in the run itself, so that the DAG's own tokenize task does the work
            "set": ["ray.num_cpus=2", "input.docs_per_shard=4", "tokenize=null"],
            "tokenizer_vocab_size": vocab,
        },
    )
    assert states == {
        "crawl": "success",
        "process": "success",
        "tokenize": "success" if vocab else "skipped",
        "publish_manifest": "success",
    }
    manifest = check_published(out)
    warcs = sorted(out.glob("crawl/warc/*.warc.gz"))
    assert warcs and [c["path"] for c in manifest["crawl"] if c["path"].endswith(".warc.gz")] == [
        f"crawl/warc/{p.name}" for p in warcs
    ]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["inputs"] == [str(p) for p in warcs]  # the crawl's WARCs, not the config's demo WARC
    assert stats["stages"]["read"]["in"] <= 10
    if vocab:
        assert manifest["tokenizer"], "the tokenize task ran but wrote no tokenizer files"
        tokens = json.loads((out / "tokens" / "manifest.json").read_text())
        assert tokens["tokenizer"]["vocab_size"] == vocab
        assert sum(s["rows"] for s in tokens["shards"]) == stats["documents"]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_for_job_server(address: str, head: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Until a job runs: the HTTP API answers before the node's agent takes jobs ("No available agent")."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    deadline = time.time() + timeout
    job = None
    while time.time() < deadline and head.poll() is None:
        try:
            client = JobSubmissionClient(address)
            job = job or client.submit_job(entrypoint="true")
            if client.get_job_status(job) == JobStatus.SUCCEEDED:
                return
        except (ConnectionError, RuntimeError):
            pass
        time.sleep(2)
    pytest.fail(f"Ray head at {address} takes no jobs:\n{log.read_text()[-3000:]}")


@pytest.fixture
def ray_head():
    """A real one-node Ray cluster with its job server, on free ports (other clusters may run here).

    Started with --block in its own process group so that stopping it never touches another Ray."""
    names = [
        "port",
        "dashboard-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "metrics-export-port",
        "runtime-env-agent-port",
        "ray-client-server-port",
        "node-manager-port",
        "object-manager-port",
    ]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Unix socket paths are limited
    env = dict(os.environ, PATH=f"{MAIN_VENV / 'bin'}{os.pathsep}{os.environ['PATH']}")
    cmd = [
        str(MAIN_VENV / "bin" / "ray"),
        "start",
        "--head",
        "--block",
        "--num-cpus",
        "2",
        "--dashboard-host",
        "127.0.0.1",
        "--include-dashboard",
        "true",
        "--temp-dir",
        temp_dir,
        "--disable-usage-stats",
    ]
    for name, port in ports.items():
        cmd += [f"--{name}", str(port)]
    log = open(Path(temp_dir) / "head.log", "w")
    head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        wait_for_job_server(address, head, Path(temp_dir) / "head.log")
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:  # `ray start --block` leaves the GCS behind on SIGTERM
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait()
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def small_demo_config(tmp_path: Path, records: int = 12) -> Path:
    """The demo config over the first ``records`` responses of the bundled WARC (a faster test)."""
    warc = demo_warc_subset(tmp_path / "small.warc.gz", records)
    config = yaml.safe_load((ROOT / "pipeline" / "configs" / "demo.yaml").read_text())
    config["input"] = {"paths": [str(warc)], "docs_per_shard": 4}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_dag_submits_to_a_ray_cluster_and_uses_the_config_inputs_without_seeds(
    airflow_home, ray_head, tmp_path
):
    """With ray_address set, process runs as a Ray job; without crawl_seeds the crawl is skipped."""
    out = tmp_path / "out"
    states = dags_test(
        airflow_home,
        {
            "config": str(small_demo_config(tmp_path)),
            "output": str(out),
            "ray_address": ray_head,
        },
    )
    assert states == {
        "crawl": "skipped",
        "process": "success",
        "tokenize": "skipped",
        "publish_manifest": "success",
    }
    manifest = check_published(out)
    assert "crawl" not in manifest and manifest["run"]["ray_address"] == ray_head
    jobs = json.loads(urllib.request.urlopen(ray_head + "/api/jobs/", timeout=30).read())
    process_jobs = [j for j in jobs if (j.get("submission_id") or "").endswith("-process-try1")]
    assert len(process_jobs) == 1 and process_jobs[0]["status"] == "SUCCEEDED"
    assert process_jobs[0]["entrypoint"].startswith("thresher run ")
    assert json.loads((out / "stats.json").read_text())["inputs"] == [str(tmp_path / "small.warc.gz")]
