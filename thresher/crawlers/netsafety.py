"""Refusing non-public network addresses, checked on the address actually connected to.

Names are resolved through the reactor's resolver, the same cached resolver Scrapy connects
with, so the address checked is the address used (a second lookup for the connection hits the
cache instead of the DNS). The peer address of every response is checked again before anything
is stored (``RawCaptureMiddleware``), which also catches a resolver that changed its answer.
"""

from __future__ import annotations

import ipaddress
import logging

from scrapy.exceptions import IgnoreRequest
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached

logger = logging.getLogger(__name__)


class BlockedAddress(IgnoreRequest):
    """The URL's host is (or resolves to) an address we must not fetch."""


def is_public_address(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for globally routable unicast addresses only."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class AddressPolicy:
    """Which (host, address) pairs may be fetched."""

    def __init__(self, allow_private: bool, allow_hosts: list[str]):
        self.allow_private = allow_private
        self.allow_hosts = {h.lower() for h in allow_hosts}

    @classmethod
    def from_settings(cls, settings) -> AddressPolicy:
        return cls(
            settings.getbool("THRESHER_ALLOW_PRIVATE"), settings.getlist("THRESHER_ALLOW_PRIVATE_HOSTS")
        )

    def exempt(self, url: str) -> bool:
        """No check needed: everything is allowed, or this host is on the allow list."""
        if self.allow_private:
            return True
        if not self.allow_hosts:
            return False
        from thresher.crawlers.scope import host_of, netloc_of

        return netloc_of(url) in self.allow_hosts or host_of(url) in self.allow_hosts


class AddressGuardMiddleware:
    """Downloader middleware: resolve the host, refuse non-public addresses unless allowed.

    Runs before the robots.txt middleware so that a refused host is never contacted at all.
    Every request goes through it again after a redirect, so redirects are covered too.
    """

    def __init__(self, crawler):
        self.crawler = crawler
        self.policy = AddressPolicy.from_settings(crawler.settings)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    async def process_request(self, request, spider=None):
        if self.policy.exempt(request.url):
            return None
        host = urlparse_cached(request).hostname or ""
        address = literal_address(host)
        if address is None:
            from twisted.internet import reactor

            try:
                resolved = await maybe_deferred_to_future(reactor.resolve(host))
            except Exception as exc:  # DNS failure: let the download fail the ordinary way
                logger.debug("DNS lookup of %s failed before the address check: %s", host, exc)
                return None
            address = ipaddress.ip_address(resolved)
        if not is_public_address(address):
            self.crawler.stats.inc_value("thresher/blocked_address")
            raise BlockedAddress(f"{host} resolves to non-public address {address}")
        return None
