"""Scoring extraction against the two public gold sets in ``shared/data`` (tests and bench).

* Zyte/Scrapinghub article-extraction-benchmark: gold article bodies, scored as that benchmark
  scores them — counted 4-grams ("shingles") of ``\\w+`` tokens, per-page true/false positive and
  negative counts normalised to sum to one, precision averaged over pages that predicted
  something, recall over pages that have a gold body, F1 from the two averages.
* trafilatura's evaluation corpus: snippets each page's text must contain ("with") or must not
  ("without"); a found "with" is a true positive, a found "without" a false positive.
"""

from __future__ import annotations

import gzip
import json
import re
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_TOKEN = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


@dataclass
class EvalPage:
    id: str
    url: str | None
    html: bytes
    gold: str | None = None
    must_contain: list[str] = field(default_factory=list)
    must_not_contain: list[str] = field(default_factory=list)
    gold_metadata: dict[str, str] = field(default_factory=dict)


def load_aeb(root: Path) -> list[EvalPage]:
    """The 181 pages of ``extraction-scrapinghub-aeb``, in a stable order."""
    truth = json.loads((root / "ground-truth.json").read_text(encoding="utf-8"))
    pages = []
    for key in sorted(truth):
        html = gzip.decompress((root / "html" / f"{key}.html.gz").read_bytes())
        pages.append(EvalPage(key, truth[key].get("url"), html, gold=truth[key].get("articleBody") or ""))
    return pages


def load_trafilatura_eval(root: Path) -> list[EvalPage]:
    """The 990 annotated pages of ``extraction-trafilatura-eval``. Keys that are not URLs
    (``hard::name.html``) give pages without a URL."""
    data = json.loads((root / "evaldata.json").read_text(encoding="utf-8"))
    pages = []
    for key in sorted(data):
        item = data[key]
        url = key if key.startswith(("http://", "https://")) else None
        html = gzip.decompress((root / item["file"]).read_bytes())
        meta = {k: item[k] for k in ("title", "author", "date") if isinstance(item.get(k), str) and item[k]}
        pages.append(
            EvalPage(
                key,
                url,
                html,
                must_contain=list(item.get("with") or []),
                must_not_contain=list(item.get("without") or []),
                gold_metadata=meta,
            )
        )
    return pages


# --------------------------------------------------------------------------- shingle scores


def _shingles(text: str, n: int = 4) -> Counter:
    tokens = _TOKEN.findall(text or "")
    return Counter(tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)) if tokens[i : i + n])


def shingle_counts(gold: str, predicted: str | None, n: int = 4) -> tuple[float, float, float]:
    """(tp, fp, fn) over counted shingles, normalised to sum to one (long pages weigh no more)."""
    true, pred = _shingles(gold, n), _shingles(predicted or "", n)
    tp = sum((true & pred).values())
    fp = sum((pred - true).values())
    fn = sum((true - pred).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def _precision(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return tp / (tp + fp) if tp + fp else 0.0


def _recall(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return tp / (tp + fn) if tp + fn else 0.0


def shingle_scores(counts: Iterable[tuple[float, float, float]]) -> dict[str, float]:
    counts = list(counts)
    precisions = [_precision(*c) for c in counts if c[0] + c[1] > 0]
    recalls = [_recall(*c) for c in counts if c[0] + c[2] > 0]
    p = statistics.fmean(precisions) if precisions else 0.0
    r = statistics.fmean(recalls) if recalls else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "pages": len(counts)}


def score_aeb(pages: list[EvalPage], texts: list[str | None]) -> dict[str, float]:
    return shingle_scores(shingle_counts(p.gold or "", t) for p, t in zip(pages, texts, strict=True))


# --------------------------------------------------------------------------- snippet scores


def _squash(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def score_snippets(pages: list[EvalPage], texts: list[str | None]) -> dict[str, float]:
    """Snippet precision/recall/F1/accuracy, whitespace-insensitive (extractors lay text out
    differently; the words are what is judged)."""
    tp = fp = tn = fn = 0
    for page, text in zip(pages, texts, strict=True):
        squashed = _squash(text or "")
        for snippet in page.must_contain:
            if _squash(snippet) in squashed:
                tp += 1
            else:
                fn += 1
        for snippet in page.must_not_contain:
            if _squash(snippet) in squashed:
                fp += 1
            else:
                tn += 1
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
        "accuracy": (tp + tn) / max(1, tp + fp + tn + fn),
        "pages": len(pages),
    }
