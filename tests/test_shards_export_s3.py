"""``thresher shards export`` between a local disk and S3 (a real moto server over HTTP, tests/s3.py):
each format exported from token shards on S3 to S3 is, file for file, the bytes of the local
export, and the frameworks' own readers (Megatron-Core, MosaicML Streaming, ``datasets``) read the
downloaded copy; a missing bucket, a malformed URI, someone's files, an earlier export, a damaged
source and a killed export's leftovers each get the local rules, with nothing left in the bucket."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.s3faults import FaultPlan, FaultProxy
from tests.test_shards_formats import error_line, import_streaming, run_config, run_dir, token_docs
from thresher.cli import main
from thresher.shards.exports import FORMATS
from thresher.shards.exports.flatbin import read_llmc_header
from thresher.shards.exports.publish import EXPORT_MARKER

__all__ = ["run_config", "run_dir"]  # the module's finished run (fixtures of test_shards_formats)

MAX_FILE_BYTES = "60000"


def upload_dir(s3_server, bucket_uri: str, local: Path, prefix: str) -> str:
    """A local directory tree copied to the bucket with boto3 directly (not through our code)."""
    client, bucket = s3_server.client(), bucket_uri[len("s3://") :]
    for p in sorted(local.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            client.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(local).as_posix()}")
    return f"{bucket_uri}/{prefix}"


def objects(s3_server, bucket_uri: str, prefix: str = "") -> dict[str, bytes]:
    """{key below ``prefix``: its bytes}, read with boto3 directly."""
    client, bucket = s3_server.client(), bucket_uri[len("s3://") :]
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return {
        k[len(prefix) :].lstrip("/"): client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys
    }


def download(s3_server, bucket_uri: str, prefix: str, dest: Path) -> Path:
    for rel, data in objects(s3_server, bucket_uri, prefix).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    return dest


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def without_source_path(manifest: bytes) -> dict:
    data = json.loads(manifest)
    data["source"].pop("path")
    return data


@pytest.fixture(scope="module")
def s3_run(s3_server, run_dir) -> str:
    """The finished run copied to a bucket of its own (documents, tokens, stats.json, ...)."""
    return upload_dir(s3_server, f"s3://{s3_server.new_bucket()}", run_dir, "run")


def read_back(fmt: str, dst: Path, run_dir: Path) -> None:
    """The export read by its framework's reader (or its documented layout) equals the token shards."""
    for split in ("train", "validation"):
        expected = token_docs(run_dir, split)
        if fmt == "megatron":
            from megatron.core.datasets.indexed_dataset import IndexedDataset

            got = []
            for path in sorted((dst / split).glob(f"{split}-*.bin")):
                ds = IndexedDataset(str(path.with_suffix("")))
                got += [ds[i].tolist() for i in range(len(ds))]
            assert got == [t for _, t in expected]
        elif fmt == "mds":
            streaming = import_streaming()
            ds = streaming.StreamingDataset(
                local=str(dst), split=split, shuffle=False, batch_size=1, validate_hash="sha256"
            )
            assert [(ds[i]["id"], ds[i]["tokens"].tolist()) for i in range(len(ds))] == expected
            del ds
        elif fmt == "jsonl":
            import datasets

            ids = []  # file by file: small parts need not infer one schema for their metadata
            for path in sorted((dst / split).glob("*.jsonl.gz")):
                part = datasets.load_dataset("json", data_files=str(path), cache_dir=str(dst.parent / "hf"))
                ids += part["train"]["id"]
            assert ids == [doc_id for doc_id, _ in expected]
        else:
            stem = "train" if split == "train" else "val"
            files = sorted(dst.glob(f"{stem}*.bin"))
            offset = 1024 if fmt == "llmc" else 0
            if fmt == "llmc":
                assert all(read_llmc_header(f)[:2] == (20240520, 1) for f in files)
            stream = np.concatenate([np.fromfile(f, dtype="<u2", offset=offset) for f in files])
            assert np.array_equal(stream, np.concatenate([np.asarray(t, np.uint16) for _, t in expected]))


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_from_s3_to_s3_is_the_local_export(s3_server, s3_bucket, run_dir, s3_run, tmp_path, fmt):
    local = tmp_path / "local"
    assert main(["shards", "export", fmt, str(run_dir), str(local), "--max-file-bytes", MAX_FILE_BYTES]) == 0
    dst = f"{s3_bucket}/exports/{fmt}"
    assert main(["shards", "export", fmt, s3_run, dst, "--max-file-bytes", MAX_FILE_BYTES]) == 0
    remote = objects(s3_server, s3_bucket, f"exports/{fmt}")
    expected = local_files(local)
    assert sorted(remote) == sorted(expected)  # no marker, no probe, nothing else left
    assert len(expected) > 3
    for rel, data in expected.items():
        if rel != "manifest.json":
            assert remote[rel] == data, rel
    assert without_source_path(remote["manifest.json"]) == without_source_path(expected["manifest.json"])
    assert json.loads(remote["manifest.json"])["source"]["path"] == s3_run
    read_back(fmt, download(s3_server, s3_bucket, f"exports/{fmt}", tmp_path / "downloaded"), run_dir)


def test_local_to_s3_and_s3_to_local(s3_server, s3_bucket, run_dir, s3_run, tmp_path):
    """Either side alone on S3: the same bytes as a local export."""
    assert main(["shards", "export", "megatron", str(run_dir), str(tmp_path / "local")]) == 0
    assert main(["shards", "export", "megatron", str(run_dir), f"{s3_bucket}/up"]) == 0
    assert main(["shards", "export", "megatron", s3_run, str(tmp_path / "down")]) == 0
    expected = local_files(tmp_path / "local")
    for got in (objects(s3_server, s3_bucket, "up"), local_files(tmp_path / "down")):
        assert sorted(got) == sorted(expected)
        assert all(got[rel] == data for rel, data in expected.items() if rel != "manifest.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["down", "local"]  # no staging left beside them


def test_a_bare_tokens_directory_on_s3(s3_server, s3_bucket, run_dir, s3_run, tmp_path):
    assert main(["shards", "export", "llmc", str(run_dir / "tokens"), str(tmp_path / "local")]) == 0
    assert main(["shards", "export", "llmc", f"{s3_run}/tokens", f"{s3_bucket}/llmc"]) == 0
    remote = objects(s3_server, s3_bucket, "llmc")
    assert remote["train_000000.bin"] == (tmp_path / "local" / "train_000000.bin").read_bytes()


def test_a_missing_bucket_or_a_malformed_uri_is_one_line_before_any_work(
    s3_server, s3_bucket, run_dir, s3_run, tmp_path, capsys
):
    code, line = error_line(capsys, "shards", "export", "mds", str(run_dir), "s3://thresher-no-such-bucket/x")
    assert (code, line) == (
        4,
        "thresher: output error: s3://thresher-no-such-bucket/x: the bucket does not exist",
    )
    dst = tmp_path / "out"
    code, line = error_line(capsys, "shards", "export", "mds", "s3://thresher-no-such-bucket/run", str(dst))
    assert (code, line) == (
        3,
        "thresher: input error: s3://thresher-no-such-bucket/run: the bucket does not exist",
    )
    assert not dst.exists()
    code, line = error_line(capsys, "shards", "export", "mds", f"{s3_bucket}/no-run", f"{s3_bucket}/out")
    assert code == 3 and line.startswith(f"thresher: input error: {s3_bucket}/no-run: ")
    code, line = error_line(capsys, "shards", "export", "mds", str(run_dir), "s3:///x")
    assert code == 2 and "no bucket in the URI" in line
    code, line = error_line(capsys, "shards", "verify", "s3://thresher-no-such-bucket/tokens")
    assert (code, line) == (
        3,
        "thresher: input error: s3://thresher-no-such-bucket/tokens: the bucket does not exist",
    )
    assert objects(s3_server, s3_bucket) == {}
    assert list(tmp_path.iterdir()) == []


def test_destination_rules_on_s3(s3_server, s3_bucket, run_dir, s3_run, capsys):
    """Someone's files are refused and kept; an earlier export is replaced only with --overwrite,
    and then none of its files stay."""
    client, bucket = s3_server.client(), s3_bucket[5:]
    client.put_object(Bucket=bucket, Key="mine/notes.txt", Body=b"keep me")
    code, line = error_line(capsys, "shards", "export", "megatron", s3_run, f"{s3_bucket}/mine")
    assert code == 4 and "holds files that are not a thresher export" in line
    assert objects(s3_server, s3_bucket, "mine") == {"notes.txt": b"keep me"}

    dst = f"{s3_bucket}/exp"
    assert main(["shards", "export", "megatron", s3_run, dst, "--max-file-bytes", "50000"]) == 0
    before = objects(s3_server, s3_bucket, "exp")
    capsys.readouterr()
    code, line = error_line(capsys, "shards", "export", "megatron", s3_run, dst)
    assert code == 4 and "already holds an export; give --overwrite" in line
    assert objects(s3_server, s3_bucket, "exp") == before
    assert main(["shards", "export", "megatron", s3_run, dst, "--overwrite"]) == 0
    after = objects(s3_server, s3_bucket, "exp")
    manifest = json.loads(after["manifest.json"])
    assert sorted(after) == sorted([f["path"] for f in manifest["files"]] + ["manifest.json"])
    assert len(before) > len(after)  # the smaller files of the first export are gone


def test_a_killed_exports_leftovers_are_replaced_only_with_overwrite(
    s3_server, s3_bucket, run_dir, s3_run, capsys
):
    client, bucket = s3_server.client(), s3_bucket[5:]
    client.put_object(Bucket=bucket, Key=f"exp/{EXPORT_MARKER}", Body=b'{"format": "thresher.export"}')
    client.put_object(Bucket=bucket, Key="exp/train/train-00000.bin", Body=b"half")
    code, line = error_line(capsys, "shards", "export", "megatron", s3_run, f"{s3_bucket}/exp")
    assert code == 4 and "holds an unfinished export" in line
    assert main(["shards", "export", "megatron", s3_run, f"{s3_bucket}/exp", "--overwrite"]) == 0
    after = objects(s3_server, s3_bucket, "exp")
    assert EXPORT_MARKER not in after and after["train/train-00000.bin"] != b"half"


def test_a_damaged_source_on_s3_publishes_nothing(s3_server, s3_bucket, run_dir, tmp_path, capsys):
    """A documents shard that lost its last document (jsonl stops there, after it uploaded some
    files) and a token shard with other bytes of the same size (its download does not match the
    manifest's sha256): one input error, and the destination prefix stays empty."""
    client, bucket = s3_server.client(), s3_bucket[5:]
    src = upload_dir(s3_server, s3_bucket, run_dir, "run")
    last = sorted((run_dir / "documents").glob("*.parquet"))[-1]
    table = pq.read_table(last)
    pq.write_table(table.slice(0, table.num_rows - 1), tmp_path / "short.parquet")
    client.upload_file(str(tmp_path / "short.parquet"), bucket, f"run/documents/{last.name}")
    code, line = error_line(
        capsys, "shards", "export", "jsonl", src, f"{s3_bucket}/jsonl", "--max-file-bytes", "20000"
    )
    assert code == 3 and "is not in" in line, line
    assert objects(s3_server, s3_bucket, "jsonl") == {}

    shard = json.loads((run_dir / "tokens" / "manifest.json").read_text())["shards"][-1]["path"]
    data = bytearray((run_dir / "tokens" / shard).read_bytes())
    data[len(data) // 2] ^= 0xFF
    client.put_object(Bucket=bucket, Key=f"run/tokens/{shard}", Body=bytes(data))
    code, line = error_line(capsys, "shards", "export", "mds", src, f"{s3_bucket}/mds")
    assert code == 3 and "token shards do not match the manifest" in line, line
    assert objects(s3_server, s3_bucket, "mds") == {}


def test_a_bucket_the_credentials_may_not_write(s3_server, s3_bucket, s3_env, run_dir, capsys):
    with FaultProxy((s3_server.host, s3_server.port), FaultPlan(deny_writes=True)) as proxy:
        s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        code, line = error_line(capsys, "shards", "export", "nanogpt", str(run_dir), f"{s3_bucket}/nano")
    assert (code, line) == (
        4,
        f"thresher: output error: {s3_bucket}/nano: permission denied (the credentials may not write here)",
    )
    assert objects(s3_server, s3_bucket) == {}


def test_an_export_through_a_faulty_connection_is_the_same_export(
    s3_server, s3_bucket, s3_env, run_dir, s3_run, tmp_path
):
    """503 SlowDown, 500, resets and bodies broken off mid-download on the way: retried, and the
    files are the local export's."""
    assert main(["shards", "export", "mds", str(run_dir), str(tmp_path / "local")]) == 0
    plan = FaultPlan(seed=5, slowdown=0.05, error500=0.1, reset=0.05, truncate=0.15)
    with FaultProxy((s3_server.host, s3_server.port), plan) as proxy:
        s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        assert main(["shards", "export", "mds", s3_run, f"{s3_bucket}/mds"]) == 0
    assert proxy.counts["truncate"] and proxy.counts["error500"], proxy.counts
    remote, expected = objects(s3_server, s3_bucket, "mds"), local_files(tmp_path / "local")
    assert sorted(remote) == sorted(expected)
    assert all(remote[rel] == data for rel, data in expected.items() if rel != "manifest.json")
