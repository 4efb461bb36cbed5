"""A disk that fills up mid-run: one `thresher:` line and exit 4 (output error), no half-written
file left under any name, and `--resume` on the same output finishes the run once there is room."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return (
        os.geteuid() == 0
        and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode == 0
    )


def _run(output: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "thresher.cli", "run", str(ROOT / "pipeline/configs/demo.yaml"), "--local"]
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    return subprocess.run(
        [*cmd, "--output", str(output), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_full_disk_is_one_line_and_resume_finishes_once_there_is_room(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "300k"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        out = disk / "out"
        full = _run(out)
        assert full.returncode == 4, full.stderr[-2000:]
        last = full.stderr.strip().splitlines()[-1]
        assert last.startswith("thresher: ") and "No space left on device" in last
        assert "Traceback" not in full.stderr
        leftovers = [p for p in disk.rglob("*") if ".tmp" in p.name]
        assert leftovers == [], leftovers
        assert subprocess.run(["mount", "-o", "remount,size=64m", str(disk)]).returncode == 0
        resumed = _run(out, "--resume")
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        stats = json.loads((out / "stats.json").read_text())
        assert stats["documents"] == 89 and (out / "tokens" / "manifest.json").is_file()
    finally:
        subprocess.run(["umount", "-l", str(disk)])
