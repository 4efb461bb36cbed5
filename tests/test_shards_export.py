"""Export to nanoGPT / llm.c .bin and the `thresher shards` commands, on real token shards."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from thresher.cli import main
from thresher.shards.export import read_llmc_header
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
    out = tmp_path / "train.bin"
    assert main(["shards", "export-bin", str(tokens_dir), str(out)]) == 0
    magic, version, count = read_llmc_header(out)
    expected = split_stream(tokens_dir, "train")
    assert (magic, version, count) == (20240520, 1, expected.size)
    assert out.stat().st_size == 256 * 4 + 2 * expected.size
    assert np.array_equal(np.fromfile(out, dtype="<u2", offset=1024), expected)


def test_export_nanogpt_validation_split_in_pieces(tmp_path, tokens_dir):
    out = tmp_path / "val.bin"
    assert (
        main(
            [
                "shards",
                "export-bin",
                str(tokens_dir),
                str(out),
                "--split",
                "validation",
                "--format",
                "nanogpt",
                "--max-tokens-per-file",
                "20000",
            ]
        )
        == 0
    )
    files = sorted(tmp_path.glob("val_*.bin"))
    expected = split_stream(tokens_dir, "validation")
    assert len(files) == -(-expected.size // 20_000)
    got = np.concatenate([np.memmap(f, dtype=np.uint16, mode="r") for f in files])
    assert np.array_equal(got, expected)


def test_verify_command(tokens_dir, caplog):
    assert main(["shards", "verify", str(tokens_dir)]) == 0
