"""End to end on real WARC files, on a real local Ray: every page is in the output or counted."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import shared_path
from thresher.config import parse_config
from thresher.readers.warc import read_warc
from thresher.run import run_pipeline

pytestmark = pytest.mark.usefixtures("ray_session")


def _config(inputs, out: Path, stages, **input_opts):
    return parse_config(
        {
            "input": {"paths": [str(p) for p in inputs], **input_opts},
            "output": {"path": str(out)},
            "ray": {"progress": False},
            "stages": stages,
        }
    )


def _ids(out: Path, sub: str) -> list[str]:
    files = sorted((out / sub).glob("*.parquet"))
    return [i for f in files for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()]


def _records(out: Path, sub: str) -> list[tuple[str, str]]:
    """(id, source) pairs: the same WARC record can sit in two files (copies), its source cannot.
    A copy's id was made unique (``ID#2``) at the end of the run; the id it came with is kept."""
    rows = pq.read_table(out / sub).to_pylist()
    return [(json.loads(r.get("metadata") or "{}").get("original_id", r["id"]), r["source"]) for r in rows]


@pytest.fixture(scope="module")
def samples_run(tmp_path_factory):
    root = shared_path("warc-samples")
    out = tmp_path_factory.mktemp("samples")
    cfg = _config(
        [root],
        out,
        [{"extract": {"timeout_s": 120, "deduplicate": False}}, {"language": {}}],
        docs_per_shard=10,
    )
    return root, out, run_pipeline(cfg)


def test_every_record_is_in_documents_or_dropped(samples_run):
    root, out, result = samples_run
    expected = Counter()
    for path in sorted(root.rglob("*.warc*")):
        expected.update((d.id, d.source) for d in read_warc(str(path)))
    kept, dropped = _records(out, "documents"), _records(out, "dropped")
    assert Counter(kept) + Counter(dropped) == expected
    assert max((Counter(kept) + Counter(dropped)).values()) == 1
    stats = json.loads((out / "stats.json").read_text())
    assert stats["stages"]["read"]["in"] == sum(expected.values())
    assert stats["documents"] == len(kept)
    for label, s in stats["stages"].items():
        assert s["in"] == s["kept"] + sum(s["dropped"].values()) + sum(s["errors"].values()), label


def test_known_pages_have_their_text(samples_run):
    _, out, _ = samples_run
    table = pq.read_table(out / "documents").to_pylist()
    by_url = {r["url"]: r for r in table}
    cc = by_url["https://commoncrawl.org/"]
    assert "Common Crawl" in cc["text"] and cc["language"] == "en"
    ja = [r for r in table if r["url"] and "uraharajuku.st" in r["url"]]
    assert ja and all(r["language"] == "ja" for r in ja)
    assert any("ヘッドポーター" in r["text"] for r in ja)
    meta = json.loads(ja[0]["metadata"])
    assert meta["encoding"] == "euc_jp"


def test_dropped_records_say_why(samples_run):
    _, out, _ = samples_run
    dropped = pq.read_table(out / "dropped").to_pylist()
    reasons = Counter((r["stage"], r["reason"]) for r in dropped)
    assert reasons[("read", "revisit")] >= 130
    assert reasons[("read", "non_html")] > 0
    assert all(r["stage"] and r["reason"] for r in dropped)


def test_local_run_matches_ray_run(samples_run, tmp_path):
    root, out, _ = samples_run
    cfg = _config(
        [root],
        tmp_path,
        [{"extract": {"timeout_s": 120, "deduplicate": False}}, {"language": {}}],
        docs_per_shard=10,
    )
    run_pipeline(cfg, local=True)
    assert sorted(_ids(tmp_path, "documents")) == sorted(_ids(out, "documents"))
    assert sorted(p.name for p in (tmp_path / "documents").glob("*.parquet")) == sorted(
        p.name for p in (out / "documents").glob("*.parquet")
    )


def test_documents_schema_and_compression(samples_run):
    from thresher.document import DOCUMENT_SCHEMA

    _, out, _ = samples_run
    files = sorted((out / "documents").glob("*.parquet"))
    meta = pq.ParquetFile(files[0]).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_schema(files[0]).equals(DOCUMENT_SCHEMA)
    assert all(p.stem.count("-") == 1 for p in files)  # FILEIDX-CHUNK, deterministic


def test_jsonl_input_keeps_ids(tmp_path):
    src = tmp_path / "docs.jsonl"
    lines = [
        {"id": "doc-1", "text": "The quick brown fox jumps over the lazy dog. " * 5, "url": "http://a/"},
        {"id": "doc-2", "text": "Der schnelle braune Fuchs springt über den faulen Hund. " * 5},
        {"id": "doc-3", "text": ""},
    ]
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "out"
    result = run_pipeline(_config([src], out, [{"language": {"languages": ["en"]}}]))
    assert _ids(out, "documents") == ["doc-1"]
    assert result.stages["read"].dropped == {"no_text": 1}
    assert result.stages["01-language"].dropped == {"language_not_kept": 1}
