"""A learned quality filter: a fastText classifier trained on examples of wanted and unwanted text
(the DCLM recipe: word bigrams, classes balanced by down-sampling the larger one), and the stage
that scores documents with it.

Keeping "the top X %" needs the score distribution of the whole corpus, which a per-document stage
never sees. The stage therefore turns ``top_fraction`` into a score threshold estimated once, at
start-up, on a calibration sample the user names (a random sample of the corpus, in any format
:func:`read_texts` reads), and applies that threshold everywhere; the estimate is logged.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import os
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import regex

from thresher.dataconfig import option
from thresher.document import Document, Drop
from thresher.io import atomic_path, write_json_atomic
from thresher.stage import Stage

logger = logging.getLogger(__name__)

LABEL = "__label__"
POSITIVE, NEGATIVE = "hq", "lq"
_WS = regex.compile(r"\s+")
TEXT_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".json", ".txt", ".txt.gz")


def normalize(text: str) -> str:
    """fastText reads one example per line: fold all whitespace, newlines included."""
    return _WS.sub(" ", text).strip()


def _files(source: str | Path) -> list[Path]:
    path = Path(source)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(TEXT_SUFFIXES))
    if not path.exists():
        raise FileNotFoundError(f"{source}: no such file or directory")
    return [path]


def read_texts(source: str | Path, text_field: str = "text", limit: int | None = None) -> Iterator[str]:
    """Texts from Parquet (column ``text_field``), JSON Lines (field ``text_field``), or plain text
    (one example per line), or a folder of those. Empty texts are skipped."""
    n = 0
    for path in _files(source):
        name = path.name
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            it = (t for batch in pf.iter_batches(columns=[text_field]) for t in batch.column(0).to_pylist())
        elif name.endswith((".jsonl", ".jsonl.gz", ".json")):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
            it = (r.get(text_field) if isinstance(r, dict) else None for r in rows)
        else:
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as f:
                it = iter(f.read().splitlines())
        for text in it:
            if text and text.strip():
                yield text
                n += 1
                if limit is not None and n >= limit:
                    return


@dataclass
class TrainParams:
    word_ngrams: int = 2
    epoch: int = 5
    lr: float = 0.1
    dim: int = 100
    min_count: int = 1
    valid_fraction: float = 0.1
    max_per_class: int | None = None
    seed: int = 0
    threads: int = 2


@dataclass
class TrainReport:
    train_per_class: int
    valid: int
    accuracy: float
    precision: float
    recall: float

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def train_classifier(
    positives: list[str], negatives: list[str], output: str | Path, params: TrainParams | None = None
) -> TrainReport:
    """Balance the classes, hold out ``valid_fraction`` of each, train, save, and measure."""
    import fasttext

    p = params or TrainParams()
    rng = random.Random(p.seed)
    pos = [t for t in map(normalize, positives) if t]
    neg = [t for t in map(normalize, negatives) if t]
    n = min(len(pos), len(neg), p.max_per_class or len(pos) + len(neg))
    if n < 2:
        raise ValueError(
            f"need at least 2 examples of each class, got {len(pos)} positive and {len(neg)} negative"
        )
    pos, neg = rng.sample(pos, n), rng.sample(neg, n)
    n_valid = max(1, int(n * p.valid_fraction)) if p.valid_fraction > 0 else 0
    train = [(POSITIVE, t) for t in pos[n_valid:]] + [(NEGATIVE, t) for t in neg[n_valid:]]
    valid = [(POSITIVE, t) for t in pos[:n_valid]] + [(NEGATIVE, t) for t in neg[:n_valid]]
    rng.shuffle(train)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "train.txt")
        with open(path, "w", encoding="utf-8") as f:
            for label, text in train:
                f.write(f"{LABEL}{label} {text}\n")
        model = fasttext.train_supervised(
            input=path,
            wordNgrams=p.word_ngrams,
            epoch=p.epoch,
            lr=p.lr,
            dim=p.dim,
            minCount=p.min_count,
            thread=p.threads,
            seed=p.seed,
            verbose=0,
        )
    output = Path(output)
    with atomic_path(output) as tmp:
        model.save_model(str(tmp))
    report = _evaluate(model, valid, len(train) // 2)
    write_json_atomic(output.with_suffix(output.suffix + ".json"), report.to_dict(), indent=2)
    return report


def _evaluate(model, valid: list[tuple[str, str]], per_class: int) -> TrainReport:
    if not valid:
        return TrainReport(per_class, 0, float("nan"), float("nan"), float("nan"))
    labels, _ = model.predict([t for _, t in valid], k=1)
    predicted = [labs[0][len(LABEL) :] for labs in labels]
    truth = [label for label, _ in valid]
    tp = sum(p == t == POSITIVE for p, t in zip(predicted, truth, strict=True))
    predicted_pos = sum(p == POSITIVE for p in predicted)
    actual_pos = sum(t == POSITIVE for t in truth)
    correct = sum(p == t for p, t in zip(predicted, truth, strict=True))
    return TrainReport(
        train_per_class=per_class,
        valid=len(valid),
        accuracy=correct / len(valid),
        precision=tp / predicted_pos if predicted_pos else 0.0,
        recall=tp / actual_pos if actual_pos else 0.0,
    )


@functools.lru_cache(maxsize=4)
def load_model(path: str):
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None
    return fasttext.load_model(path)


def positive_scores(model, texts: list[str]) -> list[float]:
    """Probability of the positive label for each text (0 for empty text)."""
    norm = [normalize(t) for t in texts]
    idx = [i for i, t in enumerate(norm) if t]
    out = [0.0] * len(texts)
    if idx:
        labels, probs = model.predict([norm[i] for i in idx], k=-1)
        for i, labs, ps in zip(idx, labels, probs, strict=True):
            for lab, prob in zip(labs, ps, strict=True):
                if lab == LABEL + POSITIVE:
                    out[i] = min(float(prob), 1.0)
    return out


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = min(max(q, 0.0), 1.0) * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class QualityClassifierConfig:
    model: str = ""
    """Path of a model made by ``thresher quality train``."""
    score_name: str = "quality"
    """Key of the score in ``doc.scores``."""
    threshold: float | None = option(0.5, ge=0, le=1)
    """Drop documents scoring below this (``quality_low_score``). Ignored with ``top_fraction``."""
    top_fraction: float | None = option(None, gt=0, le=1)
    """Keep about this fraction of the corpus: the threshold becomes the matching quantile of the
    scores of ``calibration`` (a sample of the corpus)."""
    calibration: str | None = None
    calibration_docs: int = option(10_000, ge=1)
    text_field: str = "text"
    annotate_only: bool = False
    """Score every document, drop none."""

    def validate(self, where: str) -> None:
        if not self.model:
            raise ValueError(f"{where}.model: the path of a trained model is required")
        if self.top_fraction is not None and not self.calibration:
            raise ValueError(
                f"{where}.calibration: top_fraction needs a calibration sample of the corpus "
                "to turn the fraction into a score threshold"
            )


class QualityClassifierFilter(Stage):
    """Scores with the classifier into ``doc.scores[score_name]``; drops below the threshold
    (``quality_low_score``)."""

    name = "quality_classifier"
    Config = QualityClassifierConfig
    batch_size = 512

    def __init__(self, config: QualityClassifierConfig | None = None) -> None:
        super().__init__(config)
        self._threshold: float | None = None

    def threshold(self) -> float | None:
        cfg: QualityClassifierConfig = self.config
        if self._threshold is None and cfg.top_fraction is not None:
            sample = list(read_texts(cfg.calibration, cfg.text_field, cfg.calibration_docs))
            if not sample:
                raise ValueError(f"calibration sample {cfg.calibration} holds no text")
            scores = positive_scores(load_model(cfg.model), sample)
            self._threshold = quantile(scores, 1.0 - cfg.top_fraction)
            logger.info(
                "quality_classifier: top %.1f%% of %d calibration documents = score >= %.4f",
                100 * cfg.top_fraction,
                len(scores),
                self._threshold,
            )
        return self._threshold if cfg.top_fraction is not None else cfg.threshold

    def process_batch(self, docs: list[Document]) -> list[Document | Drop]:
        cfg: QualityClassifierConfig = self.config
        scores = positive_scores(load_model(cfg.model), [d.text for d in docs])
        limit = None if cfg.annotate_only else self.threshold()
        out: list[Document | Drop] = []
        for doc, score in zip(docs, scores, strict=True):
            doc.scores[cfg.score_name] = round(score, 5)
            if limit is not None and score < limit:
                out.append(Drop("quality_low_score", value=score))
            else:
                out.append(doc)
        return out
