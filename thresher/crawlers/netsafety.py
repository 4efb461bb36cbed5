"""Refusing non-public network addresses, checked on the address actually connected to.

Names are resolved through the reactor's resolver, the same cached resolver Scrapy connects
with, so the address checked is the address used (a second lookup for the connection hits the
cache instead of the DNS). The peer address of every response is checked again before anything
is stored (``RawCaptureMiddleware``), which also catches a resolver that changed its answer.

An IPv6 address can carry an IPv4 address inside it (IPv4-mapped, 6to4, Teredo, NAT64); a
gateway or relay on the way may deliver such a packet to that IPv4 address, so the embedded
address is what is judged. The ranges refused are those the IANA special-purpose address
registries mark as not globally reachable, listed here so that the answer does not depend on
the Python version's ``ipaddress`` tables (which changed in 3.12 and 3.13), plus whatever
``ipaddress`` itself calls non-global.

``allow_private`` (``--allow-private``, ``--demo``) allows private networks but never
link-local ones (169.254.0.0/16 and fe80::/10, where cloud metadata services answer): those
must be named, as a host in ``allow_private_hosts`` or a network in ``allow_networks``.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from typing import NamedTuple

from scrapy.exceptions import IgnoreRequest
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

LINK_LOCAL = "link-local"


class BlockedAddress(IgnoreRequest):
    """The URL's host is (or resolves to) an address we must not fetch."""


class Refusal(NamedTuple):
    """Why an address is not public: ``kind`` is one word (``link-local``, ``private``...),
    ``detail`` the human-readable reason, naming an embedded IPv4 address if there is one."""

    kind: str
    detail: str


def _nets(*specs: tuple[str, str]) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    return [(ipaddress.ip_network(net), kind) for net, kind in specs]


# IANA IPv4 and IPv6 special-purpose address registries, "Globally Reachable: False" (or N/A
# and not an embedding handled below), plus the deprecated site-local block.
_V4_NOT_GLOBAL = _nets(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "private"),  # shared address space (carrier-grade NAT)
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", LINK_LOCAL),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.0.2.0/24", "reserved"),  # documentation
    ("192.88.99.0/24", "reserved"),  # 6to4 relay anycast (deprecated)
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),  # benchmarking
    ("198.51.100.0/24", "reserved"),
    ("203.0.113.0/24", "reserved"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255
)
_V6_NOT_GLOBAL = _nets(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/8", "reserved"),  # includes the deprecated IPv4-compatible ::/96
    ("100::/64", "reserved"),  # discard-only
    ("100:0:0:1::/64", "reserved"),  # dummy prefix
    ("2001::/23", "reserved"),  # IETF protocol assignments (Teredo is judged before this)
    ("2001:db8::/32", "reserved"),  # documentation
    ("3fff::/20", "reserved"),  # documentation
    ("5f00::/16", "reserved"),  # SRv6 SIDs
    ("fc00::/7", "private"),  # unique local
    ("fe80::/10", LINK_LOCAL),
    ("fec0::/10", "private"),  # site-local (deprecated, still routed inside some networks)
    ("ff00::/8", "multicast"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use: the operator's own
_TEREDO = ipaddress.ip_network("2001::/32")


def _embedded(label: str, inner: ipaddress.IPv4Address) -> Refusal | None:
    refusal = address_refusal(inner)
    if refusal is None:
        return None
    return Refusal(refusal.kind, f"{label} of {inner}: {refusal.detail}")


@functools.lru_cache(maxsize=4096)
def address_refusal(ip: IPAddress) -> Refusal | None:
    """None for a globally routable unicast address; otherwise why it is refused (remembered
    for the last 4,096 addresses: every request and every response asks)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _embedded("IPv4-mapped", ip.ipv4_mapped)
        if ip in _NAT64:
            return _embedded("NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip in _NAT64_LOCAL:
            return Refusal("private", "NAT64 local-use prefix 64:ff9b:1::/48")
        if ip.sixtofour is not None:
            return _embedded("6to4", ip.sixtofour)
        if ip in _TEREDO and ip.teredo is not None:
            server, client = ip.teredo  # the client's address is stored inverted; ipaddress undoes it
            return _embedded("Teredo server", server) or _embedded("Teredo client", client)
        table = _V6_NOT_GLOBAL
    else:
        table = _V4_NOT_GLOBAL
    for net, kind in table:
        if ip in net:
            return Refusal(kind, f"{kind} ({net})")
    if ip.is_link_local:
        return Refusal(LINK_LOCAL, LINK_LOCAL)
    for flag in ("is_loopback", "is_private", "is_multicast", "is_reserved", "is_unspecified"):
        if getattr(ip, flag):
            kind = flag[3:]
            return Refusal(kind, kind)
    if not ip.is_global:
        return Refusal("reserved", "not globally reachable")
    return None


def is_public_address(address: str | IPAddress) -> bool:
    """True for globally routable unicast addresses only (embedded IPv4 addresses judged)."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    return address_refusal(ip) is None


@functools.lru_cache(maxsize=4096)
def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names literally, or None for a name. ``ipaddress`` reads IPv4
    only as dotted decimal and IPv6 only with a colon, so a name is told apart without the
    exception a failed parse costs (every request of a crawl asks; the last 4,096 answers are
    remembered)."""
    host = host.strip("[]")
    if ":" not in host and not host.replace(".", "").isdigit():
        return None
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class AddressPolicy:
    """Which (host, address) pairs may be fetched.

    A host in ``allow_hosts`` (``host`` or ``host:port``) and an address in ``networks``
    (CIDRs) are always allowed; ``allow_private`` allows every other non-public address except
    link-local ones.
    """

    def __init__(self, allow_private: bool, allow_hosts: list[str], networks: list[str] | None = None):
        self.allow_private = allow_private
        self.allow_hosts = {h.lower() for h in allow_hosts}
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks or []]

    @classmethod
    def from_settings(cls, settings) -> AddressPolicy:
        return cls(
            settings.getbool("THRESHER_ALLOW_PRIVATE"),
            settings.getlist("THRESHER_ALLOW_PRIVATE_HOSTS"),
            settings.getlist("THRESHER_ALLOW_NETWORKS"),
        )

    def host_named(self, url: str) -> bool:
        """This URL's host is on the allow list: no address check at all."""
        if not self.allow_hosts:
            return False
        from thresher.crawlers.scope import host_of, netloc_of

        return netloc_of(url) in self.allow_hosts or host_of(url) in self.allow_hosts

    def refusal(self, url: str, ip: IPAddress) -> Refusal | None:
        """None if ``url`` may be fetched from ``ip``; otherwise why not."""
        if self.host_named(url) or any(ip.version == n.version and ip in n for n in self.networks):
            return None
        refusal = address_refusal(ip)
        if refusal is not None and self.allow_private and refusal.kind != LINK_LOCAL:
            return None
        return refusal

    def check(self, url: str, host: str, ip: IPAddress, stats) -> None:
        """Raise BlockedAddress (counted, and logged at DEBUG with the reason) if refused."""
        refusal = self.refusal(url, ip)
        if refusal is None:
            return
        stats.inc_value("thresher/blocked_address")
        stats.inc_value(f"thresher/blocked_address_kind/{refusal.kind}")
        logger.debug("refused %s: %s is %s, %s", url, host, ip, refusal.detail)
        raise BlockedAddress(f"{host} is non-public address {ip} ({refusal.detail})")


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
        if self.policy.host_named(request.url):
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
        self.policy.check(request.url, host, address, self.crawler.stats)
        return None
