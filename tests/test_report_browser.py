"""The report of a real WARC run, opened in headless Chromium: the page draws (charts decoded,
not blank), its numbers are the run's stats.json, and token shards written by thresher.shards
are listed one by one. Needs Debian's chromium (the browser test skips without it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from warcio.archiveiterator import ArchiveIterator

from tests.conftest import ROOT, shared_path
from tests.test_report_render import check_page_matches_stats, read_page
from thresher.config import parse_config
from thresher.report import write_report
from thresher.report.plots import DROPPED, KEPT
from thresher.run import run_pipeline

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
DEMO_WARC = ROOT / "examples" / "demo.warc.gz"
RESPONSES = 14


def spread_responses(src: Path, dst: Path, n: int) -> None:
    """n response records spread over a WARC (so over its languages), copied byte for byte:
    each record is its own gzip member, and members concatenate into a valid WARC."""
    data = src.read_bytes()
    with open(src, "rb") as f:
        records = ArchiveIterator(f)
        starts, kinds = [], []
        for record in records:
            starts.append(records.get_record_offset())
            kinds.append(record.rec_type)
    spans = list(zip(starts, starts[1:] + [len(data)], strict=True))
    responses = [span for span, kind in zip(spans, kinds, strict=True) if kind == "response"]
    step = max(1, len(responses) // n)
    dst.write_bytes(b"".join(data[a:b] for a, b in responses[::step][:n]))


@pytest.fixture(scope="module")
def warc_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-warc")
    warc = root / "demo-head.warc.gz"
    spread_responses(DEMO_WARC, warc, RESPONSES)
    out = root / "out"
    cfg = parse_config(
        {
            "name": "report-demo-head",
            "input": {"paths": [str(warc)], "docs_per_shard": 5},
            "output": {"path": str(out)},
            # a threshold that makes the language stage cut: the page must show drops with values
            "stages": [{"extract": {}}, {"language": {"threshold": 0.8}}],
        }
    )
    run_pipeline(cfg, local=True)
    return out, write_report(out)


def screenshot(page: Path, png: Path, profile: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (Debian: apt-get install -y chromium)")
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        "--window-size=1280,3000",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert png.exists(), f"chromium wrote no screenshot (rc={proc.returncode}): {proc.stderr[-2000:]}"


def near(pixels: np.ndarray, hex_colour: str, tolerance: int = 24) -> int:
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels.astype(int) - rgb).sum(axis=-1) <= tolerance).sum())


def test_numbers_match_stats(warc_report):
    out, path = warc_report
    stats = json.loads((out / "stats.json").read_text())
    assert stats["stages"]["02-language"]["dropped"], "the run should drop by language"
    page = read_page(path)
    check_page_matches_stats(out, page)
    assert any(key.startswith("dropped-language-") for key in page.by_id)


def test_chromium_draws_the_page(warc_report, tmp_path):
    from PIL import Image

    _, path = warc_report
    png = tmp_path / "report.png"
    screenshot(path, png, tmp_path / "profile")
    image = Image.open(png).convert("RGB")
    assert image.size == (1280, 3000)
    pixels = np.asarray(image)
    flat = pixels.reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    drawn = (np.abs(flat.astype(int) - background).sum(axis=1) > 30).mean()
    assert drawn > 0.10, f"only {drawn:.1%} of the page differs from its background"
    assert len(colours) > 200, "too few distinct colours for text, tables and charts"
    # the charts were decoded and drawn: the funnel's kept and dropped bars are on screen
    assert near(pixels, KEPT) > 5_000
    assert near(pixels, DROPPED) > 300


def test_tokens_per_shard_from_a_real_manifest(warc_report, tmp_path):
    """Token shards written by thresher.shards (real text, a real BPE): the page lists each one."""
    pytest.importorskip("tokenizers")
    from thresher.shards.sample import small_sample_tokens

    out, _ = warc_report
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    small_sample_tokens(copy / "tokens", shared_path("lid-lingua-testdata").parent)
    manifest = json.loads((copy / "tokens" / "manifest.json").read_text())
    page = read_page(write_report(copy))
    shown = {
        row["data-shard"]: (row["text:split"], int(row["tokens"]), int(row["rows"]))
        for row in page.rows["token-shards"]
    }
    assert shown == {s["path"]: (s["split"], s["tokens"], s["rows"]) for s in manifest["shards"]}
    for split, totals in manifest["totals"].items():
        if totals["shards"]:
            assert int(page.by_id[f"tokens-{split}"]["data-value"]) == totals["tokens"]
