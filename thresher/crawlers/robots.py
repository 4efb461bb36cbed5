"""robots.txt as RFC 9309 reads it, on top of Scrapy's robots.txt middleware.

Scrapy parses whatever body comes back and allows everything when the download fails, so a
robots.txt answering 503 (after its retries) or not answering at all left the whole host open.
RFC 9309 says otherwise:

* 2xx: the rules in the body apply;
* 4xx ("unavailable", §2.3.1.3): no rules, everything may be crawled;
* 5xx or a network error ("unreachable", §2.3.1.4): nothing may be crawled. 429 Too Many
  Requests counts as unreachable too: the server is asking for less traffic, not giving consent.

The RFC names no interval for trying again. An unreachable robots.txt is fetched again on the
first request for that host after ``robots_retry_delay`` seconds; pages refused meanwhile are
counted (``robots_unavailable``), stay in the link journal, and a rerun of the job fetches them.
A parsed robots.txt is fetched again after 24 hours (§2.4: caches SHOULD NOT be used longer).

Besides our own token, the groups of the AI-crawler tokens (``ai_tokens``, optout.py) are read:
a page that a group naming one of them disallows is an AI-training opt-out (``robots_ai``) and is
not requested, unless the crawl archives opted-out pages with a flag (``archive_opted_out``).
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from scrapy import signals
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request
from scrapy.http.request import NO_CALLBACK
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.misc import build_from_crawler
from twisted.internet.defer import Deferred

from thresher.crawlers.middlewares import PAGE, opted_out
from thresher.crawlers.optout import robots_groups

logger = logging.getLogger(__name__)

MAX_AGE = 24 * 3600.0
"""Seconds a parsed robots.txt is used before it is fetched again (RFC 9309 §2.4)."""


class RobotsUnavailable(IgnoreRequest):
    """The host's robots.txt could not be fetched (5xx, 429 or a network error): no consent."""


class Unreachable:
    """Stands in for a parser while a host's robots.txt is unreachable: every URL is refused."""

    def __init__(self, reason: str):
        self.reason = reason

    def allowed(self, url, user_agent) -> bool:
        return False


class RobotsPolicyMiddleware(RobotsTxtMiddleware):
    """Scrapy's robots.txt middleware with RFC 9309's answers to 4xx, 5xx and network errors."""

    def __init__(self, crawler):
        super().__init__(crawler)
        self.retry_delay = crawler.settings.getfloat("THRESHER_ROBOTS_RETRY_DELAY")
        self._expires: dict[str, float] = {}
        self._ai_groups: dict[str, tuple[str, ...]] = {}
        """Per host, the AI tokens its robots.txt has a group for."""
        state = getattr(getattr(crawler, "spider", None), "state", None)
        if state is not None:
            state.robots = self  # the spider asks ``disallows`` before it queues a link

    def disallows(self, url: str) -> bool:
        """True when the URL's host has a parsed robots.txt, not expired, that disallows it for
        our token: the spider then does not queue the link (counted as a denial, as here), which
        spares a request's trip to this middleware to be refused (one link per page on the
        bench web). False when that is not known yet: the request comes here and waits."""
        netloc = urlsplit(url).netloc
        rp = self._parsers.get(netloc)
        if rp is None or isinstance(rp, (Deferred, Unreachable)):
            return False
        if time.monotonic() >= self._expires.get(netloc, 0.0):
            return False
        if rp.allowed(url, self._robotstxt_useragent or self._default_useragent):
            return False
        self._stats.inc_value("robotstxt/forbidden")
        self._stats.inc_value("thresher/robots_txt/denied_unqueued")
        return True

    def process_request_2(self, rp, request: Request) -> None:
        if isinstance(rp, Unreachable):
            self._stats.inc_value("thresher/robots_unavailable")
            logger.debug("refused %s: robots.txt unreachable (%s)", request.url, rp.reason)
            raise RobotsUnavailable(
                f"robots.txt of {urlparse_cached(request).netloc} unreachable: {rp.reason}"
            )
        super().process_request_2(rp, request)
        if rp is None or request.meta.get("thresher_kind") != PAGE:
            return
        for token in self._ai_groups.get(urlparse_cached(request).netloc, ()):
            if not rp.allowed(request.url, token):
                opted_out(self.crawler, request, "robots_ai", f"robots.txt disallows it for {token}")
                return

    async def robot_parser(self, request: Request):
        netloc = urlparse_cached(request).netloc
        entry = self._parsers.get(netloc)
        if (
            entry is not None
            and not isinstance(entry, Deferred)
            and time.monotonic() >= self._expires[netloc]
        ):
            del self._parsers[netloc]  # expired: this request fetches it again
            self._stats.inc_value("thresher/robots_txt/refetched")
        if netloc not in self._parsers:
            waiting = self._parsers[netloc] = Deferred()
            try:
                parser = await self._fetch(request, netloc)
            except Exception as exc:  # never leave the requests waiting on this host hanging
                logger.exception("reading robots.txt of %s failed", netloc)
                parser = self._unreachable(netloc, "error", f"{type(exc).__name__}: {exc}")
            self._parsers[netloc] = parser
            waiting.callback(parser)
        entry = self._parsers[netloc]
        if isinstance(entry, Deferred):
            # Not the awaited value: a Deferred hands its result to its first waiter only, the
            # later ones get what that waiter's callback returned (None: "no robots.txt",
            # allow all), so the third page request waiting on a host's robots.txt went out
            # whatever it said. The parser is in _parsers before the Deferred fires.
            await maybe_deferred_to_future(entry)
            entry = self._parsers[netloc]
        return entry

    async def _fetch(self, request: Request, netloc: str):
        """The parser for ``netloc``: rules, None (allow all) or Unreachable (refuse all)."""
        url = urlparse_cached(request)
        robots = Request(
            f"{url.scheme}://{url.netloc}/robots.txt",
            priority=self.DOWNLOAD_PRIORITY,
            meta={"dont_obey_robotstxt": True, "thresher_kind": "robots"},
            callback=NO_CALLBACK,
        )
        self._stats.inc_value("robotstxt/request_count")
        self._expires[netloc] = time.monotonic() + MAX_AGE
        try:
            response = await self.crawler.engine.download_async(robots)
        except IgnoreRequest as exc:  # e.g. redirected to a refused address: no robots.txt
            logger.debug("robots.txt of %s not fetched: %s", netloc, exc)
            return None
        except Exception as exc:  # timeout, refused or dropped connection, DNS failure
            return self._unreachable(netloc, type(exc).__name__, f"{type(exc).__name__}: {exc}")
        self._stats.inc_value("robotstxt/response_count")
        self._stats.inc_value(f"robotstxt/response_status_count/{response.status}")
        if response.status >= 500 or response.status == 429:
            return self._unreachable(netloc, str(response.status), f"HTTP {response.status}")
        body = response.body
        if 400 <= response.status < 500:
            self._stats.inc_value("thresher/robots_txt/4xx_allow_all")
            body = b""  # the error page is not a robots.txt
        parser = build_from_crawler(self._parserimpl, self.crawler, body)
        config = self.crawler.spider.config
        if "robots_ai" in config.optout_signals:
            groups = robots_groups(body)
            self._ai_groups[netloc] = tuple(t for t in config.ai_tokens if t.lower() in groups)
        await self.crawler.signals.send_catch_log_async(
            signal=signals.robots_parsed, robotparser=parser, request=request
        )
        return parser

    def _unreachable(self, netloc: str, key: str, reason: str) -> Unreachable:
        self._stats.inc_value(f"thresher/robots_txt/unreachable/{key}")
        self._expires[netloc] = time.monotonic() + self.retry_delay
        logger.info(
            "robots.txt of %s unreachable (%s): host treated as disallowed, fetched again "
            "after %.0f s on the next request for it",
            netloc,
            reason,
            self.retry_delay,
        )
        return Unreachable(reason)
