"""The rule stages on real text: drop reasons and values, per-language thresholds, CJK words,
the URL lists' formats, PII, and the registry/config plumbing."""

from __future__ import annotations

import gzip
import tarfile

import pytest

from tests.conftest import shared_path
from thresher.config import ConfigError, from_dict
from thresher.document import Document, Drop
from thresher.filters.c4 import C4Config, C4QualityFilter
from thresher.filters.fineweb import FineWebQualityFilter
from thresher.filters.gopher import GopherQualityConfig, GopherQualityFilter, GopherRepetitionFilter
from thresher.filters.pii import PIIFormatter
from thresher.filters.text import count_sentences, split_words
from thresher.filters.url import URLFilter, URLFilterConfig, read_list


def _lingua(cls: str, lang: str, n: int) -> list[str]:
    with gzip.open(shared_path("lid-lingua-testdata", cls, f"{lang}.txt.gz"), "rt", encoding="utf-8") as f:
        return f.read().splitlines()[:n]


def _doc(text: str, lang: str | None = None, url: str | None = None) -> Document:
    return Document(id="d", text=text, language=lang, url=url)


def test_treebank_style_words():
    words = split_words(
        "He said \"don't go\" to Mr. Smith... It's 10:30, isn't it? Costs $1,000.50 (approx.) -- fine!"
    )
    assert words == [
        "He",
        "said",
        '"',
        "do",
        "n't",
        "go",
        '"',
        "to",
        "Mr.",
        "Smith",
        "...",
        "It",
        "'s",
        "10:30",
        ",",
        "is",
        "n't",
        "it",
        "?",
        "Costs",
        "$",
        "1,000.50",
        "(",
        "approx",
        ".",
        ")",
        "--",
        "fine",
        "!",
    ]
    assert count_sentences("Hello world. This is Mr. Smith. Is it? Yes... ok.") == 4


def test_real_english_prose_passes_every_rule():
    text = "\n".join(_lingua("sentences", "en", 60))
    for stage in (GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(), FineWebQualityFilter()):
        doc = _doc(text, "en")
        assert not isinstance(stage.process(doc), Drop), stage.name
    assert doc.scores["fineweb_line_punct_ratio"] > 0.9


def test_drops_carry_rule_and_value():
    short = GopherQualityFilter().process(_doc(" ".join(_lingua("sentences", "en", 1))))
    assert isinstance(short, Drop) and short.reason == "gopher_short_doc" and 0 < short.value < 50
    line = _lingua("sentences", "en", 1)[0]
    rep = GopherRepetitionFilter().process(_doc("\n".join([line] * 10)))
    assert rep.reason == "gopher_dup_para_frac" or rep.reason.startswith("gopher_dup_line")
    lorem = C4QualityFilter().process(
        _doc("\n".join(_lingua("sentences", "en", 10) + ["Lorem ipsum dolor sit amet."]))
    )
    assert lorem.reason == "c4_lorem_ipsum"
    menu = FineWebQualityFilter().process(_doc("\n".join(w for w in _lingua("single-words", "en", 100))))
    assert menu.reason in {"fineweb_line_punct_ratio", "fineweb_short_line_ratio"}


def test_c4_removes_lines_and_counts_them():
    lines = _lingua("sentences", "en", 8)
    stage = C4QualityFilter()
    doc = _doc("\n".join(lines + ["Please enable JavaScript to view the comments.", "Menu"]))
    assert stage.process(doc) is doc
    assert doc.text.splitlines() == [line.strip() for line in lines]
    assert stage.stats.extra["c4_line_javascript"] == 1 and stage.stats.extra["c4_line_too_few_words"] == 1
    strict = C4QualityFilter(C4Config(require_terminal_punct=True))
    assert isinstance(strict.process(_doc("\n".join(w.rstrip(".!?") for w in lines))), Drop)


def test_chinese_is_segmented_not_dropped_wholesale():
    pytest.importorskip("jieba")
    sentences = _lingua("sentences", "zh", 200)
    words = split_words(sentences[0], "zh")
    assert 1 < len(words) < len(sentences[0])  # real segmentation: neither one blob nor characters
    docs = ["\n".join(sentences[i : i + 20]) for i in range(0, 200, 20)]
    for stage in (GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(), FineWebQualityFilter()):
        kept = sum(not isinstance(stage.process(_doc(t, "zh")), Drop) for t in docs)
        assert kept >= 8, stage.name
    # The same pages judged with English settings would all fail the stop-word rule.
    assert all(isinstance(GopherQualityFilter().process(_doc(t, None)), Drop) for t in docs[:3])


def test_unsegmentable_language_skips_word_rules_and_counts():
    stage = GopherQualityFilter()
    text = "\n".join(_lingua("sentences", "ja", 30))
    doc = _doc(text, "ja")
    assert stage.process(doc) is doc
    assert stage.stats.extra["no_segmenter:ja"] == 1


def test_per_language_overrides_and_validation():
    cfg = from_dict(
        GopherQualityConfig, {"languages": {"de": {"min_doc_words": 5, "min_stop_words": 0}}}, "q"
    )
    stage = GopherQualityFilter(cfg)
    text = " ".join(_lingua("sentences", "de", 2))
    assert stage.process(_doc(text, "de")).text == text
    assert isinstance(stage.process(_doc(text, "en")), Drop)
    with pytest.raises(ConfigError, match="languages.de"):
        from_dict(GopherQualityConfig, {"languages": {"de": {"min_doc_wrds": 5}}}, "q")
    with pytest.raises(ConfigError, match="languages.de"):
        from_dict(GopherQualityConfig, {"languages": {"de": {"min_doc_words": "many"}}}, "q")


def test_url_lists_one_per_line_and_ut1_folder(tmp_path):
    (tmp_path / "plain.txt").write_text("# comment\nbad-site.com\n\n")
    ut1 = tmp_path / "ut1"
    for cat, dom in (("adult", "adult-site.net"), ("gambling", "casino-site.net")):
        (ut1 / cat).mkdir(parents=True)
        (ut1 / cat / "domains").write_text(dom + "\n")
        (ut1 / cat / "urls").write_text(f"{dom}/page\n")
    with tarfile.open(tmp_path / "ut1.tar.gz", "w:gz") as tar:
        tar.add(ut1, arcname="blacklists")
    assert read_list(tmp_path / "plain.txt") == {"bad-site.com"}
    assert read_list(ut1, "domains", ["adult"]) == {"adult-site.net"}
    assert read_list(tmp_path / "ut1.tar.gz", "urls") == {"adult-site.net/page", "casino-site.net/page"}
    cfg = URLFilterConfig(
        use_fineweb_lists=False,
        domain_lists=[str(tmp_path / "plain.txt"), str(ut1)],
        banned_words=["casino"],
        soft_banned_words=["cheap", "pills"],
    )
    stage = URLFilter(cfg)
    assert stage.process(_doc("x", url="https://www.bad-site.com/a")).reason == "url_blocked_domain"
    assert stage.process(_doc("x", url="http://casino-site.net/")).reason == "url_blocked_domain"
    assert stage.process(_doc("x", url="http://news-site.org/casino-night")).reason == "url_banned_word"
    assert stage.process(_doc("x", url="http://shop-site.org/cheap-pills")).reason == "url_soft_banned_words"
    assert not isinstance(stage.process(_doc("x", url="https://en.wikipedia.org/wiki/Casino_Royale")), Drop)
    doc = _doc("x")
    assert stage.process(doc) is doc and stage.stats.extra["url_missing"] == 1


def test_pii_replaces_public_addresses_only():
    text = "Write to jane.doe@mail.example.com or call 8.8.8.8; the router is 192.168.1.1 and 127.0.0.1."
    stage = PIIFormatter()
    doc = _doc(text)
    stage.process(doc)
    assert "jane.doe" not in doc.text and "8.8.8.8" not in doc.text
    assert "192.168.1.1" in doc.text and "127.0.0.1" in doc.text
    assert doc.scores == {"pii_emails": 1, "pii_ips": 1}
    again = _doc(text)
    PIIFormatter().process(again)
    assert again.text == doc.text  # the stand-in depends on the value, not on document order


def test_stages_are_registered_under_their_names():
    from thresher.registry import STAGES, stage_class

    for name in STAGES:
        assert stage_class(name).name == name
