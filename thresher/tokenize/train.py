"""Training a byte-level BPE tokenizer: count pre-tokens (over Ray when the corpus is large), then
learn merges (:mod:`thresher.tokenize.merges`).

Counting is the part that reads the corpus, so it is the part that is distributed: each Ray task
counts the pre-tokens of its shard(s) and returns a ``Counter``; the driver adds them up. Sums do
not depend on how the corpus was cut, so 1 or 100 workers learn the same merges.

``vocab_size`` counts every id: the 256 byte tokens, the learned merges and the special tokens,
as HF ``tokenizers``' ``BpeTrainer`` counts it.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from thresher.tokenize.bpe import BPETokenizer
from thresher.tokenize.merges import learn_merges
from thresher.tokenize.pretokenize import CL100K_PATTERN, ENDOFTEXT, count_pretokens, word_bytes

logger = logging.getLogger(__name__)


@dataclass
class CountStats:
    """What counting read: documents used, and rows skipped because they had no usable text."""

    documents: int = 0
    skipped: Counter = field(default_factory=Counter)

    def merge(self, other: CountStats) -> None:
        self.documents += other.documents
        self.skipped.update(other.skipped)


def learn_tokenizer(
    counts: Counter,
    vocab_size: int,
    pattern: str = CL100K_PATTERN,
    special_tokens: Sequence[str] = (ENDOFTEXT,),
    min_frequency: int = 2,
) -> BPETokenizer:
    """The tokenizer learned from pre-token counts (pre-token ``str`` → occurrences)."""
    specials = list(dict.fromkeys(special_tokens))
    n_tokens = vocab_size - len(specials)
    if n_tokens < 256:
        raise ValueError(
            f"vocab_size {vocab_size} leaves {n_tokens} ordinary tokens; at least 256 (the bytes) are needed"
        )
    by_bytes: dict[bytes, int] = {}
    for word, n in counts.items():
        key = word_bytes(word)
        by_bytes[key] = by_bytes.get(key, 0) + n
    tokens = learn_merges(by_bytes, n_tokens, min_frequency)
    ranks = {token: i for i, token in enumerate(tokens)}
    return BPETokenizer(ranks, pattern, specials)


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    *,
    pattern: str = CL100K_PATTERN,
    special_tokens: Sequence[str] = (ENDOFTEXT,),
    min_frequency: int = 2,
    ray_workers: int | None = None,
) -> BPETokenizer:
    """Train on in-memory texts. With ``ray_workers``, pre-tokens are counted by that many Ray
    tasks (Ray must be initialised, see :func:`thresher.raycontext.init_ray`)."""
    started = time.perf_counter()
    if ray_workers:
        counts = count_texts_ray(list(texts), ray_workers, pattern, special_tokens)
    else:
        counts = count_pretokens(texts, pattern, special_tokens)
    logger.info("counted %d distinct pre-tokens in %.1fs", len(counts), time.perf_counter() - started)
    return learn_tokenizer(counts, vocab_size, pattern, special_tokens, min_frequency)


def train_from_files(
    paths: Sequence[str],
    vocab_size: int,
    *,
    text_column: str = "text",
    pattern: str = CL100K_PATTERN,
    special_tokens: Sequence[str] = (ENDOFTEXT,),
    min_frequency: int = 2,
    use_ray: bool = True,
    num_tasks: int | None = None,
) -> tuple[BPETokenizer, CountStats]:
    """Train on documents in Parquet or JSONL files (the ``text_column`` of each row). With
    ``use_ray`` the files are counted by Ray tasks, ``num_tasks`` of them (default: one per file)."""
    started = time.perf_counter()
    if use_ray:
        counts, stats = count_files_ray(paths, text_column, pattern, special_tokens, num_tasks)
    else:
        counts, stats = count_files(paths, text_column, pattern, special_tokens)
    logger.info(
        "counted %d distinct pre-tokens in %d documents (%d files) in %.1fs; skipped %s",
        len(counts),
        stats.documents,
        len(paths),
        time.perf_counter() - started,
        dict(stats.skipped) or "none",
    )
    if not counts:
        raise ValueError(f"no text found in {len(paths)} file(s) (column {text_column!r})")
    return learn_tokenizer(counts, vocab_size, pattern, special_tokens, min_frequency), stats


# -- reading documents -------------------------------------------------------------------------


def _parquet_texts(file: Any, path: str, text_column: str, stats: CountStats) -> Iterator[str]:
    if text_column not in file.schema_arrow.names:
        raise ValueError(f"{path}: no column {text_column!r} (has {file.schema_arrow.names})")
    for batch in file.iter_batches(columns=[text_column], batch_size=4096):
        yield from _usable(batch.column(0).to_pylist(), stats)


def iter_texts(path: str, text_column: str, stats: CountStats) -> Iterator[str]:
    """The texts in a Parquet or JSONL(.gz) file. Rows without a non-empty string in
    ``text_column`` and unparsable JSON lines are skipped and counted in ``stats``."""
    name = path.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        if "://" in path and not path.startswith("file://"):  # an object store (a run's output): fsspec
            import fsspec

            with fsspec.open(path, "rb") as f:
                yield from _parquet_texts(pq.ParquetFile(f), path, text_column, stats)
        else:
            yield from _parquet_texts(pq.ParquetFile(path), path, text_column, stats)
    elif name.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz", ".json", ".json.gz")):
        raw = gzip.open(path, "rb") if name.endswith(".gz") else open(path, "rb")
        with io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    stats.skipped["bad_json"] += 1
                    continue
                yield from _usable([row.get(text_column) if isinstance(row, dict) else None], stats)
    else:
        raise ValueError(f"{path}: not a Parquet or JSONL file")


def _usable(values: list, stats: CountStats) -> Iterator[str]:
    for value in values:
        if isinstance(value, str) and value:
            stats.documents += 1
            yield value
        else:
            stats.skipped["no_text"] += 1


def count_files(
    paths: Sequence[str], text_column: str, pattern: str, special_tokens: Sequence[str]
) -> tuple[Counter, CountStats]:
    stats = CountStats()
    counts: Counter = Counter()
    for path in paths:
        count_pretokens(iter_texts(path, text_column, stats), pattern, special_tokens, counts)
    return counts, stats


# -- Ray ----------------------------------------------------------------------------------------


def _chunks(items: Sequence, n: int) -> list[Sequence]:
    n = max(1, min(n, len(items)))
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (i < extra)
        out.append(items[start:end])
        start = end
    return out


def _merge_counts(parts: Iterable[Counter]) -> Counter:
    total: Counter = Counter()
    for part in parts:
        if not total:
            total = part
        else:
            total.update(part)
    return total


def count_files_ray(
    paths: Sequence[str],
    text_column: str,
    pattern: str = CL100K_PATTERN,
    special_tokens: Sequence[str] = (ENDOFTEXT,),
    num_tasks: int | None = None,
) -> tuple[Counter, CountStats]:
    """Pre-token counts of the files, one Ray task per group of files."""
    import ray

    remote = ray.remote(count_files)
    futures = [
        remote.remote(list(group), text_column, pattern, list(special_tokens))
        for group in _chunks(list(paths), num_tasks or len(paths))
    ]
    stats = CountStats()
    counters = []
    for counts, part_stats in ray.get(futures):
        counters.append(counts)
        stats.merge(part_stats)
    return _merge_counts(counters), stats


def _count_chunk(texts: list[str], pattern: str, special_tokens: list[str]) -> Counter:
    return count_pretokens(texts, pattern, special_tokens)


def count_texts_ray(
    texts: Sequence[str],
    workers: int,
    pattern: str = CL100K_PATTERN,
    special_tokens: Sequence[str] = (ENDOFTEXT,),
) -> Counter:
    """Pre-token counts of in-memory texts, cut into ``workers`` Ray tasks."""
    import ray

    remote = ray.remote(_count_chunk)
    futures = [remote.remote(list(chunk), pattern, list(special_tokens)) for chunk in _chunks(texts, workers)]
    return _merge_counts(ray.get(futures))
