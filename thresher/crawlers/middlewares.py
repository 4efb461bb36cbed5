"""Downloader middlewares: politeness slots, raw-byte capture, redirect vetting, retry backoff.

Order matters (lower runs first on the way out, last on the way back):

* 30  ``HostSlotMiddleware``      one download slot per host:port (Scrapy's default ignores the port)
* 40  ``AddressGuardMiddleware``  (netsafety) refuses non-public addresses, before robots.txt
* 100 ``RobotsPolicyMiddleware``  (robots) robots.txt with RFC 9309's 4xx/5xx rules, and the
  groups of AI-crawler tokens (opt-out signal ``robots_ai``)
* 110 ``TdmRepMiddleware``        the host's /.well-known/tdmrep.json (signal ``tdmrep_json``)
* 555 ``BackoffRetryMiddleware``  replaces Scrapy's retry (550): same rules, exponential backoff
* 610 ``RawCaptureMiddleware``    sees each response before redirects (600) and decompression
  (590) touch it, so the WARC gets the status line, headers and payload as received; on a
  recrawl it also makes page requests conditional on the URL's last capture.

A page whose opt-out is known before it is requested (robots_ai, tdmrep_json) is not requested
(``OptedOut``, counted under ``optout``), unless ``archive_opted_out``: then the signal travels
in ``request.meta['thresher_optout']`` and the archived page is flagged (optout.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request
from scrapy.http.request import NO_CALLBACK
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred

from thresher.crawlers.netsafety import AddressPolicy
from thresher.crawlers.optout import TdmRepError, TdmRule, parse_tdmrep, tdm_rule_for
from thresher.crawlers.scope import netloc_of
from thresher.crawlers.warc import Exchange, http_request_head, http_response_head

logger = logging.getLogger(__name__)

REDIRECT_STATUSES = (301, 302, 303, 307, 308)
PAGE = "page"
"""``request.meta['thresher_kind']`` of page requests (others: robots.txt, sitemaps)."""


class RedirectRefused(IgnoreRequest):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class OptedOut(IgnoreRequest):
    """The site reserves this page from AI training (``signal``): it is not requested."""

    def __init__(self, signal: str, message: str):
        super().__init__(message)
        self.signal = signal


def opted_out(crawler, request: Request, signal: str, why: str) -> None:
    """A page request carries opt-out ``signal``: refused (counted), or marked to be archived
    with the flag when the crawl keeps opted-out pages (``archive_opted_out``)."""
    if crawler.spider.config.archive_opted_out:
        request.meta.setdefault("thresher_optout", []).append(signal)
        return
    crawler.stats.inc_value(f"thresher/optout/{signal}")
    logger.debug("not requested: %s (%s)", request.url, why)
    raise OptedOut(signal, f"{request.url}: {why}")


@dataclass
class RawResponse:
    """The response as it came off the connection, before any middleware decoded it."""

    exchange: Exchange
    status: int


WELL_KNOWN = " well-known"
"""Suffix of a host's second download slot, for its robots.txt, tdmrep.json and sitemaps."""
WELL_KNOWN_KINDS = frozenset({"robots", "tdmrep", "sitemap"})


class HostSlotMiddleware:
    """Give every host:port its own download slot, so politeness (delay, concurrency,
    robots crawl-delay) applies per site as robots.txt defines a site.

    A host's robots.txt, tdmrep.json and sitemaps use a second slot, ``host:port well-known``:
    one at a time, ``download_delay`` apart, not adjusted by AutoThrottle. On the page slot
    each of them waited out the host's delay, which a 404 (tdmrep.json and /sitemap.xml on
    most sites) never lowers, so a host's first page went out ~1.5 s after its robots.txt
    under the defaults, and a 300-host crawl was bound by those waits (measured: 114 pages/s,
    160 without the sitemap probe). robots.txt and tdmrep.json are fetched before the host's
    first page, which waits for them, so they never overlap a page; a sitemap may (a host then
    sees two connections at once, one for a page). A host whose robots.txt has a Crawl-delay
    gets its tdmrep.json and sitemaps on its page slot, whose delay then counts from the
    robots.txt request (downloader.PoliteDownloader._get_slot)."""

    def __init__(self, crawler=None):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_request(self, request, spider=None):
        meta = request.meta
        if "download_slot" in meta:
            return None
        netloc = netloc_of(request.url)
        kind = meta.get("thresher_kind")
        if kind in WELL_KNOWN_KINDS and not (kind != "robots" and self._crawl_delay(netloc)):
            meta["download_slot"] = netloc + WELL_KNOWN
            meta["autothrottle_dont_adjust_delay"] = True
        else:
            meta["download_slot"] = netloc
        return None

    def _crawl_delay(self, netloc: str) -> bool:
        spider = self.crawler.spider if self.crawler is not None else None
        state = getattr(spider, "state", None)
        return state is not None and netloc in state.crawl_delays


class BackoffRetryMiddleware(RetryMiddleware):
    """Scrapy's retry rules with waits of base·2^(n-1) seconds, or the server's Retry-After."""

    @classmethod
    def from_crawler(cls, crawler):
        mw = super().from_crawler(crawler)
        mw.backoff_base = crawler.settings.getfloat("THRESHER_RETRY_BACKOFF")
        mw.backoff_max = crawler.settings.getfloat("AUTOTHROTTLE_MAX_DELAY")
        return mw

    async def _wait(self, retry: Request, retry_after: bytes | None = None) -> None:
        delay = self.backoff_base * 2 ** (retry.meta.get("retry_times", 1) - 1)
        if retry_after and retry_after.strip().isdigit():
            delay = max(delay, float(retry_after.strip()))
        await asyncio.sleep(min(delay, self.backoff_max))

    async def process_response(self, request, response, spider=None):
        result = super().process_response(request, response)
        if isinstance(result, Request):
            await self._wait(result, response.headers.get(b"Retry-After"))
        return result

    async def process_exception(self, request, exception, spider=None):
        result = super().process_exception(request, exception)
        if isinstance(result, Request):
            await self._wait(result)
        return result


def _header_pairs(headers) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, values in headers.items() for value in values]


class RawCaptureMiddleware:
    """Keeps the undecoded response for the WARC and vets redirects before they are followed.

    Twisted hands Scrapy the body with chunked transfer coding already removed and drops the
    hop-by-hop headers (Connection, Keep-Alive, Transfer-Encoding); everything else — status,
    header order and values, the content-coded payload — is what the server sent.
    """

    def __init__(self, crawler):
        self.crawler = crawler
        self.policy = AddressPolicy.from_settings(crawler.settings)
        self._captures = None  # the job's capture index, opened on a recrawl's first request

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_request(self, request, spider=None):
        state = self.crawler.spider.state
        if state.crawl_delays and netloc_of(request.url) in state.crawl_delays:
            # AutoThrottle may lower a slot's delay; never below what robots.txt asked for.
            request.meta["autothrottle_dont_adjust_delay"] = True
        if state.config.recrawl and request.meta.get("thresher_kind") == PAGE:
            self._make_conditional(request, state)
        return None

    def _make_conditional(self, request: Request, state) -> None:
        """Ask for the page only if it changed since its last capture (a redirect's target is
        looked up afresh: the validators of the URL that redirected are not its own)."""
        if self._captures is None:
            from thresher.crawlers.recrawl import CaptureIndex, index_path

            path = index_path(state.spec.output_dir)
            self._captures = CaptureIndex(path) if Path(path).exists() else False
        prior = self._captures.get(request.url) if self._captures else None
        for name in (b"If-None-Match", b"If-Modified-Since"):
            request.headers.pop(name, None)
        request.meta.pop("thresher_prior", None)
        if prior is None:
            return
        request.meta["thresher_prior"] = prior
        if prior.etag:
            request.headers[b"If-None-Match"] = prior.etag.encode("latin-1", "replace")
        if prior.last_modified:
            request.headers[b"If-Modified-Since"] = prior.last_modified.encode("latin-1", "replace")
        statuses = request.meta.setdefault("handle_httpstatus_list", [])
        if 304 not in statuses:
            statuses.append(304)  # the spider archives it as a revisit, not an HTTP error

    def process_response(self, request, response, spider=None):
        if response.ip_address is not None:
            peer = ipaddress.ip_address(response.ip_address)
            self.policy.check(response.url, netloc_of(response.url), peer, self.crawler.stats)
        if request.meta.get("thresher_kind") != PAGE:
            return response
        exchange = capture(request, response)
        exchange.prior = request.meta.get("thresher_prior")
        raw = RawResponse(exchange, response.status)
        request.meta["thresher_raw"] = raw
        location = response.headers.get(b"Location")
        if response.status in REDIRECT_STATUSES and location:
            self._vet_redirect(request, response, raw, location)
        return response

    def _vet_redirect(self, request, response, raw: RawResponse, location: bytes) -> None:
        state = self.crawler.spider.state
        target = urljoin(response.url, location.decode("latin-1").strip())
        depth = request.meta.get("depth", 0)
        why = state.scope.why_not(target, depth)
        if why is None and not state.frontier.add(target, depth):
            why = "seen"
        if why is None and not state.mine(target):
            why = "other_partition"  # journaled above and handed to its partition, which fetches it
            state.hand_over(target, depth)
        state.frontier.flush()  # the target is durable before the redirect counts as archived
        if state.config.store_redirects:
            state.archive(raw.exchange, status=response.status)
        if why is not None:
            self.crawler.stats.inc_value(f"thresher/redirect_refused/{why}")
            raise RedirectRefused(why, f"redirect {response.url} -> {target} not followed: {why}")


def capture(request, response) -> Exchange:
    parts = urlsplit(request.url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    request_headers = [(b"Host", parts.netloc.encode("ascii", "replace"))] + _header_pairs(request.headers)
    return Exchange(
        url=response.url,
        request_head=http_request_head(request.method, path, request_headers),
        response_head=http_response_head(response.protocol, response.status, _header_pairs(response.headers)),
        payload=response.body,
        ip_address=str(response.ip_address) if response.ip_address is not None else None,
        status=response.status,
    )


TDMREP_MAX_AGE = 24 * 3600.0
"""Seconds a host's tdmrep.json is used before it is fetched again (as for robots.txt)."""


class TdmRepMiddleware:
    """The TDM Reservation Protocol's ``/.well-known/tdmrep.json``, fetched once per host (and
    again after a day) before its first page; a page its first matching rule reserves is not
    requested (signal ``tdmrep_json``). A missing, failed or unreadable file means no rules
    (counted under ``tdmrep``): TDMRep then falls back to the page's header and meta tag,
    which the spider reads. Off when ``tdmrep_json`` is not among the crawl's ``optout_signals``."""

    PRIORITY = 1000

    def __init__(self, crawler):
        self.crawler = crawler
        self._rules: dict[str, list[TdmRule] | Deferred] = {}
        self._expires: dict[str, float] = {}

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    async def process_request(self, request, spider=None):
        if request.meta.get("thresher_kind") != PAGE:
            return None
        if "tdmrep_json" not in self.crawler.spider.config.optout_signals:
            return None
        parts = urlsplit(request.url)
        rules = await self._rules_of(parts.scheme, parts.netloc)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        rule = tdm_rule_for(rules, path)
        if rule is not None and rule.reserved:
            opted_out(self.crawler, request, "tdmrep_json", f"reserved by tdmrep.json rule {rule.location!r}")
        return None

    async def _rules_of(self, scheme: str, netloc: str) -> list[TdmRule]:
        entry = self._rules.get(netloc)
        if (
            entry is not None
            and not isinstance(entry, Deferred)
            and time.monotonic() >= self._expires[netloc]
        ):
            del self._rules[netloc]
        if netloc not in self._rules:
            waiting = self._rules[netloc] = Deferred()
            self._expires[netloc] = time.monotonic() + TDMREP_MAX_AGE
            try:
                rules = await self._fetch(f"{scheme}://{netloc}/.well-known/tdmrep.json")
            except Exception:  # never leave the requests waiting on this host hanging
                logger.exception("reading tdmrep.json of %s failed", netloc)
                rules = []
            self._rules[netloc] = rules
            waiting.callback(rules)
        entry = self._rules[netloc]
        if isinstance(entry, Deferred):
            # Not the awaited value: a Deferred hands its result to the first waiter only
            # (the later ones get what that waiter's callback returned, None).
            await maybe_deferred_to_future(entry)
            entry = self._rules[netloc]
        return entry

    async def _fetch(self, url: str) -> list[TdmRule]:
        stats = self.crawler.stats
        request = Request(
            url,
            priority=self.PRIORITY,
            meta={"dont_obey_robotstxt": True, "thresher_kind": "tdmrep"},
            callback=NO_CALLBACK,
        )
        try:
            response = await self.crawler.engine.download_async(request)
        except Exception as exc:  # refused address, timeout, connection error: no rules
            stats.inc_value("thresher/tdmrep/unavailable")
            logger.debug("tdmrep.json %s not fetched: %s", url, exc)
            return []
        if response.status != 200:
            stats.inc_value(f"thresher/tdmrep/status_{response.status // 100}xx")
            return []
        try:
            rules = parse_tdmrep(response.body)
        except TdmRepError as exc:
            stats.inc_value("thresher/tdmrep/unreadable")
            logger.info("%s unreadable, no TDM rules for its host: %s", url, exc)
            return []
        stats.inc_value("thresher/tdmrep/read")
        return rules
