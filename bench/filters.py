"""Throughput of the FineWeb filter chain, Thresher against datatrove, on the same real documents in
the same run, one process each (so docs/s is per core).

Chain (FineWeb's order, extraction and dedup aside): URL filter → language (en ≥ 0.65) → Gopher
repetition → Gopher quality → C4 (FineWeb settings) → FineWeb quality → PII. Documents: the shared
extraction pages and WARC samples, extracted once (see thresher.evaluation.corpora), repeated
``--repeat`` times. Loading the blocklists and models is done before the clock starts.
datatrove's word tokenizer is NLTK's (what FineWeb ran); ``--datatrove-tokenizer default`` uses
datatrove's current default instead (spaCy, if installed).

    .venv/bin/python bench/filters.py [--repeat 1] [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thresher.document import Document  # noqa: E402
from thresher.evaluation.corpora import load_documents  # noqa: E402


def thresher_chain():
    from thresher.filters.c4 import C4QualityFilter
    from thresher.filters.fineweb import FineWebQualityFilter
    from thresher.filters.gopher import GopherQualityFilter, GopherRepetitionFilter
    from thresher.filters.language import LanguageConfig, LanguageFilter, identify
    from thresher.filters.pii import PIIFormatter
    from thresher.filters.url import URLFilter

    url = URLFilter()
    url._load()
    identify("warm up")
    return [
        url,
        LanguageFilter(LanguageConfig(languages=["en"], threshold=0.65)),
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(),
        FineWebQualityFilter(),
        PIIFormatter(),
    ]


def run_thresher(stages, docs: list[dict]) -> tuple[float, int]:
    batch = [Document(id=str(i), text=d["text"], url=d["url"] or "") for i, d in enumerate(docs)]
    start = time.perf_counter()
    for i in range(0, len(batch), 256):
        part = batch[i : i + 256]
        for stage in stages:
            stage.apply(part)
    return time.perf_counter() - start, sum(d.drop is None for d in batch)


def datatrove_chain(tokenizer: str):
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        URLFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter

    from bench.peers import datatrove_language_filter, datatrove_nltk_english

    lang = datatrove_nltk_english() if tokenizer == "nltk" else "en"
    url = URLFilter()
    url.download_data()
    lid = datatrove_language_filter(["en"], 0.65)
    return [
        url,
        lid,
        GopherRepetitionFilter(language=lang),
        GopherQualityFilter(language=lang),
        C4QualityFilter(filter_no_terminal_punct=False, language=lang),
        FineWebQualityFilter(language=lang),
        PIIFormatter(),
    ]


def run_datatrove(steps, docs: list[dict]) -> tuple[float, int]:
    from datatrove.data import Document as DTDocument

    batch = [
        DTDocument(text=d["text"], id=str(i), metadata={"url": d["url"] or ""}) for i, d in enumerate(docs)
    ]
    start = time.perf_counter()
    pipe = iter(batch)
    for step in steps:
        pipe = step.run(pipe)
    kept = sum(1 for _ in pipe)
    return time.perf_counter() - start, kept


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--datatrove-tokenizer", choices=["nltk", "default"], default="nltk")
    args = ap.parse_args()
    # The URL filter needs a URL (datatrove asserts one): pages without one are left out.
    docs = [d for d in load_documents(args.shared) if d["url"]] * args.repeat
    mb = sum(len(d["text"]) for d in docs) / 1e6
    print(f"{len(docs)} documents, {mb:.1f} M characters; one process each")
    ours = thresher_chain()
    t_ours, kept_ours = run_thresher(ours, docs)
    try:
        theirs = datatrove_chain(args.datatrove_tokenizer)
    except ImportError as exc:
        print(f"datatrove not available ({exc}); thresher alone: {len(docs) / t_ours:.1f} docs/s")
        return 1
    t_theirs, kept_theirs = run_datatrove(theirs, docs)
    print(f"{'':10} {'seconds':>8} {'docs/s/core':>12} {'kept':>6}")
    print(f"{'thresher':10} {t_ours:8.2f} {len(docs) / t_ours:12.1f} {kept_ours:6d}")
    print(f"{'datatrove':10} {t_theirs:8.2f} {len(docs) / t_theirs:12.1f} {kept_theirs:6d}")
    print(f"speed-up: {t_theirs / t_ours:.2f}x")
    per_stage = Counter({s.name: round(s.stats.seconds, 2) for s in ours})
    print("thresher seconds per stage:", dict(per_stage))
    return 0


if __name__ == "__main__":
    sys.exit(main())
