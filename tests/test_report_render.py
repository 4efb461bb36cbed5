"""The run report on a real run: every number in the page is the one in stats.json, the
distributions are the outputs' own, and missing pieces give notes rather than a crash.

The run reads real text (the Clough & Stevenson short answers, near copies of five Wikipedia
articles among them, and Leipzig sentences in several languages) through the language, Gopher,
FineWeb and MinHash stages in-process, which takes seconds; the WARC run and the browser
rendering are in test_report_browser.py.
"""

from __future__ import annotations

import base64
import gzip
import json
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import shared_path
from thresher.config import parse_config
from thresher.report import ReportError, write_report
from thresher.report.collect import StrideSample, collect
from thresher.run import run_pipeline

# Stages a report must cover; registered here too while the registry lacks them.
EXTRA_STAGES = {
    "gopher_quality": "thresher.filters.gopher:GopherQualityFilter",
    "fineweb_quality": "thresher.filters.fineweb:FineWebQualityFilter",
    "minhash_dedup": "thresher.dedup.stages:MinHashDedup",
    "exact_dedup": "thresher.dedup.stages:ExactDedup",
}
LINGUA_LANGUAGES = ("de", "fr", "es", "ru")


# --------------------------------------------------------------------------- page reading


class PageData(HTMLParser):
    """Every element with an id or data-* attributes, and the text of table cells by row."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str]] = {}
        self.rows: dict[str, list[dict[str, str]]] = {}  # table id -> row attrs + {field: value}
        self.images: list[str] = []
        self.external: list[str] = []
        self._table: str | None = None
        self._row: dict[str, str] | None = None
        self._cell: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.by_id[a["id"]] = a
        if tag == "table":
            self._table = a.get("id")
            self.rows.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self._row = {k: v for k, v in a.items() if k.startswith("data-")}
        elif tag == "td" and self._row is not None and "data-field" in a:
            self._cell = (a["data-field"], [])
            if "data-value" in a:
                self._row[a["data-field"]] = a["data-value"]
        elif tag == "img":
            self.images.append(a.get("src", ""))
        for key in ("src", "href"):
            if key in a and not a[key].startswith(("data:", "#")):
                self.external.append(a[key])
        if tag == "link" or (tag == "script" and "src" in a):
            self.external.append(str(a))

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1].append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None and self._row is not None:
            name, text = self._cell
            self._row[f"text:{name}"] = "".join(text)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:
                self.rows[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def read_page(path: Path) -> PageData:
    page = PageData()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def check_page_matches_stats(out: Path, page: PageData) -> None:
    """The figures, the funnel and the drops of the page are stats.json's, cell by cell."""
    stats = json.loads((out / "stats.json").read_text())
    assert int(page.by_id["run-documents"]["data-value"]) == stats["documents"]
    assert int(page.by_id["run-shards"]["data-value"]) == stats["shards"]
    assert int(page.by_id["run-inputs"]["data-value"]) == len(stats["inputs"])
    assert float(page.by_id["run-seconds"]["data-value"]) == pytest.approx(stats["seconds"])
    assert int(page.by_id["run-records"]["data-value"]) == stats["stages"][stats["order"][0]]["in"]

    funnel = {row["data-stage"]: row for row in page.rows["funnel"]}
    assert list(funnel) == stats["order"]
    for label, s in stats["stages"].items():
        row = funnel[label]
        expected = {
            "in": s["in"],
            "kept": s["kept"],
            "dropped": sum(s["dropped"].values()),
            "errors": sum(s["errors"].values()),
        }
        for name, value in expected.items():
            assert int(row[name]) == value, (label, name)
            assert int(row[f"text:{name}"].replace(",", "")) == value, (label, name)

    drops = {
        (r["data-stage"], r["data-rule"], r["data-kind"]): int(r["documents"])
        for r in page.rows.get("drops", [])
    }
    expected_drops = {
        (label, reason, kind): n
        for label, s in stats["stages"].items()
        for kind, counts in (("dropped", s["dropped"]), ("error", s["errors"]))
        for reason, n in counts.items()
    }
    assert drops == expected_drops

    speed = {row["data-stage"]: row for row in page.rows["throughput"]}
    for label, s in stats["stages"].items():
        if s["seconds"] > 0:
            assert float(speed[label]["docs_per_second"]) == pytest.approx(s["in"] / s["seconds"], rel=1e-5)
        else:
            assert "docs_per_second" not in speed[label]


# --------------------------------------------------------------------------- the run


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252")


def real_texts() -> list[dict]:
    """The 100 short answers and sources, plus paragraphs of Leipzig sentences in four languages."""
    texts = shared_path("neardup-clough-stevenson", "texts")
    docs = [
        {"id": f"cs/{p.stem}", "text": _decode(p.read_bytes()), "url": f"https://answers.example/{p.name}"}
        for p in sorted(texts.glob("*.txt"))
    ]
    sentences = shared_path("lid-lingua-testdata", "sentences")
    for lang in LINGUA_LANGUAGES:
        lines = [
            s
            for s in gzip.open(sentences / f"{lang}.txt.gz", "rt", encoding="utf-8").read().splitlines()
            if s
        ]
        for k in range(6):
            docs.append({"id": f"lingua/{lang}/{k}", "text": "\n".join(lines[k * 8 : k * 8 + 8])})
    return docs


def run_on_text(out: Path, src: Path, stages: list[dict], monkeypatch_ctx) -> dict:
    for name, target in EXTRA_STAGES.items():
        from thresher import registry

        if name not in registry.STAGES:
            monkeypatch_ctx.setitem(registry.STAGES, name, target)
    cfg = parse_config(
        {
            "name": "report-text",
            "input": {"paths": [str(src)], "docs_per_shard": 40},
            "output": {"path": str(out), "write_dropped": True},
            "stages": stages,
        }
    )
    run_pipeline(cfg, local=True)
    return json.loads((out / "stats.json").read_text())


TEXT_STAGES = [
    {"language": {"languages": ["en", "de", "fr", "es"], "threshold": 0.5}},
    {"gopher_quality": {}},
    {"fineweb_quality": {}},
    {"minhash_dedup": {}},
]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-text")
    src = root / "docs.jsonl"
    src.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in real_texts()), encoding="utf-8")
    out = root / "out"
    with pytest.MonkeyPatch.context() as mp:
        stats = run_on_text(out, src, TEXT_STAGES, mp)
    return out, stats


@pytest.fixture(scope="module")
def text_report(text_run):
    """The report of the run, written once (charts cost a few seconds on a busy machine)."""
    out, stats = text_run
    path = write_report(out)
    return out, stats, path, read_page(path)


@pytest.fixture()
def run_copy(text_run, tmp_path):
    """A copy of the run's output that a test may break."""
    out, _ = text_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return copy


@pytest.fixture()
def empty_run(tmp_path):
    """A real run over an empty input: every stage saw nothing."""
    src = tmp_path / "empty.jsonl"
    src.write_text("")
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as mp:
        run_on_text(out, src, [{"language": {}}], mp)
    return out


# --------------------------------------------------------------------------- tests


def test_page_numbers_match_stats(text_report):
    out, stats, path, page = text_report
    assert path == out / "report.html"
    check_page_matches_stats(out, page)
    # the run really exercised what the page shows: drops by several rules, a dedup stage
    assert len(page.rows["drops"]) >= 3
    assert any(label.endswith("minhash_dedup") for label in stats["order"])


def test_languages_are_the_kept_documents(text_report):
    out, _, _, page = text_report
    kept = pq.read_table(out / "documents", columns=["language"]).column("language").to_pylist()
    shown = {row["data-language"]: int(row["documents"]) for row in page.rows["languages"]}
    assert shown == dict(Counter(kept))
    assert {"en", "de"} <= set(shown)


def test_score_and_drop_histograms_cover_every_rule(text_report):
    out, stats, _, page = text_report
    kept = pq.read_table(out / "documents", columns=["scores"]).column("scores").to_pylist()
    keys = Counter(
        k for cell in kept if cell for k, v in json.loads(cell).items() if isinstance(v, (int, float))
    )
    assert keys, "the filters recorded no scores"
    for key, n in keys.items():
        assert int(page.by_id[f"score-{key}"]["data-count"]) == n
    assert int(page.by_id["score-language_score"]["data-count"]) == stats["documents"]
    dropped = pq.read_table(out / "dropped", columns=["stage", "reason", "value"]).to_pylist()
    with_value = Counter((r["stage"], r["reason"]) for r in dropped if r["value"] is not None)
    assert with_value
    for (stage, reason), n in with_value.items():
        assert int(page.by_id[f"dropped-{stage}-{reason}"]["data-count"]) == n


def test_dedup_cluster_sizes_come_from_stats(text_report):
    out, stats, _, page = text_report
    label = next(label for label in stats["order"] if label.endswith("minhash_dedup"))
    extra = stats["extra"][label]
    assert extra["clusters"] > 0, "the near copies among the answers should form clusters"
    assert int(page.by_id[f"dedup-{label}-clusters"]["data-value"]) == extra["clusters"]
    shown = {row["data-size"]: int(row["clusters"]) for row in page.rows[f"clusters-{label}"]}
    assert shown == {k: int(v) for k, v in extra["cluster_size_histogram"].items()}


def test_page_is_self_contained(text_report):
    _, _, _, page = text_report
    assert page.external == []
    assert len(page.images) >= 5
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_tokens_per_shard_from_manifest(empty_run):
    run_copy = empty_run
    tokens = run_copy / "tokens"
    tokens.mkdir()
    shards = [
        {"path": "shard-00000.parquet", "split": "train", "rows": 10, "tokens": 12345},
        {"path": "shard-00001.parquet", "split": "train", "rows": 7, "n_tokens": 999},
        {"name": "val-00000.parquet", "split": "validation", "num_tokens": 321},
        {"path": "broken.parquet"},  # no token count: left out
    ]
    (tokens / "manifest.json").write_text(json.dumps({"format": "thresher.tokens", "shards": shards}))
    page = read_page(write_report(run_copy))
    rows = {row["data-shard"]: row for row in page.rows["token-shards"]}
    assert {name: int(r["tokens"]) for name, r in rows.items()} == {
        "shard-00000.parquet": 12345,
        "shard-00001.parquet": 999,
        "val-00000.parquet": 321,
    }
    assert int(page.by_id["tokens-train"]["data-value"]) == 12345 + 999
    assert int(page.by_id["tokens-validation"]["data-value"]) == 321


def test_missing_pieces_give_notes(run_copy):
    shutil.rmtree(run_copy / "dropped")
    for f in (run_copy / "documents").glob("*.parquet"):
        f.unlink()
    (run_copy / "documents" / "zz-broken.parquet").write_bytes(b"not parquet at all")
    (run_copy / "tokens").mkdir()
    (run_copy / "tokens" / "manifest.json").write_text("{ truncated")
    path = write_report(run_copy)
    text = path.read_text()
    page = read_page(path)
    check_page_matches_stats(run_copy, page)  # the counts still come from stats.json
    assert "No kept documents" in text
    assert "write_dropped is off" in text
    assert "could not read zz-broken.parquet" in text
    assert "could not read tokens/manifest.json" in text
    assert "could not be rendered" not in text


def test_empty_run_renders(empty_run):
    out = empty_run
    page = read_page(write_report(out))
    check_page_matches_stats(out, page)
    text = (out / "report.html").read_text()
    assert "No document was dropped" in text
    assert "could not be rendered" not in text


def test_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="stats.json not found"):
        write_report(tmp_path)
    (tmp_path / "stats.json").write_text("[1, 2")
    with pytest.raises(ReportError, match="not readable JSON"):
        write_report(tmp_path)


def test_cli_writes_the_report(empty_run, capsys):
    run_copy = empty_run
    import argparse

    from thresher.report.cli import register

    parser = argparse.ArgumentParser(prog="thresher")
    register(parser.add_subparsers(dest="command"))
    (run_copy / "report.html").unlink(missing_ok=True)
    args = parser.parse_args(["report", str(run_copy)])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(run_copy / "report.html")
    assert (run_copy / "report.html").stat().st_size > 5_000
    from thresher.cli import main

    assert main(["report", str(run_copy / "nope")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("thresher: input error: ") and "stats.json not found" in err[0]


def test_sampling_is_bounded_and_even(tmp_path, monkeypatch):
    import thresher.report.collect as collect_module

    sample = StrideSample(cap=1000)
    for start in range(0, 100_000, 7_777):
        sample.add(np.arange(start, min(start + 7_777, 100_000), dtype=np.float64))
    values = sample.values()
    assert 500 <= len(values) <= 1000
    assert np.all(values % sample.stride == 0)  # every stride-th position, across batch borders
    assert values[0] == 0 and values[-1] >= 100_000 - sample.stride

    # kept documents: scores parsed for an even sample when there are more than the cap
    out = tmp_path / "out"
    (out / "documents").mkdir(parents=True)
    (out / "stats.json").write_text(json.dumps({"name": "n", "stages": {}, "order": []}))
    n = 5_000
    table = pa.table(
        {
            "language": ["en"] * n,
            "language_score": pa.array(np.linspace(0, 1, n), pa.float32()),
            "scores": [json.dumps({"s": i}) for i in range(n)],
        }
    )
    pq.write_table(table, out / "documents" / "a.parquet", row_group_size=700)
    monkeypatch.setattr(collect_module, "MAX_SCORE_ROWS", 1_000)
    facts = collect(out)
    assert facts.languages == {"en": n}  # counted over every row, not the sample
    assert facts.score_rows == 1_000
    assert np.array_equal(facts.scores["s"], np.arange(0, n, 5))
