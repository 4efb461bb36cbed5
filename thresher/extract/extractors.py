"""The two extractors behind the stage, as plain functions of a decoded page.

trafilatura is precise and slow (≈ 20 ms a page); resiliparse is ≈ 20× faster and good enough
to tell a page's language and rough length, which is what the cascade asks of it. Both are
imported lazily so that a worker only loads what its mode uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

METADATA_FIELDS = ("title", "author", "date", "hostname", "sitename")
WARM_UP_PAGE = (
    "<html><head><title>Warm-up</title><meta name='author' content='Nobody'></head><body><article>"
    + "<p>A paragraph long enough to go through every step of the extractors once.</p>" * 8
    + "</article></body></html>"
)


@dataclass(frozen=True)
class TrafilaturaOptions:
    """The knobs of one trafilatura call. Defaults are FineWeb's: favour precision, no comments,
    drop paragraphs this worker has already seen repeated across pages."""

    favor_precision: bool = True
    include_comments: bool = False
    include_tables: bool = True
    deduplicate: bool = True
    with_metadata: bool = True


@dataclass
class Extraction:
    text: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


class TrafilaturaExtractor:
    """One extractor, one duplicate-paragraph cache.

    trafilatura's ``deduplicate=True`` otherwise shares a module-global cache, which makes a page's
    output depend on everything extracted before it in the process (calling twice on the same page
    gives two answers). Owning the cache keeps the dependence within one stage instance.
    """

    def __init__(self, options: TrafilaturaOptions | None = None) -> None:
        import trafilatura  # noqa: F401  (fail early, in the constructor, if missing)
        from trafilatura.deduplication import LRUCache
        from trafilatura.settings import LRU_SIZE

        self.options = options or TrafilaturaOptions()
        self._cache = LRUCache(maxsize=LRU_SIZE) if self.options.deduplicate else False

    def __call__(self, html: str, url: str | None = None) -> Extraction:
        import trafilatura

        o = self.options
        result = trafilatura.bare_extraction(
            html,
            url=url,
            favor_precision=o.favor_precision,
            include_comments=o.include_comments,
            include_tables=o.include_tables,
            deduplicate=self._cache,
            with_metadata=o.with_metadata,
        )
        if result is None:
            return Extraction(None)
        meta = {k: getattr(result, k, None) for k in METADATA_FIELDS}
        return Extraction(result.text, {k: v for k, v in meta.items() if v})


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

    def prepare(self, task: str) -> None:
        """Pay the one-off costs (imports, lazy module state) of ``task`` outside any time limit:
        the first page must not time out for what the process start-up costs."""
        if task == "trafilatura" and self._trafilatura is None:
            self._trafilatura = TrafilaturaExtractor(self.options)
            TrafilaturaExtractor(TrafilaturaOptions(deduplicate=False))(WARM_UP_PAGE)
        elif task != "trafilatura":
            early_text(WARM_UP_PAGE, 0)

    def run(self, task: str, args: tuple) -> Any:
        if task == "trafilatura":
            self.prepare(task)
            return self._trafilatura(*args)
        if task == "early_text":
            return early_text(*args)
        if task == "resiliparse":
            return resiliparse_text(*args)
        raise ValueError(f"unknown extraction task {task!r}")
