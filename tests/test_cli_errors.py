"""Expected errors at run time are one ``thresher: …`` line and an exit code of their kind (see
thresher/errors.py); ``-v`` adds the traceback; Ctrl-C is ``thresher: interrupted``, exit 130."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from thresher.cli import describe_error, main

ROOT = Path(__file__).resolve().parents[1]
DEMO_WARC = ROOT / "examples" / "demo.warc.gz"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A run of the demo WARC with no stages: reading and writing only, a second or two."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"input: {{paths: [{DEMO_WARC}]}}\nray: {{progress: false}}\nstages: []\n")
    return path


def thresher(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    return code, capsys.readouterr().err.splitlines()


def messages(lines: list[str]) -> list[str]:
    """The ``thresher: …`` lines (the run's own log lines start with a timestamp)."""
    return [line for line in lines if line.startswith("thresher: ")]


def unwritable_dir(tmp_path: Path) -> Path:
    """A directory where this process cannot create anything: a read-only folder, or for root
    (whom file modes do not stop) a folder of sysfs, which refuses new entries to everyone."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    if not Path("/sys/kernel").is_dir():
        pytest.skip("running as root without sysfs: no directory refuses to be written")
    return Path("/sys/kernel")


def test_an_unwritable_output_is_one_line_exit_4(capsys, tmp_path, config):
    out = unwritable_dir(tmp_path) / "thresher-test-out"
    code, lines = thresher(capsys, "run", str(config), "--local", "--output", str(out))
    assert code == 4
    assert messages(lines) == [lines[-1]] and "Traceback" not in "\n".join(lines)
    assert lines[-1].startswith(f"thresher: output error: cannot write to {out}: ")
    assert lines[-1].endswith(("Permission denied", "Operation not permitted"))


def test_an_input_of_unknown_format_is_one_line_exit_3(capsys, tmp_path, config):
    table = tmp_path / "pages.csv"
    table.write_text("url,html\nhttps://example.org/,<p>hello</p>\n")
    code, lines = thresher(
        capsys, "run", str(config), "--local", "--input", str(table), "--output", str(tmp_path / "o")
    )
    assert (code, lines) == (
        3,
        [
            f"thresher: input error: {table}: cannot tell the format from the name; set input.format (warc, parquet, jsonl)"
        ],
    )
    assert not (tmp_path / "o").exists()


def test_verbose_adds_the_traceback_above_the_line(capsys, tmp_path, config):
    table = tmp_path / "pages.csv"
    table.write_text("url,html\n")
    code, lines = thresher(capsys, "-v", "run", str(config), "--input", str(table))
    assert code == 3
    assert "Traceback (most recent call last):" in lines
    assert lines[-1].startswith("thresher: input error: ") and len(messages(lines)) == 1


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed")
def test_a_missing_fsspec_backend_names_the_package(capsys, config):
    """s3fs is a dependency; gcsfs stays optional, so gs:// without it is the case to test."""
    code, lines = thresher(capsys, "run", str(config), "--input", "gs://thresher-test-bucket/crawl/")
    assert (code, lines) == (
        6,
        ["thresher: missing dependency: Please install gcsfs to access Google Storage (pip install gcsfs)"],
    )


def test_an_unknown_uri_scheme_is_an_input_error(capsys, config):
    code, lines = thresher(capsys, "run", str(config), "--input", "nosuch://bucket/x.warc.gz")
    assert (code, lines) == (
        3,
        ["thresher: input error: nosuch://bucket/x.warc.gz: Protocol not known: nosuch"],
    )


def test_resume_with_another_config_is_one_line_exit_5(capsys, tmp_path, config):
    out = tmp_path / "out"
    assert main(["run", str(config), "--local", "--output", str(out)]) == 0
    capsys.readouterr()
    code, lines = thresher(
        capsys,
        "run",
        str(config),
        "--local",
        "--resume",
        "--output",
        str(out),
        "--set",
        "input.docs_per_shard=7",
    )
    assert code == 5
    assert messages(lines) == [lines[-1]] and lines[-1].startswith("thresher: --resume: ")


def test_shards_verify_on_a_directory_without_token_shards(capsys, tmp_path):
    """(``shards export`` on such sources: tests/test_shards_formats.py.)"""
    run_output = tmp_path / "run"  # a run's output, but not its tokens/ directory
    (run_output / "documents").mkdir(parents=True)
    (run_output / "stats.json").write_text("{}")
    code, lines = thresher(capsys, "shards", "verify", str(run_output))
    assert (code, lines) == (
        3,
        [
            f"thresher: input error: {run_output}: not a usable tokens directory: no token manifest at "
            f"{run_output / 'manifest.json'}: run the pipeline's shard step first"
        ],
    )
    (run_output / "manifest.json").write_text('{"format": "something else"}')
    code, lines = thresher(capsys, "shards", "verify", str(run_output))
    assert code == 3 and lines == [
        f"thresher: input error: {run_output}: not a usable tokens directory: "
        f"{run_output / 'manifest.json'} is not a thresher.tokens manifest"
    ]


def test_a_bug_is_not_an_expected_error():
    assert describe_error(RuntimeError("a bug")) is None
    assert describe_error(ImportError("cannot import name 'x' from 'thresher.readers'")) is None
    missing_own_module = ModuleNotFoundError("No module named 'thresher.nope'", name="thresher.nope")
    assert describe_error(missing_own_module) is None


def test_ctrl_c_is_one_line_exit_130(tmp_path):
    """SIGINT to a running ``thresher run --local`` (extracting the demo WARC's pages)."""
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"input: {{paths: [{DEMO_WARC}], docs_per_shard: 20}}\nstages: [extract: {{}}]\n")
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "thresher.cli",
            "run",
            str(config),
            "--local",
            "--output",
            str(tmp_path / "out"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        progress = tmp_path / "out" / "_progress" / "phase0"
        while not (progress.is_dir() and any(progress.glob("*.json"))):  # a shard is done: mid-run
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert err.splitlines()[-1] == "thresher: interrupted"
    assert "Traceback" not in err
