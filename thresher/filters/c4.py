"""C4's page rules (Raffel et al. 2020, section 2.2) as FineWeb ran them: line-level cleanups that
rewrite the text, and page-level rules that drop it.

FineWeb turned off C4's "every kept line ends in terminal punctuation" rule (it removed too much
of the web that is otherwise fine), so it is off by default here; ``require_terminal_punct: true``
restores the original C4 behaviour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import regex

from thresher.dataconfig import option
from thresher.document import Document, Drop
from thresher.filters.base import LanguageAwareStage, validate_language_overrides
from thresher.filters.text import SPACELESS, NoSegmenter, count_sentences, words_to_count

# A character of a script written without spaces between words (Han, kana, Thai, ...).
_UNSPACED_SCRIPT = regex.compile(
    r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}]"
)
CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY_PHRASES = [
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
]


@dataclass
class C4Config:
    require_terminal_punct: bool = False
    """Keep only lines ending in . ? ! " ' (not an ellipsis). Original C4: true; FineWeb: false."""
    remove_citations: bool = True
    """Strip Wikipedia-style markers: [1], [edit], [citation needed]."""
    min_num_sentences: int | None = option(5, ge=0)
    """Fewer sentences in the kept lines: ``c4_too_few_sentences``. None disables."""
    min_words_per_line: int | None = option(3, ge=0)
    """Shorter lines are removed."""
    max_word_length: int | None = option(1000, ge=1)
    """Lines holding a longer whitespace-separated word are removed."""
    filter_lorem_ipsum: bool = True
    """Drop the page (``c4_lorem_ipsum``) when a kept line holds "lorem ipsum"."""
    filter_javascript: bool = True
    """Remove lines mentioning "javascript"."""
    filter_curly_bracket: bool = True
    """Drop the page (``c4_curly_bracket``) when a kept line holds "{"."""
    filter_policy: bool = True
    """Remove lines with cookie/terms-of-use/privacy-policy phrases."""
    policy_phrases: list[str] = field(default_factory=lambda: list(POLICY_PHRASES))
    languages: dict[str, dict[str, Any]] = option(factory=dict, language=True)
    default_language: str = option("en", language=True)

    def validate(self, where: str) -> None:
        validate_language_overrides(self, where)


def unspaced_line_words(line: str, lang: str) -> list[str]:
    """C4's words of a line in a language written without spaces. C4 counts whitespace-separated
    words, each carrying its punctuation: a chunk in the language's script is cut into the
    segmenter's words, without its punctuation tokens; any other chunk (a Latin word, a number, a
    line of code) is one word, as it is in a spaced script."""
    words: list[str] = []
    for chunk in line.split():
        if _UNSPACED_SCRIPT.search(chunk):
            words.extend(words_to_count(chunk, lang))
        else:
            words.append(chunk)
    return words


class C4QualityFilter(LanguageAwareStage):
    """Reasons: ``c4_lorem_ipsum``, ``c4_curly_bracket``, ``c4_too_few_sentences``,
    ``c4_no_lines_left``. Removed lines are counted in ``stats.extra`` (``c4_line_<why>``)."""

    name = "c4"
    Config = C4Config

    def process(self, doc: Document) -> Document | Drop:
        lang = self.language_of(doc)
        cfg: C4Config = self.config_for(lang)
        min_sentences = cfg.min_num_sentences or 0
        min_words = cfg.min_words_per_line or 0
        max_len = cfg.max_word_length
        sentences = 0
        kept: list[str] = []
        removed = self.stats.extra
        segment = lang in SPACELESS  # words are not separated by spaces: count segmented words
        for raw in doc.text.splitlines():
            line = raw.strip()
            words = line.split()
            if max_len and any(len(w) > max_len for w in words):
                removed["c4_line_too_long_word"] += 1
                continue
            if cfg.remove_citations and "[" in line:
                line = CITATION.sub("", line)
            if cfg.require_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith("...")):
                removed["c4_line_no_terminal_punct"] += 1
                continue
            if min_words and segment:
                try:
                    words = unspaced_line_words(line, lang)
                except NoSegmenter:
                    removed[f"c4_no_segmenter:{lang}"] += 1
                    words = [line] * min_words  # rule skipped: no way to count the words
            if len(words) < min_words:
                removed["c4_line_too_few_words"] += 1
                continue
            lower = line.lower()
            if cfg.filter_lorem_ipsum and "lorem ipsum" in lower:
                return Drop("c4_lorem_ipsum")
            if cfg.filter_javascript and "javascript" in lower:
                removed["c4_line_javascript"] += 1
                continue
            if cfg.filter_curly_bracket and "{" in line:
                return Drop("c4_curly_bracket")
            if cfg.filter_policy and any(p in lower for p in cfg.policy_phrases):
                removed["c4_line_policy"] += 1
                continue
            if sentences < min_sentences:  # only the comparison matters: stop counting once reached
                sentences += count_sentences(line, lang)
            kept.append(line)
        if sentences < min_sentences:
            return Drop("c4_too_few_sentences", value=sentences)
        text = "\n".join(kept).strip()
        if not text:
            return Drop("c4_no_lines_left")
        doc.text = text
        return doc
