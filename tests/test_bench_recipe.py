"""bench/recipe.py must not rot: its smoke run (2 WARC files of 25 real pages, Thresher --local
and datatrove's FineWeb pipeline in one process each) runs to its table, and the two pipelines
agree on what they keep. No speed is asserted: the speed goals live in the bench."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_recipe_bench_quick_run_prints_its_table_and_agrees(tmp_path):
    shared_path("extraction-scrapinghub-aeb")
    for module in ("datatrove", "magic", "cchardet"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} not installed (pip install -e '.[bench]')")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    figures = tmp_path / "recipe.json"
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "recipe.py"),
        "--quick",
        "--work",
        str(tmp_path / "w"),
        "--json",
        str(figures),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "thresher --local" in out and "datatrove, 1 process" in out
    for stage in ("url_filter", "extract", "minhash_dedup", "tokenize", "untimed"):
        assert re.search(rf"^{stage}\s+\d", out, re.M), stage
    result = json.loads(figures.read_text())
    ours, theirs = result["runs"]["thresher-local"], result["runs"]["datatrove-1"]
    assert result["pages"] == 50
    assert ours["documents"] > 0 and theirs["documents"] > 0 and ours["tokens"] > 0 and theirs["tokens"] > 0
    assert ours["cpu"] > 0 and theirs["cpu"] > 0
    agree = result["agreement"]["one process"]
    assert agree["same_fate"] >= 0.99 * agree["pages"], agree
    # the copy of each page is a duplicate: both sides' MinHash removes it
    assert agree["filters"]["minhash_dedup"]["dropped"][0] > 0
