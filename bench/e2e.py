"""WARC → documents throughput: Thresher vs datatrove on the same input, in the same run.

Both pipelines do the same work — read WARC, extract with trafilatura (precision settings),
keep English ≥ 0.65 with the same lid.176 model — and are timed single-process (one core) so the
figure is pages/s per core. Thresher is also timed on Ray with every core of the machine.

    python bench/e2e.py                 # demo WARC + a WARC of ~1,170 real pages (needs ../shared/data)
    python bench/e2e.py --skip-large    # demo WARC only

datatrove is a bench-only dependency (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("THRESHER_SHARED_DATA", ROOT.parent / "shared" / "data"))
CACHE = ROOT / "bench" / ".cache"


def build_large_warc(path: Path) -> int:
    """A WARC of the shared extraction-benchmark pages (real news, blogs, government pages)."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    pages: list[tuple[str, bytes]] = []
    aeb = SHARED / "extraction-scrapinghub-aeb"
    truth = json.loads((aeb / "ground-truth.json").read_text())
    for sha, item in sorted(truth.items()):
        pages.append((item["url"], gzip.decompress((aeb / "html" / f"{sha}.html.gz").read_bytes())))
    tev = SHARED / "extraction-trafilatura-eval"
    for url, item in sorted(json.loads((tev / "evaldata.json").read_text()).items()):
        f = tev / item["file"]
        if f.exists():
            pages.append((url, gzip.decompress(f.read_bytes())))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=True, warc_version="1.1")
        for url, body in pages:
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
            writer.write_record(
                writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http)
            )
    return len(pages)


def run_thresher(warc: Path, out: Path, local: bool, extract: dict) -> tuple[float, int]:
    """Seconds and pages kept; ``extract`` is the extract stage's config (the cascade needs the
    target languages to drop pages early)."""
    from thresher.config import parse_config
    from thresher.run import run_pipeline

    cfg = parse_config(
        {
            "input": {"paths": [str(warc)], "docs_per_shard": 200},
            "output": {"path": str(out), "write_dropped": False},
            "ray": {"progress": False},
            "stages": [{"extract": extract}, {"language": {"languages": ["en"], "threshold": 0.65}}],
        }
    )
    start = time.perf_counter()
    result = run_pipeline(cfg, local=local)
    return time.perf_counter() - start, result.documents


def run_datatrove(warc: Path, work: Path) -> tuple[float, int, int]:
    """Seconds, pages kept, and pages its WarcReader read (fewer than ours on some WARCs)."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import ParquetWriter

    from bench.peers import datatrove_language_filter

    lang = datatrove_language_filter(["en"], 0.65)
    executor = LocalPipelineExecutor(
        pipeline=[
            WarcReader(str(warc.parent), glob_pattern=warc.name),
            Trafilatura(favour_precision=True, timeout=10.0),
            lang,
            ParquetWriter(str(work / "out")),
        ],
        tasks=1,
        workers=1,
        logging_dir=str(work / "logs"),
    )
    start = time.perf_counter()
    stats = executor.run()
    elapsed = time.perf_counter() - start
    kept = read = 0
    for stat in stats.stats if hasattr(stats, "stats") else []:
        if "Language" in stat.name:
            kept = _count(stat.stats.get("forwarded", 0))
        if "Warc" in stat.name:
            read = _count(stat.stats.get("documents", 0))
    return elapsed, kept, read


def _count(metric) -> int:
    """datatrove keeps counters as MetricStats (or plain numbers in older versions)."""
    return int(getattr(metric, "total", metric))


def count_pages(warc: Path) -> int:
    from thresher.readers.warc import read_warc

    return sum(1 for d in read_warc(str(warc)) if d.drop is None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    inputs = [("demo", ROOT / "examples" / "demo.warc.gz")]
    large = CACHE / "extraction-pages.warc.gz"
    if not args.skip_large and (SHARED / "extraction-scrapinghub-aeb").exists():
        if not large.exists():
            build_large_warc(large)
        inputs.append(("real pages", large))
    rows = []
    cores = os.cpu_count() or 1
    for name, warc in inputs:
        pages = count_pages(warc)
        with tempfile.TemporaryDirectory() as tmp:
            t_dt, kept_dt, read_dt = run_datatrove(warc, Path(tmp) / "dt")
            t_tr, kept_tr = run_thresher(warc, Path(tmp) / "tr", True, {"mode": "trafilatura"})
            cascade = {"mode": "cascade", "languages": ["en"]}
            t_cas, kept_cas = run_thresher(warc, Path(tmp) / "cas", True, cascade)
            t_ray = kept_ray = None
            if not args.skip_ray:
                t_ray, kept_ray = run_thresher(warc, Path(tmp) / "ray", False, cascade)
        rows.append((name, pages, read_dt, t_dt, kept_dt, t_tr, kept_tr, t_cas, kept_cas, t_ray, kept_ray))
    print(f"\nWARC → documents, English ≥ 0.65, pages/s per core (machine: {cores} cores)\n")
    print("datatrove's rate is over the pages its WarcReader read; ratios are pages/s against it\n")
    print(
        f"{'input':<12}{'pages':>7}{'dt read':>8}{'datatrove':>11}{'thresher':>10}{'ratio':>7}{'cascade':>9}{'ratio':>7}"
        f"{'ray/core':>10}  kept (dt/tr/cascade)"
    )
    for name, pages, read_dt, t_dt, k_dt, t_tr, k_tr, t_cas, k_cas, t_ray, _ in rows:
        ray_col = f"{pages / t_ray / cores:>10.1f}" if t_ray else f"{'-':>10}"
        dt_rate = read_dt / t_dt
        print(
            f"{name:<12}{pages:>7}{read_dt:>8}{dt_rate:>11.1f}{pages / t_tr:>10.1f}{pages / t_tr / dt_rate:>6.2f}x"
            f"{pages / t_cas:>9.1f}{pages / t_cas / dt_rate:>6.2f}x{ray_col}  {k_dt}/{k_tr}/{k_cas}"
        )
    shutil.rmtree(ROOT / "bench" / ".cache" / "tmp", ignore_errors=True)


if __name__ == "__main__":
    main()
