"""Scrapy's downloader with a global cap on transfers, not on requests waiting out a delay.

Scrapy counts every request it has handed to the downloader against ``CONCURRENT_REQUESTS``,
including those sitting in a host's slot until that host's delay (``DOWNLOAD_DELAY``,
AutoThrottle, robots.txt Crawl-delay) has passed. On a broad crawl under default politeness
the cap then fills with requests that wait for their host while every other host is idle:
16 requests each waiting ~1 s for a new host's first AutoThrottle delay allow ~16 pages/s
however many hosts there are (measured: 6.2 pages/s at 1,000 hosts, 32 at 100).

Here ``CONCURRENT_REQUESTS`` bounds the downloads in progress (connections in use), and the
requests waiting for their host's turn are bounded separately: twice as many as there are
hosts with a download slot (one waiting per host keeps every host busy, and a request for a
new host must find room while the others wait), at least ``CONCURRENT_REQUESTS`` and at most
``MAX_WAITING``. So the crawl is limited by politeness per
host (hosts × 1/delay) or by CPU, not by a global cap, and a crawl of few hosts does not pile
requests up in their slots. Per-host politeness is unchanged: a slot still starts at most its
concurrency in downloads at once, each after its delay.
"""

from __future__ import annotations

from scrapy.core.downloader import Downloader

MAX_WAITING = 4096
"""Requests waiting for their host (in memory, ~1 KB each) at most, however many hosts."""


class PoliteDownloader(Downloader):
    def __init__(self, crawler):
        super().__init__(crawler)
        self.transfers = 0

    async def _download(self, slot, request):
        self.transfers += 1
        try:
            return await super()._download(slot, request)
        finally:
            self.transfers -= 1

    def needs_backout(self) -> bool:
        """Backs out when the transfers reach the cap, or the requests waiting (in the
        middlewares, e.g. for robots.txt, or in a slot for its delay) reach ``max_waiting``."""
        if 0 < self.total_concurrency <= self.transfers:
            return True
        return len(self.active) - self.transfers >= self.max_waiting

    @property
    def max_waiting(self) -> int:
        return min(max(self.total_concurrency, 2 * len(self.slots)), MAX_WAITING)
