"""Extraction speed and quality: trafilatura alone vs resiliparse alone vs the cascade.

Pages/s per core on a multilingual mix (the trafilatura evaluation pages, the Zyte article
benchmark, and real pages in ~20 languages from Debian's documentation packages), target
language English; shingle F1 on the Zyte benchmark; snippet scores on the trafilatura corpus; and
the cascade's loss: pages trafilatura alone + the language filter keeps that the cascade drops.

The peer baseline is trafilatura called as FineWeb/datatrove call it (``extract()``, favour
precision, no comments, dedup, no metadata): that is what "trafilatura on everything" costs them.

    .venv/bin/python bench/extract.py            # ≈ 10 min on one busy core
    .venv/bin/python bench/extract.py --quick    # a quarter of the pages

The Debian pages are downloaded once with ``apt-get download`` into ``bench/.cache/`` (gitignored).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thresher.document import Document  # noqa: E402
from thresher.evaluation.extraction import load_aeb, load_trafilatura_eval, score_aeb, score_snippets  # noqa: E402
from thresher.extract import ExtractConfig, ExtractStage  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
CACHE = ROOT / "bench" / ".cache" / "debian-docs"
DEBIAN_PACKAGES = [
    "debian-handbook",
    "installation-guide-amd64",
    "maint-guide-de",
    "maint-guide-fr",
    "maint-guide-es",
    "maint-guide-ru",
    "maint-guide-ja",
]
# debian-handbook "translations" that are really English are left out (see shared/data/README.md)
DEBIAN_LANGS = [
    "de-DE",
    "fr-FR",
    "es-ES",
    "it-IT",
    "ja-JP",
    "pt-BR",
    "ru-RU",
    "zh-CN",
    "ar-MA",
    "fa-IR",
    "id-ID",
    "nb-NO",
    "ca-ES",
    "/de/",
    "/fr/",
    "/es/",
    "/it/",
    "/ja/",
    "/ru/",
    "/pt/",
    "/ca/",
    "/zh_CN/",
    "maint-guide-",
]


def debian_pages(n_other: int, n_english: int, seed: int = 0) -> list[tuple[str, bytes]]:
    extracted = CACHE / "x"
    if not extracted.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["apt-get", "download", *DEBIAN_PACKAGES], cwd=CACHE, check=True, stdout=subprocess.DEVNULL
        )
        for deb in CACHE.glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(extracted)], check=True)
    files = sorted(p for p in extracted.rglob("*.html") if p.is_file())
    english = [p for p in files if "/en-US/" in str(p) or "/en/" in str(p)]
    other = [p for p in files if any(tag in str(p) for tag in DEBIAN_LANGS)]
    rng = random.Random(seed)
    chosen = rng.sample(other, min(n_other, len(other))) + rng.sample(english, min(n_english, len(english)))
    return [(f"file://{p}", p.read_bytes()) for p in chosen]


def cpu_seconds() -> float:
    """This process plus its finished children (an extraction worker killed after a timeout)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def worker_cpu_seconds(stage: ExtractStage) -> float:
    """CPU seconds the stage's extraction worker has used so far (0 without one, or without /proc).
    Taken after the warm-up page and subtracted: the worker's start-up (interpreter, imports) is a
    one-off cost per worker, not a per-page one."""
    child = stage._sandbox._child
    proc = child._proc if child is not None else None
    if proc is None or not Path("/proc").is_dir():
        return 0.0
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def run_stage(pages: list[tuple[str, str | None, bytes]], **cfg) -> tuple[list[Document], float, dict]:
    cfg.setdefault("timeout_s", 120.0)  # a busy shared machine must not turn slowness into timeouts
    stage = ExtractStage(ExtractConfig(**cfg))
    stage.apply([Document(id="warm", url=None, html=b"<html><body><p>warm up</p></body></html>")])
    stage.stats.__init__(stage.name)
    docs = [Document(id=pid, url=url, html=html, content_type="text/html") for pid, url, html in pages]
    start, start_up = cpu_seconds(), worker_cpu_seconds(stage)
    for i in range(0, len(docs), stage.batch_size):
        stage.apply(docs[i : i + stage.batch_size])
    stage.close()  # the worker is reaped: its whole time is now in RUSAGE_CHILDREN
    return docs, cpu_seconds() - start - start_up, stage.stats.to_dict()


def run_fineweb_extract(pages) -> tuple[list[str | None], float]:
    import trafilatura

    from thresher.extract.charset import decode_html

    trafilatura.extract("<html><body><p>warm up</p></body></html>")
    start = cpu_seconds()
    texts = [
        trafilatura.extract(
            decode_html(html, "text/html")[0],
            url=url,
            favor_precision=True,
            include_comments=False,
            deduplicate=True,
        )
        for _, url, html in pages
    ]
    return texts, cpu_seconds() - start


def kept_by_language(docs: list[Document], languages: set[str], threshold: float) -> set[str]:
    from thresher.filters.language import identify_batch

    live = [d for d in docs if d.drop is None]
    tops = identify_batch([d.text for d in live])
    return {
        d.id
        for d, top in zip(live, tops, strict=True)
        if top and top[0][0] in languages and top[0][1] >= threshold
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a quarter of the pages")
    ap.add_argument("--language", default="en")
    ap.add_argument("--threshold", type=float, default=0.65, help="the final language filter's threshold")
    args = ap.parse_args()
    step = 4 if args.quick else 2
    aeb = load_aeb(SHARED / "extraction-scrapinghub-aeb")
    teval = load_trafilatura_eval(SHARED / "extraction-trafilatura-eval")
    deb = debian_pages(400 // (step // 2), 50 // (step // 2))
    mix = (
        [(p.id, p.url, p.html) for p in aeb[:: step // 2]]
        + [(p.id, p.url, p.html) for p in teval[::step]]
        + [(url, url, html) for url, html in deb]
    )
    n = len(mix)
    print(
        f"mix: {n} pages (Zyte benchmark {len(aeb[:: step // 2])}, trafilatura corpus {len(teval[::step])}, "
        f"Debian docs {len(deb)}); target language {args.language}"
    )

    from thresher.filters.language import identify_batch

    identify_batch(["warm up the language model"])
    target = [args.language]
    runs = {}
    for name, cfg in [
        ("trafilatura", dict(mode="trafilatura")),
        ("trafilatura/full metadata", dict(mode="trafilatura", metadata="full")),
        ("resiliparse", dict(mode="resiliparse")),
        ("cascade", dict(mode="cascade", languages=target)),
        ("cascade/no fast path", dict(mode="cascade", languages=target, fast_first=False)),
        ("trafilatura/signal", dict(mode="trafilatura", timeout_mode="signal")),
        ("cascade/signal", dict(mode="cascade", languages=target, timeout_mode="signal")),
    ]:
        t0 = time.perf_counter()
        docs, cpu, stats = run_stage(mix, **cfg)
        runs[name] = (docs, cpu, stats)
        print(
            f"  ran {name:<26} {time.perf_counter() - t0:6.1f} s wall  {stats['dropped']} {stats['errors']}",
            flush=True,
        )
    fw_texts, fw_cpu = run_fineweb_extract(mix)

    print(
        "\nspeed (pages/s per core = pages / CPU seconds of the process and its extraction worker, start-up excluded)"
    )
    base = n / runs["trafilatura"][1]
    print(f"  {'extractor':<34}{'pages/s/core':>13}{'vs trafilatura':>16}")
    for label, cpu in [("FineWeb/datatrove trafilatura.extract", fw_cpu)] + [
        (k, v[1]) for k, v in runs.items()
    ]:
        print(f"  {label:<34}{n / cpu:13.1f}{(n / cpu) / base:15.2f}x")
    print(
        f"  cascade / trafilatura: {runs['trafilatura'][1] / runs['cascade'][1]:.2f}x  "
        f"(vs FineWeb's extract(): {fw_cpu / runs['cascade'][1]:.2f}x); "
        f"trafilatura ran on {runs['cascade'][2]['extra'].get('trafilatura_pages', 0)} of {n} pages, "
        f"{runs['cascade'][2]['extra'].get('trafilatura_rechecks', 0)} of them twice (fast path, then full)"
    )
    for mode in ("trafilatura", "cascade"):
        over = runs[mode][1] / runs[f"{mode}/signal"][1] - 1
        print(f"  subprocess time limit vs SIGALRM ({mode}): {over:+.1%} CPU")

    kept_alone = kept_by_language(runs["trafilatura"][0], set(target), args.threshold)
    kept_cascade = kept_by_language(runs["cascade"][0], set(target), args.threshold)
    lost = kept_alone - kept_cascade
    print(
        f"\ncascade loss: {len(lost)} of {len(kept_alone)} pages that trafilatura + language filter "
        f"({args.language} ≥ {args.threshold}) keeps = {len(lost) / max(1, len(kept_alone)):.2%}"
    )
    for pid in sorted(lost)[:10]:
        print(f"    lost: {pid}")

    print("\nquality, on the gold-set pages of the same runs (cascade targeting English)")
    by_id = {
        mode: {d.id: (d.text if d.drop is None else None) for d in runs[mode][0]}
        for mode in ("trafilatura", "resiliparse", "cascade")
    }
    # pipeline against pipeline: the language filter after either extraction (the Zyte set has
    # a few pt/de/id pages, which both pipelines drop, one early and one late)
    by_id["trafilatura + language filter"] = {
        k: (v if k in kept_alone else None) for k, v in by_id["trafilatura"].items()
    }
    by_id["cascade + language filter"] = {
        k: (v if k in kept_cascade else None) for k, v in by_id["cascade"].items()
    }
    aeb_used = aeb[:: step // 2]
    teval_used = teval[::step]
    print(f"  {f'Zyte benchmark ({len(aeb_used)} pages)':<34}{'precision':>10}{'recall':>8}{'F1':>8}")
    f1 = {}
    for mode, texts in by_id.items():
        s = score_aeb(aeb_used, [texts[p.id] for p in aeb_used])
        f1[mode] = s["f1"]
        print(f"  {mode:<34}{s['precision']:10.3f}{s['recall']:8.3f}{s['f1']:8.3f}")
    print(
        f"  pipeline F1, cascade - trafilatura alone = "
        f"{f1['cascade + language filter'] - f1['trafilatura + language filter']:+.4f}"
    )
    survivors = [p for p in teval_used if by_id["cascade"][p.id] is not None]
    print(
        f"  {f'trafilatura corpus ({len(teval_used)} pages)':<34}{'precision':>10}{'recall':>8}{'F1':>8}{'accuracy':>10}"
    )
    for mode, pages in [
        ("trafilatura", teval_used),
        ("resiliparse", teval_used),
        (f"trafilatura, {len(survivors)} cascade-kept", survivors),
        (f"cascade, {len(survivors)} cascade-kept", survivors),
    ]:
        texts = by_id[mode.split(",")[0]]
        s = score_snippets(pages, [texts[p.id] for p in pages])
        print(f"  {mode:<34}{s['precision']:10.3f}{s['recall']:8.3f}{s['f1']:8.3f}{s['accuracy']:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
