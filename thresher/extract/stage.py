"""HTML → text, cheap-first: most pages of a crawl are dropped later anyway, so find out early.

``cascade`` (the default) runs, per batch of pages:

1. prefilters on the raw payload — size cap, declared/sniffed non-HTML, binary bytes;
2. charset resolution (:mod:`thresher.extract.charset`: header → ``<meta>`` → detection);
3. resiliparse's main-content text (≈ 20× cheaper than trafilatura), and fastText language ID
   on it, for the whole batch at once;
4. an early drop of the pages that cannot survive the language filter (``early_language_not_kept``)
   or have almost no visible text (``early_too_short``) — without ever running trafilatura;
5. trafilatura, with FineWeb's settings, for the final text and metadata of the survivors: its
   fast path first, and its full path (with the fallback extractors) only when the fast one finds
   much less text than resiliparse did — the fallbacks matter on few pages, and resiliparse's text
   tells which.

The early drop is deliberately lenient (a page goes on unless the kept languages get almost no
probability on the cheap text): the final :class:`~thresher.filters.language.LanguageFilter`
still decides on trafilatura's text, so the cascade only saves work, it does not re-decide.
``trafilatura`` and ``resiliparse`` modes run that one extractor on every page.

When resiliparse's main-content heuristics find (almost) nothing, the page's whole visible text
is used for the early decision instead: those heuristics miss some article layouts that
trafilatura handles, and such a page must not be dropped as "too short".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import urlsplit

from thresher.dataconfig import option
from thresher.document import Document, Drop
from thresher.extract.charset import decode_html
from thresher.extract.extractors import Extraction, TrafilaturaExtractor, TrafilaturaOptions
from thresher.extract.guard import ExtractionTimeout, ExtractorError, Sandbox, WorkerCrashed
from thresher.extract.sniff import looks_binary, non_html_reason
from thresher.stage import Stage

logger = logging.getLogger(__name__)


@dataclass
class ExtractConfig:
    mode: Literal["cascade", "trafilatura", "resiliparse"] = "cascade"
    """``cascade``: resiliparse + language ID first, trafilatura only on pages that can survive."""
    languages: list[str] = option(factory=list, language=True)
    """Target languages (lid.176 codes) for the cascade's early drop; empty: no early language drop.
    Use the same list as the ``language`` stage."""
    early_language_min_score: float = option(0.1, ge=0, le=1)
    """A page goes on to trafilatura only if some target language gets at least this probability
    (among the top 5) on resiliparse's text. Far below the final filter's threshold on purpose: on
    bench/extract.py's mix the lowest early English score of a page the final filter (0.65) keeps
    is 0.197, and 0.1 lost none of 549 other pages (Common Crawl samples, trafilatura's corpus)."""
    early_min_chars: int = option(20, ge=0)
    """Pages with fewer visible characters are dropped before trafilatura (``early_too_short``)."""
    main_content_min_chars: int = option(200, ge=0)
    """Below this many main-content characters, the early decision uses the page's whole text."""
    fast_first: bool = True
    """Cascade only: run trafilatura's fast path first (no comparison with its fallback extractors,
    ≈ 30% cheaper), and the full path only when the fast one finds less than ``recheck_ratio`` of
    the characters resiliparse found. Off, or with ``deduplicate``, the full path runs alone."""
    recheck_ratio: float = option(0.5, ge=0)
    favor_precision: bool = True
    include_comments: bool = False
    include_tables: bool = True
    deduplicate: bool = False
    """trafilatura's cross-page paragraph cache (FineWeb: on). Off by default: with it, a page's text
    depends on which pages the same worker extracted before, so runs are not reproducible."""
    metadata: Literal["fast", "full", "none"] = "fast"
    """``fast``: title, author, sitename from ``<meta>``/JSON-LD and htmldate's quick date search;
    ``full``: trafilatura's complete pass (body bylines, extensive dates), about as costly as the
    text extraction itself; ``none``: only the hostname."""
    timeout_s: float = option(10.0, gt=0)
    """Per-page limit on each extractor call; a page that takes longer is dropped as error ``timeout``."""
    timeout_mode: Literal["subprocess", "auto", "signal", "off"] = "subprocess"
    """How the limit is enforced (see :mod:`thresher.extract.guard`). ``subprocess`` is the only
    one that stops a parse stuck in C code; ``signal`` is cheaper, main thread only."""
    max_html_bytes: int = option(5 * 1024 * 1024, ge=1)
    """Pages larger than this are not parsed (error ``too_large``)."""
    min_text_chars: int = option(1, ge=0)
    """Documents with less extracted text are dropped as ``no_text``."""

    def trafilatura_options(self) -> TrafilaturaOptions:
        return TrafilaturaOptions(
            favor_precision=self.favor_precision,
            include_comments=self.include_comments,
            include_tables=self.include_tables,
            deduplicate=self.deduplicate,
            metadata=self.metadata,
        )


def extract_text(html: bytes | str, url: str | None = None) -> str | None:
    """Main text of one page with the default trafilatura settings, for checking a page by hand.

    Binary payloads give None. Each call starts with an empty duplicate-paragraph cache, so the
    answer for a page does not depend on the pages looked at before it.
    """
    if isinstance(html, bytes):
        if looks_binary(html):
            return None
        html = decode_html(html)[0]
    options = replace(ExtractConfig().trafilatura_options(), metadata="none")  # the text is all it returns
    text = TrafilaturaExtractor(options)(html, url).text
    return text or None


@dataclass
class _Page:
    """A page on its way through one batch."""

    doc: Document
    html: str = ""
    early_chars: int | None = None
    """Characters of resiliparse's text, when the cascade computed it."""
    result: Document | Drop | None = None


class ExtractStage(Stage):
    """Reasons: ``non_html``, ``early_language_not_kept``, ``early_too_short``, ``no_text``;
    errors: ``too_large``, ``binary``, ``timeout``, ``parse_error``, ``worker_crash``.

    ``stats.extra`` counts ``trafilatura_pages``, ``trafilatura_rechecks`` (fast path, then full),
    ``resiliparse_pages`` and ``worker_restarts``,
    so a run shows how much work the cascade saved.
    """

    name = "extract"
    Config = ExtractConfig
    batch_size = 256

    def __init__(self, config: ExtractConfig | None = None) -> None:
        super().__init__(config)
        cfg: ExtractConfig = self.config
        self._sandbox = Sandbox(cfg.trafilatura_options(), cfg.timeout_s, cfg.timeout_mode)

    def preflight(self) -> None:
        """The cascade's early language drop needs lid.176, as the language stage does: a missing
        file fails the run here (``ModelNotFound``) instead of as an error on every page."""
        cfg: ExtractConfig = self.config
        if cfg.mode == "cascade" and cfg.languages:
            from thresher.filters.language import require_model

            require_model()

    def process(self, doc: Document) -> Document | Drop:
        return self.process_batch([doc])[0]

    def process_batch(self, docs: list[Document]) -> list[Document | Drop]:
        cfg: ExtractConfig = self.config
        pages = [_Page(doc) for doc in docs]
        live = [p for p in pages if not self._prefilter(p)]
        if cfg.mode == "resiliparse":
            for page in live:
                page.result = self._resiliparse_final(page)
        else:
            if cfg.mode == "cascade":
                live = self._early_drop(live)
            for page in live:
                page.result = self._trafilatura_final(page)
        return [p.result for p in pages]

    # ----------------------------------------------------------------- steps

    def _prefilter(self, page: _Page) -> bool:
        """Decide what needs no parser. True when ``page.result`` is already set."""
        cfg: ExtractConfig = self.config
        doc = page.doc
        payload = doc.html
        if payload is None:  # already text (e.g. read from Parquet or WET): nothing to extract
            page.result = doc if doc.text else Drop("no_text")
            return True
        if len(payload) > cfg.max_html_bytes:
            page.result = Drop("too_large", kind="error", value=len(payload))
            return True
        why = non_html_reason(payload, doc.content_type, doc.url)
        if why is not None:
            page.result = Drop("non_html", detail=why)
            return True
        if looks_binary(payload):
            page.result = Drop("binary", kind="error", detail=doc.content_type)
            return True
        page.html, encoding, how = decode_html(payload, doc.content_type)
        doc.metadata["encoding"] = encoding
        doc.metadata["encoding_source"] = how
        return False

    def _early_drop(self, pages: list[_Page]) -> list[_Page]:
        """Resiliparse + language ID on the batch; returns the pages that go on to trafilatura."""
        cfg: ExtractConfig = self.config
        texts: list[str] = []
        going: list[_Page] = []
        for page in pages:
            self.stats.extra["resiliparse_pages"] += 1
            text = self._call(page, "early_text", page.html, cfg.main_content_min_chars)
            if isinstance(text, Drop):
                if text.reason == "timeout":
                    page.result = text
                    continue
                text = None  # resiliparse failed on the markup: let trafilatura have its go
            if text is not None:
                page.early_chars = len(text.strip())
                if page.early_chars < cfg.early_min_chars:
                    page.result = Drop("early_too_short", value=page.early_chars)
                    continue
            going.append(page)
            texts.append(text or "")
        if not cfg.languages:
            return going
        from thresher.filters.language import identify_batch

        targets = set(cfg.languages)
        survivors = []
        for page, text, top in zip(going, texts, identify_batch(texts, k=5), strict=True):
            if text and top:
                score = max((p for lang, p in top if lang in targets), default=0.0)
                if score < cfg.early_language_min_score:
                    page.result = Drop("early_language_not_kept", value=score, detail=top[0][0])
                    continue
            survivors.append(page)
        return survivors

    def _call(self, page: _Page, task: str, *args):
        """One sandboxed extractor call; failures come back as the Drop that counts them."""
        cfg: ExtractConfig = self.config
        restarts = self._sandbox.restarts
        try:
            return self._sandbox.run(task, *args)
        except ExtractionTimeout:
            logger.info(
                "extract: %s timed out after %ss on %s (%s)", task, cfg.timeout_s, page.doc.id, page.doc.url
            )
            return Drop("timeout", kind="error", value=cfg.timeout_s, detail=task)
        except WorkerCrashed as exc:
            return Drop("worker_crash", kind="error", detail=f"{task}: {exc}"[:300])
        except ExtractorError as exc:
            return Drop("parse_error", kind="error", detail=f"{task}: {exc}"[:300])
        except Exception as exc:  # lxml and trafilatura raise a zoo of exceptions on broken markup
            return Drop("parse_error", kind="error", detail=f"{task}: {type(exc).__name__}: {exc}"[:300])
        finally:
            self.stats.extra["worker_restarts"] += self._sandbox.restarts - restarts

    def _trafilatura_final(self, page: _Page) -> Document | Drop:
        cfg: ExtractConfig = self.config
        self.stats.extra["trafilatura_pages"] += 1
        recheck_min_chars = None
        if cfg.mode == "cascade" and cfg.fast_first and page.early_chars is not None:
            recheck_min_chars = int(cfg.recheck_ratio * page.early_chars)
        result = self._call(page, "trafilatura", page.html, page.doc.url, recheck_min_chars)
        if isinstance(result, Drop):
            return result
        self.stats.extra["trafilatura_rechecks"] += result.rechecked
        return self._finish(page, result)

    def _resiliparse_final(self, page: _Page) -> Document | Drop:
        self.stats.extra["resiliparse_pages"] += 1
        result = self._call(page, "resiliparse", page.html, True)
        if isinstance(result, Drop):
            return result
        text, title = result
        return self._finish(page, Extraction(text.strip(), {"title": title} if title else {}))

    def _finish(self, page: _Page, result: Extraction) -> Document | Drop:
        cfg: ExtractConfig = self.config
        text = result.text or ""
        if len(text) < max(1, cfg.min_text_chars):
            return Drop("no_text", value=len(text))
        doc = page.doc
        doc.text = text
        doc.html = None
        doc.metadata.update(result.metadata)
        if doc.url and "hostname" not in doc.metadata:
            try:
                hostname = urlsplit(doc.url).hostname
            except ValueError:
                hostname = None
            if hostname:
                doc.metadata["hostname"] = hostname
        return doc

    def close(self) -> None:
        self._sandbox.close()
