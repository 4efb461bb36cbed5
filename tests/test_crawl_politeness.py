"""Politeness per server address and the DNS cache's expiry (issue #21, item 3).

One real HTTP server on 127.0.0.1 answers for several host names that resolve to that one
address (``localhost``, ``127.1``, ``127.0.1``: the system resolver reads the last two as
127.0.0.1 too), so the crawler sees several sites, each with its own robots.txt and its own
download slot, behind one IP address. The server's log of when each request arrived and
when its response was sent shows how many were in flight at once and how far apart they
started.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from thresher.config import ConfigError
from thresher.crawlers.config import CrawlConfig, crawl_config
from thresher.crawlers.localsite import LocalSite, LoggingHandler
from thresher.crawlers.runner import crawl

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-site"
SERVE_S = 0.4
"""Seconds the server takes per page: long enough for transfers to overlap."""
PAGES_PER_HOST = 4


class SlowSiteHandler(LoggingHandler):
    """robots.txt allowing all, no tdmrep.json, and /p/N.html pages linking to the next one,
    each page answered after ``SERVE_S``; logs (Host, path, arrived, sent) per request."""

    def do_GET(self):  # noqa: N802 - the stdlib's handler interface
        arrived = time.monotonic()
        if self.path == "/robots.txt":
            self._send(200, "text/plain", b"User-agent: *\nDisallow:\n")
        elif self.path.startswith("/p/"):
            n = int(self.path[3:].split(".")[0])
            time.sleep(SERVE_S)
            link = f'<a href="/p/{n + 1}.html">next</a>' if n + 1 < PAGES_PER_HOST else ""
            body = f"<!DOCTYPE html><html><body><p>page {n}</p>{link}</body></html>".encode()
            self._send(200, "text/html", body)
        else:
            self._send(404, "text/html", b"<html>not here</html>")
        with self.server.hits_lock:
            self.server.timeline.append((self.headers.get("Host", ""), self.path, arrived, time.monotonic()))

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def names_of_loopback() -> list[str]:
    """Host names that the system resolver turns into 127.0.0.1."""
    names = []
    for name in ("localhost", "127.1", "127.0.1"):
        try:
            if socket.gethostbyname(name) == "127.0.0.1":
                names.append(name)
        except OSError:
            pass
    return names


def max_in_flight(timeline) -> int:
    events = sorted([(a, 1) for _, _, a, _ in timeline] + [(s, -1) for _, _, _, s in timeline])
    peak = now = 0
    for _, step in events:  # a response sent at the instant another arrives: sent first
        now += step
        peak = max(peak, now)
    return peak


def start_gaps(timeline) -> list[float]:
    arrivals = sorted(a for _, _, a, _ in timeline)
    return [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]


def crawl_one_address(tmp_path: Path, name: str, **settings) -> tuple[dict, list]:
    names = names_of_loopback()
    if len(names) < 2:
        pytest.skip(f"fewer than 2 names resolve to 127.0.0.1 here ({names})")
    with LocalSite(DEMO, handler=SlowSiteHandler) as site:
        site.server.timeline = []
        hosts = [f"127.0.0.1:{site.port}"] + [f"{n}:{site.port}" for n in names]
        config = CrawlConfig(
            seeds=[f"http://{h}/p/0.html" for h in hosts],
            allow_private=True,
            autothrottle=False,
            concurrent_per_host=2,
            sitemaps=False,
            retries=0,
            timeout=20,
            **settings,
        )
        summary = crawl(config, tmp_path / name)
        timeline = list(site.server.timeline)
    assert {h for h, _, _, _ in timeline} == set(hosts)  # every name was crawled as its own site
    pages = [t for t in timeline if t[1].startswith("/p/")]
    assert len(pages) == PAGES_PER_HOST * len(hosts)
    return summary, timeline


def test_hosts_on_one_address_share_its_budget(tmp_path):
    """3-4 sites on one address, 2 connections per site allowed: with concurrent_per_ip 2 and
    ip_delay 0.1 the server never has more than 2 requests in flight (it has 2: the cap is
    reached), and no two requests start less than 0.1 s apart. The same crawl without the
    per-address limit (concurrent_per_ip 0) has more in flight, so the check can fail."""
    summary, timeline = crawl_one_address(tmp_path, "gated", concurrent_per_ip=2, ip_delay=0.1)
    assert max_in_flight(timeline) == 2
    assert min(start_gaps(timeline)) >= 0.1 - 0.02  # arrival jitter on the server's clock
    assert summary["partitions"][0]["politeness"]["ip_waits"] > 0

    _, free = crawl_one_address(tmp_path, "free", concurrent_per_ip=0)
    assert max_in_flight(free) > 2
    assert min(start_gaps(free)) < 0.05


def test_dns_entries_expire_after_dns_cache_ttl(tmp_path):
    """Each name is resolved once under the default TTL; with a TTL shorter than the crawl the
    names are resolved again (Scrapy's own cache never expires an entry)."""
    hosts = len(names_of_loopback()) + 1  # Twisted asks the resolver for 127.0.0.1 too
    lasting, _ = crawl_one_address(tmp_path, "lasting")
    assert lasting["partitions"][0]["dns"] == {"lookups": hosts}
    short, _ = crawl_one_address(tmp_path, "short", dns_cache_ttl=0.2)
    dns = short["partitions"][0]["dns"]
    assert dns["expired"] > 0
    assert dns["lookups"] == hosts + dns["expired"]


@pytest.mark.parametrize(
    "override,message",
    [
        ("concurrent_per_ip=-1", "concurrent_per_ip: must be 0 (no limit) to 1024"),
        ("concurrent_per_ip=5000", "concurrent_per_ip: must be 0 (no limit) to 1024"),
        ("ip_delay=-0.5", "ip_delay: must be 0 to 60 seconds"),
        ("ip_delay=600", "ip_delay: must be 0 to 60 seconds"),
        ("dns_cache_ttl=0", "dns_cache_ttl: must be 0.01 to 604800 seconds"),
    ],
)
def test_politeness_limits_validated(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        crawl_config({}, [override])


def test_address_gate_counts_and_spaces_starts():
    """The gate itself, without a crawl: the third transfer waits for a place, and a place
    freed does not let the next start before the delay has passed."""
    from twisted.internet.defer import Deferred

    from thresher.crawlers.downloader import AddressGate, gate_key

    gate = AddressGate(concurrency=2, delay=0.0)
    assert gate.enter() is None and gate.enter() is None
    waiting = gate.enter()
    assert isinstance(waiting, Deferred) and not waiting.called
    gate.leave()
    assert waiting.called and gate.active == 2
    assert gate_key("127.0.0.1", 8001) == "127.0.0.1:8001"
    assert gate_key("::1", 8001) == "::1:8001"
    assert gate_key("93.184.215.14", 80) == "93.184.215.14"


def test_well_known_files_do_not_wait_out_the_host_delay(tmp_path):
    """Under AutoThrottle (1 s start delay) a host's robots.txt, tdmrep.json and first page
    follow each other at once, none overlapping; its second page still waits the host's delay.
    On the page slot, tdmrep.json and the first page each waited ~0.5 s (a 404 never lowers
    AutoThrottle's delay): the first page came ~1 s after robots.txt."""
    with LocalSite(DEMO, handler=SlowSiteHandler) as site:
        site.server.timeline = []
        config = CrawlConfig(
            seeds=[site.url("/p/0.html")], allow_private=True, sitemaps=False, retries=0, timeout=20
        )
        crawl(config, tmp_path / "job")
        timeline = sorted(site.server.timeline, key=lambda t: t[2])
    paths = [path for _, path, _, _ in timeline]
    assert paths[:3] == ["/robots.txt", "/.well-known/tdmrep.json", "/p/0.html"]
    arrived = {path: a for _, path, a, _ in timeline}
    assert arrived["/p/0.html"] - arrived["/robots.txt"] < 0.4
    assert max_in_flight(timeline) == 1
    assert arrived["/p/1.html"] - arrived["/p/0.html"] >= 0.5  # AutoThrottle: (1 s + 0.4 s) / 2
