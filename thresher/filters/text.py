"""Words and sentences for the heuristic quality rules.

The published rules (Gopher, C4, FineWeb) count *words* as the Penn Treebank tokenizer splits
them: punctuation is its own token, contractions are split (``do`` + ``n't``), a sentence-final
period is split off but an abbreviation keeps its period. :func:`split_words` reproduces those
decisions with one compiled regular expression and a short pass over the tokens, which is an
order of magnitude faster than running a sentence splitter and then the Treebank rules.

Languages written without spaces need a real segmenter: Chinese uses ``jieba`` and Thai uses
``pythainlp`` (both installed with Thresher; both work offline from the dictionaries in their
wheels). For a language we cannot segment, :func:`split_words` raises :class:`NoSegmenter` and the
word-based rules are skipped for that document (and counted) instead of dropping every page of the
language.

What the rules count as words is :func:`words_to_count`. In spaced scripts that is every Treebank
token, punctuation included, as FineWeb counts them (and datatrove, which we match). In scripts
without spaces the segmenter emits every mark (``，`` ``。`` ``「`` ...) as a token of its own: on
the demo's Debian pages that is a quarter of the Chinese tokens against a sixth of the English
ones (their translations), which put the alphabetic-words share of the Chinese pages at 0.66-0.77,
under Gopher's 0.8, where the English pages were at 0.77-0.84. Gopher itself counted
whitespace-separated words, which carry their punctuation; so in those scripts punctuation and
symbol tokens are not words (the Chinese pages are then at 0.94-0.98, as are the English ones
counted the same way). datatrove counts them in Chinese too; FineWeb-2 kept that counting and
lowered the threshold for Chinese to 0.735 instead.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import string
import sys
import unicodedata

import regex

logger = logging.getLogger(__name__)


class NoSegmenter(LookupError):
    """No word segmenter is available for this language."""


def _chars_where(pred) -> frozenset[str]:
    return frozenset(c for c in map(chr, range(sys.maxunicode + 1)) if pred(c))


def _is_cjk_symbol(c: str) -> bool:
    """Symbols of the CJK Symbols and Punctuation block (〒 〓 〠 ...) and of the Halfwidth and
    Fullwidth Forms block (＋ ＝ ～ ￥ ...), the latter the full-width twins of ASCII symbols."""
    return unicodedata.category(c)[0] == "S" and ("\u3000" <= c <= "\u303f" or "\uff00" <= c <= "\uffef")


# A "symbol" character carries no word content: punctuation of any script, ASCII symbols and their
# full-width forms, CJK symbols and control characters. Words made only of these do not count as
# words in the Gopher rules.
SYMBOL_CHARS: frozenset[str] = frozenset(string.punctuation) | _chars_where(
    lambda c: unicodedata.category(c)[0] == "P" or unicodedata.category(c) == "Cc" or _is_cjk_symbol(c)
)
# Characters a segmenter may leave as a token of their own that are not even punctuation:
# whitespace (the ideographic space U+3000 included) and invisible format characters (zero-width
# space, joiners, byte-order mark).
_BLANK = "".join(sorted(_chars_where(lambda c: c.isspace() or unicodedata.category(c) == "Cf")))
# Characters that end a sentence in any script (Unicode's Sentence_Terminal property).
TERMINAL_PUNCTUATION: tuple[str, ...] = tuple(
    sorted(regex.findall(r"\p{Sentence_Terminal}", "".join(map(chr, range(sys.maxunicode + 1)))))
)

# Tokens in order of precedence: ellipsis, double dash, always-separate punctuation, a colon or
# comma that is not inside a number, else a run of everything else (which may hold ":" or ","
# followed by a digit, as in 10:30 or 1,000).
_SEPARATE = r";@#$%&?!()\[\]{}<>\"“”«»‘’„`"
_WORD = rf"(?:[^\s{_SEPARATE}:,.\-]|[:,](?=\d)|\.(?!\.\.)|-(?!-))+"
_TOKEN = re.compile(rf"\.\.\.|--|[{_SEPARATE}]|[:,]|{_WORD}")
_CONTRACTION = re.compile(r"(?i)^(.+?)(n't|'s|'re|'ve|'ll|'m|'d)$")

# Abbreviations that keep their period (lower case, without the period). Single letters
# (initials) are abbreviations too; other words ending in a period end a sentence.
ABBREVIATIONS = frozenset(
    """mr mrs ms messrs dr prof rev hon sr jr st mt ft gen col lt maj capt sgt cmdr adm gov sen rep reps
    pres inc ltd co corp bros cie jan feb aug sep sept oct nov dec mon tue tues wed thu thurs fri sat
    ave blvd vs calif fla ill mich minn tenn wash wis conn ariz colo okla ore nev ky kan ga
    pa va vt ph.d u.s u.s.a u.k u.n a.m p.m d.c n.y l.a""".split()
)


def _is_abbreviation(word: str) -> bool:
    stem = word[:-1].lower()
    return (
        (len(stem) == 1 and stem.isalpha())
        or stem in ABBREVIATIONS
        or stem.rsplit("-", 1)[-1] in ABBREVIATIONS
    )


_CLOSERS = frozenset(")]}>\"'”’»")


def _split_latin(text: str) -> list[str]:
    out: list[str] = []
    append = out.append
    chunks = text.split()
    last = len(chunks) - 1
    for i, chunk in enumerate(chunks):
        if chunk.isalnum():  # most words: nothing to split
            append(chunk)
            continue
        next_lower = i < last and chunks[i + 1][:1].islower()
        _split_chunk(chunk, next_lower, append)
    return out


def _keeps_period(word: str, next_lower: bool) -> bool:
    """Whether a period ending a word belongs to it (abbreviation, initial, or an ordinal number
    followed by a lower-case word) rather than ending the sentence."""
    stem = word[:-1]
    if stem.isdigit():
        return next_lower
    return _is_abbreviation(word)


def _split_chunk(chunk: str, next_lower: bool, append) -> None:
    tokens = _TOKEN.findall(chunk)
    final = len(tokens) - 1  # the last token before closing brackets and quotes
    while final > 0 and tokens[final] in _CLOSERS:
        final -= 1
    for k, tok in enumerate(tokens):
        if len(tok) > 1:
            if "'" in tok:
                if tok[0] == "'":
                    append("'")
                    tok = tok[1:]
                m = _CONTRACTION.match(tok)
                if m:
                    append(m.group(1))
                    tok = m.group(2)
                elif tok[-1] == "'" and len(tok) > 1:
                    append(tok[:-1])
                    tok = "'"
            if (
                k == final
                and tok[-1] == "."
                and len(tok) > 1
                and tok[-2] != "."
                and not _keeps_period(tok, next_lower)
            ):
                append(tok[:-1])
                tok = "."
        append(tok)


@functools.lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


@functools.lru_cache(maxsize=1)
def _thai_tokenize():
    # The dictionary-based engine needs only the word list inside the wheel. Unless the user says
    # otherwise, keep pythainlp from creating ~/pythainlp-data (a read-only home on a worker) and
    # from fetching corpora at run time. (It refuses both variables at once: set neither then.)
    if "PYTHAINLP_READ_ONLY" not in os.environ and "PYTHAINLP_READ_MODE" not in os.environ:
        os.environ["PYTHAINLP_READ_ONLY"] = "1"
    os.environ.setdefault("PYTHAINLP_OFFLINE", "1")
    from pythainlp.tokenize import word_tokenize

    # newmm-safe: newmm with a bound on the work on long runs of ambiguous breaking points (what
    # datatrove runs too).
    return functools.partial(word_tokenize, engine="newmm-safe", keep_whitespace=False)


def _tokens(pieces: list[str]) -> list[str]:
    return [t for t in (w.strip(_BLANK) for w in pieces) if t]


def _split_zh(text: str) -> list[str]:
    try:
        jieba = _jieba()
    except ImportError as exc:
        raise NoSegmenter(
            "zh: jieba, a dependency of thresher, is not importable; reinstall thresher"
        ) from exc
    return _tokens(jieba.lcut(text))


def _split_th(text: str) -> list[str]:
    try:
        tokenize = _thai_tokenize()
    except ImportError as exc:
        raise NoSegmenter(
            "th: pythainlp, a dependency of thresher, is not importable; reinstall thresher"
        ) from exc
    return _tokens(tokenize(text))


_SEGMENTERS = {"zh": _split_zh, "th": _split_th}
SPACELESS = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo", "dz"})
"""Languages written without spaces between words."""
# Scripts without spaces between words for which no segmenter is wired in.
UNSEGMENTED = frozenset({"ja", "lo", "km", "my", "bo", "dz"})


def has_segmenter(language: str) -> bool:
    """False where word-based rules must be skipped for ``language``."""
    if language in _SEGMENTERS:
        try:
            (_jieba if language == "zh" else _thai_tokenize)()
        except ImportError:
            return False
        return True
    return language not in UNSEGMENTED


@functools.lru_cache(maxsize=8)
def split_words(text: str, language: str = "en") -> list[str]:
    """Words and punctuation tokens of ``text``, Treebank style; cached for the few most recent
    texts because several rule families in a chain split the same document."""
    segment = _SEGMENTERS.get(language)
    if segment is not None:
        return segment(text)
    if language in UNSEGMENTED:
        raise NoSegmenter(f"{language}: no word segmenter available")
    return _split_latin(text)


def is_word(token: str) -> bool:
    """Whether a token carries word content, i.e. is not made only of punctuation and symbols."""
    return token.isalnum() or not SYMBOL_CHARS.issuperset(token)


def words_to_count(text: str, language: str = "en") -> list[str]:
    """The tokens the word-counting rules count as words: every token of :func:`split_words` in
    spaced scripts (FineWeb's counting), only the :func:`is_word` ones in scripts without spaces
    (see the module docstring for why)."""
    words = split_words(text, language)
    if language in SPACELESS:
        return [w for w in words if is_word(w)]
    return words


# Sentence ends: for English ". ? !" then a space, as English Punkt has it; for other languages
# any Unicode sentence terminal (। ؟ ። ...) then a space; where words are not separated by
# spaces (。), the terminal alone.
_CLOSE = r"[\"'”’»)\]]*"
_SENTENCE_END = {
    "en": re.compile(rf"(\.\.\.|[.?!]){_CLOSE}\s+(\S)"),
    "spaced": regex.compile(rf"(\.\.\.|\p{{Sentence_Terminal}}){_CLOSE}\s+(\S)"),
    "spaceless": regex.compile(rf"(\.\.\.|\p{{Sentence_Terminal}}){_CLOSE}\s*(\S)"),
}
_OPENERS = "\"'“‘«([{"


def count_sentences(line: str, language: str = "en") -> int:
    """Sentences in one line. A boundary is a terminal mark followed by more text, except after
    an ellipsis, and except a period that belongs to its word (see :func:`_keeps_period`)."""
    if not line.strip():
        return 0
    kind = "en" if language == "en" else "spaceless" if language in SPACELESS else "spaced"
    pattern = _SENTENCE_END[kind]
    count = 1
    for m in pattern.finditer(line):
        mark = m.group(1)
        if mark == "...":
            continue
        if mark == ".":
            start = line.rfind(" ", 0, m.start()) + 1
            word = line[start : m.start() + 1].lstrip(_OPENERS)
            if len(word) < 2 or _keeps_period(word, m.group(2).islower()):
                continue
        count += 1
    return count
