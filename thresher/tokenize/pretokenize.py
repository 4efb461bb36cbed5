"""Pre-tokenisation: the regex split that BPE merges never cross, and special-token handling.

The split pattern is the one tiktoken uses for GPT-4's ``cl100k_base``, so a vocabulary trained
here can be handed to ``tiktoken.Encoding(pat_str=...)`` unchanged. The ``regex`` module (not
``re``) is required: the pattern uses Unicode properties and possessive quantifiers, and ``regex``
implements them with the same meaning as tiktoken's Rust engine.
"""

from __future__ import annotations

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


def compile_pattern(pattern: str) -> regex.Pattern:
    return regex.compile(pattern)


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
    pattern: str | regex.Pattern = CL100K_PATTERN,
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
