"""Scrapy's downloader with a global cap on transfers, not on requests waiting out a delay, and
politeness per server address on top of politeness per host.

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

Per address (``AddressGate``): many hosts on one server address (shared hosting: thousands of
sites on one IP) share one budget, at most ``THRESHER_CONCURRENT_PER_IP`` transfers at once,
started at least ``THRESHER_IP_DELAY`` seconds apart, whatever their host slots allow.
Scrapy's own ``CONCURRENT_REQUESTS_PER_IP`` was not used: it replaces the host slot by an
address slot (one delay and one robots.txt Crawl-delay for all the address's hosts, so
AutoThrottle and Crawl-delay stop being per site), it is ignored for requests that name their
slot (ours do, HostSlotMiddleware), and it keys a host's first request by its name, because
the name is resolved only when that request connects. Here the host's slot keeps its own
delay and concurrency, and a transfer its slot lets start then waits at its address's gate,
holding its host's slot meanwhile (the host's delay counts from when it really starts). A
loopback address is told apart by port (``127.0.0.1:8001`` and ``127.0.0.1:8002`` are two
gates): only a crawl that allows private networks reaches one, and there the ports are the
test servers of one machine (the synthetic web of bench/crawl.py is 1,000 of them).
"""

from __future__ import annotations

import ipaddress
import logging
from collections import deque
from time import monotonic

from scrapy.core.downloader import Downloader, Slot
from scrapy.resolver import dnscache
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import Deferred

from thresher.crawlers.middlewares import WELL_KNOWN
from thresher.crawlers.netsafety import literal_address

logger = logging.getLogger(__name__)

MAX_WAITING = 4096
"""Requests waiting for their host (in memory, ~1 KB each) at most, however many hosts."""

GATE_IDLE_S = 60.0
"""An address's gate with nothing in flight or waiting for this long is forgotten."""


class AddressGate:
    """One server address's budget: at most ``concurrency`` transfers at once, each started at
    least ``delay`` seconds after the one before; the others wait in arrival order."""

    __slots__ = ("concurrency", "delay", "active", "last", "waiters", "timer")

    def __init__(self, concurrency: int, delay: float):
        self.concurrency = concurrency
        self.delay = delay
        self.active = 0
        self.last = float("-inf")
        self.waiters: deque[Deferred] = deque()
        self.timer = None

    def enter(self) -> Deferred | None:
        """None when the transfer may start now (it is counted); otherwise a Deferred that
        fires once it may (counted then)."""
        now = monotonic()
        if not self.waiters and self.active < self.concurrency and now - self.last >= self.delay:
            self.active += 1
            self.last = now
            return None
        waiting: Deferred = Deferred()
        self.waiters.append(waiting)
        self._wake()
        return waiting

    def leave(self) -> None:
        self.active -= 1
        self._wake()

    def idle_since(self, now: float) -> bool:
        return not self.active and not self.waiters and now - self.last >= GATE_IDLE_S

    def _wake(self) -> None:
        while self.waiters and self.active < self.concurrency:
            if self.waiters[0].called:  # cancelled while it waited (the crawl is closing)
                self.waiters.popleft()
                continue
            now = monotonic()
            wait = self.last + self.delay - now
            if wait > 0:
                if self.timer is None:
                    self.timer = call_later(wait, self._timer_fired)
                return
            self.active += 1
            self.last = now
            self.waiters.popleft().callback(None)

    def _timer_fired(self) -> None:
        self.timer = None
        self._wake()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def gate_key(address: str, port: int | None) -> str:
    """The address whose budget a transfer uses; a loopback address with its port."""
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:  # not an address (a resolver that answered a name): that name
        loopback = False
    return f"{address}:{port}" if loopback else address


class PoliteDownloader(Downloader):
    def __init__(self, crawler):
        super().__init__(crawler)
        self.transfers = 0
        self.ip_concurrency_cap = crawler.settings.getint("THRESHER_CONCURRENT_PER_IP")
        self.ip_delay = crawler.settings.getfloat("THRESHER_IP_DELAY")
        self.gates: dict[str, AddressGate] = {}

    def _get_slot(self, request, spider=None):
        """A host's well-known slot (middlewares.HostSlotMiddleware): one transfer at a time,
        ``DOWNLOAD_DELAY`` apart, not the AutoThrottle start delay of page slots."""
        key = self.get_slot_key(request)
        if key in self.slots:
            return key, self.slots[key]
        if key.endswith(WELL_KNOWN):
            self.slots[key] = Slot(1, self.settings.getfloat("DOWNLOAD_DELAY"), 0.0)
            self._start_slot_gc()
            return key, self.slots[key]
        key, slot = super()._get_slot(request)
        well_known = self.slots.get(key + WELL_KNOWN)
        if key in self.per_slot_settings and well_known is not None:
            # a robots.txt Crawl-delay: it counts from the robots.txt request
            slot.lastseen = max(slot.lastseen, well_known.lastseen)
        return key, slot

    async def _download(self, slot, request):
        gate = None
        if self.ip_concurrency_cap:
            # The host's slot is taken while its transfer waits for the address, so the slot
            # starts nothing else meanwhile.
            slot.transferring.add(request)
            try:
                gate = await self._enter_gate(request)
            except BaseException:
                slot.transferring.discard(request)
                self._process_queue(slot)
                raise
            slot.lastseen = monotonic()  # the host's delay counts from the real start
        self.transfers += 1
        try:
            return await super()._download(slot, request)
        finally:
            self.transfers -= 1
            if gate is not None:
                gate.leave()

    async def _enter_gate(self, request) -> AddressGate | None:
        parts = urlparse_cached(request)
        host = parts.hostname or ""
        address = await self._address_of(host)
        if address is None:  # no answer: the download fails the ordinary way, ungated
            return None
        key = gate_key(address, parts.port or (443 if parts.scheme == "https" else 80))
        gate = self.gates.get(key)
        if gate is None:
            gate = self.gates[key] = AddressGate(self.ip_concurrency_cap, self.ip_delay)
        waiting = gate.enter()
        if waiting is not None:
            self.crawler.stats.inc_value("thresher/politeness/ip_waits")
            # Only the crawl closing cancels this wait; the gate goes with the downloader then.
            await maybe_deferred_to_future(waiting)
        return gate

    async def _address_of(self, host: str) -> str | None:
        """The host's address: a literal one, the DNS cache's (AddressGuardMiddleware resolved
        it already), or a lookup through the same cached resolver."""
        literal = literal_address(host)
        if literal is not None:
            return str(literal)
        address = dnscache.get(host)
        if isinstance(address, str):
            return address
        from twisted.internet import reactor

        try:
            return str(await maybe_deferred_to_future(reactor.resolve(host)))
        except Exception as exc:
            logger.debug("no address for %s before its transfer: %s", host, exc)
            return None

    def needs_backout(self) -> bool:
        """Backs out when the transfers reach the cap, or the requests waiting (in the
        middlewares, e.g. for robots.txt, or in a slot for its delay) reach ``max_waiting``."""
        if 0 < self.total_concurrency <= self.transfers:
            return True
        return len(self.active) - self.transfers >= self.max_waiting

    @property
    def max_waiting(self) -> int:
        return min(max(self.total_concurrency, 2 * len(self.slots)), MAX_WAITING)

    def _slot_gc(self, age: float = 60) -> None:
        super()._slot_gc(age)
        now = monotonic()
        for key in [k for k, gate in self.gates.items() if gate.idle_since(now)]:
            self.gates.pop(key).close()

    def close(self) -> None:
        super().close()
        for gate in self.gates.values():
            gate.close()
        from twisted.internet import reactor

        from thresher.crawlers.dns import ExpiringResolver

        resolver = getattr(reactor, "resolver", None)
        if isinstance(resolver, ExpiringResolver):  # its lookups and expiries, into the stats
            for key, count in resolver.counts.items():
                self.crawler.stats.set_value(key, count)
