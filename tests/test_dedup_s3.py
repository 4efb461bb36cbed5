"""MinHash dedup's persistent index on S3 (a real moto server over HTTP, tests/s3.py):
``index_output: s3://…`` then ``against: s3://…`` in a later run drops the same documents, naming
the same kept ones, as the index on a local disk, and the index holds the same rows; a missing
bucket, an occupied index prefix and a prefix that is no index are one line before any work."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.s3faults import FaultPlan, FaultProxy
from thresher.cli import main


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared_data):
    """A first run's documents (real English paragraphs, a tenth of them again with a footer) and
    a second run's: new paragraphs and earlier ones with a word changed and a footer."""
    with gzip.open(shared_data("lid-lingua-testdata", "sentences", "en.txt.gz"), "rt", encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    paragraphs = [" ".join(lines[i : i + 12]) for i in range(0, len(lines) - 11, 12)]
    root = tmp_path_factory.mktemp("dedup-s3")
    with open(root / "old.jsonl", "w", encoding="utf-8") as f:
        for i, p in enumerate(paragraphs[:60]):
            f.write(json.dumps({"id": f"a{i}", "text": p}) + "\n")
        for i in range(0, 60, 10):
            f.write(json.dumps({"id": f"b{i}", "text": paragraphs[i] + " Share this article"}) + "\n")
    with open(root / "new.jsonl", "w", encoding="utf-8") as f:
        for i, p in enumerate(paragraphs[60:80]):
            f.write(json.dumps({"id": f"n{i}", "text": p}) + "\n")
        for i in range(3, 60, 7):
            words = paragraphs[i].split()
            words[len(words) // 2] = "recrawled"
            f.write(json.dumps({"id": f"r{i}", "text": " ".join(words) + " Cookie settings"}) + "\n")
    return root


def dedup(*argv: str) -> int:
    return main(["dedup", *argv])


def outcome(out) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """(kept ids, {dropped id: (reason, kept id)}) of a run's output."""
    kept = sorted(pq.read_table(out / "documents").column("id").to_pylist())
    dropped = pq.read_table(out / "dropped").to_pylist()
    return kept, {r["id"]: (r["reason"], r["detail"]) for r in dropped}


def index_rows(tables: list[pa.Table]) -> list[tuple]:
    return sorted(
        zip(*(pa.concat_tables(tables).column(c).to_pylist() for c in ("key", "node", "id")), strict=True)
    )


def s3_parquet(s3_server, bucket_uri: str, prefix: str) -> list[pa.Table]:
    """Every Parquet object below ``prefix``, read with boto3 directly (not through our code)."""
    client, bucket = s3_server.client(), bucket_uri[len("s3://") :]
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return [
        pq.read_table(pa.BufferReader(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()))
        for o in listing
        if o["Key"].endswith(".parquet")
    ]


def test_an_index_on_s3_drops_what_a_local_index_drops(s3_server, s3_bucket, corpus, tmp_path):
    old, new = str(corpus / "old.jsonl"), str(corpus / "new.jsonl")
    local_index, s3_index = tmp_path / "index", f"{s3_bucket}/dedup/index"
    assert dedup(old, "--output", str(tmp_path / "l1"), "--index-output", str(local_index)) == 0
    assert dedup(old, "--output", str(tmp_path / "s1"), "--index-output", s3_index) == 0
    assert outcome(tmp_path / "s1") == outcome(tmp_path / "l1")

    client, bucket = s3_server.client(), s3_bucket[5:]
    params = client.get_object(Bucket=bucket, Key="dedup/index/params.json")["Body"].read()
    assert json.loads(params) == json.loads((local_index / "params.json").read_text())
    remote_keys = s3_parquet(s3_server, s3_bucket, "dedup/index/keys/")
    assert index_rows(remote_keys) == index_rows(
        [pq.read_table(p) for p in (local_index / "keys").glob("*.parquet")]
    )
    assert len(s3_parquet(s3_server, s3_bucket, "dedup/index/sigs/")) == len(remote_keys) > 0
    listing = client.list_objects_v2(Bucket=bucket, Prefix="dedup/index/")["Contents"]
    assert not [o["Key"] for o in listing if ".thresher-probe-" in o["Key"]]

    assert dedup(new, "--output", str(tmp_path / "l2"), "--against", str(local_index)) == 0
    assert dedup(new, "--output", str(tmp_path / "s2"), "--against", s3_index) == 0
    kept, dropped = outcome(tmp_path / "s2")
    assert (kept, dropped) == outcome(tmp_path / "l2")
    assert dropped == {f"r{i}": ("minhash_duplicate", f"a{i}") for i in range(3, 60, 7)}
    assert kept == sorted(f"n{i}" for i in range(20))


def test_the_config_takes_index_uris_too(s3_bucket, corpus, tmp_path):
    """A pipeline config's minhash_dedup.index_output / against as URIs, run with `thresher run`."""
    index = f"{s3_bucket}/cfg-index"
    for name, src, key in (("first", "old", "index_output"), ("second", "new", "against")):
        config = tmp_path / f"{name}.yaml"
        config.write_text(
            f"input: {{paths: [{corpus / src}.jsonl]}}\noutput: {{path: {tmp_path / name}}}\n"
            f"stages:\n  - minhash_dedup: {{{key}: {index}}}\n"
        )
        assert main(["run", str(config), "--local"]) == 0
    dropped = pq.read_table(tmp_path / "second" / "dropped").column("id").to_pylist()
    assert sorted(dropped) == sorted(f"r{i}" for i in range(3, 60, 7))


def error_line(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return code, lines[0]


def test_index_uris_that_cannot_work_stop_the_run_before_any_work(
    s3_server, s3_bucket, corpus, tmp_path, capsys
):
    old, new = str(corpus / "old.jsonl"), str(corpus / "new.jsonl")
    out = tmp_path / "out"
    code, line = error_line(
        capsys, "dedup", old, "--output", str(out), "--index-output", "s3://thresher-no-such-bucket/i"
    )
    assert (code, line) == (
        4,
        "thresher: output error: s3://thresher-no-such-bucket/i: the bucket does not exist",
    )
    code, line = error_line(
        capsys, "dedup", new, "--output", str(out), "--against", "s3://thresher-no-such-bucket/i"
    )
    assert (code, line) == (
        3,
        "thresher: input error: s3://thresher-no-such-bucket/i: the bucket does not exist",
    )
    assert not (out / "documents").exists()

    client, bucket = s3_server.client(), s3_bucket[5:]
    client.put_object(Bucket=bucket, Key="notes/readme.txt", Body=b"not an index")
    code, line = error_line(capsys, "dedup", new, "--output", str(out), "--against", f"{s3_bucket}/notes")
    assert code == 2 and line.endswith(f"{s3_bucket}/notes is not a dedup index (no params.json)")
    client.put_object(Bucket=bucket, Key="used/keys/part-0.parquet", Body=b"someone's index")
    code, line = error_line(capsys, "dedup", old, "--output", str(out), "--index-output", f"{s3_bucket}/used")
    assert code == 2 and "already holds an index; choose a new directory" in line
    code, line = error_line(capsys, "dedup", old, "--output", str(out), "--index-output", "s3:///i")
    assert code == 2 and "no bucket in the URI" in line
    assert not (out / "documents").exists()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["notes/readme.txt", "used/keys/part-0.parquet"]


def test_an_index_output_the_credentials_may_not_write(
    s3_server, s3_bucket, s3_env, corpus, tmp_path, capsys
):
    with FaultProxy((s3_server.host, s3_server.port), FaultPlan(deny_writes=True)) as proxy:
        s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        code, line = error_line(
            capsys,
            "dedup",
            str(corpus / "old.jsonl"),
            "--output",
            str(tmp_path / "out"),
            "--index-output",
            f"{s3_bucket}/i",
        )
    assert (code, line) == (
        4,
        f"thresher: output error: {s3_bucket}/i: permission denied (the credentials may not write here)",
    )
    assert s3_server.client().list_objects_v2(Bucket=s3_bucket[5:]).get("KeyCount", 0) == 0
    assert not (tmp_path / "out" / "documents").exists()


@pytest.mark.slow
def test_an_index_on_s3_from_ray_workers(s3_server, s3_bucket, corpus, tmp_path, ray_session):
    """The Ray path (documents keyed in Ray Data, clustering as Ray tasks): index blocks are
    written by the workers to S3, and a later Ray run against it drops what the local path drops."""
    index = f"{s3_bucket}/ray-index"
    old, new = str(corpus / "old.jsonl"), str(corpus / "new.jsonl")
    assert dedup(old, "--output", str(tmp_path / "r1"), "--index-output", index, "--local-max-docs", "0") == 0
    assert s3_parquet(s3_server, s3_bucket, "ray-index/keys/")  # written by a Ray task
    assert dedup(new, "--output", str(tmp_path / "r2"), "--against", index, "--local-max-docs", "0") == 0
    stats = json.loads((tmp_path / "r2" / "stats.json").read_text())
    assert stats["extra"]["02-minhash_dedup"]["executor"].startswith("ray:")
    assert outcome(tmp_path / "r2")[1] == {f"r{i}": ("minhash_duplicate", f"a{i}") for i in range(3, 60, 7)}
