"""Exactly once: a killed driver resumes to the output of an uninterrupted run; a killed worker is
retried by Ray without duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import shared_path
from thresher.config import parse_config
from thresher.run import run_pipeline

ROOT = Path(__file__).resolve().parents[1]


def _snapshot(out: Path) -> dict[str, list[tuple]]:
    """Every output shard's rows, as (id, source, text) in file order."""
    snap = {}
    for sub in ("documents", "dropped"):
        for f in sorted((out / sub).glob("*.parquet")):
            cols = ["id", "source", "text"] if sub == "documents" else ["id", "source", "reason"]
            t = pq.read_table(f, columns=cols).to_pylist()
            snap[f"{sub}/{f.name}"] = [tuple(r.values()) for r in t]
    return snap


def _stage_counts(out: Path) -> dict:
    stats = json.loads((out / "stats.json").read_text())
    return {k: {kk: v for kk, v in s.items() if kk != "seconds"} for k, s in stats["stages"].items()}


def _complete_files(out: Path) -> int:
    """Input files read to their end whose shards are all compacted (what --resume skips)."""
    done = 0
    for record in (out / "_progress" / "phase0-files").glob("*.json"):
        try:
            shards = json.loads(record.read_text())["shards"]
        except (OSError, ValueError):
            continue
        done += all((out / "_progress" / "phase0" / f"{s}.json").exists() for s in shards)
    return done


def _cli(config: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "thresher.cli",
        "run",
        str(config),
        "--output",
        str(out),
        "--set",
        "ray.progress=false",
        *extra,
    ]


@pytest.mark.slow
def test_killed_driver_resumes_to_identical_output(tmp_path):
    samples = shared_path("warc-samples")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"input: {{paths: ['{samples}'], docs_per_shard: 8}}\n"
        "stages:\n  - extract: {timeout_s: 120, metadata: none}\n  - language: {}\n"
    )
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    reference = tmp_path / "reference"
    subprocess.run(_cli(config, reference), check=True, env=env, cwd=ROOT, capture_output=True, timeout=900)

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(config, out),
        env=env,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if _complete_files(out) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, like a lost head node
    proc.wait()
    assert not (out / "stats.json").exists()

    resumed = subprocess.run(
        _cli(config, out, "--resume"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["resumed_files"] >= 1
    assert _snapshot(out) == _snapshot(reference)
    assert _stage_counts(out) == _stage_counts(reference)
    assert not (out / "_work").exists()


def test_resume_refuses_a_different_config(tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text(json.dumps({"id": "a", "text": "Hello there, this is a small English document."}) + "\n")
    base = {
        "input": {"paths": [str(src)]},
        "output": {"path": str(tmp_path / "o")},
        "stages": [{"language": {}}],
    }
    run_pipeline(parse_config(base), local=True)
    changed = dict(base, stages=[{"language": {"threshold": 0.1}}])
    from thresher.run import ResumeError

    with pytest.raises(ResumeError, match="another config"):
        run_pipeline(parse_config(changed), local=True, resume=True)


@pytest.mark.usefixtures("ray_session")
def test_killed_worker_is_retried_without_duplicates(tmp_path):
    sentences = shared_path("lid-lingua-testdata", "sentences")
    import gzip

    files = []
    for lang in ("en", "de", "fr", "es"):
        lines = gzip.open(sentences / f"{lang}.txt.gz", "rt", encoding="utf-8").read().splitlines()[:300]
        path = tmp_path / f"{lang}.jsonl"
        path.write_text(
            "".join(json.dumps({"id": f"{lang}-{i}", "text": t}) + "\n" for i, t in enumerate(lines))
        )
        files.append(str(path))

    def config(out: Path, stages: list) -> dict:
        return {
            "input": {"paths": files, "docs_per_shard": 100},
            "output": {"path": str(out)},
            "ray": {"progress": False},
            "stages": stages,
        }

    marker = tmp_path / "killed"
    faulty = [{"tests.faults:KillWorkerOnce": {"marker": str(marker), "after_docs": 50}}, {"language": {}}]
    run_pipeline(parse_config(config(tmp_path / "faulty", faulty)))
    assert marker.exists(), "the fault was never injected"
    run_pipeline(parse_config(config(tmp_path / "clean", [{"language": {}}])))
    a, b = _snapshot(tmp_path / "faulty"), _snapshot(tmp_path / "clean")
    assert a == b
    ids = [row[0] for rows in a.values() for row in rows]
    assert len(ids) == len(set(ids)) == 1200
