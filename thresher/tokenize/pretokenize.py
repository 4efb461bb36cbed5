"""Pre-tokenisation: the regex split that BPE merges never cross, and special-token handling.

The split pattern is the one tiktoken uses for GPT-4's ``cl100k_base``, so a vocabulary trained
here can be handed to ``tiktoken.Encoding(pat_str=...)`` unchanged. The ``regex`` module (not
``re``) defines what the pattern means: it has Unicode properties and possessive quantifiers with
the same meaning as tiktoken's Rust engine.

Splitting is the largest single cost of encoding, and the standard library's ``re`` runs these
patterns faster than ``regex`` once every ``\\p{..}``/``\\s`` is spelt out as an explicit set of
code points. ``re`` tests a character outside the Basic Multilingual Plane against such a set by
scanning a list of ranges, which is slow, so the ``re`` form holds only BMP code points and is
used only for texts without astral characters (emoji, rare CJK); there a set and its BMP part
match the same characters, so both forms split identically. The sets are read off the ``regex``
module itself, and a construct the translation does not know keeps the ``regex`` form.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence

import regex

CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
"""GPT-4 (cl100k) split: letters with one optional leading non-letter, numbers in groups of up to
three digits, punctuation runs, and whitespace that stays separate from the following word except
for a single space."""

ENDOFTEXT = "<|endoftext|>"

_SHORTHANDS = "sSdDwW"
_LITERAL_ESCAPES = "rntfva"
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}
_GROUP_OPENERS = ("(?:", "(?=", "(?!", "(?<=", "(?<!", "(?>")


class PreTokenizer:
    """``findall(text)``: the pieces of ``text``, exactly ``regex.compile(pattern).findall(text)``."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.full = regex.compile(pattern)
        self.bmp = bmp_pattern(pattern)
        """The ``re`` form for texts without astral characters, or None where the pattern has
        constructs the translation leaves alone."""

    def findall(self, text: str) -> list[str]:
        if self.bmp is not None and (text.isascii() or _in_bmp(text)):
            return self.bmp.findall(text)
        return self.full.findall(text)

    def __reduce__(self):
        return PreTokenizer, (self.pattern,)


def _in_bmp(text: str) -> bool:
    """No character above U+FFFF: each is then one UTF-16 code unit. Encoding is a near-copy in C,
    ~6× faster than searching the text for such a character with a regex."""
    return len(text.encode("utf-16-le", "surrogatepass")) == 2 * len(text)


def compile_pattern(pattern: str) -> PreTokenizer:
    return PreTokenizer(pattern)


@functools.cache
def _bmp_chars() -> str:
    return "".join(map(chr, range(0x10000)))


@functools.lru_cache(maxsize=64)
def _bmp_ranges(expression: str) -> str:
    """The BMP code points that ``regex`` matches with ``expression`` (one character), as the
    inside of an ``re`` character set."""
    out = []
    for m in regex.finditer(f"(?:{expression})+", _bmp_chars()):
        first, last = m.start(), m.end() - 1
        out.append(f"\\u{first:04x}" if first == last else f"\\u{first:04x}-\\u{last:04x}")
    return "".join(out)


@functools.lru_cache(maxsize=256)
def _same_case_folding(char: str) -> bool:
    expression = f"(?i:{re.escape(char)})"
    return set(re.findall(expression, _bmp_chars())) == set(regex.findall(expression, _bmp_chars()))


@functools.lru_cache(maxsize=16)
def bmp_pattern(pattern: str) -> re.Pattern | None:
    """``pattern`` for the ``re`` module with every Unicode property and class shorthand replaced by
    its BMP code points, or None when it uses anything else whose meaning might differ between the
    two modules (nested sets, word boundaries, flags other than a scoped ``(?i:...)`` around plain
    ASCII, ...)."""
    source = _translate(pattern)
    if source is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "possible nested set": a meaning re may not share
            return re.compile(source)
    except (re.error, Warning, ValueError, OverflowError):
        return None


def _translate(pattern: str) -> str | None:
    out: list[str] = []
    n = len(pattern)
    i = 0
    in_set = False
    depth = 0
    folding_depth: list[int] = []  # depths of the open (?i: groups
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                return None
            e = pattern[i + 1]
            expression = None
            if e in "pP":
                if pattern.startswith("{", i + 2):
                    close = pattern.find("}", i + 2)
                    if close < 0:
                        return None
                    end = close + 1
                else:
                    end = i + 3
                expression = pattern[i:end]
            elif e in _SHORTHANDS:
                end = i + 2
                expression = pattern[i:end]
            if expression is not None:
                if folding_depth:
                    return None
                try:
                    ranges = _bmp_ranges(expression)
                except regex.error:
                    return None
                if not ranges:
                    return None
                out.append(ranges if in_set else f"[{ranges}]")
                i = end
                continue
            if e in _LITERAL_ESCAPES or not (e.isalnum() or e == "_") and e.isascii():
                out.append(pattern[i : i + 2])
                i += 2
                continue
            if e in _HEX_DIGITS:
                digits = pattern[i + 2 : i + 2 + _HEX_DIGITS[e]]
                if len(digits) != _HEX_DIGITS[e] or not all(d in "0123456789abcdefABCDEF" for d in digits):
                    return None
                if folding_depth:
                    return None  # case folding is checked for plain letters only
                out.append(pattern[i : i + 2 + len(digits)])
                i += 2 + len(digits)
                continue
            return None  # \b, \X, \G, back-references, named lists, ...
        if in_set:
            if c == "[" or pattern[i : i + 2] in ("&&", "--", "||", "~~"):
                return None  # nested sets and set operations: regex-only syntax
            if c == "]":
                in_set = False
            elif folding_depth and (c == "-" or not c.isascii()):
                return None  # only single ASCII letters have their case folding checked
            elif folding_depth and c.isalpha() and not _same_case_folding(c):
                return None
            out.append(c)
            i += 1
            continue
        if c == "[":
            start = i + 2 if pattern.startswith("[^", i) else i + 1
            if pattern.startswith("]", start) or pattern.startswith("[", start):
                return None
            in_set = True
            out.append(pattern[i:start])
            i = start
            continue
        if c == "(":
            if pattern.startswith("(?i:", i):
                depth += 1
                folding_depth.append(depth)
                out.append("(?i:")
                i += 4
                continue
            if pattern.startswith("(?", i) and not pattern.startswith(_GROUP_OPENERS, i):
                return None  # inline flags, named groups, conditionals, comments
            depth += 1
        elif c == ")":
            if folding_depth and folding_depth[-1] == depth:
                folding_depth.pop()
            depth -= 1
        elif folding_depth and not c.isascii():
            return None
        elif folding_depth and c.isalpha() and not _same_case_folding(c):
            return None
        out.append(c)
        i += 1
    if in_set:
        return None
    return "".join(out)


def special_splitter(special_tokens: Iterable[str]) -> regex.Pattern | None:
    """A pattern whose ``split`` yields ordinary text and special tokens alternately (specials at odd
    indexes). Longer specials are tried first so that one that is a prefix of another never wins."""
    names = sorted(set(special_tokens), key=lambda s: (-len(s), s))
    if not names:
        return None
    return regex.compile("(" + "|".join(regex.escape(s) for s in names) + ")")


def without_lone_surrogates(text: str) -> str:
    """Lone surrogates (possible in Python strings read from JSON) cannot be UTF-8 encoded; replace
    them with U+FFFD, which is what tiktoken does with such text."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def count_pretokens(
    texts: Iterable[str],
    pattern: str | PreTokenizer = CL100K_PATTERN,
    special_tokens: Sequence[str] = (ENDOFTEXT,),
    counts: Counter | None = None,
) -> Counter:
    """Pre-token → occurrences over ``texts``. Special tokens that occur literally in the text are
    cut out first, so training never learns merges across or inside them."""
    compiled = compile_pattern(pattern) if isinstance(pattern, str) else pattern
    findall = compiled.findall
    splitter = special_splitter(special_tokens)
    counts = Counter() if counts is None else counts
    update = counts.update
    for text in texts:
        if splitter is not None and any(s in text for s in special_tokens):
            for chunk in splitter.split(text)[::2]:
                update(findall(chunk))
        else:
            update(findall(text))
    return counts


def word_bytes(word: str) -> bytes:
    try:
        return word.encode("utf-8")
    except UnicodeEncodeError:
        return without_lone_surrogates(word).encode("utf-8")
