"""``thresher dedup`` end to end on real sentences: JSONL and Parquet in, kept documents with
their ids out, a bad line counted, and a second run against the first run's index. The command
runs the pipeline runner, so its output is a run's (shards, stats.json, report)."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq

from thresher.cli import main


def _run(argv: list[str]) -> int:
    """``thresher dedup ARGV``'s exit code (expected errors are one line and a code, as on the CLI)."""
    return main(["dedup", *argv])


def test_dedup_command(tmp_path, shared_data):
    with gzip.open(shared_data("lid-lingua-testdata", "sentences", "en.txt.gz"), "rt", encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    paragraphs = [" ".join(lines[i : i + 12]) for i in range(0, len(lines) - 11, 12)]
    with open(tmp_path / "a.jsonl", "w", encoding="utf-8") as f:
        for i, p in enumerate(paragraphs[:60]):
            f.write(json.dumps({"id": f"a{i}", "text": p, "url": f"https://x.org/{i}"}) + "\n")
        f.write("{not json\n")
    pq.write_table(
        pa.table(
            {
                "id": [f"b{i}" for i in range(10)] + [f"c{i}" for i in range(10)],
                "text": [p.upper() for p in paragraphs[:10]]
                + [p + " Share this article" for p in paragraphs[10:20]],
            }
        ),
        tmp_path / "b.parquet",
    )
    out = tmp_path / "out"
    assert (
        _run(
            [
                str(tmp_path / "a.jsonl"),
                str(tmp_path / "b.parquet"),
                "--output",
                str(out),
                "--index-output",
                str(tmp_path / "index"),
            ]
        )
        == 0
    )
    kept = pq.read_table(out / "documents").column("id").to_pylist()
    assert sorted(kept) == sorted(f"a{i}" for i in range(60))
    dropped = pq.read_table(out / "dropped")
    reasons = dict(zip(dropped.column("id").to_pylist(), dropped.column("reason").to_pylist(), strict=True))
    assert {k: v for k, v in reasons.items() if k.startswith(("b", "c"))} == {
        **{f"b{i}": "exact_duplicate" for i in range(10)},
        **{f"c{i}": "minhash_duplicate" for i in range(10)},
    }
    stats = json.loads((out / "stats.json").read_text())
    assert stats["order"] == ["read", "01-exact_dedup", "02-minhash_dedup"]
    assert stats["stages"]["read"]["errors"] == {"bad_json": 1} and stats["documents"] == 60
    near = stats["extra"]["02-minhash_dedup"]
    assert near["verify_threshold"] == 0.8 and near["verified_edges"] == 10 == near["removed"]
    assert (out / "report.html").exists()

    with open(tmp_path / "new.jsonl", "w", encoding="utf-8") as f:
        f.write(json.dumps({"id": "n0", "text": paragraphs[70]}) + "\n")
        f.write(json.dumps({"id": "n1", "text": paragraphs[5] + " Cookie settings"}) + "\n")
    out2 = tmp_path / "out2"
    assert (
        _run([str(tmp_path / "new.jsonl"), "--output", str(out2), "--against", str(tmp_path / "index")]) == 0
    )
    assert pq.read_table(out2 / "documents").column("id").to_pylist() == ["n0"]
    assert pq.read_table(out2 / "dropped").column("detail").to_pylist() == ["a5"]
    assert (
        _run([str(tmp_path / "new.jsonl"), "--output", str(out2), "--against", str(tmp_path / "index")]) == 4
    )
    out3 = tmp_path / "out3"  # not a dedup index; an option out of range: config errors, before any work
    assert _run([str(tmp_path / "new.jsonl"), "--output", str(out3), "--against", str(tmp_path)]) == 2
    assert _run([str(tmp_path / "new.jsonl"), "--output", str(out3), "--verify-threshold", "1.5"]) == 2
    assert not (out3 / "documents").exists()
