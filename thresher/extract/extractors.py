"""The two extractors behind the stage, as plain functions of a decoded page.

trafilatura is precise and slow (≈ 50 ms a page with metadata on this project's benchmark mix);
resiliparse is ≈ 10× faster and good enough to tell a page's language and rough length, which is
what the cascade asks of it. Both are
imported lazily so that a worker only loads what its mode uses.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

logger = logging.getLogger(__name__)

METADATA_FIELDS = ("title", "author", "date", "hostname", "sitename")
WARM_UP_PAGE = (
    "<html><head><title>Warm-up</title><meta name='author' content='Nobody'></head><body><article>"
    + "<p>A paragraph long enough to go through every step of the extractors once.</p>" * 8
    + "</article></body></html>"
)


MetadataMode = Literal["fast", "full", "none"]


@dataclass(frozen=True)
class TrafilaturaOptions:
    """The knobs of one trafilatura call. Defaults are FineWeb's (favour precision, no comments),
    except ``deduplicate``: trafilatura's cross-page paragraph cache makes a page's text depend on
    the pages a worker saw before it, so runs would not be reproducible; the dedup stages do that job.

    ``metadata``: ``fast`` reads title, author and sitename from ``<meta>`` tags and JSON-LD and runs
    htmldate's quick date search (≈ 5 ms a page); ``full`` is trafilatura's own pass, which also
    scans the body for bylines, categories, tags and licences (≈ 25 ms a page, as much as the text
    extraction itself); ``none`` skips both.
    """

    favor_precision: bool = True
    include_comments: bool = False
    include_tables: bool = True
    deduplicate: bool = False
    metadata: MetadataMode = "fast"


@dataclass
class Extraction:
    text: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    rechecked: bool = False
    """trafilatura's fast path gave too little text, so the full path ran as well."""


def fast_metadata(tree, url: str | None) -> dict[str, Any]:
    """The cheap part of trafilatura's metadata pass, on an already parsed tree."""
    from htmldate import find_date
    from trafilatura.metadata import (
        META_URL,
        examine_meta,
        extract_meta_json,
        extract_sitename,
        extract_title,
    )

    meta = examine_meta(tree)
    # a lone word is a handle or a site name, as trafilatura judges
    if meta.author and " " not in meta.author:
        meta.author = None
    try:
        meta = extract_meta_json(tree, meta)
    except Exception as exc:  # trafilatura's JSON-LD reader has bugs on odd markup; metadata is optional
        logger.debug("JSON-LD metadata skipped on %s: %r", url, exc)
    meta.title = meta.title or extract_title(tree)
    meta.url = meta.url or url
    meta.date = find_date(tree, url=url, original_date=True, extensive_search=False, max_date=_today())
    meta.sitename = (meta.sitename or extract_sitename(tree) or "").lstrip("@") or None
    if meta.sitename is None and meta.url and (match := META_URL.match(meta.url)):
        meta.sitename = match[1]
    meta.clean_and_trim()
    return {k: getattr(meta, k, None) for k in METADATA_FIELDS}


def full_metadata(tree, url: str | None) -> dict[str, Any]:
    """trafilatura's own metadata pass, with the settings its ``bare_extraction`` uses."""
    from trafilatura.metadata import extract_metadata

    meta = extract_metadata(tree, url, extensive=False)
    return {k: getattr(meta, k, None) for k in METADATA_FIELDS}


@functools.cache
def _html_parser():
    """trafilatura's own HTML parser (same options), but with lxml's C-level element class lookup.

    ``lxml.html`` picks the Python class of each element (``HtmlElement``, ``FormElement``, ...)
    with a lookup written in Python, called every time lxml hands an element to Python code;
    trafilatura walks and queries its trees so often that it ran ~900,000 times on the 376 pages
    of our benchmark that reach trafilatura (≈ 7% of its CPU). lxml's namespace lookup does the
    same tag → class mapping in C. The tree, and so trafilatura's output, is unchanged
    (tests/test_extract_stage.py compares them page by page).
    """
    from lxml import etree
    from lxml.html import (
        HtmlComment,
        HtmlElement,
        HtmlElementClassLookup,
        HtmlEntity,
        HtmlProcessingInstruction,
    )
    from trafilatura.utils import HTML_PARSER

    lookup = etree.ElementNamespaceClassLookup(
        etree.ElementDefaultClassLookup(
            element=HtmlElement, comment=HtmlComment, pi=HtmlProcessingInstruction, entity=HtmlEntity
        )
    )
    by_tag = lookup.get_namespace(None)
    for tag, element_class in HtmlElementClassLookup()._element_classes.items():
        by_tag[tag] = element_class
    parser = HTML_PARSER.copy()
    parser.set_element_class_lookup(lookup)
    return parser


_PARSER_SWAP = threading.Lock()


def parse_html(html: str):
    """trafilatura's ``load_html`` (its repairs and fallbacks), parsing with :func:`_html_parser`.

    ``load_html`` reads the parser from its module, so it is swapped in for the call only: other
    trafilatura users in the process (a peer in a benchmark, a user's own code) keep the stock one,
    except that a thread of theirs parsing during the swap gets ours, which builds the same tree.
    """
    import trafilatura.utils as trafilatura_utils

    with _PARSER_SWAP:
        stock, trafilatura_utils.HTML_PARSER = trafilatura_utils.HTML_PARSER, _html_parser()
        try:
            return trafilatura_utils.load_html(html)
        finally:
            trafilatura_utils.HTML_PARSER = stock


def _today() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d")


class TrafilaturaExtractor:
    """One extractor, one duplicate-paragraph cache.

    trafilatura's ``deduplicate=True`` otherwise shares a module-global cache, which makes a page's
    output depend on everything extracted before it in the process (calling twice on the same page
    gives two answers). Owning the cache keeps the dependence within one stage instance.

    The page is parsed once; metadata is read from that tree, and trafilatura extracts the text
    from a copy of it (a copy costs half a parse).
    """

    def __init__(self, options: TrafilaturaOptions | None = None) -> None:
        import trafilatura  # noqa: F401  (fail early, in the constructor, if missing)
        from trafilatura.deduplication import LRUCache
        from trafilatura.settings import LRU_SIZE

        self.options = options or TrafilaturaOptions()
        self._cache = LRUCache(maxsize=LRU_SIZE) if self.options.deduplicate else False

    def __call__(self, html: str, url: str | None = None, recheck_min_chars: int | None = None) -> Extraction:
        """``recheck_min_chars`` set: run trafilatura's fast path (no comparison with its fallback
        extractors, ≈ 30% cheaper) and, when that gives fewer characters, the full path too.
        With the duplicate-paragraph cache on, the full path always runs alone: a second pass
        would find the first pass's paragraphs in the cache."""
        tree = parse_html(html)
        if tree is None:
            return Extraction(None)
        metadata = {"fast": fast_metadata, "full": full_metadata}.get(self.options.metadata)
        meta = {k: v for k, v in metadata(tree, url).items() if v} if metadata else {}
        if recheck_min_chars is not None and not self.options.deduplicate:
            text = self._text(tree, url, fast=True)
            if text is not None and len(text) >= recheck_min_chars:
                return Extraction(text, meta)
            return Extraction(self._text(tree, url, fast=False), meta, rechecked=True)
        return Extraction(self._text(tree, url, fast=False), meta)

    def _text(self, tree, url: str | None, fast: bool) -> str | None:
        import trafilatura

        o = self.options
        result = trafilatura.bare_extraction(
            tree,
            url=url,
            fast=fast,
            favor_precision=o.favor_precision,
            include_comments=o.include_comments,
            include_tables=o.include_tables,
            deduplicate=self._cache,
            with_metadata=False,
        )
        return result.text if result is not None else None


def resiliparse_text(html: str, main_content: bool = True) -> tuple[str, str | None]:
    """``(text, title)`` of a page with resiliparse's main-content heuristics.

    Comments are left out as in the trafilatura settings, so the two extractors aim at the same text.
    """
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    title = (tree.title or "").strip() or None
    return _plain_text(tree, main_content), title


def early_text(html: str, main_content_min_chars: int) -> str:
    """The text the cascade judges a page by: resiliparse's main content, or the whole visible
    text when the main-content heuristics find less than ``main_content_min_chars``."""
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    text = _plain_text(tree, True)
    if len(text.strip()) < main_content_min_chars:
        text = _plain_text(tree, False)
    return text


def _plain_text(tree, main_content: bool) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(tree, preserve_formatting=True, main_content=main_content, comments=False)


class Extractors:
    """What a sandbox (this process or a child) runs: tasks by name, so requests can cross a pipe."""

    def __init__(self, options: TrafilaturaOptions) -> None:
        self.options = options
        self._trafilatura: TrafilaturaExtractor | None = None
        self._resiliparse_ready = False

    def prepare(self, task: str) -> None:
        """Pay the one-off costs (imports, lazy module state) of ``task`` outside any time limit:
        the first page must not time out for what the process start-up costs."""
        if task == "trafilatura" and self._trafilatura is None:
            self._trafilatura = TrafilaturaExtractor(self.options)
            warm = TrafilaturaExtractor(TrafilaturaOptions(deduplicate=False, metadata=self.options.metadata))
            warm(WARM_UP_PAGE, None, len(WARM_UP_PAGE))  # both the fast and the full path
        elif task != "trafilatura" and not self._resiliparse_ready:
            early_text(WARM_UP_PAGE, 0)
            self._resiliparse_ready = True

    def run(self, task: str, args: tuple) -> Any:
        if task == "trafilatura":
            self.prepare(task)
            return self._trafilatura(*args)
        if task == "early_text":
            return early_text(*args)
        if task == "resiliparse":
            return resiliparse_text(*args)
        raise ValueError(f"unknown extraction task {task!r}")
