"""The fast split: the ``re`` form of the pre-tokenisation pattern (BMP code points spelt out) must
split every text exactly as the ``regex`` pattern does, and the translation must refuse what it
cannot carry over."""

from __future__ import annotations

import gzip
import random
import unicodedata

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import shared_path
from thresher.tokenize.pretokenize import CL100K_PATTERN, PreTokenizer, bmp_pattern

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
PATTERNS = [CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN]

# Characters where the two modules' ideas could part: every kind of space, apostrophes and the
# letters whose case folding reaches outside ASCII (ſ folds to s, K to k), digits of other scripts.
GLUE = list(
    " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u2028\u2029\u202f\u3000'’sSlLdDmMtTvVeErRſKk1١߀.,!?-_/"
)


def lingua(n: int = 40) -> list[str]:
    root = shared_path("lid-lingua-testdata", "sentences")
    out = []
    for path in sorted(root.glob("*.txt.gz")):
        lines = gzip.open(path, "rt", encoding="utf-8").read().splitlines()
        out.append("\n".join(lines[:n]))
    return out


def split_both(pattern: str, text: str) -> tuple[list[str], list[str]]:
    fast = bmp_pattern(pattern)
    assert fast is not None
    return fast.findall(text), regex.findall(pattern, text)


@pytest.mark.parametrize("pattern", PATTERNS, ids=["cl100k", "gpt2", "o200k"])
def test_same_split_on_every_bmp_code_point(pattern):
    rng = random.Random(7)
    points = [chr(c) for c in range(0x10000)]
    for start in range(0, len(points), 4096):  # every code point, surrogates included, in context
        block = points[start : start + 4096]
        rng.shuffle(block)
        text = "".join(c + rng.choice(GLUE) * rng.randrange(3) for c in block)
        fast, full = split_both(pattern, text)
        assert fast == full


@pytest.mark.parametrize("pattern", PATTERNS, ids=["cl100k", "gpt2", "o200k"])
def test_same_split_on_real_multilingual_text(pattern):
    for text in lingua():
        text = "".join(c for c in text if c <= "\uffff")
        fast, full = split_both(pattern, text)
        assert fast == full


def test_whitespace_runs_and_contractions():
    cases = [
        " " * 50 + "x" + "\n" * 20 + "  \t \r\n\r\n" + " " * 7,
        "trailing   ",
        "\n",
        "a \n",
        "it's IT'S it'LL they'RE we'Ve I'M he'D it’s 'ſ 'K",
        "\u3000\u3000word\u00a0\u00a0word\u2028\u2029end\x85",
        "x\x1c\x1d\x1e\x1fy",  # separators: whitespace to str.isspace(), not to Unicode
        "1234567 ١٢٣٤٥ 12.5 ½ ⅔ Ⅻ",
    ]
    for pattern in PATTERNS:
        for text in cases:
            fast, full = split_both(pattern, text)
            assert fast == full, (pattern[:20], text)


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.one_of(st.sampled_from(GLUE), st.characters(max_codepoint=0xFFFF)), max_size=120),
    st.sampled_from(PATTERNS),
)
def test_same_split_property(text, pattern):
    fast, full = split_both(pattern, text)
    assert fast == full


def test_astral_text_takes_the_regex_pattern():
    splitter = PreTokenizer(CL100K_PATTERN)
    text = "emoji 😀😀 and 𠀀𠀁 CJK extension B, math𝔘𝔫𝔦𝔠𝔬𝔡𝔢 letters"
    assert splitter.findall(text) == regex.findall(CL100K_PATTERN, text)
    # the BMP form alone would be wrong here: astral letters are not in its sets
    assert splitter.bmp.findall(text) != regex.findall(CL100K_PATTERN, text)
    assert splitter.findall("plain ascii, it's") == ["plain", " ascii", ",", " it", "'s"]


def test_every_assigned_code_point_through_the_dispatch():
    splitter = PreTokenizer(CL100K_PATTERN)
    rng = random.Random(3)
    points = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    texts = [
        "".join(rng.choice(points) if rng.random() < 0.5 else rng.choice(GLUE) for _ in range(200))
        for _ in range(300)
    ]
    texts += ["".join(c for c in t if c <= "\uffff") for t in texts]
    for text in texts:
        assert splitter.findall(text) == regex.findall(CL100K_PATTERN, text)


@pytest.mark.parametrize(
    "pattern",
    [
        r"\b\w+\b",  # word boundaries
        r"[[:alpha:]]+",  # POSIX class: a nested set
        r"[\p{L}--\p{Lu}]+",  # set difference
        r"(?i)\p{L}+",  # global flags
        r"(?i:\p{Lu})+",  # a property under case folding
        r"(?i:[a-z])+",  # a folded range
        r"(?i:é)",  # non-ASCII under case folding
        r"\X",  # grapheme clusters
        r"(?P<word>\p{L}+)",  # named groups
        r"\p{NoSuchProperty}",
        r"[abc",
    ],
)
def test_untranslatable_patterns_keep_the_regex_form(pattern):
    assert bmp_pattern(pattern) is None


def test_pretokenizer_pickles():
    import pickle

    splitter = pickle.loads(pickle.dumps(PreTokenizer(CL100K_PATTERN)))
    assert splitter.bmp is not None and splitter.findall("it's 1234") == ["it", "'s", " ", "123", "4"]
