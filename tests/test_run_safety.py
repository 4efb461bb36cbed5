"""A run never destroys data and never confuses two documents: an occupied output directory or an
input inside it is refused before any work; documents with the same id stay two documents (the
later ones get a derived id) and dedup decides by their place in the run, the same on Ray and
in-process; no output file has zero rows, so ``datasets`` loads every output directory."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import shared_path
from tests.demo_data import demo_warc_subset
from thresher.config import load_config, parse_config
from thresher.run import ResumeError, run_pipeline
from thresher.run.ownership import InputInsideOutputError, OutputExistsError

ROOT = Path(__file__).resolve().parents[1]


def _sentences(lang: str, n: int) -> list[str]:
    path = shared_path("lid-lingua-testdata", "sentences", f"{lang}.txt.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [line.strip() for line in f if len(line.strip()) > 40]
    return lines[:n]


def _jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in rows), encoding="utf-8")
    return path


def _config(inputs: list[Path], out: Path, stages: list, **input_extra) -> object:
    return parse_config(
        {
            "input": {"paths": [str(p) for p in inputs], **input_extra},
            "output": {"path": str(out), "write_dropped": True},
            "ray": {"progress": False},
            "stages": stages,
        }
    )


def _tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _table(directory: Path, sort: list[str]) -> list[dict]:
    files = sorted(directory.glob("*.parquet"))
    return (
        pa.concat_tables([pq.read_table(f) for f in files])
        .sort_by([(c, "ascending") for c in sort])
        .to_pylist()
    )


def _load_with_datasets(directory: Path) -> int:
    """Rows of every Parquet file of ``directory``, loaded the way a trainer would."""
    import datasets

    files = sorted(str(p) for p in directory.glob("*.parquet"))
    assert files, directory
    return len(datasets.load_dataset("parquet", data_files=files, split="train"))


def _thresher(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "thresher.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


# --------------------------------------------------------------------------- item 1: the output directory


@pytest.fixture
def finished(tmp_path):
    """A finished local run over real sentences (exact dedup, so every output kind is there)."""
    src = _jsonl(tmp_path / "docs.jsonl", [(f"en{i}", t) for i, t in enumerate(_sentences("en", 20))])
    out = tmp_path / "out"
    run_pipeline(_config([src], out, [{"exact_dedup": {}}]), local=True)
    return src, out


def test_input_inside_the_output_is_refused_before_anything_is_deleted(finished):
    src, out = finished
    inside = out / "documents" / "x.jsonl"
    shutil.copy(src, inside)
    before = _tree(out)
    for overwrite in (False, True):
        with pytest.raises(InputInsideOutputError, match="another --output"):
            run_pipeline(_config([inside], out, [{"exact_dedup": {}}]), local=True, overwrite=overwrite)
    assert _tree(out) == before  # the input, and the finished run, untouched


def test_a_finished_run_is_refused_and_replaced_only_with_overwrite(finished):
    src, out = finished
    (out / "notes.txt").write_text("mine")  # not a name a run writes: never touched
    before = _tree(out)
    with pytest.raises(OutputExistsError, match="finished run.*--overwrite"):
        run_pipeline(_config([src], out, [{"exact_dedup": {}}]), local=True)
    with pytest.raises(OutputExistsError):  # another config: refused the same way
        run_pipeline(_config([src], out, [{"language": {}}]), local=True)
    assert _tree(out) == before
    run_pipeline(_config([src], out, [{"language": {"languages": ["en"]}}]), local=True, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert "01-language" in json.loads((out / "stats.json").read_text())["stages"]
    assert not list((out / "dropped").glob("*.phase1.parquet"))  # the old run's files are gone


def test_a_users_file_among_the_runs_files_is_never_deleted(finished):
    src, out = finished
    mine = out / "documents" / "mine.parquet"
    pq.write_table(pa.table({"id": ["u1"], "text": ["my own document"]}), mine)
    before = _tree(out)
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match="documents/mine.parquet"):
            run_pipeline(_config([src], out, [{"exact_dedup": {}}]), local=True, overwrite=overwrite)
    assert _tree(out) == before


def test_resume_of_another_config_is_refused_unless_overwrite(finished):
    src, out = finished
    with pytest.raises(ResumeError, match="--overwrite"):
        run_pipeline(_config([src], out, [{"language": {}}]), local=True, resume=True)
    run_pipeline(_config([src], out, [{"exact_dedup": {}}]), local=True, resume=True)  # the same run: fine


def test_in_place_dedup_of_a_finished_run_is_refused_with_a_hint(finished):
    _, out = finished
    before = _tree(out)
    run = _thresher(
        "run", "pipeline/configs/dedup.yaml", "--input", str(out / "documents"), "--output", str(out)
    )
    assert run.returncode != 0 and "another --output" in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    dedup = _thresher("dedup", str(out / "documents"), "--output", str(out))
    assert dedup.returncode != 0 and "another --output" in dedup.stderr, dedup.stderr[-2000:]
    assert _tree(out) == before
    new = out.parent / "dedup"
    assert _thresher("dedup", str(out / "documents"), "--output", str(new)).returncode == 0
    again = _thresher("dedup", str(out / "documents"), "--output", str(new))
    assert again.returncode != 0 and "--overwrite" in again.stderr
    assert _thresher("dedup", str(out / "documents"), "--output", str(new), "--overwrite").returncode == 0
    assert _tree(out) == before


# --------------------------------------------------------------------------- item 2: duplicate ids


def _issue_input(tmp_path: Path) -> Path:
    """The issue's input: X(t1), X(t2), Y(t2), Z(t3), Z(t3), with real sentences."""
    t1, t2, t3 = _sentences("en", 3)
    return _jsonl(tmp_path / "issue.jsonl", [("X", t1), ("X", t2), ("Y", t2), ("Z", t3), ("Z", t3)])


def _dedup_stats(out: Path, label: str) -> tuple[dict, dict]:
    stats = json.loads((out / "stats.json").read_text())
    return stats["stages"][label], stats["extra"][label]


def _check_issue_output(out: Path, t: list[str]) -> None:
    docs = _table(out / "documents", ["id"])
    assert [(d["id"], d["text"]) for d in docs] == [("X", t[0]), ("X#2", t[1]), ("Z", t[2])]
    assert json.loads(docs[1]["metadata"]) == {"original_id": "X"}
    dropped = _table(out / "dropped", ["id"])
    assert [(d["id"], d["reason"], d["detail"]) for d in dropped] == [
        ("Y", "exact_duplicate", "X#2"),
        ("Z#2", "exact_duplicate", "Z"),
    ]
    stage, extra = _dedup_stats(out, "01-exact_dedup")
    assert stage["dropped"] == {"exact_duplicate": 2} == {"exact_duplicate": extra["removed"]}
    assert extra["renamed_duplicate_ids"] == 2


def test_duplicate_ids_are_made_unique_and_dedup_keeps_the_unique_text_local(tmp_path):
    src = _issue_input(tmp_path)
    run_pipeline(_config([src], tmp_path / "out", [{"exact_dedup": {}}]), local=True)
    _check_issue_output(tmp_path / "out", _sentences("en", 3))


@pytest.mark.usefixtures("ray_session")
def test_duplicate_ids_on_ray_give_the_local_output(tmp_path):
    src = _issue_input(tmp_path)
    stages = [{"exact_dedup": {}}, {"minhash_dedup": {}}]
    run_pipeline(_config([src], tmp_path / "ray", stages))
    run_pipeline(_config([src], tmp_path / "local", stages), local=True)
    for sub, key in (("documents", ["id"]), ("dropped", ["id", "stage"])):
        assert _table(tmp_path / "ray" / sub, key) == _table(tmp_path / "local" / sub, key)
    stage, extra = _dedup_stats(tmp_path / "ray", "01-exact_dedup")
    assert sum(stage["dropped"].values()) == extra["removed"] == 2


def test_the_same_warc_twice_loses_every_copy_of_the_second(tmp_path):
    first = demo_warc_subset(tmp_path / "a.warc.gz", 40)
    second = tmp_path / "b.warc.gz"
    shutil.copy(first, second)  # the same records, the same WARC-Record-IDs
    stages = [{"extract": {"metadata": "none"}}, {"exact_dedup": {}}]
    one = run_pipeline(_config([first], tmp_path / "one", stages), local=True)
    two = run_pipeline(_config([first, second], tmp_path / "two", stages), local=True)
    assert one.documents > 10
    assert two.documents == one.documents  # every pair found: 0 of them were before
    stage, extra = _dedup_stats(tmp_path / "two", "02-exact_dedup")
    assert stage["dropped"] == {"exact_duplicate": one.documents} and extra["removed"] == one.documents
    kept = _table(tmp_path / "two" / "documents", ["id"])
    assert [d["id"] for d in kept] == [d["id"] for d in _table(tmp_path / "one" / "documents", ["id"])]
    dropped = [d for d in _table(tmp_path / "two" / "dropped", ["id"]) if d["reason"] == "exact_duplicate"]
    assert all(d["id"].endswith("#2") and d["source"].startswith(str(second)) for d in dropped)


# --------------------------------------------------------------------------- item 16: no zero-row files


def test_no_zero_row_files_when_filters_empty_shards(tmp_path):
    """English and German files in shards of 5: the language filter empties the German shards,
    dedup finds nothing in most shards; every file left loads with ``datasets``."""
    en = _sentences("en", 10)
    en_file = _jsonl(tmp_path / "en.jsonl", [(f"en{i}", t) for i, t in enumerate(en + en[:3])])
    de_file = _jsonl(tmp_path / "de.jsonl", [(f"de{i}", t) for i, t in enumerate(_sentences("de", 10))])
    out = tmp_path / "out"
    stages = [{"language": {"languages": ["en"], "threshold": 0.3}}, {"exact_dedup": {}}]
    result = run_pipeline(_config([en_file, de_file], out, stages, docs_per_shard=5), local=True)
    assert result.documents == 10
    for sub in ("documents", "dropped"):
        files = sorted((out / sub).glob("*.parquet"))
        assert all(pq.ParquetFile(f).metadata.num_rows > 0 for f in files), sub
    # de.jsonl (file 0): nothing kept; 00001-00002 held the three copies, dedup dropped them all.
    assert sorted(p.name for p in (out / "documents").iterdir()) == [
        "00001-00000.parquet",
        "00001-00001.parquet",
    ]
    assert _load_with_datasets(out / "documents") == 10
    assert _load_with_datasets(out / "dropped") == 13
    stats = json.loads((out / "stats.json").read_text())
    assert sum(stats["stages"]["01-language"]["dropped"].values()) == 10


def test_dedup_command_writes_no_zero_row_parts(tmp_path):
    lines = _sentences("fr", 12)
    a = _jsonl(tmp_path / "a.jsonl", [(f"a{i}", t) for i, t in enumerate(lines)])
    b = _jsonl(tmp_path / "b.jsonl", [(f"b{i}", t) for i, t in enumerate(lines)])  # all duplicates of a
    out = tmp_path / "out"
    assert _thresher("dedup", str(a), str(b), "--output", str(out)).returncode == 0
    assert sorted(p.name for p in (out / "documents").iterdir()) == ["00000-00000.parquet"]
    assert sorted(p.name for p in (out / "dropped").iterdir()) == ["00001-00000.phase1.parquet"]
    assert _load_with_datasets(out / "documents") == 12 and _load_with_datasets(out / "dropped") == 12


# --------------------------------------------------------------------------- the demo: local equals Ray


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory, ray_session):
    """The demo config, once on Ray and once in-process (minutes: one of each per test session)."""
    root = tmp_path_factory.mktemp("demo")
    cfg = load_config(str(ROOT / "pipeline" / "configs" / "demo.yaml"), ["ray.progress=false"])
    outs = {}
    for name, local in (("ray", False), ("local", True)):
        cfg.output.path = str(root / name)
        outs[name] = (run_pipeline(cfg, local=local), root / name)
    return outs


@pytest.mark.slow
def test_demo_local_equals_ray_and_loads_with_datasets(demo_runs):
    (ray_result, ray_out), (local_result, local_out) = demo_runs["ray"], demo_runs["local"]
    assert ray_result.documents == local_result.documents > 50
    assert _table(ray_out / "documents", ["id"]) == _table(local_out / "documents", ["id"])
    assert _table(ray_out / "dropped", ["id", "stage"]) == _table(local_out / "dropped", ["id", "stage"])
    assert ray_result.extra["tokenize"]["tokens"] == local_result.extra["tokenize"]["tokens"]
    for out, result in ((ray_out, ray_result), (local_out, local_result)):
        assert _load_with_datasets(out / "documents") == result.documents
        stats = json.loads((out / "stats.json").read_text())
        dropped = sum(
            sum(s["dropped"].values()) + sum(s["errors"].values()) for s in stats["stages"].values()
        )
        assert _load_with_datasets(out / "dropped") == dropped
        for label in ("07-exact_dedup", "08-minhash_dedup"):
            assert sum(stats["stages"][label]["dropped"].values()) == stats["extra"][label]["removed"]
    print(
        f"demo: {ray_result.documents} documents, {ray_result.extra['tokenize']['tokens']} tokens on Ray and --local"
    )
