"""URL filter: domain and URL blocklists, banned words in the URL, as FineWeb ran it.

A document is dropped when its registered domain (``example.co.uk``) or its full host name is on
a domain blocklist, its exact URL is on a URL blocklist, one of its URL's words is a banned word,
at least ``soft_word_threshold`` of its words are soft-banned, or its URL with punctuation removed
contains a banned phrase ("banned subword").

Blocklists are read from files: one entry per line (``#`` comments), a UT1-style folder (one
sub-folder per category, each with ``domains`` and ``urls`` files), or a ``.tar.gz`` of either.
FineWeb's own lists are not shipped with Thresher; ``thresher filters fetch-lists`` copies them
out of the datatrove wheel on PyPI (see :mod:`thresher.filters.lists`).
"""

from __future__ import annotations

import functools
import io
import logging
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from thresher.dataconfig import option
from thresher.document import Document, Drop
from thresher.stage import Stage

logger = logging.getLogger(__name__)

_NON_ALNUM = re.compile(r"[^a-zA-Z0-9]+")


def squash(text: str) -> str:
    """Lower-case letters and digits only: how words and phrases are compared."""
    return _NON_ALNUM.sub("", text).lower()


def _entries(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


def _read_tar(path: Path, member_name: str, categories: set[str] | None) -> Iterator[str]:
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or parts[-1] != member_name:
                continue
            if categories is not None and len(parts) > 1 and parts[-2] not in categories:
                continue
            with tar.extractfile(member) as f:
                yield from _entries(io.TextIOWrapper(f, encoding="utf-8", errors="replace"))


def read_list(path: str | Path, kind: str = "domains", categories: list[str] | None = None) -> set[str]:
    """Entries of a blocklist. ``kind`` names the file to take from a UT1-style folder or archive
    (``domains`` or ``urls``); ``categories`` restricts a UT1 folder to some categories."""
    path = Path(path)
    wanted = set(categories) if categories is not None else None
    if path.is_dir():
        files = [path / kind] if (path / kind).is_file() else sorted(path.glob(f"*/{kind}"))
        if wanted is not None:
            files = [f for f in files if f.parent.name in wanted or f.parent == path]
        out: set[str] = set()
        for f in files:
            with open(f, encoding="utf-8", errors="replace") as fh:
                out.update(_entries(fh))
        return out
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return set(_read_tar(path, kind, wanted))
    with open(path, encoding="utf-8", errors="replace") as fh:
        return set(_entries(fh))


@dataclass
class URLFilterConfig:
    use_fineweb_lists: bool = True
    """Add FineWeb's lists (blocklist, banned, soft-banned words and subwords), fetched once with
    ``thresher filters fetch-lists``."""
    domain_lists: list[str] = field(default_factory=list)
    """Files, UT1-style folders or archives of blocked domains."""
    url_lists: list[str] = field(default_factory=list)
    """Files, UT1-style folders or archives of blocked URLs."""
    categories: list[str] | None = None
    """UT1 categories to use from ``domain_lists``/``url_lists`` folders (None: all)."""
    block_domains: list[str] = field(default_factory=list)
    block_urls: list[str] = field(default_factory=list)
    banned_words: list[str] = field(default_factory=list)
    """A URL holding one of these as a whole word is dropped (``url_banned_word``)."""
    soft_banned_words: list[str] = field(default_factory=list)
    soft_word_threshold: int = option(2, ge=1)
    """This many distinct soft-banned words in a URL drop it (``url_soft_banned_words``)."""
    banned_subwords: list[str] = field(default_factory=list)
    """Phrases matched anywhere in the squashed URL (``url_banned_subword``)."""
    drop_missing_url: bool = False
    """Documents without a URL: dropped (``url_missing``) when true, else kept and counted."""

    def validate(self, where: str) -> None:
        for key in ("domain_lists", "url_lists"):
            for p in getattr(self, key):
                if not Path(p).exists():
                    raise ValueError(f"{where}.{key}: {p} does not exist")


@functools.lru_cache(maxsize=1)
def _domain_parser():
    import tldextract

    # The public-suffix snapshot bundled with tldextract: no network access at run time.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class URLFilter(Stage):
    """Reasons: ``url_blocked_domain``, ``url_blocked_subdomain``, ``url_blocked_url``,
    ``url_banned_word``, ``url_soft_banned_words``, ``url_banned_subword``, ``url_missing``."""

    name = "url_filter"
    Config = URLFilterConfig

    def __init__(self, config: URLFilterConfig | None = None) -> None:
        super().__init__(config)
        self._loaded = False

    def _load(self) -> None:
        """Blocklists can hold millions of domains: read them when the first batch arrives, in
        the worker, not when the pipeline is built."""
        cfg: URLFilterConfig = self.config
        domains, urls = set(cfg.block_domains), set(cfg.block_urls)
        banned, soft, sub = set(cfg.banned_words), set(cfg.soft_banned_words), set(cfg.banned_subwords)
        if cfg.use_fineweb_lists:
            from thresher.filters.lists import fineweb_url_lists

            lists = fineweb_url_lists()
            domains |= read_list(lists.blocklist, "domains")
            urls |= read_list(lists.blocklist, "urls")
            banned |= read_list(lists.banned_words)
            soft |= read_list(lists.soft_banned_words)
            sub |= read_list(lists.banned_subwords)
        for p in cfg.domain_lists:
            domains |= read_list(p, "domains", cfg.categories)
        for p in cfg.url_lists:
            urls |= read_list(p, "urls", cfg.categories)
        self.domains, self.urls = domains, urls
        self.banned = {squash(w) for w in banned} - {""}
        self.soft_banned = {squash(w) for w in soft} - {""}
        subwords = sorted({squash(w) for w in sub} - {""})
        self.subword_pattern = re.compile("|".join(map(re.escape, subwords))) if subwords else None
        _domain_parser()("http://example.com/")  # builds the public-suffix trie once, up front
        self._loaded = True
        logger.info(
            "url_filter: %d domains, %d urls, %d banned, %d soft-banned, %d subwords",
            len(domains),
            len(urls),
            len(self.banned),
            len(self.soft_banned),
            len(subwords),
        )

    def process(self, doc: Document) -> Document | Drop:
        if not self._loaded:
            self._load()
        url = doc.url
        if not url:
            if self.config.drop_missing_url:
                return Drop("url_missing")
            self.stats.extra["url_missing"] += 1
            return doc
        parts = _domain_parser()(url)
        if parts.top_domain_under_public_suffix in self.domains:
            return Drop("url_blocked_domain", detail=parts.top_domain_under_public_suffix)
        if parts.fqdn in self.domains:
            return Drop("url_blocked_subdomain", detail=parts.fqdn)
        if url in self.urls:
            return Drop("url_blocked_url")
        words = set(_NON_ALNUM.split(url))
        hit = next(iter(words & self.banned), None)
        if hit is not None:
            return Drop("url_banned_word", detail=hit)
        soft = len(words & self.soft_banned)
        if soft >= self.config.soft_word_threshold:
            return Drop("url_soft_banned_words", value=soft)
        if self.subword_pattern is not None:
            m = self.subword_pattern.search(squash(url))
            if m:
                return Drop("url_banned_subword", detail=m.group())
        return doc
