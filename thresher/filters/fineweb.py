"""FineWeb's own page rules (Penedo et al. 2024, section 3.4), at the thresholds FineWeb ran.

They target what Gopher and C4 let through on modern crawls: pages that are mostly lists, menus
or boilerplate lines. The duplicated-line rule measures characters in repeated lines against all
non-newline characters, with the 0.01 threshold used for the released dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thresher.dataconfig import option
from thresher.document import Document, Drop
from thresher.filters.base import LanguageAwareStage, validate_language_overrides
from thresher.filters.gopher import repeated
from thresher.filters.text import TERMINAL_PUNCTUATION, NoSegmenter, words_to_count


@dataclass
class FineWebQualityConfig:
    line_punct_thr: float | None = option(0.12, ge=0, le=1)
    """Minimum share of lines ending in terminal punctuation: ``fineweb_line_punct_ratio``."""
    line_punct_exclude_zero: bool = False
    """Keep pages where no line ends in punctuation at all (languages written without it)."""
    stop_chars: list[str] | None = None
    """Line-ending characters that count as punctuation; None: Unicode's sentence terminals."""
    short_line_thr: float | None = option(0.67, ge=0, le=1)
    """Maximum share of lines of at most ``short_line_length`` characters: ``fineweb_short_line_ratio``."""
    short_line_length: int = option(30, ge=1)
    char_duplicates_ratio: float | None = option(0.01, ge=0, le=1)
    """Maximum share of characters in repeated lines: ``fineweb_char_dup_ratio``."""
    new_line_ratio: float | None = option(0.3, ge=0)
    """Maximum newlines per word: ``fineweb_list_ratio``."""
    languages: dict[str, dict[str, Any]] = option(factory=dict, language=True)
    default_language: str = option("en", language=True)

    def validate(self, where: str) -> None:
        validate_language_overrides(self, where)


class FineWebQualityFilter(LanguageAwareStage):
    """Reasons: ``fineweb_empty``, ``fineweb_line_punct_ratio``, ``fineweb_short_line_ratio``,
    ``fineweb_char_dup_ratio``, ``fineweb_list_ratio``."""

    name = "fineweb_quality"
    Config = FineWebQualityConfig

    def process(self, doc: Document) -> Document | Drop:
        lang = self.language_of(doc)
        cfg: FineWebQualityConfig = self.config_for(lang)
        text = doc.text
        lines = [line for line in text.split("\n") if line.strip()]
        if not lines:
            return Drop("fineweb_empty")
        n_lines = len(lines)
        if cfg.line_punct_thr is not None:
            stops = tuple(cfg.stop_chars) if cfg.stop_chars is not None else TERMINAL_PUNCTUATION
            ratio = sum(line.endswith(stops) for line in lines) / n_lines
            doc.scores["fineweb_line_punct_ratio"] = round(ratio, 4)
            if ratio < cfg.line_punct_thr and not (ratio == 0 and cfg.line_punct_exclude_zero):
                return Drop("fineweb_line_punct_ratio", value=ratio)
        if cfg.short_line_thr is not None:
            ratio = sum(len(line) <= cfg.short_line_length for line in lines) / n_lines
            if ratio > cfg.short_line_thr:
                return Drop("fineweb_short_line_ratio", value=ratio)
        if cfg.char_duplicates_ratio is not None:
            non_newline = len(text) - text.count("\n")
            ratio = repeated(lines)[1] / non_newline if non_newline else 0.0
            if ratio > cfg.char_duplicates_ratio:
                return Drop("fineweb_char_dup_ratio", value=ratio)
        if cfg.new_line_ratio is not None:
            try:
                n_words = len(words_to_count(text, lang))
            except NoSegmenter:
                self.stats.extra[f"no_segmenter:{lang}"] += 1
                return doc
            ratio = text.count("\n") / n_words if n_words else float("inf")
            if ratio > cfg.new_line_ratio:
                return Drop("fineweb_list_ratio", value=ratio)
        return doc
