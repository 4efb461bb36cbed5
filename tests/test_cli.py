"""The command line as a user meets it: help, config errors, and the bundled demo end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]


def thresher(*args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    return subprocess.run(
        [sys.executable, "-m", "thresher.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_help_lists_every_command():
    out = thresher("--help")
    assert out.returncode == 0
    for command in ("run", "models"):
        assert command in out.stdout


def test_config_error_exits_2_with_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - language: {treshold: 0.5}\n")
    out = thresher("run", str(bad))
    assert out.returncode == 2
    assert "stages[0].language.treshold: unknown key (did you mean 'threshold'?)" in out.stderr


def test_missing_input_exits_3(tmp_path):
    out = thresher("run", "pipeline/configs/demo.yaml", "--input", str(tmp_path / "nothing.warc.gz"))
    assert out.returncode == 3
    assert out.stderr.splitlines() == [
        f"thresher: input error: input not found: {tmp_path / 'nothing.warc.gz'}"
    ]


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    """The same command as `make demo`, with the output in a temporary directory."""
    out_dir = tmp_path / "demo"
    out = thresher(
        "run", "pipeline/configs/demo.yaml", "--output", str(out_dir), "--set", "ray.progress=false"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "documents:" in out.stdout and "read" in out.stdout
    stats = json.loads((out_dir / "stats.json").read_text())
    assert stats["stages"]["read"]["in"] == 204  # every record of examples/demo.warc.gz that could be a page
    docs = pq.read_table(out_dir / "documents").to_pylist()
    assert len(docs) == stats["documents"] > 50
    languages = {d["language"] for d in docs}
    assert {"en", "de", "fr", "ja", "ru"} <= languages
    assert stats["stages"]["07-exact_dedup"]["dropped"]["exact_duplicate"] >= 1  # the mirrored page
    assert (out_dir / "report.html").exists()
    manifest = json.loads((out_dir / "tokens" / "manifest.json").read_text())
    assert manifest["tokenizer"]["vocab_size"] == 4096
    assert sum(s["rows"] for s in manifest["shards"]) == len(docs)
    from thresher.shards.torch import TokenDataset

    inputs, targets = next(iter(TokenDataset(out_dir / "tokens", 64, batch_size=2, seed=0)))
    assert inputs.shape == targets.shape == (2, 64)
    legacy = next(d for d in docs if d["url"].endswith("legacy-charset.de.html"))
    assert "Veröffentlichung" in legacy["text"]  # ISO-8859-1 bytes decoded through the header charset
