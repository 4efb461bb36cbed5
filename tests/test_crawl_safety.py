"""Non-public addresses are refused after DNS resolution, on seeds and on redirects."""

from __future__ import annotations

from pathlib import Path

import pytest

from thresher.crawlers.config import CrawlConfig
from thresher.crawlers.localsite import LocalSite, LoggingHandler
from thresher.crawlers.netsafety import is_public_address
from thresher.crawlers.runner import crawl

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-site"


@pytest.mark.parametrize(
    "address,public",
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata endpoint
        ("100.64.0.1", False),  # carrier-grade NAT
        ("224.0.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),  # v4-mapped loopback
        ("240.0.0.1", False),
    ],
)
def test_public_address_classification(address, public):
    assert is_public_address(address) is public


class RedirectingHandler(LoggingHandler):
    def do_GET(self):
        target = self.server.redirects.get(self.path)
        if target is None:
            return super().do_GET()
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_private_seeds_refused_and_nothing_fetched(tmp_path):
    with LocalSite(DEMO) as site:
        seeds = [
            site.url("/"),
            f"http://localhost:{site.port}/",
            f"http://[::1]:{site.port}/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.255.255.1/",
        ]
        config = CrawlConfig(seeds=seeds, autothrottle=False, timeout=2, retries=0, log_level="WARNING")
        summary = crawl(config, tmp_path)
        assert site.hits == []  # not even robots.txt
    assert summary["pages"] == 0 and summary["requests"] == 0
    assert summary["blocked_address"] == len(seeds)
    assert not list((tmp_path / "warc").glob("*.warc.gz*"))


def test_redirect_to_private_address_refused(tmp_path):
    """The first host is explicitly allowed; where it redirects to is still checked."""
    with LocalSite(DEMO) as inner, LocalSite(DEMO, handler=RedirectingHandler) as site:
        site.server.redirects = {
            "/metadata": "http://169.254.169.254/latest/meta-data/",
            "/loopback": f"http://127.0.0.1:{inner.port}/",
            "/by-name": f"http://localhost:{inner.port}/",
        }
        config = CrawlConfig(
            seeds=[site.url("/metadata"), site.url("/loopback"), site.url("/by-name")],
            allow_private_hosts=[f"127.0.0.1:{site.port}"],
            same_host=False,
            autothrottle=False,
            timeout=2,
            retries=0,
            log_level="WARNING",
        )
        summary = crawl(config, tmp_path)
        assert inner.hits == []
        assert sorted(h.path for h in site.hits) == [
            "/.well-known/tdmrep.json",  # TDM reservations are read before the first page
            "/by-name",
            "/loopback",
            "/metadata",
            "/robots.txt",
        ]
    assert summary["blocked_address"] == 3
    assert summary["pages"] == 0
