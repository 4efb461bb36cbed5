"""Export a tokens directory on its own to nanoGPT / llm.c .bin, and `thresher shards verify`, on
real token shards (a whole run's exports: tests/test_shards_formats.py)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from thresher.cli import main
from thresher.shards.exports.flatbin import read_llmc_header
from thresher.shards.sample import small_sample_tokens
from thresher.shards.tokens import MANIFEST_NAME


@pytest.fixture(scope="session")
def tokens_dir(tmp_path_factory, shared_data):
    """Real tokens dir, built once per session and shared by the test_shards_* modules."""
    data = shared_data("lid-lingua-testdata").parent
    return small_sample_tokens(tmp_path_factory.getbasetemp() / "shards-sample", data)


def split_stream(tokens_dir, split):
    manifest = json.loads((tokens_dir / MANIFEST_NAME).read_text())
    parts = [
        np.concatenate(
            [
                np.asarray(t, np.uint16)
                for t in pq.read_table(tokens_dir / s["path"]).column("tokens").to_pylist()
            ]
        )
        for s in manifest["shards"]
        if s["split"] == split
    ]
    return np.concatenate(parts)


def test_export_llmc_header_and_tokens(tmp_path, tokens_dir):
    out = tmp_path / "llmc"
    assert main(["shards", "export", "llmc", str(tokens_dir), str(out)]) == 0
    magic, version, count = read_llmc_header(out / "train_000000.bin")
    expected = split_stream(tokens_dir, "train")
    assert (magic, version, count) == (20240520, 1, expected.size)
    assert (out / "train_000000.bin").stat().st_size == 256 * 4 + 2 * expected.size
    assert np.array_equal(np.fromfile(out / "train_000000.bin", dtype="<u2", offset=1024), expected)
    assert read_llmc_header(out / "val_000000.bin")[2] == split_stream(tokens_dir, "validation").size


def test_export_nanogpt_validation_split_in_pieces(tmp_path, tokens_dir):
    out = tmp_path / "nanogpt"
    assert main(["shards", "export", "nanogpt", str(tokens_dir), str(out), "--max-file-bytes", "40000"]) == 0
    files = sorted(out.glob("val_*.bin"))
    expected = split_stream(tokens_dir, "validation")
    assert len(files) == -(-expected.size // 20_000)
    got = np.concatenate([np.memmap(f, dtype=np.uint16, mode="r") for f in files])
    assert np.array_equal(got, expected)


def test_verify_command(tokens_dir, caplog):
    assert main(["shards", "verify", str(tokens_dir)]) == 0
