"""Outputs outside the run engine on S3 (a real moto server over HTTP, tests/s3.py): a tokenizer
trained to and loaded from a URI, ``thresher shards verify URI``, ``thresher report URI``; a bucket
the credentials may not write stops ``tokenizer train`` with one line before any training."""

from __future__ import annotations

import json
import os
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.s3faults import FaultPlan, FaultProxy
from thresher.cli import main
from thresher.tokenize.files import load_tokenizer


def upload_dir(s3_server, bucket_uri: str, local, prefix: str) -> str:
    """A local directory tree copied to the bucket with boto3 directly (not through our code)."""
    client, bucket = s3_server.client(), bucket_uri[len("s3://") :]
    for p in sorted(local.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            client.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(local).as_posix()}")
    return f"{bucket_uri}/{prefix}"


def keys(s3_server, bucket_uri: str) -> list[str]:
    listing = s3_server.client().list_objects_v2(Bucket=bucket_uri[len("s3://") :])
    return sorted(o["Key"] for o in listing.get("Contents", []))


@pytest.fixture(scope="module")
def docs_parquet(tmp_path_factory, shared_data):
    texts = shared_data("neardup-clough-stevenson", "texts")
    rows = [p.read_bytes().decode("utf-8", "replace") for p in sorted(texts.glob("*.txt"))]
    path = tmp_path_factory.mktemp("tok-docs") / "docs.parquet"
    pq.write_table(pa.table({"id": [str(i) for i in range(len(rows))], "text": rows}), path)
    return path


def test_tokenizer_train_to_s3_and_load_from_it(s3_server, s3_bucket, docs_parquet, tmp_path):
    args = ["tokenizer", "train", "--input", str(docs_parquet), "--vocab-size", "400", "--no-ray"]
    assert main([*args, "--output", str(tmp_path / "tok")]) == 0
    assert main([*args, "--output", f"{s3_bucket}/tok"]) == 0
    local, remote = load_tokenizer(tmp_path / "tok"), load_tokenizer(f"{s3_bucket}/tok")
    text = "Inheritance in object-oriented programming"
    assert remote.encode(text) == local.encode(text) and remote.vocab_size == local.vocab_size
    assert keys(s3_server, s3_bucket) == sorted(f"tok/{p.name}" for p in (tmp_path / "tok").iterdir())


def test_tokenizer_train_to_a_bucket_without_write_permission(
    s3_server, s3_bucket, s3_env, docs_parquet, capsys
):
    with FaultProxy((s3_server.host, s3_server.port), FaultPlan(deny_writes=True)) as proxy:
        s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        code = main(
            [
                "tokenizer",
                "train",
                "--input",
                str(docs_parquet),
                "--vocab-size",
                "300",
                "--no-ray",
                "--output",
                f"{s3_bucket}/tok",
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4
    assert err == [
        f"thresher: output error: {s3_bucket}/tok: permission denied (the credentials may not write here)"
    ]
    assert keys(s3_server, s3_bucket) == []


def test_tokenizer_train_to_a_missing_bucket(s3_server, docs_parquet, capsys):
    code = main(
        [
            "tokenizer",
            "train",
            "--input",
            str(docs_parquet),
            "--vocab-size",
            "300",
            "--no-ray",
            "--output",
            "s3://thresher-missing-bucket/tok",
        ]
    )
    assert code == 4
    assert "the bucket does not exist" in capsys.readouterr().err


def test_shards_verify_uri(s3_server, s3_bucket, shared_data, tmp_path_factory, caplog):
    from thresher.shards.sample import small_sample_tokens

    tokens = small_sample_tokens(
        tmp_path_factory.getbasetemp() / "shards-sample", shared_data("lid-lingua-testdata").parent
    )
    uri = upload_dir(s3_server, s3_bucket, tokens, "tokens")
    assert main(["shards", "verify", uri]) == 0
    shard = json.loads((tokens / "manifest.json").read_text())["shards"][1]["path"]
    s3_server.client().put_object(Bucket=s3_bucket[5:], Key=f"tokens/{shard}", Body=b"truncated")
    assert main(["shards", "verify", uri]) == 1
    assert "size 9 != manifest" in caplog.text and f"{uri}/{shard}" in caplog.text
    assert main(["shards", "verify", f"{s3_bucket}/nothing-here"]) == 3


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, shared_data):
    """A real local run (documents, dropped, stats.json) over real texts."""
    from thresher.config import parse_config
    from thresher.run import run_pipeline

    texts = shared_data("neardup-clough-stevenson", "texts")
    root = tmp_path_factory.mktemp("s3-report")
    src = root / "docs.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": p.stem, "text": p.read_bytes().decode("utf-8", "replace")}) + "\n"
            for p in sorted(texts.glob("*.txt"))
        )
    )
    cfg = parse_config(
        {
            "input": {"paths": [str(src)], "docs_per_shard": 30},
            "output": {"path": str(root / "out")},
            "stages": [{"gopher_quality": {}}],
        }
    )
    run_pipeline(cfg, local=True)
    return root / "out"


def _figures(page: str) -> str:
    """The page without its header line (output path, time of writing)."""
    return re.sub(r"<header>.*?</header>", "", page, flags=re.S)


def test_report_reads_and_writes_s3(s3_server, s3_bucket, finished_run, capsys):
    local_report = finished_run / "report.html"
    assert main(["report", str(finished_run)]) == 0
    uri = upload_dir(s3_server, s3_bucket, finished_run, "run")
    s3_server.client().delete_object(Bucket=s3_bucket[5:], Key="run/report.html")
    capsys.readouterr()
    assert main(["report", uri]) == 0
    assert capsys.readouterr().out.strip() == f"{uri}/report.html"
    page = s3_server.client().get_object(Bucket=s3_bucket[5:], Key="run/report.html")["Body"].read().decode()
    assert _figures(page) == _figures(local_report.read_text())
    for secret in (
        os.environ["AWS_ENDPOINT_URL"],
        os.environ["AWS_SECRET_ACCESS_KEY"],
        os.environ["AWS_ACCESS_KEY_ID"],
    ):
        assert secret not in page
        assert secret not in (finished_run / "stats.json").read_text()


def test_report_of_a_uri_without_a_run(s3_bucket, capsys):
    assert main(["report", f"{s3_bucket}/nothing"]) == 3  # an input error: not a run
    assert "stats.json not found" in capsys.readouterr().err
