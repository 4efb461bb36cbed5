"""Chinese and Thai through the word rules: the segmenters come with the default install, work
offline, and punctuation tokens do not count as words (jieba and pythainlp emit every mark as a
token of its own, which alone pushed Chinese pages under Gopher's 80 % alphabetic-words line).

The end-to-end check runs the demo's recipe on the demo WARC, whose Debian pages are translations
of each other: the share of Chinese pages that survive the rules must be close to the other
languages' share."""

from __future__ import annotations

import gzip
import os
import re
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import shared_path
from thresher.document import Document, Drop
from thresher.filters.c4 import C4QualityFilter
from thresher.filters.gopher import GopherQualityFilter
from thresher.filters.text import is_word, split_words, words_to_count

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "pipeline" / "configs" / "demo.yaml"
DEMO_WARC = ROOT / "examples" / "demo.warc.gz"

# Punctuation and symbols of Chinese text (full-width forms, CJK brackets, the CJK Symbols and
# Punctuation block) that jieba emits as tokens of their own.
CJK_NON_WORDS = list("，。、；：？！「」『』（）《》【】〈〉〔〕…—～・〃〒〓〜＃＄％＆＊＋／＜＝＞＠＾＿｜")


def _sentences(lang: str, n: int) -> list[str]:
    """Real sentences of a language (the lingua language-id test data)."""
    with gzip.open(
        shared_path("lid-lingua-testdata", "sentences", f"{lang}.txt.gz"), "rt", encoding="utf-8"
    ) as f:
        return f.read().splitlines()[:n]


def _doc(text: str, lang: str) -> Document:
    return Document(id="d", text=text, language=lang)


def test_cjk_punctuation_and_blank_tokens_are_not_words():
    assert not any(is_word(tok) for tok in CJK_NON_WORDS)
    assert all(is_word(tok) for tok in ["软件", "安装", "Debian", "1.0", "々", "〇"])
    words = split_words("请先安装软件，然后重启。\u3000「注意」\u200b（重要）", "zh")
    assert "\u3000" not in words and "\u200b" not in words and "" not in words
    assert words_to_count("请先安装软件，然后重启。「注意」（重要）", "zh") == [
        "请",
        "先",
        "安装",
        "软件",
        "然后",
        "重启",
        "注意",
        "重要",
    ]
    # Spaced scripts keep FineWeb's (Treebank) counting, punctuation tokens included.
    assert words_to_count("Install it, then reboot.", "en") == ["Install", "it", ",", "then", "reboot", "."]


def test_punctuation_does_not_change_the_chinese_alphabetic_words_ratio():
    """Real Chinese prose: doubling every full-width comma and full stop must not move the share of
    alphabetic words, as it did when each mark counted as a non-alphabetic word."""
    text = "\n".join(_sentences("zh", 60))
    assert text.count("，") > 50 and text.count("。") > 20
    plain, doubled = _doc(text, "zh"), _doc(text.replace("，", "，，").replace("。", "。。"), "zh")
    stage = GopherQualityFilter()
    assert stage.process(plain) is plain and stage.process(doubled) is doubled
    ratio = plain.scores["gopher_alpha_words_ratio"]
    assert ratio == doubled.scores["gopher_alpha_words_ratio"]
    # The ratio is over words: only numbers and symbols hold it under 1.
    assert 0.9 < ratio < 1


def test_the_alphabetic_words_rule_still_drops_chinese_number_tables():
    """Not counting punctuation must not switch the rule off: a Chinese page that is mostly
    figures is still dropped."""
    sentences = _sentences("zh", 10)
    rows = [f"{y}年 {y * 3 % 997} {y * 7 % 991} {y * 11 % 983} {y * 13 % 977}" for y in range(1900, 2000)]
    doc = _doc("\n".join(sentences + rows), "zh")
    result = GopherQualityFilter().process(doc)
    assert isinstance(result, Drop) and result.reason == "gopher_below_alpha_threshold"


def test_c4_counts_chinese_words_without_their_punctuation():
    """C4 removes lines of fewer than three words; in English ``Fine, thanks.`` is two words, and
    so is its Chinese counterpart, although jieba makes four tokens of it."""
    lines = _sentences("zh", 12)
    stage = C4QualityFilter()
    doc = _doc("\n".join([*lines, "好，谢谢。"]), "zh")
    assert split_words("好，谢谢。", "zh") == ["好", "，", "谢谢", "。"]
    assert stage.process(doc) is doc
    assert "好，谢谢。" not in doc.text.splitlines()
    assert stage.stats.extra["c4_line_too_few_words"] == 1


def test_c4_counts_a_code_line_in_a_chinese_page_as_in_an_english_one():
    """A shell line from the demo's Debian pages: one whitespace-separated word, so C4 removes it
    from the English page before its curly bracket is seen; in the Chinese translation jieba cut it
    into five words, the line stayed, and the page was dropped for its ``{``."""
    code = "AUTO_DEBSIGN=${AUTO_DEBSIGN:-no}"
    chinese = _doc("\n".join([*_sentences("zh", 12), code]), "zh")
    english = _doc("\n".join([*_sentences("en", 12), code]), "en")
    for doc in (english, chinese):
        stage = C4QualityFilter()
        assert stage.process(doc) is doc, doc.language
        assert code not in doc.text and stage.stats.extra["c4_line_too_few_words"] == 1


def test_segmenters_are_default_dependencies():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {dep.split(">")[0].split("=")[0].split("<")[0].strip().lower() for dep in project["dependencies"]}
    assert {"jieba", "pythainlp"} <= names
    assert "cjk" not in project.get("optional-dependencies", {})


def test_thai_segmenter_works_offline_and_writes_nothing(tmp_path):
    """pythainlp makes a data folder in the home directory unless told not to, and fetches corpora
    it lacks; its bundled dictionary is all the segmenter needs. A fresh process with the network
    cut off and an empty home must segment Thai and leave the home empty."""
    home = tmp_path / "home"
    home.mkdir()
    code = (
        "import socket\n"
        "def cut(*a, **k): raise OSError('network is cut off in this test')\n"
        "socket.socket.connect = cut\n"
        "socket.create_connection = cut\n"
        "from thresher.filters.text import split_words\n"
        "print('|'.join(split_words('ภาษาไทยเป็นภาษาที่มีวรรณยุกต์ (ห้าเสียง)', 'th')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHAINLP")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().split("|") == [
        "ภาษาไทย",
        "เป็น",
        "ภาษา",
        "ที่",
        "มี",
        "วรรณยุกต์",
        "(",
        "ห้า",
        "เสียง",
        ")",
    ]
    assert list(home.iterdir()) == []


# A page of the demo site and the language of its version: the Debian handbook's
# browse/<lang>-<REGION>/stable/<page>.html and the maintainers' guide's <page>.<lang>[-xx].html.
_DEMO_PAGE = re.compile(
    r"https://debian-handbook\.info/browse/(?P<hb_lang>[a-z]{2})-[A-Z]{2}/stable/(?P<hb_page>[\w-]+)\.html$"
    r"|https://www\.debian\.org/doc/manuals/maint-guide/(?P<mg_page>\w+)\.(?P<mg_lang>[a-z]{2})(-[a-z]{2})?\.html$"
)


def _page_of(url: str | None) -> tuple[str, str] | None:
    """(page, language of the site's version) for a page of the demo site."""
    m = _DEMO_PAGE.match(url or "")
    if m is None:
        return None
    return (f"hb/{m['hb_page']}", m["hb_lang"]) if m["hb_page"] else (f"mg/{m['mg_page']}", m["mg_lang"])


@dataclass
class DemoFates:
    """What the demo's rule stages did, per language the language stage found."""

    reached: Counter = field(default_factory=Counter)
    """Pages the language stage kept."""
    gopher_in: Counter = field(default_factory=Counter)
    gopher_kept: Counter = field(default_factory=Counter)
    kept: Counter = field(default_factory=Counter)
    """Pages kept after the last rule stage."""
    verdicts: dict[str, dict[str, bool]] = field(default_factory=lambda: defaultdict(dict))
    """page → language → kept, for versions labelled with the site's language for them."""
    zh_drops: Counter = field(default_factory=Counter)


@pytest.fixture(scope="module")
def demo_fates() -> DemoFates:
    """The demo's stages from extract through fineweb_quality (the ones before deduplication), as
    its config sets them, run in this process on the demo WARC."""
    from thresher.config import load_config
    from thresher.readers.warc import read_warc
    from thresher.registry import build_stage

    cfg = load_config(DEMO_CONFIG)
    docs = list(read_warc(str(DEMO_WARC)))
    fates = DemoFates()
    language_kept: set[str] = set()
    for spec in cfg.stages:
        if spec.name.endswith("_dedup"):
            break
        stage = build_stage(spec.name, spec.config)
        live = [d for d in docs if d.drop is None]
        stage.apply(docs)
        stage.close()
        stage.stats.check()
        if spec.name == "language":
            language_kept = {d.id for d in docs if d.drop is None}
            fates.reached.update(d.language for d in docs if d.drop is None)
        elif spec.name == "gopher_quality":
            fates.gopher_in.update(d.language for d in live)
            fates.gopher_kept.update(d.language for d in live if d.drop is None)
    assert language_kept, "the demo config has no language stage"
    for d in docs:
        if d.id not in language_kept:
            continue
        if d.drop is None:
            fates.kept[d.language] += 1
        elif d.language == "zh":
            fates.zh_drops[d.drop.reason] += 1
        where = _page_of(d.url)
        if where is not None and where[1] == d.language:
            fates.verdicts[where[0]][d.language] = d.drop is None
    return fates


# The languages every rule runs on. Japanese has no segmenter and skips the word rules, so its
# pages are not a yardstick.
SPACED = ("en", "de", "fr", "es", "it", "pt", "ru")


def _close_to_the_others(shares: dict[str, float], what: str) -> None:
    others = [shares[lang] for lang in SPACED if lang in shares]
    assert len(others) >= 5, shares
    median = statistics.median(others)
    table = {lang: round(share, 2) for lang, share in sorted(shares.items())}
    assert abs(shares["zh"] - median) <= 0.20, f"{what}: zh {shares['zh']:.2f}, median {median:.2f}: {table}"


def test_chinese_demo_pages_pass_gopher_quality_like_their_translations(demo_fates):
    """The stage at fault: 1 of the 9 Chinese pages that reached it passed (11 %), against a
    median of 80 % for the spaced languages."""
    shares = {lang: demo_fates.gopher_kept[lang] / n for lang, n in demo_fates.gopher_in.items()}
    _close_to_the_others(shares, "gopher_quality pass rate")


def test_chinese_demo_pages_survive_the_rules_like_their_translations(demo_fates):
    """All the rule stages: before the fix 1 Chinese page of 11 survived (9 %), against a median
    of 54 %. The Chinese pages are not a random sample of the site: half the Chinese handbook is
    untranslated English (labelled en), so the pages labelled zh are mostly the code-heavy
    maintainers' guide, which drops more pages in every language."""
    shares = {lang: demo_fates.kept[lang] / n for lang, n in demo_fates.reached.items()}
    _close_to_the_others(shares, "survival")


def test_each_chinese_demo_page_gets_the_verdict_of_its_translations(demo_fates):
    """Page by page: a Chinese page should be kept or dropped as at least half of its versions in
    the spaced languages are. Before the fix 8 of 11 were: the maintainers' guide's build page and
    the handbook's packaging-system page failed the alphabetic-words rule that their translations
    pass. (The Chinese case-study page is kept where its translations repeat too many lines.)"""
    agree, disagree = [], []
    for page, verdicts in sorted(demo_fates.verdicts.items()):
        others = [verdicts[lang] for lang in SPACED if lang in verdicts]
        if "zh" not in verdicts or not others:
            continue
        same = sum(v == verdicts["zh"] for v in others)
        (agree if 2 * same >= len(others) else disagree).append(page)
    assert len(agree) + len(disagree) >= 8
    assert len(agree) / (len(agree) + len(disagree)) >= 0.8, (disagree, dict(demo_fates.zh_drops))
