"""Gopher quality and repetition rules (Rae et al. 2021, "Scaling Language Models", appendix A1),
with the thresholds FineWeb ran.

Both stages drop with a reason named ``gopher_<rule>`` and the measured value, so the dropped
table says how far past the threshold a page was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from thresher.dataconfig import option
from thresher.document import Document, Drop
from thresher.filters.base import LanguageAwareStage, validate_language_overrides
from thresher.filters.text import NoSegmenter, is_word, split_words, words_to_count

# The Gopher paper's stop words ("the, be, to, of, and, that, have, with"), matched case-sensitively
# as in FineWeb. Chinese: the commonest function words; pages in languages without a list skip
# the rule (counted as ``stop_words_skipped:<lang>``) rather than failing it.
DEFAULT_STOP_WORDS: dict[str, list[str]] = {
    "en": ["the", "be", "to", "of", "and", "that", "have", "with"],
    "zh": ["的", "了", "是", "在", "和", "有", "我", "不", "这", "也"],
}


@dataclass
class GopherQualityConfig:
    min_doc_words: int | None = option(50, ge=0)
    """Fewer non-symbol words: ``gopher_short_doc``. None disables (as does 0, for every threshold)."""
    max_doc_words: int | None = option(100_000, ge=0)
    min_avg_word_length: float | None = option(3, ge=0)
    max_avg_word_length: float | None = option(10, ge=0)
    max_symbol_word_ratio: float | None = option(0.1, ge=0)
    """'#' and ellipses per word."""
    max_bullet_lines_ratio: float | None = option(0.9, ge=0, le=1)
    max_ellipsis_lines_ratio: float | None = option(0.3, ge=0, le=1)
    min_alpha_words_ratio: float | None = option(0.8, ge=0, le=1)
    """Share of words holding at least one letter."""
    min_stop_words: int | None = option(2, ge=0)
    """Distinct stop words of the page's language that must occur."""
    stop_words: dict[str, list[str]] = option(factory=lambda: dict(DEFAULT_STOP_WORDS), language=True)
    languages: dict[str, dict[str, Any]] = option(factory=dict, language=True)
    """Per-language overrides of any key above, e.g. ``{zh: {min_avg_word_length: 1}}``."""
    default_language: str = option("en", language=True)
    """Language assumed for documents the language stage has not labelled."""

    def validate(self, where: str) -> None:
        validate_language_overrides(self, where)


def _has_letter(word: str) -> bool:
    return any(c.isalpha() for c in word)


class GopherQualityFilter(LanguageAwareStage):
    """Reasons: ``gopher_short_doc``, ``gopher_long_doc``, ``gopher_below_avg_threshold``,
    ``gopher_above_avg_threshold``, ``gopher_too_many_hashes``, ``gopher_too_many_ellipsis``,
    ``gopher_too_many_bullets``, ``gopher_too_many_end_ellipsis``, ``gopher_below_alpha_threshold``,
    ``gopher_enough_stop_words`` (too few)."""

    name = "gopher_quality"
    Config = GopherQualityConfig
    # Chinese words are one to three characters long. (Punctuation tokens, a quarter of the
    # segmenter's tokens in Chinese, are not words there: see thresher.filters.text.words_to_count.)
    builtin_overrides = {"zh": {"min_avg_word_length": 1, "max_avg_word_length": 6}}

    def process(self, doc: Document) -> Document | Drop:
        lang = self.language_of(doc)
        cfg: GopherQualityConfig = self.config_for(lang)
        text = doc.text
        try:
            words = words_to_count(text, lang)
        except NoSegmenter:
            self.stats.extra[f"no_segmenter:{lang}"] += 1
            return doc
        n_words = len(words)
        content = [w for w in words if is_word(w)]
        n_content = len(content)
        if cfg.min_doc_words and n_content < cfg.min_doc_words:
            return Drop("gopher_short_doc", value=n_content)
        if cfg.max_doc_words and n_content > cfg.max_doc_words:
            return Drop("gopher_long_doc", value=n_content)
        if n_content:
            avg = sum(map(len, content)) / n_content
            if cfg.min_avg_word_length and avg < cfg.min_avg_word_length:
                return Drop("gopher_below_avg_threshold", value=avg)
            if cfg.max_avg_word_length and avg > cfg.max_avg_word_length:
                return Drop("gopher_above_avg_threshold", value=avg)
            doc.scores["gopher_avg_word_length"] = round(avg, 4)
        if not n_words:
            return doc
        if cfg.max_symbol_word_ratio:
            ratio = text.count("#") / n_words
            if ratio > cfg.max_symbol_word_ratio:
                return Drop("gopher_too_many_hashes", value=ratio)
            ratio = (text.count("...") + text.count("…")) / n_words
            if ratio > cfg.max_symbol_word_ratio:
                return Drop("gopher_too_many_ellipsis", value=ratio)
        lines = text.splitlines()
        if lines and cfg.max_bullet_lines_ratio:
            ratio = sum(line.lstrip().startswith(("•", "-")) for line in lines) / len(lines)
            if ratio > cfg.max_bullet_lines_ratio:
                return Drop("gopher_too_many_bullets", value=ratio)
        if lines and cfg.max_ellipsis_lines_ratio:
            ratio = sum(line.rstrip().endswith(("...", "…")) for line in lines) / len(lines)
            if ratio > cfg.max_ellipsis_lines_ratio:
                return Drop("gopher_too_many_end_ellipsis", value=ratio)
        if cfg.min_alpha_words_ratio:
            ratio = sum(w.isalpha() or _has_letter(w) for w in words) / n_words
            if ratio < cfg.min_alpha_words_ratio:
                return Drop("gopher_below_alpha_threshold", value=ratio)
            doc.scores["gopher_alpha_words_ratio"] = round(ratio, 4)
        if cfg.min_stop_words:
            stop_words = cfg.stop_words.get(lang)
            if stop_words is None:
                self.stats.extra[f"stop_words_skipped:{lang}"] += 1
            else:
                found = len(set(stop_words).intersection(words))
                if found < cfg.min_stop_words:
                    return Drop("gopher_enough_stop_words", value=found)
        doc.scores["gopher_words"] = n_content
        return doc


@dataclass
class GopherRepetitionConfig:
    dup_line_frac: float | None = option(0.3, ge=0, le=1)
    """Share of lines that repeat an earlier line."""
    dup_para_frac: float | None = option(0.3, ge=0, le=1)
    dup_line_char_frac: float | None = option(0.2, ge=0, le=1)
    """Characters in repeated lines / all characters."""
    dup_para_char_frac: float | None = option(0.2, ge=0, le=1)
    top_n_grams: dict[int, float] = option(factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16}, ge=0, le=1)
    """n → largest share of characters the most frequent n-gram may cover."""
    dup_n_grams: dict[int, float] = option(
        factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}, ge=0, le=1
    )
    """n → largest share of characters in repeated (non-overlapping) n-grams."""
    languages: dict[str, dict[str, Any]] = option(factory=dict, language=True)
    default_language: str = option("en", language=True)

    def validate(self, where: str) -> None:
        for key, table in (("top_n_grams", self.top_n_grams), ("dup_n_grams", self.dup_n_grams)):
            if any(n < 1 for n in table):
                raise ValueError(f"{where}.{key}: n must be >= 1")
        validate_language_overrides(self, where)


_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LINE_BREAK = re.compile(r"\n+")


def repeated(items: list) -> tuple[int, int]:
    """(items equal to an earlier item, their total length)."""
    seen: set = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


_MULT = np.uint64(0x9E3779B97F4A7C15)


class NGramIndex:
    """The n-grams of a word sequence as 64-bit rolling hashes, with where each first occurs.

    Comparing hashes instead of joined strings or tuples keeps the work in numpy; two different
    n-grams share a hash with probability about 2^-64 per pair, far below one in a corpus.
    """

    def __init__(self, words: list[str]) -> None:
        # Python's string hash is computed in C and cached on the string: a cheap word id.
        self.ids = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
        self.prefix = np.zeros(len(words) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, words), dtype=np.int64, count=len(words)), out=self.prefix[1:])
        self._hash = self.ids + np.uint64(1)
        self._n = 1

    @property
    def n(self) -> int:
        """The n-gram size the index is at; smaller sizes need a new index."""
        return self._n

    def hashes(self, n: int) -> np.ndarray:
        """Hashes of the n-grams; n must not decrease between calls."""
        if n < self._n:
            raise ValueError("n-gram sizes must be asked in increasing order")
        while self._n < n and len(self._hash):
            self._hash = self._hash[:-1] * _MULT + self.ids[self._n :] + np.uint64(1)
            self._n += 1
        return self._hash if self._n == n else self._hash[:0]

    def span_chars(self, start: int, n: int) -> int:
        """Characters of the words ``start .. start+n-1`` (without separators)."""
        return int(self.prefix[start + n] - self.prefix[start])


def top_ngram_chars(index: NGramIndex, n: int) -> int:
    """Characters the most frequent n-gram covers, counting the spaces between its words; ties go
    to the n-gram that occurs first."""
    h = index.hashes(n)
    if not len(h):
        return 0
    _, first, counts = np.unique(h, return_index=True, return_counts=True)
    top = counts.max()
    start = int(first[counts == top].min())
    return (index.span_chars(start, n) + n - 1) * int(top)


def repeated_ngram_chars(index: NGramIndex, n: int) -> int:
    """Characters in n-grams that repeat an earlier one, scanning left to right and jumping past
    a repeat so that overlapping repeats are not counted twice.

    Only positions whose n-gram occurred before can be repeats; between two such positions every
    n-gram is new and is simply remembered, so the scan visits the candidates only.
    """
    h = index.hashes(n)
    if len(h) < 2:
        return 0
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    candidates = np.flatnonzero(first[inverse] < np.arange(len(h)))
    if not len(candidates):
        return 0
    values = h.tolist()
    seen: set[int] = set()
    chars = pos = 0
    for c in candidates.tolist():
        if c < pos:
            continue
        seen.update(values[pos:c])
        if values[c] in seen:
            chars += index.span_chars(c, n)
            pos = c + n
        else:
            seen.add(values[c])
            pos = c + 1
    return chars


class GopherRepetitionFilter(LanguageAwareStage):
    """Reasons: ``gopher_empty_doc``, ``gopher_dup_para_frac``, ``gopher_dup_para_char_frac``,
    ``gopher_dup_line_frac``, ``gopher_dup_line_char_frac``, ``gopher_top_<n>_gram``,
    ``gopher_duplicated_<n>_n_grams``."""

    name = "gopher_repetition"
    Config = GopherRepetitionConfig

    def process(self, doc: Document) -> Document | Drop:
        lang = self.language_of(doc)
        cfg: GopherRepetitionConfig = self.config_for(lang)
        text = doc.text
        if not text:
            return Drop("gopher_empty_doc")
        n_chars = len(text)
        paragraphs = _PARAGRAPH_BREAK.split(text.strip())
        dups, dup_chars = repeated(paragraphs)
        if cfg.dup_para_frac and dups / len(paragraphs) > cfg.dup_para_frac:
            return Drop("gopher_dup_para_frac", value=dups / len(paragraphs))
        if cfg.dup_para_char_frac and dup_chars / n_chars > cfg.dup_para_char_frac:
            return Drop("gopher_dup_para_char_frac", value=dup_chars / n_chars)
        lines = _LINE_BREAK.split(text)
        dups, dup_chars = repeated(lines)
        if cfg.dup_line_frac and dups / len(lines) > cfg.dup_line_frac:
            return Drop("gopher_dup_line_frac", value=dups / len(lines))
        if cfg.dup_line_char_frac and dup_chars / n_chars > cfg.dup_line_char_frac:
            return Drop("gopher_dup_line_char_frac", value=dup_chars / n_chars)
        try:
            words = split_words(text, lang)
        except NoSegmenter:
            self.stats.extra[f"no_segmenter:{lang}"] += 1
            return doc
        index = NGramIndex(words)
        for n, limit in sorted(cfg.top_n_grams.items()):
            share = top_ngram_chars(index, n) / n_chars
            if share > limit:
                return Drop(f"gopher_top_{n}_gram", value=share)
        index = NGramIndex(words) if cfg.dup_n_grams and min(cfg.dup_n_grams) < index.n else index
        for n, limit in sorted(cfg.dup_n_grams.items()):
            share = repeated_ngram_chars(index, n) / n_chars
            if share > limit:
                return Drop(f"gopher_duplicated_{n}_n_grams", value=share)
        return doc
