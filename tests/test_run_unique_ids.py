"""Every run's output ids are unique, with or without a dedup stage: a kept document whose id an
earlier kept document has (by shard, then position) becomes ``ID#2``, ``ID#3``, … (skipping names
a document already has), with the id it came with in ``metadata.original_id``; the same on Ray,
in-process, to object storage and after ``--resume``."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.demo_data import demo_warc_subset
from tests.test_run_safety import _config, _jsonl, _sentences, _table
from thresher.io import Store
from thresher.run import run_pipeline

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE = {"language": {"languages": ["en"], "threshold": 0.3}}


def _inputs(tmp_path: Path) -> list[Path]:
    """Two files of real sentences in shards of 3, ids repeated within a shard, across shards and
    across files; ``X#2`` is an id of the input (so the second X becomes X#3); the German Y and Z
    are dropped by the language filter and keep their ids."""
    en, de = _sentences("en", 8), _sentences("de", 2)
    a = [("X", en[0]), ("Y", en[1]), ("X", en[2]), ("X#2", en[3]), ("Z", en[4])]
    b = [("X", en[5]), ("Y", de[0]), ("Y", en[6]), ("Z", de[1]), ("W", en[7])]
    return [_jsonl(tmp_path / "a.jsonl", a), _jsonl(tmp_path / "b.jsonl", b)]


EXPECTED = [  # (id, original_id) of the kept documents in input order
    ("X", None),
    ("Y", None),
    ("X#3", "X"),
    ("X#2", None),
    ("Z", None),
    ("X#4", "X"),
    ("Y#2", "Y"),
    ("W", None),
]


def _documents(directory: Path) -> list[dict]:
    """Kept documents in output order (shard files sorted, rows in file order)."""
    files = sorted(directory.glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()


def _ids(docs: list[dict]) -> list[tuple[str, str | None]]:
    return [(d["id"], json.loads(d["metadata"] or "{}").get("original_id")) for d in docs]


def _check(out: Path) -> None:
    docs = _documents(out / "documents")
    assert _ids(docs) == EXPECTED
    assert len({d["id"] for d in docs}) == len(docs)
    dropped = _table(out / "dropped", ["id"])
    assert [(d["id"], d["reason"]) for d in dropped] == [
        ("Y", "language_not_kept"),
        ("Z", "language_not_kept"),
    ]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["extra"]["unique_ids"] == {"renamed_duplicate_ids": 3}
    assert stats["documents"] == 8 and stats["stages"]["01-language"]["kept"] == 8
    assert not (out / "_work").exists()


def test_a_run_without_dedup_makes_ids_unique_local(tmp_path):
    out = tmp_path / "out"
    run_pipeline(_config(_inputs(tmp_path), out, [LANGUAGE], docs_per_shard=3), local=True)
    _check(out)
    # A shard with no duplicate is written once, by its phase: only the renamed shards change.
    assert sorted(p.name for p in (out / "documents").iterdir()) == [
        "00000-00000.parquet",
        "00000-00001.parquet",
        "00001-00000.parquet",
        "00001-00001.parquet",
    ]


@pytest.mark.usefixtures("ray_session")
def test_a_run_without_dedup_makes_ids_unique_on_ray_as_local(tmp_path):
    inputs = _inputs(tmp_path)
    run_pipeline(_config(inputs, tmp_path / "ray", [LANGUAGE], docs_per_shard=3))
    run_pipeline(_config(inputs, tmp_path / "local", [LANGUAGE], docs_per_shard=3), local=True)
    _check(tmp_path / "ray")
    for sub in ("documents", "dropped"):
        names = sorted(p.name for p in (tmp_path / "local" / sub).iterdir())
        assert sorted(p.name for p in (tmp_path / "ray" / sub).iterdir()) == names
        for name in names:  # the same rows in the same files
            a = pq.read_table(tmp_path / "local" / sub / name).to_pylist()
            assert pq.read_table(tmp_path / "ray" / sub / name).to_pylist() == a


@pytest.mark.usefixtures("ray_session")
def test_the_clusters_id_count_gives_the_drivers_decisions(tmp_path):
    """A small run on a disk reads its ids on the driver; a large one, or one on object storage,
    counts them in the cluster (Ray Data's groupby): both decide the same renames."""
    from thresher.run.decisions import duplicate_id_renames
    from thresher.run.layout import RunLayout

    en = _sentences("en", 6)
    rows = [("X", en[0]), ("Y", en[1]), ("X", en[2]), ("X#2", en[3]), ("X", en[4]), ("Y", en[5])]
    out = tmp_path / "read"
    run_pipeline(_config([_jsonl(tmp_path / "a.jsonl", rows)], out, [], docs_per_shard=2), local=True)
    layout = RunLayout.at(tmp_path / "copy")  # the documents as read, before any rename
    layout.makedirs(layout.documents_dir)
    for f in sorted((out / "documents").glob("*.parquet")):
        docs = pq.read_table(f)
        original = [json.loads(m or "{}").get("original_id") for m in docs.column("metadata").to_pylist()]
        ids = [o or i for o, i in zip(original, docs.column("id").to_pylist(), strict=True)]
        layout.write_parquet(layout.documents_dir / f.name, docs.set_column(0, "id", pa.array(ids)))
    files = [str(f) for f in layout.document_files()]
    on_driver = duplicate_id_renames(files, layout, local=False, init_ray=lambda: None, documents=6)
    in_cluster = duplicate_id_renames(files, layout, local=False, init_ray=lambda: None)
    key = lambda r: (r["shard"], r["pos"])  # noqa: E731
    assert sorted(in_cluster, key=key) == sorted(on_driver, key=key)
    assert [(r["shard"], r["pos"], r["detail"]) for r in sorted(on_driver, key=key)] == [
        ("00000-00001", 0, "X#3"),
        ("00000-00002", 0, "X#4"),
        ("00000-00002", 1, "Y#2"),
    ]


def test_the_same_warc_twice_without_dedup_renames_the_second_copy(tmp_path):
    """A real WARC given twice (the same WARC-Record-IDs) through extraction only: every page of
    the second copy is kept under ``ID#2``."""
    first = demo_warc_subset(tmp_path / "a.warc.gz", 20)
    second = tmp_path / "b.warc.gz"
    shutil.copy(first, second)
    stages = [{"extract": {"metadata": "none"}}]
    run_pipeline(_config([first, second], tmp_path / "out", stages), local=True)
    docs = _documents(tmp_path / "out" / "documents")
    half = len(docs) // 2
    assert half > 5 and len(docs) == 2 * half
    assert len({d["id"] for d in docs}) == len(docs)
    assert [d["id"] for d in docs[half:]] == [f"{d['id']}#2" for d in docs[:half]]
    assert _ids(docs[half:]) == [(f"{d['id']}#2", d["id"]) for d in docs[:half]]
    assert all(d["source"].startswith(str(second)) for d in docs[half:])
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["extra"]["unique_ids"] == {"renamed_duplicate_ids": half}
    assert (tmp_path / "out" / "report.html").is_file()  # the report takes the new figure


def test_a_run_to_object_storage_makes_ids_unique(tmp_path, s3_bucket):
    out = f"{s3_bucket}/unique"
    run_pipeline(_config(_inputs(tmp_path), out, [LANGUAGE], docs_per_shard=3), local=True)
    store = Store.from_uri(out)
    keys = sorted(k for k in store.find() if k.startswith("documents/"))
    docs = pa.concat_tables([pq.read_table(io.BytesIO(store.read_bytes(k))) for k in keys]).to_pylist()
    assert _ids(docs) == EXPECTED
    assert json.loads(store.read_bytes("stats.json"))["extra"]["unique_ids"] == {"renamed_duplicate_ids": 3}
    assert not [k for k in store.find() if k.startswith("_work/")]


def _run_config(tmp_path: Path, inputs: list[Path], marker: Path) -> Path:
    """A config whose first stage kills the process (``--local``: the driver) once it has seen 7
    documents: the first file (5 documents, 2 shards) is done, the second is not."""
    config = tmp_path / "run.yaml"
    stage = {"tests.faults:KillWorkerOnce": {"marker": str(marker), "after_docs": 7}}
    config.write_text(
        yaml.safe_dump(
            {
                "input": {"paths": [str(p) for p in inputs], "docs_per_shard": 3},
                "output": {"write_dropped": True},
                "ray": {"progress": False},
                "stages": [stage, LANGUAGE],
            }
        )
    )
    return config


def _thresher_run(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "thresher.cli", "run", str(config), "--output", str(out), "--local", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_resume_after_an_interrupted_run_gives_the_same_ids(tmp_path):
    inputs = _inputs(tmp_path)
    marker = tmp_path / "killed"
    config = _run_config(tmp_path, inputs, marker)
    killed = _thresher_run(config, tmp_path / "out")
    assert marker.exists() and killed.returncode != 0, killed.stderr[-2000:]
    assert not (tmp_path / "out" / "stats.json").exists()
    resumed = _thresher_run(config, tmp_path / "out", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["resumed_files"] == 1
    reference = tmp_path / "reference"  # the same config, never killed (the marker exists)
    assert _thresher_run(config, reference).returncode == 0
    assert _documents(tmp_path / "out" / "documents") == _documents(reference / "documents")
    assert _ids(_documents(reference / "documents")) == EXPECTED
    # a resume of the finished run renames nothing twice
    assert _thresher_run(config, tmp_path / "out", "--resume").returncode == 0
    assert _documents(tmp_path / "out" / "documents") == _documents(reference / "documents")
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["extra"]["unique_ids"] == {"renamed_duplicate_ids": 3}


def test_renaming_a_shard_again_changes_nothing(tmp_path):
    """What a resumed rename pass meets: a shard its killed attempt already rewrote is left as it
    is (all of its renames are there), and a shard that matches its decisions only in part is
    a loud error, never renamed twice."""
    from thresher.document import Document, kept_table
    from thresher.run.blocks import DecisionError
    from thresher.run.decisions import UNIQUE_IDS, make_ids_unique, rename_shard
    from thresher.run.layout import RunLayout
    from thresher.stage import DECISION_SCHEMA

    en = _sentences("en", 4)
    layout = RunLayout.at(tmp_path / "out")
    phase = layout.phase(0, last=True, write_dropped=False)
    phase.make_dirs()
    docs = [Document(id=i, text=t) for i, t in zip(["A", "B", "A", "A"], en, strict=True)]
    shard = phase.documents("00000-00000")
    layout.write_parquet(shard, kept_table(docs))
    figures = make_ids_unique(phase, local=True, init_ray=lambda: None)
    assert figures == {"renamed_duplicate_ids": 2}
    renamed = pq.read_table(shard).to_pylist()
    assert _ids(renamed) == [("A", None), ("B", None), ("A#2", "A"), ("A#3", "A")]
    decisions = layout.decisions(UNIQUE_IDS, "00000-00000")
    layout.makedirs(decisions.parent)
    rows = [
        {"id": "A", "shard": "00000-00000", "pos": pos, "kind": "rename", "reason": "duplicate_id"}
        | {"value": None, "detail": name}
        for pos, name in ((2, "A#2"), (3, "A#3"))
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=DECISION_SCHEMA), decisions)
    assert rename_shard(str(shard), str(decisions), phase) is False  # already applied: not written
    assert pq.read_table(shard).to_pylist() == renamed
    half = [dict(r) for r in renamed]
    half[3].update(id="A", metadata=None)  # one rename applied, one not: never half a shard
    pq.write_table(pa.Table.from_pylist(half, schema=pq.read_schema(shard)), shard)
    with pytest.raises(DecisionError, match="1 of its 2 renames are already applied"):
        rename_shard(str(shard), str(decisions), phase)
    rows[1]["detail"] = "A#9"  # a decision for another document: refused
    pq.write_table(pa.Table.from_pylist(rows, schema=DECISION_SCHEMA), decisions)
    layout.write_parquet(shard, pa.Table.from_pylist(renamed, schema=pq.read_schema(shard)))
    with pytest.raises(DecisionError, match="matches no document"):
        rename_shard(str(shard), str(decisions), phase)
    assert layout.read_json(layout.step_done(UNIQUE_IDS)) == figures
    assert make_ids_unique(phase, local=True, init_ray=lambda: None) == figures  # done: not redone
