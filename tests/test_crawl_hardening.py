"""Hardening of the crawler against an adversarial web (issue #20, items 11–13).

* addresses that embed a private IPv4 address (6to4, Teredo, NAT64, IPv4-mapped) or are
  site-local are refused; ``allow_private`` still refuses link-local (cloud metadata);
* robots.txt answering 5xx (or not at all) means "disallow everything" (RFC 9309 §2.3.1.4),
  4xx means "allow everything" (§2.3.1.3);
* a link trap (every page links to 50 new pages) cannot grow the frontier without bound.

Every crawl here runs against real HTTP servers on 127.0.0.1 and reads their access logs.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from thresher.crawlers.config import CrawlConfig
from thresher.crawlers.localsite import LocalSite, LoggingHandler
from thresher.crawlers.netsafety import AddressPolicy, address_refusal, is_public_address
from thresher.crawlers.runner import crawl

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-site"


# ---------------------------------------------------------------- item 13: address classes


@pytest.mark.parametrize(
    "address,public",
    [
        # public, must stay public
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("93.184.215.14", True),
        ("2001:4860:4860::8888", True),
        ("2606:4700:4700::1111", True),
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("::ffff:8.8.8.8", True),
        ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", True),  # Teredo: server 65.54.227.120, client 8.8.8.8
        # from the issue
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
        ("2002:a9fe:a9fe::", False),  # 6to4 of 169.254.169.254 (cloud metadata)
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo, client 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo, client 192.0.2.45 (documentation)
        ("2001:0:a00:1::1", False),  # Teredo, server 10.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b:1::808:808", False),  # NAT64 local-use prefix: the operator's own network
        ("fec0::1", False),  # site-local
        ("feff::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        # the ordinary non-public ranges
        ("127.0.0.1", False),
        ("127.255.255.254", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("172.31.255.255", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("100.127.255.255", False),
        ("192.0.0.8", False),  # IETF protocol assignments
        ("192.0.2.1", False),  # documentation
        ("198.18.0.1", False),  # benchmarking
        ("224.0.0.1", False),
        ("239.255.255.250", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("0.0.0.0", False),
        ("::", False),
        ("::1", False),
        ("::a00:1", False),  # IPv4-compatible (deprecated)
        ("fe80::1", False),
        ("fd00::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("2001:db8::1", False),
        ("3fff::1", False),  # documentation (RFC 9637)
        ("100::1", False),  # discard-only
    ],
)
def test_public_address_classification(address, public):
    assert is_public_address(address) is public, address_refusal(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address,allowed",
    [
        ("127.0.0.1", True),
        ("10.0.0.1", True),
        ("192.168.0.10", True),
        ("fd00::1", True),
        ("2002:a00:1::", True),  # 6to4 of a private address: private, allowed
        ("169.254.169.254", False),
        ("169.254.0.1", False),
        ("fe80::1", False),
        ("::ffff:169.254.169.254", False),
        ("2002:a9fe:a9fe::", False),
        ("64:ff9b::a9fe:a9fe", False),
    ],
)
def test_allow_private_still_refuses_link_local(address, allowed):
    policy = AddressPolicy(allow_private=True, allow_hosts=[])
    refusal = policy.refusal("http://example.test/", ipaddress.ip_address(address))
    assert (refusal is None) is allowed, refusal


def test_link_local_allowed_when_named():
    ip = ipaddress.ip_address("169.254.169.254")
    url = "http://169.254.169.254/latest/"
    assert AddressPolicy(True, [], networks=["169.254.0.0/16"]).refusal(url, ip) is None
    assert AddressPolicy(False, [], networks=["169.254.169.254/32"]).refusal(url, ip) is None
    assert AddressPolicy(True, ["169.254.169.254"]).refusal(url, ip) is None
    assert AddressPolicy(True, [], networks=["10.0.0.0/8"]).refusal(url, ip) is not None


def test_demo_mode_refuses_metadata_address_and_logs_it(tmp_path, capfd):
    """``--allow-private`` crawls 127.0.0.1 but not a link-local (metadata) address, and the
    refused URL is named in the (partition process's) log at DEBUG with the reason."""
    with LocalSite(DEMO) as site:
        config = CrawlConfig(
            seeds=[site.url("/faq/index.en.html"), "http://169.254.169.254/latest/meta-data/"],
            allow_private=True,
            max_depth=0,
            autothrottle=False,
            timeout=2,
            retries=0,
            log_level="DEBUG",
        )
        summary = crawl(config, tmp_path)
    assert summary["pages"] == 1
    assert summary["blocked_address"] == 1
    log = capfd.readouterr().err
    assert "http://169.254.169.254/latest/meta-data/" in log and "link-local" in log


# ---------------------------------------------------------------- item 12: robots.txt 4xx / 5xx


class RobotsHandler(LoggingHandler):
    """The demo site, with robots.txt answered as ``server.robots`` says: a status code, or
    ``"drop"`` (the connection is closed without an answer). ``server.robots_after`` (a status,
    after the first answer) lets a robots.txt recover."""

    def do_GET(self):
        if self.path != "/robots.txt":
            return self._page() if self.path in self.server.pages else super().do_GET()
        mode = self.server.robots
        self.server.robots = getattr(self.server, "robots_after", mode)
        if mode == "drop":
            self.log_request(0)
            self.close_connection = True
            return
        body = b"User-agent: *\nDisallow:\n" if mode == 200 else b"<html>error</html>"
        self.send_response(mode)
        self.send_header("Content-Type", "text/plain" if mode == 200 else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _page(self):
        delay, links = self.server.pages[self.path]
        time.sleep(delay)
        items = "".join(f'<a href="{u}">{u}</a> ' for u in links)
        body = f"<!DOCTYPE html><html><body><p>{self.path}</p>{items}</body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def robots_site(robots, pages: dict | None = None, robots_after=None) -> LocalSite:
    site = LocalSite(DEMO, handler=RobotsHandler)
    site.server.robots = robots
    site.server.pages = pages or {}
    if robots_after is not None:
        site.server.robots_after = robots_after
    return site  # started by ``with``


def test_robots_5xx_or_unreachable_disallows_host_4xx_allows(tmp_path):
    """RFC 9309: 503 or a dropped connection (after the retries) → the host is not crawled;
    404 → the host is crawled as if robots.txt allowed everything."""
    seed = "/faq/index.en.html"
    with robots_site(503) as down, robots_site("drop") as dropped, robots_site(404) as missing:
        config = CrawlConfig(
            seeds=[down.url(seed), dropped.url(seed), missing.url(seed)],
            allow_private=True,
            max_depth=1,
            autothrottle=False,
            timeout=4,
            retries=1,
            retry_backoff_base=0.1,
            sitemaps=False,
            log_level="WARNING",
        )
        summary = crawl(config, tmp_path)
        assert down.paths() == ["/robots.txt", "/robots.txt"]  # one retry, then no page at all
        assert dropped.paths() == ["/robots.txt", "/robots.txt"]
        fetched = set(missing.paths())
    faq_pages = {f"/faq/{p.name}" for p in (DEMO / "faq").glob("*.en.html")}
    assert fetched == {"/robots.txt", "/.well-known/tdmrep.json"} | faq_pages
    assert summary["pages"] == len(faq_pages)
    assert summary["robots_unavailable"] == 2  # the two seeds refused
    assert summary["robots_txt"]["unreachable/503"] == 1
    assert summary["robots_txt"]["4xx_allow_all"] == 1
    assert sum(v for k, v in summary["robots_txt"].items() if k.startswith("unreachable/")) == 2
    assert summary["errors"] == {}


def test_unreachable_robots_fetched_again_after_the_delay(tmp_path):
    """A robots.txt that answered 503 is asked again once ``robots_retry_delay`` has passed,
    and the host's later pages are crawled when it then answers 200."""
    with robots_site(503, robots_after=200, pages={"/later.html": (0, [])}) as flaky:
        pages = {
            "/start.html": (0, ["/slow.html", flaky.url("/early.html")]),
            "/slow.html": (3.0, [flaky.url("/later.html")]),
        }
        with robots_site(200, pages=pages) as healthy:
            config = CrawlConfig(
                seeds=[healthy.url("/start.html"), flaky.url("/faq/index.en.html")],
                allowed_domains=["127.0.0.1"],
                allow_private=True,
                max_depth=2,
                autothrottle=False,
                timeout=8,
                retries=0,
                robots_retry_delay=1.5,
                sitemaps=False,
                log_level="WARNING",
            )
            summary = crawl(config, tmp_path)
        paths = flaky.paths()
    assert paths.count("/robots.txt") == 2
    assert "/later.html" in paths  # requested after the delay, robots.txt answered 200
    assert "/faq/index.en.html" not in paths  # refused while robots.txt was unreachable
    assert summary["robots_txt"]["refetched"] == 1
    assert summary["robots_unavailable"] >= 1


# ---------------------------------------------------------------- item 11: bounded frontier

TRAP_FANOUT = 50


class TrapHandler(LoggingHandler):
    """A crawler trap: /t/N links to 50 pages never seen before, /t/(50N+1) … /t/(50N+50)."""

    def do_GET(self):
        if not self.path.startswith("/t/"):
            return super().do_GET()  # robots.txt of the demo site (allows everything)
        n = int(self.path[3:] or 0)
        links = "".join(
            f'<a href="/t/{n * TRAP_FANOUT + i}">page {i}</a> ' for i in range(1, TRAP_FANOUT + 1)
        )
        body = f"<!DOCTYPE html><html><body><h1>trap {n}</h1>{links}</body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_link_trap_is_bounded_by_the_host_cap_and_the_frontier_bound(tmp_path):
    """Defaults except small bounds: the crawl ends, the host's pages stay within the cap, the
    queue (our count and Scrapy's) within the bound, and the links dropped are counted."""
    cap, bound = 120, 40
    with LocalSite(DEMO, handler=TrapHandler) as site:
        config = CrawlConfig(
            seeds=[site.url("/t/0")],
            max_pages_per_host=cap,
            max_queued_requests=bound,
            allow_private=True,
            autothrottle=False,  # our own server: as fast as it goes
            log_level="WARNING",
        )
        started = time.monotonic()
        summary = crawl(config, tmp_path)
        elapsed = time.monotonic() - started
        fetched = [p for p in site.paths() if p.startswith("/t/")]
    assert elapsed < 60
    assert summary["pages"] == cap
    assert len(fetched) == len(set(fetched)) == cap  # nothing fetched beyond the cap
    (partition,) = summary["partitions"]
    assert partition["queued_peak"] <= bound
    assert 0 < partition["scheduler_peak"] <= bound
    assert partition["queued_at_close"] == 0  # every queued request was accounted for
    assert summary["overflow"]["frontier_full"] > 0
    assert summary["overflow"]["host_cap"] > 0
    links_seen = cap * TRAP_FANOUT
    assert summary["overflow"]["frontier_full"] + summary["overflow"]["host_cap"] >= links_seen - 2 * cap
    journaled = sum(1 for path in (tmp_path / "state").glob("journal-*.tsv") for _ in open(path))
    assert journaled < cap  # only URLs that were queued (the seed is not journaled)


def test_bounds_and_networks_from_the_command_line():
    import argparse

    from thresher.crawlers.cli import flag_overrides, register
    from thresher.crawlers.config import crawl_config

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    defaults = crawl_config({}, flag_overrides(parser.parse_args(["crawl", "-o", "x"])))
    assert (defaults.max_pages_per_host, defaults.max_queued_requests) == (10_000, 10_000_000)
    assert defaults.robots_retry_delay == 600 and defaults.allow_networks == []
    args = parser.parse_args(
        "crawl -o x --max-pages-per-host 0 --max-queued-requests 5000 --demo "
        "--allow-network 169.254.0.0/16 --allow-network fe80::/10".split()
    )
    config = crawl_config({}, flag_overrides(args))
    assert (config.max_pages_per_host, config.max_queued_requests) == (0, 5000)  # 0: no cap
    assert config.allow_private and config.allow_networks == ["169.254.0.0/16", "fe80::/10"]


@pytest.mark.slow
def test_link_trap_under_default_bounds_ends_with_flat_memory(tmp_path):
    """The issue's case with the shipped defaults (AutoThrottle off only, for speed): the trap's
    host stops at 10,000 pages and the partition's peak RSS stays near its start (~170 MB
    measured, against 800 MB and growing after 110 s without the bounds)."""
    root = Path(__file__).resolve().parents[1]
    with LocalSite(DEMO, handler=TrapHandler) as site:
        cmd = [sys.executable, "-m", "thresher.cli", "crawl", site.url("/t/0"), "--output", str(tmp_path)]
        cmd += ["--allow-private", "--set", "autothrottle=false", "--set", "log_level=WARNING"]
        subprocess.run(cmd, cwd=root, check=True, timeout=500, stdout=subprocess.DEVNULL)
    summary = json.loads((tmp_path / "crawl-stats.json").read_text())
    assert summary["pages"] == 10_000
    assert summary["overflow"]["host_cap"] > 400_000
    (partition,) = summary["partitions"]
    assert partition["queued_peak"] <= 10_000
    assert partition["max_rss_mb"] < 350, partition["max_rss_mb"]
