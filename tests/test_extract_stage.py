"""The extraction stage: modes, early drops, metadata, configuration, the public helper, and the
time limit inside a real Ray actor."""

from __future__ import annotations

import pytest

from thresher.config import ConfigError, parse_config
from thresher.document import Document
from thresher.evaluation.extraction import load_aeb, load_trafilatura_eval
from thresher.extract import ExtractConfig, ExtractStage, extract_text


@pytest.fixture(scope="module")
def aeb(shared_data):
    return load_aeb(shared_data("extraction-scrapinghub-aeb"))


@pytest.fixture(scope="module")
def teval(shared_data):
    return load_trafilatura_eval(shared_data("extraction-trafilatura-eval"))


def docs_of(pages) -> list[Document]:
    return [Document(id=p.id, url=p.url, html=p.html, content_type="text/html") for p in pages]


def run(docs, **cfg) -> ExtractStage:
    cfg.setdefault("timeout_mode", "signal")
    stage = ExtractStage(ExtractConfig(**cfg))
    stage.apply(docs)
    stage.close()
    stage.stats.check()
    return stage


def test_cascade_drops_other_languages_without_running_trafilatura(aeb, teval):
    german = [p for p in teval if p.url and ".de/" in p.url][:12]
    english = aeb[:8]
    docs = docs_of(german + english)
    stage = run(docs, mode="cascade", languages=["en"])
    assert stage.stats.extra["trafilatura_pages"] < len(german)
    assert stage.stats.dropped["early_language_not_kept"] >= len(german) - 2
    assert all(d.drop is None for d in docs[len(german) :])
    dropped = [d for d in docs if d.drop is not None and d.drop.reason == "early_language_not_kept"]
    assert all(d.drop.detail == "de" for d in dropped)


def test_cascade_keeps_the_trafilatura_text(aeb):
    pages = aeb[:6]
    alone, cascade = docs_of(pages), docs_of(pages)
    run(alone, mode="trafilatura")
    run(cascade, mode="cascade", languages=["en"])
    assert [d.text for d in cascade] == [d.text for d in alone]


def test_our_parser_gives_trafilatura_the_same_trees_without_the_python_class_lookup(aeb, teval, monkeypatch):
    """The C-level class lookup must change nothing but speed: same tree, same element classes,
    same text and metadata; and it must really replace lxml.html's Python lookup."""
    import lxml.html
    import trafilatura.utils
    from lxml import etree

    from thresher.extract.charset import decode_html
    from thresher.extract.extractors import (
        TrafilaturaExtractor,
        TrafilaturaOptions,
        fast_metadata,
        parse_html,
    )

    calls = []
    python_lookup = lxml.html.HtmlElementClassLookup.lookup
    monkeypatch.setattr(
        lxml.html.HtmlElementClassLookup, "lookup", lambda *a: calls.append(1) or python_lookup(*a)
    )
    stock_parser = trafilatura.utils.HTML_PARSER
    extractor = TrafilaturaExtractor(TrafilaturaOptions(metadata="none"))
    pages = aeb[::30] + teval[::60]
    for page in pages:
        html = decode_html(page.html, "text/html")[0]
        stock, ours = trafilatura.utils.load_html(html), parse_html(html)
        stock_classes = [type(e) for e in stock.iter()]
        calls.clear()
        assert [type(e) for e in ours.iter()] == stock_classes
        assert not calls
        assert etree.tostring(ours) == etree.tostring(stock)
        # one tree per parser for all three, as TrafilaturaExtractor uses it (metadata first)
        assert fast_metadata(ours, page.url) == fast_metadata(stock, page.url)
        for fast in (True, False):
            assert extractor._text(ours, page.url, fast) == extractor._text(stock, page.url, fast)
    assert trafilatura.utils.HTML_PARSER is stock_parser
    form = parse_html("<html><body><form><input name=q value=x></form><p>text</p></body></html>")
    assert isinstance(form.find(".//form"), lxml.html.FormElement)
    assert form.find(".//input").value == "x"


def test_too_short_page_is_dropped_early(teval):
    page = teval[0]
    tiny = Document(
        id="tiny",
        url=page.url,
        html=b"<html><head><title>Moved</title></head><body><a href='/'>here</a></body></html>",
    )
    stage = run([tiny], mode="cascade")
    assert stage.stats.dropped == {"early_too_short": 1}
    assert stage.stats.extra.get("trafilatura_pages", 0) == 0


def test_fast_path_misses_are_rechecked_with_the_full_path(aeb):
    """Two Zyte pages (Korean, Portuguese) where trafilatura's fast path finds 121 and 0 characters
    of an article resiliparse (and the full path) find thousands of: the cascade notices, re-runs."""
    pages = [aeb[11], aeb[175]]
    alone, cascade, fast_only = docs_of(pages), docs_of(pages), docs_of(pages)
    run(alone, mode="trafilatura")
    stage = run(cascade, mode="cascade", languages=["ko", "pt"])
    assert stage.stats.extra["trafilatura_rechecks"] == 2
    assert [d.text for d in cascade] == [d.text for d in alone]
    assert all(len(d.text) > 600 for d in cascade)
    unchecked = run(fast_only, mode="cascade", languages=["ko", "pt"], recheck_ratio=0.0)
    assert unchecked.stats.extra.get("trafilatura_rechecks", 0) == 1  # the page with no text at all
    assert len(fast_only[0].text) < 200


@pytest.mark.parametrize("metadata,author_floor", [("fast", 0.25), ("full", 0.4)])
def test_metadata_title_author_date_hostname(teval, metadata, author_floor):
    """Against the corpus's gold metadata (31 pages). On all 726 pages with gold metadata both
    modes find the same titles (0.831) and dates (0.825); authors: fast 0.44, full 0.64 (bylines in
    the body). On these 31: first author fast 8/23, full 11/23."""

    def overlaps(gold: str, found: str | None) -> bool:
        gold, found = gold.strip().casefold(), (found or "").strip().casefold()
        return bool(found) and (gold in found or found in gold)

    pages = [p for p in teval[::25] if {"title", "date"} <= p.gold_metadata.keys()]
    docs = docs_of(pages)
    run(docs, mode="trafilatura", metadata=metadata)
    kept = [(p, d) for p, d in zip(pages, docs, strict=True) if d.drop is None]
    titles = sum(overlaps(p.gold_metadata["title"], d.metadata.get("title")) for p, d in kept)
    dates = sum(p.gold_metadata["date"][:10] == d.metadata.get("date", "")[:10] for p, d in kept)
    authors = [(p, d) for p, d in kept if "author" in p.gold_metadata]
    author_hits = sum(
        overlaps(p.gold_metadata["author"].split(";")[0], d.metadata.get("author")) for p, d in authors
    )
    assert len(kept) >= 0.9 * len(pages)
    assert titles >= 0.6 * len(kept)
    assert dates >= 0.75 * len(kept)
    assert author_hits >= author_floor * len(authors)
    assert all(d.metadata.get("hostname") for p, d in kept if p.url)


def test_resiliparse_mode_keeps_title(aeb):
    docs = docs_of(aeb[:3])
    stage = run(docs, mode="resiliparse")
    assert stage.stats.kept == 3
    assert all(d.metadata.get("title") and d.metadata.get("hostname") for d in docs)
    assert stage.stats.extra.get("trafilatura_pages", 0) == 0


def test_text_documents_pass_through():
    doc = Document(id="t", text="already text")
    empty = Document(id="e")
    run([doc, empty])
    assert doc.drop is None and doc.text == "already text"
    assert empty.drop.reason == "no_text"


def test_extract_text_is_repeatable(aeb):
    page = aeb[0]
    first = extract_text(page.html, page.url)
    assert first and first == extract_text(page.html, page.url) == extract_text(page.html.decode("utf-8"))
    assert extract_text(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR") is None


def test_config_keys_in_a_pipeline_yaml():
    cfg = parse_config(
        {
            "stages": [
                {
                    "extract": {
                        "mode": "cascade",
                        "languages": ["en"],
                        "early_language_min_score": 0.05,
                        "timeout_s": 5,
                    }
                },
                {"language": {"languages": ["en"]}},
            ]
        }
    )
    extract_cfg = cfg.stages[0].config
    assert (
        extract_cfg.mode == "cascade"
        and extract_cfg.languages == ["en"]
        and extract_cfg.timeout_mode == "subprocess"
    )
    with pytest.raises(ConfigError, match="mode"):
        parse_config({"stages": [{"extract": {"mode": "fast"}}]})
    with pytest.raises(ConfigError, match="early_language_min_score"):
        parse_config({"stages": [{"extract": {"early_language_min_score": 2}}]})
    assert parse_config({"stages": [{"extract": {}}]}).stages[0].config.mode == "cascade"


@pytest.mark.slow
def test_time_limit_holds_in_a_threaded_ray_actor(ray_session, teval):
    """Threaded actors run methods off the main thread, where SIGALRM is impossible: the default
    subprocess limit still ends a parse stuck in resiliparse's C code."""
    import re

    page = next(p for p in teval if p.url and ".de/" in p.url and p.must_contain)
    text = page.html.decode("utf-8")
    start = text.index(">", text.index("<body")) + 1
    end = text.rindex("</body>")
    paragraphs = "".join(re.findall(r"<p[ >].*?</p>", text[start:end], flags=re.S))
    stuck = text[:start] + paragraphs + "<div>" * 12000 + "<p>x</p>" + "</div>" * 12000 + text[end:]

    @ray_session.remote(max_concurrency=2)
    class Extractor:
        def run(self, payloads):
            import threading

            docs = [Document(id=str(i), url=page.url, html=h) for i, h in enumerate(payloads)]
            stage = ExtractStage(ExtractConfig(timeout_s=1.0))
            stage.apply(docs)
            stage.close()
            return threading.current_thread() is threading.main_thread(), stage.stats.to_dict()

    actor = Extractor.remote()
    on_main, stats = ray_session.get(actor.run.remote([stuck.encode(), page.html]), timeout=120)
    assert not on_main
    assert stats["errors"] == {"timeout": 1} and stats["kept"] == 1
