"""The spider of one crawl partition: follows links in scope and archives pages to WARC."""

from __future__ import annotations

import json
import logging
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import scrapy
from scrapy import signals
from scrapy.exceptions import (
    CannotResolveHostError,
    CloseSpider,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadTimeoutError,
    IgnoreRequest,
    StopDownload,
)
from scrapy.http import Request, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.gz import gunzip, gzip_magic_number
from scrapy.utils.response import get_base_url
from scrapy.utils.sitemap import Sitemap
from twisted.internet.error import ConnectError, DNSLookupError, TCPTimedOutError, TimeoutError
from w3lib.url import safe_url_string

from thresher.crawlers.config import CrawlConfig
from thresher.crawlers.frontier import Frontier, partition_of
from thresher.crawlers.middlewares import PAGE, OptedOut, RedirectRefused
from thresher.crawlers.netsafety import BlockedAddress
from thresher.crawlers.optout import SignalReader
from thresher.crawlers.partition import BudgetTaken, Coordinator, Mailboxes, SharedBudget
from thresher.crawlers.robots import RobotsUnavailable
from thresher.crawlers.scope import Scope, netloc_of, url_key
from thresher.crawlers.warc import Exchange, RollingWarcWriter

logger = logging.getLogger(__name__)

SITEMAP = "sitemap"
MAX_SITEMAPS_PER_HOST = 50


@dataclass
class PartitionSpec:
    """Everything one partition process needs; written as JSON by the runner."""

    config: dict
    partition: int
    partitions: int
    output_dir: str
    work_file: str
    """Lines ``kind<TAB>depth<TAB>url``: ``scope`` (a seed host of the job), ``done`` (archived
    earlier), ``seed`` or ``pending`` (to fetch)."""
    journal_path: str
    stats_path: str
    max_pages: int = 0
    """This partition's share of the job's remaining page budget (0: unlimited)."""
    host_pages: dict[str, int] = field(default_factory=dict)
    """Pages per host already archived by earlier runs (for ``max_pages_per_host``)."""
    run_tag: str = ""
    """Names this run's shared files (partition.py): budget, hand-overs, states."""
    budget_path: str = ""
    """The page budget ``max_pages`` shared by all partitions of the run (partition.py)."""
    output_uri: str = ""
    """The job's store when it is not ``output_dir`` (s3://, gs://...): WARC files are staged
    locally and uploaded when they close, the journal beside them as ``journal_key`` (output.py)."""
    journal_key: str = ""
    storage: dict = field(default_factory=dict)
    """The store's retries and timeouts (``thresher.io.StorageConfig`` as a dict)."""

    @classmethod
    def load(cls, path: str | Path) -> PartitionSpec:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def media_type(headers) -> str:
    value = headers.get(b"Content-Type") or b""
    return value.split(b";")[0].strip().lower().decode("latin-1")


def looks_like_html(body: bytes) -> bool:
    head = body[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head


class CrawlState:
    """What the spider and the middlewares share: scope, seen-set, WARC writer, counters."""

    def __init__(self, config: CrawlConfig, spec: PartitionSpec, crawler):
        self.config = config
        self.spec = spec
        self.crawler = crawler
        self.scope = Scope(config, [])
        self.optout = SignalReader(config.robots_token, config.ai_tokens, config.optout_signals)
        self.frontier = Frontier(spec.journal_path)
        self.budget = SharedBudget(spec.budget_path or None, spec.max_pages)
        self.mail = (
            Mailboxes(Path(spec.journal_path).parent, spec.run_tag, spec.partition, spec.partitions)
            if spec.partitions > 1 and spec.journal_path
            else None
        )
        self.robots = None
        """The robots.txt middleware (robots.RobotsPolicyMiddleware), which sets itself here."""
        self.crawl_delays: dict[str, float] = {}
        self.host_pages: Counter = Counter(spec.host_pages)
        self.sitemaps_per_host: Counter = Counter()
        self.queued = 0
        """Page requests queued, downloading or being parsed (``max_queued_requests``)."""
        self.host_queued: Counter = Counter()
        self.queued_peak = 0
        self.scheduler_peak = 0
        self._overflow_noted: set[str] = set()
        self.pages = 0
        self.payload_bytes = 0
        self.started = time.monotonic()
        self.output = None
        warc_dir, on_close, first_serial = Path(spec.output_dir) / "warc", None, None
        if spec.output_uri:
            from thresher.crawlers.output import PartitionOutput

            journal = Path(spec.journal_path) if spec.journal_path else None
            self.output = PartitionOutput(
                spec.output_uri, journal, spec.journal_key, self.frontier.flush, spec.storage
            )
            warc_dir, on_close = self.output.staging, self.output.committer
            first_serial = self.output.first_serial(config.warc_prefix, spec.partition)
        self.writer = RollingWarcWriter(
            warc_dir,
            config.warc_prefix,
            spec.partition,
            config.warc_max_bytes,
            on_close=on_close,
            first_serial=first_serial,
            gzip_level=config.warc_gzip_level,
            warcinfo={
                "software": f"thresher crawler (Scrapy {scrapy.__version__})",
                "format": "WARC File Format 1.1",
                "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
                "http-header-user-agent": config.full_user_agent,
                "robots": "obey" if config.obey_robots else "ignore",
                "isPartOf": f"partition-{spec.partition}",
            },
        )

    @property
    def stats(self):
        return self.crawler.stats

    def archive(self, exchange: Exchange, status: int) -> bool:
        """Write the record; True if it counts as a page (of the budget, of its host)."""
        kind = self.writer.write(exchange)
        self.stats.inc_value("thresher/warc_records")
        if exchange.prior is not None:  # a recrawl: 304, the same payload, or a changed page
            change = "changed" if kind == "response" else "not_modified" if status == 304 else "same_digest"
            self.stats.inc_value(f"thresher/recrawl/{change}")
        if 200 <= status < 300 or kind == "revisit":
            self.pages += 1
            self.payload_bytes += len(exchange.payload)
            self.host_pages[netloc_of(exchange.url)] += 1
            self.stats.inc_value("thresher/pages")
            return True
        self.stats.inc_value("thresher/redirects_archived")
        return False

    def mine(self, url: str) -> bool:
        return partition_of(netloc_of(url), self.spec.partitions) == self.spec.partition

    def overflow(self, url: str) -> str | None:
        """Why a new URL of this partition may not be queued now (``host_cap``: its host's
        stored plus queued pages reach ``max_pages_per_host``; ``frontier_full``: the
        frontier, on disk but for ~20 bytes per URL, holds ``max_queued_requests``), or None."""
        netloc = netloc_of(url)
        cap = self.config.max_pages_per_host
        if cap and self.host_pages[netloc] + self.host_queued[netloc] >= cap:
            self._note_overflow(netloc, f"{netloc}: {cap} pages stored or queued (max_pages_per_host)")
            return "host_cap"
        bound = self.config.max_queued_requests
        if bound and self.queued >= bound:
            self._note_overflow("", f"frontier full: {bound} requests queued (max_queued_requests)")
            return "frontier_full"
        return None

    def _note_overflow(self, key: str, what: str) -> None:
        """Say once per host (once for the frontier, ``key`` "") that links are being dropped."""
        if key not in self._overflow_noted:
            self._overflow_noted.add(key)
            logger.info("%s; further links are counted as overflow, not queued", what)

    def track(self, request: Request) -> Request:
        """Count a page request as queued until ``finished`` sees it (callback or errback)."""
        netloc = netloc_of(request.url)
        request.meta["thresher_queued"] = netloc
        self.queued += 1
        self.host_queued[netloc] += 1
        self.queued_peak = max(self.queued_peak, self.queued)
        return request

    def settle(self, request: Request, archived: bool) -> None:
        """Commit the request's page of the budget (archived) or give it back (not)."""
        if request.meta.pop("thresher_budget", False):
            (self.budget.commit if archived else self.budget.release)()

    def hand_over(self, url: str, depth: int) -> None:
        """Send a link to the partition owning its host, which fetches it in this run."""
        if self.mail is not None:
            self.mail.send(partition_of(netloc_of(url), self.spec.partitions), url, depth)

    def finished(self, request: Request) -> None:
        self.settle(request, archived=False)  # not archived by now: the budget gets it back
        netloc = request.meta.pop("thresher_queued", None)  # once per request, retries included
        if netloc is None:
            return
        self.queued -= 1
        self.host_queued[netloc] -= 1
        if self.host_queued[netloc] <= 0:
            del self.host_queued[netloc]
        scheduler = self.crawler.engine.scheduler
        if scheduler is not None:  # Scrapy's own count, the one that costs memory
            self.scheduler_peak = max(self.scheduler_peak, len(scheduler))

    def host_full(self, netloc: str) -> bool:
        cap = self.config.max_pages_per_host
        return bool(cap) and self.host_pages[netloc] >= cap

    def budget_spent(self) -> bool:
        """The run's page budget is archived, by this partition and the others."""
        return self.budget.spent()

    def consents(self, response, exchange: Exchange) -> tuple[bool, bool]:
        """(archive it, follow its links): the page's opt-out signals (optout.py) with those
        found before the request (robots_ai, tdmrep_json), each page counted under its first
        one, as ``optout`` (not archived) or ``optout_flagged`` (archived on request)."""
        html = response.body if isinstance(response, TextResponse) else None
        found = self.optout.read(
            [v.decode("latin-1") for v in response.headers.getlist(b"X-Robots-Tag")],
            (response.headers.get(b"tdm-reservation") or b"").decode("latin-1"),
            html,
        )
        early = tuple(response.meta.get("thresher_optout", ()))
        reasons = early + tuple(r for r in found.reasons if r not in early)
        if not reasons:
            return True, not found.nofollow
        if not self.config.archive_opted_out:
            self.stats.inc_value(f"thresher/optout/{reasons[0]}")
            return False, not found.nofollow
        self.stats.inc_value(f"thresher/optout_flagged/{reasons[0]}")
        exchange.optout = reasons
        return True, not found.nofollow

    def wants(self, response) -> bool:
        kind = media_type(response.headers)
        if not kind:
            return looks_like_html(response.body)
        return kind in self.config.content_types


class ThresherSpider(scrapy.Spider):
    name = "thresher"

    def __init__(self, spec: PartitionSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.config = CrawlConfig(**spec.config)

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.state = CrawlState(spider.config, spider.spec, crawler)
        spider.coordinator = Coordinator.attach(spider, crawler)
        crawler.signals.connect(spider.on_robots_parsed, signal=signals.robots_parsed)
        crawler.signals.connect(spider.on_headers_received, signal=signals.headers_received)
        crawler.signals.connect(spider.on_closed, signal=signals.spider_closed)
        return spider

    # ------------------------------------------------------------------ requests

    def page_request(self, url: str, depth: int) -> Request:
        request = Request(
            url,
            callback=self.parse,
            errback=self.on_error,
            priority=-depth,  # breadth first: a page budget goes to shallow pages
            # the slot (host:port) is known from the start, so the scheduler can pick by host
            meta={"depth": depth, "thresher_kind": PAGE, "download_slot": netloc_of(url)},
        )
        return self.state.track(request)

    async def start(self):
        state = self.state
        with open(self.spec.work_file, encoding="utf-8") as fh:
            for line in fh:
                kind, depth, url = line.rstrip("\n").split("\t", 2)
                if kind == "scope":
                    state.scope.add_seed(url)
                    continue
                if kind == "done":
                    state.frontier.mark_seen(url)
                    continue
                if kind == "seed":
                    state.scope.add_seed(url)
                    if not self.config.obey_robots and self.config.sitemaps and self.config.guess_sitemap:
                        self._queue_sitemap(f"{urlsplit(url).scheme}://{urlsplit(url).netloc}/sitemap.xml")
                why = state.scope.why_not(url, int(depth), is_seed=(kind == "seed"))
                if why is not None:
                    self.crawler.stats.inc_value(f"thresher/skipped/{why}")
                    continue
                if kind == "pending" and (over := state.overflow(url)) is not None:
                    self.crawler.stats.inc_value(f"thresher/overflow/{over}")  # still journaled
                    continue
                if state.frontier.claim(url):
                    yield self.page_request(url, int(depth))

    def _queue_sitemap(self, url: str) -> None:
        netloc = netloc_of(url)
        if self.state.sitemaps_per_host[netloc] >= MAX_SITEMAPS_PER_HOST:
            return
        self.state.sitemaps_per_host[netloc] += 1
        request = Request(
            url,
            callback=self.parse_sitemap,
            errback=self.on_sitemap_error,
            priority=100,
            meta={"thresher_kind": SITEMAP, "depth": 1},
        )
        self.crawler.engine.crawl(request)

    # ------------------------------------------------------------------ signals

    def on_robots_parsed(self, robotparser, request):
        netloc = netloc_of(request.url)
        delay = (
            robotparser.crawl_delay(self.config.robots_token) if hasattr(robotparser, "crawl_delay") else None
        )
        if delay:
            self._apply_crawl_delay(netloc, float(delay))
        if not self.config.sitemaps:
            return
        if not self.config.sitemaps_all_hosts and netloc not in self.state.scope.seed_netlocs:
            return  # a host reached by a link: its pages come from links (saves 1-2 requests)
        rp = getattr(robotparser, "rp", None)
        named = list(getattr(rp, "sitemaps", []) or [])
        base = f"{urlsplit(request.url).scheme}://{urlsplit(request.url).netloc}"
        if not named and self.config.guess_sitemap:
            named = [base + "/sitemap.xml"]  # opt-in guess: a 404 on most hosts
        for url in named:
            if self.state.scope.host_allowed(url) or netloc_of(url) == netloc:
                self._queue_sitemap(url)

    def _apply_crawl_delay(self, netloc: str, delay: float) -> None:
        """robots.txt Crawl-delay: at least ``delay`` s between requests, one at a time."""
        delay = max(delay, self.config.download_delay)
        self.state.crawl_delays[netloc] = delay
        downloader = self.crawler.engine.downloader
        downloader.per_slot_settings[netloc] = {"delay": delay, "jitter": 0.0, "concurrency": 1}
        slot = downloader.slots.get(netloc)
        if slot is not None:
            slot.delay = max(slot.delay, delay)
            slot.jitter = 0.0
            slot.concurrency = 1
        self.crawler.stats.inc_value("thresher/hosts_with_crawl_delay")
        logger.info("%s asks for Crawl-delay %.1f s", netloc, delay)

    def on_headers_received(self, headers, body_length, request, spider=None):
        """Stop non-HTML downloads as soon as their headers show it (redirects excepted)."""
        if request.meta.get("thresher_kind") != PAGE or b"Location" in headers:
            return
        kind = media_type(headers)
        if kind and kind not in self.config.content_types:
            raise StopDownload(fail=False)

    def on_closed(self, spider, reason):
        if self.state.mail is not None:
            self.state.mail.close()
        self.state.budget.close()
        self.state.writer.close()
        failed = self.state.output.close() if self.state.output is not None else []
        self.state.frontier.close()
        write_partition_stats(self, reason, failed)

    # ------------------------------------------------------------------ callbacks

    def parse(self, response):
        try:
            yield from self._parse(response)
        finally:  # the page counts as queued (for the bounds) until its links are queued
            self.state.finished(response.request)

    def _parse(self, response):
        state = self.state
        stats = self.crawler.stats
        raw = response.meta.get("thresher_raw")
        depth = response.meta.get("depth", 0)
        if response.status == 304 and raw is not None and raw.exchange.prior is not None:
            if state.consents(response, raw.exchange)[0]:  # unchanged: a revisit record
                state.settle(response.request, state.archive(raw.exchange, status=response.status))
            return
        if "download_stopped" in response.flags or not state.wants(response):
            stats.inc_value("thresher/skipped/content_type")
            return
        if raw is None:  # should not happen: the capture middleware saw every page response
            stats.inc_value("thresher/errors/no_raw_capture")
            logger.error("no raw capture for %s", response.url)
            return
        netloc = netloc_of(response.url)
        if state.host_full(netloc):
            stats.inc_value("thresher/skipped/max_pages_per_host")
            return
        if state.budget_spent():
            stats.inc_value("thresher/skipped/max_pages")
            return
        keep, follow = state.consents(response, raw.exchange)
        requests = []
        if follow and depth < self.config.max_depth and isinstance(response, TextResponse):
            requests = self._follow(response, depth + 1)
        state.frontier.flush()  # links are durable before the page counts as archived
        if keep:
            state.settle(response.request, state.archive(raw.exchange, status=response.status))
        yield from requests
        if state.budget_spent():
            raise CloseSpider("max_pages")

    def _follow(self, response, depth: int) -> list[Request]:
        """Requests for a page's new links: scope first, then one seen-set lookup for all."""
        state = self.state
        stats = self.crawler.stats
        candidates = []
        for url in extract_links(response):
            why = state.scope.why_not(url, depth)
            if why is not None:
                stats.inc_value(f"thresher/skipped/{why}")
                continue
            candidates.append((url, url_key(url)))
        unseen = state.frontier.unseen([key for _, key in candidates])
        out = []
        for (url, key), new in zip(candidates, unseen, strict=True):
            if new and (request := self._admit_unseen(url, depth, key, checked=True)) is not None:
                out.append(request)
        return out

    def _admit(self, url: str, depth: int) -> Request | None:
        """The request for a newly found URL, or None: out of scope, seen, over a bound
        (counted, neither queued nor marked seen, so a later link may still queue it once
        there is room) or another partition's (journaled for the runner's next round)."""
        state = self.state
        why = state.scope.why_not(url, depth)
        if why is not None:
            self.crawler.stats.inc_value(f"thresher/skipped/{why}")
            return None
        key = url_key(url)
        if state.frontier.is_seen(key):
            return None
        return self._admit_unseen(url, depth, key)

    def _admit_unseen(self, url: str, depth: int, key: int, checked: bool = False) -> Request | None:
        """``_admit`` past the scope and seen checks (``checked``: by ``Frontier.unseen``)."""
        state = self.state
        stats = self.crawler.stats
        mine = state.mine(url)
        if mine and (over := state.overflow(url)) is not None:
            stats.inc_value(f"thresher/overflow/{over}")
            return None
        if not state.frontier.add(url, depth, key, checked=checked):
            return None  # the same URL twice among one page's links
        if not mine:  # journaled, and handed to its partition, which fetches it in this run
            state.hand_over(url, depth)
            stats.inc_value("thresher/handed_over")
            return None
        if state.robots is not None and state.robots.disallows(url):
            stats.inc_value("thresher/errors/robots")  # journaled: a rerun asks robots.txt again
            return None
        return self.page_request(url, depth)

    def parse_sitemap(self, response):
        body = response.body
        if gzip_magic_number(response):
            try:
                body = gunzip(body, max_size=self.config.max_page_bytes)
            except Exception as exc:  # corrupt or too large: count and move on
                self.crawler.stats.inc_value("thresher/sitemap/bad")
                logger.warning("sitemap %s unreadable: %s", response.url, exc)
                return
        try:
            sitemap = Sitemap(body)
        except Exception as exc:
            self.crawler.stats.inc_value("thresher/sitemap/bad")
            logger.info("sitemap %s is not a sitemap: %s", response.url, exc)
            return
        self.crawler.stats.inc_value("thresher/sitemap/read")
        for i, entry in enumerate(sitemap):
            if i >= self.config.max_sitemap_urls:
                break
            loc = entry.get("loc")
            if not loc:
                continue
            if sitemap.type == "sitemapindex":
                if self.state.scope.host_allowed(loc):
                    self._queue_sitemap(loc)
                continue
            request = self._admit(loc, 1)
            if request is not None:
                self.crawler.stats.inc_value("thresher/sitemap/urls")
                yield request
        self.state.frontier.flush()

    def on_sitemap_error(self, failure):
        self.crawler.stats.inc_value("thresher/sitemap/unavailable")

    def on_error(self, failure):
        self.state.finished(failure.request)
        reason = failure_reason(failure.value)
        if reason is None:
            return
        self.crawler.stats.inc_value(f"thresher/errors/{reason}")
        level = logging.DEBUG if reason in ("http", "robots") else logging.INFO
        logger.log(level, "%s: %s (%s)", failure.request.url, reason, failure.value)


def extract_links(response) -> list[str]:
    """Absolute URLs of <a>/<area> hrefs, without fragments or rel=nofollow, each once.

    Scrapy's LinkExtractor does the same but builds a Link object and canonicalises every
    anchor; documentation pages carry hundreds of same-page ``#fragment`` links, so dropping
    repeats first makes link extraction several times cheaper.
    """
    try:
        root = response.selector.root
        base = get_base_url(response)
    except Exception:  # markup lxml cannot parse: no links rather than a failed page
        return []
    seen: set[str] = set()
    out = []
    for el in root.iter("a", "area"):
        href = el.get("href")
        if not href:
            continue
        href = href.strip()
        if not href or href.startswith("#"):
            continue
        rel = el.get("rel")
        if rel and "nofollow" in rel.lower().split():
            continue
        url = urljoin(base, href).split("#", 1)[0]
        if url not in seen:
            seen.add(url)
            out.append(safe_url_string(url, encoding=response.encoding))
    return out


def failure_reason(exc: BaseException) -> str | None:
    """A short counter name for a failed request; None for those counted where they happen."""
    if isinstance(exc, (BlockedAddress, BudgetTaken, RedirectRefused, RobotsUnavailable, OptedOut)):
        return None
    if isinstance(exc, HttpError):
        return "http"
    if isinstance(exc, IgnoreRequest):
        text = str(exc)
        if "robots.txt" in text:
            return "robots"
        if "decompression" in text:
            return "decompressed_too_large"
        return "ignored"
    if isinstance(exc, (DownloadTimeoutError, TimeoutError, TCPTimedOutError)):
        return "timeout"
    if isinstance(exc, DownloadCancelledError):
        return "too_large"
    if isinstance(exc, (DNSLookupError, CannotResolveHostError)):
        return "dns"
    if isinstance(exc, (ConnectError, DownloadConnectionRefusedError)):
        return "connection"
    return type(exc).__name__


def write_partition_stats(spider: ThresherSpider, reason: str, not_uploaded: list[str] = ()) -> None:
    state = spider.state
    scrapy_stats = spider.crawler.stats.get_stats()
    elapsed = time.monotonic() - state.started
    out = {
        "partition": spider.spec.partition,
        "finish_reason": reason,
        "elapsed_s": round(elapsed, 3),
        "pages": state.pages,
        "payload_bytes": state.payload_bytes,
        "warc_bytes": state.writer.bytes_written,
        "warc_files": state.writer.files_closed,
        "warc_not_uploaded": list(not_uploaded),
        "requests": scrapy_stats.get("downloader/request_count", 0),
        "response_bytes": scrapy_stats.get("downloader/response_bytes", 0),
        "status_codes": {
            k.rsplit("/", 1)[1]: v
            for k, v in scrapy_stats.items()
            if k.startswith("downloader/response_status_count/")
        },
        "robots_denied": scrapy_stats.get("robotstxt/forbidden", 0),
        "robots_unavailable": scrapy_stats.get("thresher/robots_unavailable", 0),
        "robots_txt": _counters(scrapy_stats, "thresher/robots_txt/"),
        "blocked_address": scrapy_stats.get("thresher/blocked_address", 0),
        "blocked_address_kinds": _counters(scrapy_stats, "thresher/blocked_address_kind/"),
        "crawl_delay_hosts": dict(state.crawl_delays),
        "errors": _counters(scrapy_stats, "thresher/errors/"),
        "skipped": _counters(scrapy_stats, "thresher/skipped/"),
        "redirect_refused": _counters(scrapy_stats, "thresher/redirect_refused/"),
        "sitemap": _counters(scrapy_stats, "thresher/sitemap/"),
        "overflow": _counters(scrapy_stats, "thresher/overflow/"),
        "optout": _counters(scrapy_stats, "thresher/optout/"),
        "optout_flagged": _counters(scrapy_stats, "thresher/optout_flagged/"),
        "tdmrep": _counters(scrapy_stats, "thresher/tdmrep/"),
        "dns": _counters(scrapy_stats, "thresher/dns/"),
        "politeness": _counters(scrapy_stats, "thresher/politeness/"),
        "recrawl": _counters(scrapy_stats, "thresher/recrawl/"),
        "handed_over": scrapy_stats.get("thresher/handed_over", 0),
        "handoffs_received": scrapy_stats.get("thresher/handoffs_received", 0),
        "queued_peak": state.queued_peak,
        "scheduler_peak": state.scheduler_peak,
        "queued_at_close": state.queued,
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "retries": scrapy_stats.get("retry/count", 0),
        "retry_reasons": _counters(scrapy_stats, "retry/reason_count/"),
    }
    Path(spider.spec.stats_path).write_text(json.dumps(out, indent=2, sort_keys=True), encoding="utf-8")


def _counters(stats: dict, prefix: str) -> dict[str, int]:
    return {k[len(prefix) :]: v for k, v in sorted(stats.items()) if k.startswith(prefix)}
