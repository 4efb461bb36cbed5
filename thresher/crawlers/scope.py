"""Which URLs a crawl may request, and the canonical form used to recognise repeats."""

from __future__ import annotations

import functools
import hashlib
import re
from urllib.parse import urlsplit

from w3lib.url import canonicalize_url

from thresher.crawlers.config import CrawlConfig

MAX_URL_LENGTH = 2083
"""Longer URLs are out of scope. Scrapy's URL-length filter (set to the same value) would drop
them silently after they were queued, so the frontier's count of queued requests would drift."""


def canonical_url(url: str) -> str:
    """Sorted query, no fragment, normalised escapes and case of scheme/host: one page, one key."""
    return canonicalize_url(url, keep_fragments=False)


def url_key(url: str) -> int:
    """64-bit key of the canonical URL: a seen-set of ints costs far less than one of strings."""
    return int.from_bytes(hashlib.blake2b(canonical_url(url).encode(), digest_size=8).digest(), "big")


@functools.lru_cache(maxsize=4096)
def netloc_of(url: str) -> str:
    """host:port in lower case, the unit of politeness (robots.txt, crawl-delay, slots).
    Asked several times per request (queue, slot, capture, archive): the last 4,096 URLs'
    answers are remembered."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return host if port is None or port == default else f"{host}:{port}"


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


class Scope:
    """Scope rules of one crawl. ``why_not(url, depth)`` is None when the URL is in scope."""

    def __init__(self, config: CrawlConfig, seed_urls: list[str]):
        self.config = config
        self.seed_netlocs = {netloc_of(u) for u in seed_urls}
        self.domains = [d.lower().lstrip(".") for d in config.allowed_domains]
        self.allow = [re.compile(p) for p in config.allow_patterns]
        self.deny = [re.compile(p) for p in config.deny_patterns]
        self.deny_ext = {"." + e.lower().lstrip(".") for e in config.deny_extensions}

    def add_seed(self, url: str) -> None:
        self.seed_netlocs.add(netloc_of(url))

    def host_allowed(self, url: str) -> bool:
        if self.domains:
            host = host_of(url)
            return any(host == d or host.endswith("." + d) for d in self.domains)
        if self.config.same_host:
            return netloc_of(url) in self.seed_netlocs
        return True

    def why_not(self, url: str, depth: int, is_seed: bool = False) -> str | None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "scheme"
        if len(url) > MAX_URL_LENGTH:
            return "url_too_long"
        if depth > self.config.max_depth:
            return "max_depth"
        if not is_seed and not self.host_allowed(url):
            return "offsite"
        path = parts.path.lower()
        dot = path.rfind(".")
        if dot > path.rfind("/") and path[dot:] in self.deny_ext:
            return "extension"
        if any(p.search(url) for p in self.deny):
            return "deny_pattern"
        if self.allow and not is_seed and not any(p.search(url) for p in self.allow):
            return "allow_pattern"
        return None
