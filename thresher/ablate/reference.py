"""Held-out reference texts: what every model of an ablation is evaluated on.

A reference is a file or a directory of files: plain text (``.txt``, one document per file),
JSONL or Parquet documents (read by :mod:`thresher.readers`, so the same rules hold as for a
run's input: each row needs an ``id`` and a ``text``; a row without is counted and skipped).
Each document belongs to a *source*, reported on its own: its file (relative to the reference
directory), or with ``group_by="host"`` its URL's host.

For evaluation every source's documents are encoded with the shared tokenizer (each ending with
``<|endoftext|>``, as in training), joined after one leading ``<|endoftext|>`` and cut into
non-overlapping windows of ``seq_len + 1`` tokens, so every token after the first is predicted
exactly once, from at most ``seq_len`` tokens of context within its window.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from thresher.errors import InputProblem
from thresher.readers import read_documents
from thresher.readers.inputs import JSONL_SUFFIXES, PARQUET_SUFFIXES
from thresher.shards.stream import IGNORE_INDEX
from thresher.tokenize.encoder import DocumentEncoder

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt",)
MAX_TEXT_FILE_BYTES = 64 << 20
"""A plain-text reference file larger than this is skipped (``too_large``), not read whole."""
GROUPINGS = ("file", "host")
NO_URL = "(no url)"


@dataclass
class ReferenceText:
    source: str
    text: str
    url: str | None = None


@dataclass
class ReferenceSet:
    texts: list[ReferenceText]
    skipped: Counter
    """Files and rows not used, by reason (``unknown_format``, ``too_large``, ``no_text``, the
    readers' error reasons such as ``missing_id``)."""

    def sources(self) -> list[str]:
        return sorted({t.source for t in self.texts})

    def urls(self) -> set[str]:
        return {t.url for t in self.texts if t.url}


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if root.is_dir():
        return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    raise InputProblem(f"reference not found: {root}")


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    if name.endswith(JSONL_SUFFIXES) or name.endswith(PARQUET_SUFFIXES):
        return "records"
    return None


def _host(url: str | None) -> str:
    try:
        return (urlsplit(url).hostname or NO_URL) if url else NO_URL
    except ValueError:
        return NO_URL


def read_reference(path: str | Path, group_by: str = "file") -> ReferenceSet:
    """The reference documents under ``path``; an input error when none is usable."""
    if group_by not in GROUPINGS:
        raise InputProblem(f"group_by must be one of {GROUPINGS}, got {group_by!r}")
    root = Path(path)
    texts: list[ReferenceText] = []
    skipped: Counter = Counter()
    for file in _files(root):
        kind = _kind(file)
        name = file.name if file == root else str(file.relative_to(root))
        if kind is None:
            skipped["unknown_format"] += 1
            logger.warning("reference: %s is not text, JSONL or Parquet: skipped", file)
            continue
        if kind == "text":
            if file.stat().st_size > MAX_TEXT_FILE_BYTES:
                skipped["too_large"] += 1
                logger.warning("reference: %s is over %d bytes: skipped", file, MAX_TEXT_FILE_BYTES)
                continue
            text = file.read_bytes().decode("utf-8", "replace")
            if text.strip():
                texts.append(ReferenceText(name if group_by == "file" else NO_URL, text))
            else:
                skipped["no_text"] += 1
            continue
        for doc in read_documents(str(file)):
            if doc.dropped:
                skipped[doc.drop.reason] += 1
                continue
            source = name if group_by == "file" else _host(doc.url)
            texts.append(ReferenceText(source, doc.text, doc.url))
    if skipped:
        logger.warning("reference: skipped %s", dict(skipped))
    if not texts:
        raise InputProblem(f"{root}: no reference text (skipped: {dict(skipped) or 'nothing found'})")
    return ReferenceSet(texts, skipped)


@dataclass
class EvalSource:
    """One source's evaluation windows: ``inputs``/``targets`` int64 ``[windows, seq_len]``."""

    name: str
    documents: int
    bytes: int
    inputs: np.ndarray
    targets: np.ndarray

    @property
    def tokens(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())


def windows(stream: np.ndarray, seq_len: int, eot_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping ``seq_len + 1`` windows of ``stream`` (the last padded: inputs with
    ``eot_id``, targets with ``IGNORE_INDEX``), split into inputs and next-token targets."""
    n = max(1, -(-(stream.size - 1) // seq_len))
    padded = np.full(n * seq_len + 1, -1, dtype=np.int64)
    padded[: stream.size] = stream
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    win = padded[idx]
    inputs, targets = win[:, :-1].copy(), win[:, 1:].copy()
    inputs[inputs < 0] = eot_id
    targets[targets < 0] = IGNORE_INDEX
    return inputs, targets


def eval_sources(reference: ReferenceSet, encoder: DocumentEncoder, seq_len: int) -> list[EvalSource]:
    """Each source's windows, sources in name order."""
    out = []
    for name in reference.sources():
        docs = [t.text for t in reference.texts if t.source == name]
        arrays = encoder.encode(docs)
        stream = np.concatenate(
            [np.array([encoder.eot_id], dtype=np.int64), *(a.astype(np.int64) for a in arrays)]
        )
        inputs, targets = windows(stream, seq_len, encoder.eot_id)
        size = sum(len(d.encode("utf-8", "surrogatepass")) for d in docs)
        out.append(EvalSource(name, len(docs), size, inputs, targets))
    return out
