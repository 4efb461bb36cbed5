"""The crawl's DNS cache, whose entries expire.

Scrapy's caching resolver (``CachingThreadedResolver``) keeps an address until the cache is
full and it is the oldest entry: on a crawl of weeks, or a recrawl in the same process, a site
that moved would be fetched at its old address for as long as the process runs. The system
resolver behind it (``getaddrinfo``) does not return the record's TTL, so an entry here lives
``THRESHER_DNS_TTL`` seconds (``dns_cache_ttl``) and the next lookup after that resolves the
name again (counted as ``thresher/dns/expired``). Lookups that reach the system resolver are
counted as ``thresher/dns/lookups``. The cache itself is Scrapy's (``scrapy.resolver.dnscache``,
``DNSCACHE_SIZE`` entries), which the downloader's address gates read too.
"""

from __future__ import annotations

from collections import Counter
from time import monotonic

from scrapy.resolver import CachingThreadedResolver, dnscache


class ExpiringResolver(CachingThreadedResolver):
    def __init__(self, reactor, cache_size: int, timeout: float, ttl: float):
        super().__init__(reactor, cache_size, timeout)
        self.ttl = ttl
        self.counts: Counter[str] = Counter()
        """Built by the CrawlerProcess before any crawler has stats: the downloader copies
        these into the crawl's stats when it closes."""
        self._stored: dict[str, float] = {}
        """When each name's entry was stored (entries the cache evicted are pruned lazily)."""

    @classmethod
    def from_crawler(cls, crawler, reactor):
        settings = crawler.settings
        return cls(
            reactor,
            settings.getint("DNSCACHE_SIZE") if settings.getbool("DNSCACHE_ENABLED") else 0,
            settings.getfloat("DNS_TIMEOUT"),
            settings.getfloat("THRESHER_DNS_TTL", 900.0),
        )

    def getHostByName(self, name: str, timeout=()):  # noqa: N802 - Twisted's interface
        stored = self._stored.get(name)
        if stored is not None and monotonic() - stored >= self.ttl:
            dnscache.pop(name, None)
            del self._stored[name]
            self._count("thresher/dns/expired")
        if name not in dnscache:
            self._count("thresher/dns/lookups")
        return super().getHostByName(name, timeout)

    def _cache_result(self, result, name: str):
        if len(self._stored) >= 2 * max(dnscache.limit or 0, 1):
            self._stored = {n: t for n, t in self._stored.items() if n in dnscache}
        self._stored[name] = monotonic()
        return super()._cache_result(result, name)

    def _count(self, key: str) -> None:
        self.counts[key] += 1
