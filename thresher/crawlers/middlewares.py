"""Downloader middlewares: politeness slots, raw-byte capture, redirect vetting, retry backoff.

Order matters (lower runs first on the way out, last on the way back):

* 30  ``HostSlotMiddleware``      one download slot per host:port (Scrapy's default ignores the port)
* 40  ``AddressGuardMiddleware``  (netsafety) refuses non-public addresses, before robots.txt
* 100 ``RobotsPolicyMiddleware``  (robots) robots.txt with RFC 9309's 4xx/5xx rules
* 555 ``BackoffRetryMiddleware``  replaces Scrapy's retry (550): same rules, exponential backoff
* 610 ``RawCaptureMiddleware``    sees each response before redirects (600) and decompression
  (590) touch it, so the WARC gets the status line, headers and payload as received.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request

from thresher.crawlers.netsafety import AddressPolicy
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


@dataclass
class RawResponse:
    """The response as it came off the connection, before any middleware decoded it."""

    exchange: Exchange
    status: int


class HostSlotMiddleware:
    """Give every host:port its own download slot, so politeness (delay, concurrency,
    robots crawl-delay) applies per site as robots.txt defines a site."""

    def process_request(self, request, spider=None):
        request.meta.setdefault("download_slot", netloc_of(request.url))
        return None


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

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_request(self, request, spider=None):
        state = self.crawler.spider.state
        if netloc_of(request.url) in state.crawl_delays:
            # AutoThrottle may lower a slot's delay; never below what robots.txt asked for.
            request.meta["autothrottle_dont_adjust_delay"] = True
        return None

    def process_response(self, request, response, spider=None):
        if response.ip_address is not None:
            peer = ipaddress.ip_address(response.ip_address)
            self.policy.check(response.url, netloc_of(response.url), peer, self.crawler.stats)
        if request.meta.get("thresher_kind") != PAGE:
            return response
        raw = RawResponse(capture(request, response), response.status)
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
            why = "other_partition"  # journaled above; fetched by its own partition next round
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
    )
