"""The run engine (thresher/run/): what a reused process must not carry over between runs, what
a run checks before any data moves, and that --local and Ray write the same dataset."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import shared_path
from thresher.config import parse_config
from thresher.run import run_pipeline


def _sentences(n: int) -> list[str]:
    """Real sentences in four languages, short enough that lid.176's confidence varies."""
    out = []
    for lang in ("en", "de", "fr", "es"):
        with gzip.open(
            shared_path("lid-lingua-testdata", "sentences", f"{lang}.txt.gz"), "rt", encoding="utf-8"
        ) as f:
            out += [line.strip() for line, _ in zip(f, range(n), strict=False) if line.strip()]
    return out


def _jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


def _config(inputs: list[Path], out: Path, stages: list, **extra) -> object:
    return parse_config(
        {
            "input": {"paths": [str(p) for p in inputs], "docs_per_shard": 50},
            "output": {"path": str(out)},
            "ray": {"progress": False},
            "stages": stages,
            **extra,
        }
    )


def _rows(directory: Path, columns: list[str]) -> list[dict]:
    files = sorted(directory.glob("*.parquet"))
    if not files:
        return []
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files]).to_pylist()


# --------------------------------------------------------------------------- a reused Ray


@pytest.mark.usefixtures("ray_session")
def test_a_second_run_in_the_same_ray_gets_its_own_stage_config(tmp_path):
    """Two runs in one process and one Ray, the same stage label (01-language) with another
    threshold: each gives what a fresh in-process run with its threshold gives (Ray's workers
    outlive a run, and so did the stage they had built for the label)."""
    src = _jsonl(tmp_path / "s.jsonl", _sentences(60))
    kept = {}
    for threshold in (0.3, 0.9):
        stages = [{"language": {"languages": ["en", "de", "fr", "es"], "threshold": threshold}}]
        ray_out, local_out = tmp_path / f"ray-{threshold}", tmp_path / f"local-{threshold}"
        run_pipeline(_config([src], ray_out, stages), local=False)
        run_pipeline(_config([src], local_out, stages), local=True)
        kept[threshold] = _rows(ray_out / "documents", ["id"])
        assert kept[threshold] == _rows(local_out / "documents", ["id"]), threshold
    assert len(kept[0.9]) < len(kept[0.3])


# --------------------------------------------------------------------------- preflight of every stage

DEMO_WARC = Path(__file__).resolve().parents[1] / "examples" / "demo.warc.gz"


def _dedup_run(tmp_path: Path, minhash: dict) -> tuple[object, Path]:
    out = tmp_path / "out"
    stages = [{"extract": {"metadata": "none"}}, {"exact_dedup": {}}, {"minhash_dedup": minhash}]
    return _config([DEMO_WARC], out, stages), out


def _nothing_read(out: Path) -> None:
    """No stage saw a document: no shard of the first phase was ever compacted or written."""
    assert not list((out / "_progress").glob("phase0/*.json")), "the extract phase ran"
    assert not (out / "documents").exists() and not (out / "stats.json").exists()


def test_an_occupied_index_output_stops_the_run_before_extraction(tmp_path):
    index = tmp_path / "index"
    (index / "keys").mkdir(parents=True)
    (index / "keys" / "part-earlier.parquet").write_bytes(b"an earlier run's index")
    cfg, out = _dedup_run(tmp_path, {"index_output": str(index)})
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"minhash_dedup\.index_output: .* already holds an index"):
        run_pipeline(cfg, local=True)
    assert time.perf_counter() - start < 5
    _nothing_read(out)
    assert sorted(p.name for p in (index / "keys").iterdir()) == ["part-earlier.parquet"]


def test_an_index_built_with_other_settings_stops_the_run_before_extraction(tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    (index / "params.json").write_text(json.dumps({"format": "thresher-minhash-index-1", "num_perm": 64}))
    cfg, out = _dedup_run(tmp_path, {"against": str(index)})
    with pytest.raises(ValueError, match=r"minhash_dedup\.against: .* other settings"):
        run_pipeline(cfg, local=True)
    _nothing_read(out)


# --------------------------------------------------------------------------- --local equals Ray


def _files(out: Path) -> dict[str, bytes]:
    """The dataset a run wrote: documents, dropped rows and token shards, by name."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for sub in ("documents", "dropped", "tokens")
        for p in sorted((out / sub).glob("*.parquet"))
    }


def _tables(out: Path) -> dict[str, list[dict]]:
    return {name: pq.read_table(out / name).to_pylist() for name in _files(out)}


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_the_warc_samples_give_the_same_dataset_locally_and_on_ray(tmp_path):
    """The demo recipe (a small vocabulary) over every shared WARC sample (Common Crawl,
    ClueWeb, pywb revisits, a truncated file): the same files, byte for byte, in both. About
    30 s on an idle 2-core machine."""
    from thresher.config import load_config

    samples = shared_path("warc-samples")
    root = Path(__file__).resolve().parents[1]
    cfg = load_config(
        str(root / "pipeline" / "configs" / "demo.yaml"),
        ["ray.progress=false", "tokenize.train.vocab_size=300"],
    )
    cfg.input.paths = [str(samples / "*.warc.gz")]
    results = {}
    for name, local in (("ray", False), ("local", True)):
        cfg.output.path = str(tmp_path / name)
        results[name] = run_pipeline(cfg, local=local)
    assert results["ray"].documents == results["local"].documents > 20
    assert results["ray"].extra["tokenize"]["tokens"] == results["local"].extra["tokenize"]["tokens"]
    ray_tables, local_tables = _tables(tmp_path / "ray"), _tables(tmp_path / "local")
    assert sorted(ray_tables) == sorted(local_tables)
    assert any(name.startswith("dropped/") for name in ray_tables)
    assert ray_tables == local_tables  # rows first: a readable difference
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")  # then byte for byte
