"""The partition's Scrapy scheduler: page requests wait on disk in one FIFO queue per host.

Scrapy's default scheduler keeps every queued ``Request`` object in memory (~1.4 KB each, so
1.5-3 GB per million queued URLs). Its JOBDIR disk queues were considered and not used: they
pickle the whole request dict per request, keep two open files and buffers per (host,
priority) queue (thousands of descriptors on a broad crawl), write their index only on a clean
shutdown (useless after SIGKILL), and ``DownloaderAwarePriorityQueue`` scans every host on
each pop.

Here a fresh page request (what ``ThresherSpider.page_request`` builds, plus the Referer header
Scrapy adds) is reduced to one line, ``depth, netloc, slot, url, referer``, appended to
``diskqueue.HostQueues`` under its download slot (host:port); only 8 bytes per request stay in
memory. The request is rebuilt when its turn comes. Anything else (retries, redirects,
sitemaps) is rare and kept as a Request in a small in-memory FIFO served first.

Order: hosts are taken in turn, skipping those whose download slot is full (as many requests
in the downloader as the slot's concurrency), looking at most ``SCAN`` hosts per call; when all
of them are full, nothing is handed out until a download ends (the engine asks again then), so
requests wait here, on disk, rather than in a slot's queue in memory. Within a host, first in
first out, which for links found by fetching in that order is breadth first. Nothing is deduplicated here: the spider's
``Frontier`` admits each URL once, and retries must not be filtered. While every page of the
crawl's budget is archived or reserved (``SharedBudget.taken``), page requests stay here.
"""

from __future__ import annotations

import logging
import tempfile
from collections import deque
from pathlib import Path

from scrapy.core.scheduler import BaseScheduler
from scrapy.http import Request

from thresher.crawlers.diskqueue import MAX_ENTRY_BYTES, HostQueues
from thresher.crawlers.middlewares import PAGE

logger = logging.getLogger(__name__)

SCAN = 64
"""Hosts looked at per ``next_request`` for one with a free download slot."""
_PAGE_META = frozenset({"depth", "thresher_kind", "thresher_queued", "download_slot", "is_start_request"})


class FrontierScheduler(BaseScheduler):
    def __init__(self, crawler):
        self.crawler = crawler
        self.stats = crawler.stats
        self.spider = None
        self.queues: HostQueues | None = None
        self.memory: deque[Request] = deque()
        self._parse = self._on_error = None
        self.budget = None
        """The crawl's page budget (partition.SharedBudget), when the spider has one."""
        self.held = False
        """The last ``next_request`` held page requests back because the budget was taken."""

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def open(self, spider):
        self.spider = spider
        self._parse = getattr(spider, "parse", None)
        self._on_error = getattr(spider, "on_error", None)
        state = getattr(spider, "state", None)
        budget = getattr(state, "budget", None)
        self.budget = budget if getattr(budget, "limit", 0) else None
        self.queues = HostQueues(frontier_dir(spider, self.crawler.settings))
        return None

    def close(self, reason):
        if self.queues is not None:
            self.queues.close()
        return None

    def has_pending_requests(self) -> bool:
        return bool(self.memory) or len(self.queues) > 0

    def __len__(self) -> int:
        return len(self.memory) + len(self.queues)

    def enqueue_request(self, request: Request) -> bool:
        packed = self._pack(request)
        if packed is None:
            self.memory.append(request)
            self.stats.inc_value("scheduler/enqueued/memory")
        else:
            self.queues.push(*packed)
            self.stats.inc_value("scheduler/enqueued/disk")
        self.stats.inc_value("scheduler/enqueued")
        return True

    def next_request(self) -> Request | None:
        if self.memory:
            self.stats.inc_value("scheduler/dequeued/memory")
            self.stats.inc_value("scheduler/dequeued")
            return self.memory.popleft()
        ring = self.queues.ring
        if not ring:
            return None
        if self.budget is not None and self.budget.taken():
            # Every page of the budget is archived or in flight: a page handed out now would
            # only be refused (BudgetTaken), at the cost of a request, its trip through the
            # middlewares and a Failure (2,730 of them on the 1,000-host bench web). It waits
            # here instead, for a release (the engine asks again when a request ends) or
            # the close.
            self.held = True
            return None
        self.held = False
        slots = self.crawler.engine.downloader.slots
        for _ in range(min(len(ring), SCAN)):
            host = ring[0]
            ring.rotate(-1)  # the host looked at goes to the end: turns are fair
            slot = slots.get(host)
            if slot is None or len(slot.active) < slot.concurrency:
                self.stats.inc_value("scheduler/dequeued/disk")
                self.stats.inc_value("scheduler/dequeued")
                return self._unpack(self.queues.pop(host))
        # Every host looked at has its slot full: the request would only wait in the slot, in
        # memory. One of those downloads ends soon, and the engine asks again then.
        return None

    # ------------------------------------------------------------------ the compact form

    def _pack(self, request: Request) -> tuple[str, bytes] | None:
        """(queue, line) for a fresh page request; None for any other request."""
        meta = request.meta
        if meta.get("thresher_kind") != PAGE or not _PAGE_META.issuperset(meta):
            return None
        netloc = meta.get("thresher_queued")
        depth = meta.get("depth")
        if netloc is None or type(depth) is not int or request.priority != -depth:
            return None
        if request.callback != self._parse or request.errback != self._on_error:
            return None
        if request.method != "GET" or request.body or request.dont_filter or request.flags:
            return None
        if request.cookies or request.cb_kwargs:
            return None
        headers = request.headers
        referer = b""
        if headers:
            if len(headers) != 1 or b"Referer" not in headers:
                return None
            referer = headers[b"Referer"]
            if not referer.isascii():
                return None
        slot = meta.get("download_slot", "")
        line = page_line(depth, netloc, slot, request.url, referer)
        return None if line is None else (slot or netloc, line)

    def _unpack(self, line: bytes) -> Request:
        depth, netloc, slot, url, referer = line.decode().split("\t")
        depth = int(depth)
        meta = {"depth": depth, "thresher_kind": PAGE, "thresher_queued": netloc}
        if slot:
            meta["download_slot"] = slot
        return Request(
            url,
            callback=self._parse,
            errback=self._on_error,
            priority=-depth,
            meta=meta,
            headers={"Referer": referer} if referer else None,
        )


def page_line(depth: int, netloc: str, slot: str, url: str, referer: bytes) -> bytes | None:
    """The queue entry of a page request; None if a field holds a tab or the entry is too long."""
    try:
        line = f"{depth}\t{netloc}\t{slot}\t{url}\t".encode() + referer
    except UnicodeEncodeError:
        return None
    if line.count(b"\t") != 4 or len(line) > MAX_ENTRY_BYTES:
        return None
    return line


def frontier_dir(spider, settings) -> Path:
    """Where the queue files go (unlinked at once, so they never show up there): the job's
    state directory, which is sized for the crawl, rather than /tmp, which may be in RAM."""
    configured = settings.get("THRESHER_FRONTIER_DIR")
    if configured:
        return Path(configured)
    spec = getattr(spider, "spec", None)
    if spec is not None and getattr(spec, "journal_path", None):
        return Path(spec.journal_path).parent
    return Path(tempfile.gettempdir())
