"""Sitemaps: robots.txt ``Sitemap:`` lines are followed; guessing /sitemap.xml is opt-in.

Issue #21: on a broad crawl the guessed /sitemap.xml is a 404 on most hosts and costs a request
per host, so a host whose robots.txt names no sitemap gets none unless ``guess_sitemap`` is on.
The server is the local site (examples/demo-site) and its access log shows what was requested.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from thresher.crawlers.config import CrawlConfig
from thresher.crawlers.localsite import LocalSite, LoggingHandler
from thresher.crawlers.runner import crawl

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-site"


class SitemapHandler(LoggingHandler):
    """A set robots.txt, a seed page without links, and two sitemaps each listing one more page."""

    def do_GET(self):
        port = self.server.server_address[1]
        route = self.path.split("?")[0]
        if route == "/robots.txt":
            return self._send(self.server.robots.format(port=port).encode(), "text/plain")
        sitemaps = {"/sitemap.xml": "/only-in-guessed.html", "/named-sitemap.xml": "/only-in-named.html"}
        if route in sitemaps:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>'
                '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<url><loc>http://127.0.0.1:{port}{sitemaps[route]}</loc></url></urlset>"
            )
            return self._send(body.encode(), "application/xml")
        if route in ("/leaf.html", "/only-in-guessed.html", "/below-named.html"):
            return self._send(b"<html><body><p>no links here</p></body></html>", "text/html")
        if route == "/only-in-named.html":
            return self._send(b'<html><body><a href="/below-named.html">on</a></body></html>', "text/html")
        return super().do_GET()

    def _send(self, body: bytes, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def crawl_paths(tmp_path: Path, robots: str, max_depth: int = 1, **overrides) -> list[str]:
    site = LocalSite(DEMO, handler=SitemapHandler)
    site.server.robots = robots
    with site:
        config = CrawlConfig(
            seeds=[site.url("/leaf.html")],
            allow_private=True,
            autothrottle=False,
            max_depth=max_depth,  # sitemap URLs are depth 1; the seed links nowhere
            timeout=5,
            retries=0,
            log_level="WARNING",
            **overrides,
        )
        crawl(config, tmp_path)
        return site.paths()


@pytest.mark.parametrize("robots", ["User-agent: *\nDisallow:\n", ""])
def test_no_sitemap_guess_by_default(tmp_path, robots):
    paths = crawl_paths(tmp_path, robots)
    assert "/robots.txt" in paths and "/leaf.html" in paths
    assert "/sitemap.xml" not in paths and "/only-in-guessed.html" not in paths


def test_links_of_a_page_found_in_a_sitemap_are_at_depth_2(tmp_path):
    """A sitemap's page is at depth 1 and its links at depth 2: Scrapy's DepthMiddleware (off
    since issue #21) made such a page depth 2, so under max_depth 2 its links were dropped."""
    robots = "User-agent: *\nDisallow:\n\nSitemap: http://127.0.0.1:{port}/named-sitemap.xml\n"
    assert "/below-named.html" not in crawl_paths(tmp_path / "1", robots)
    assert "/below-named.html" in crawl_paths(tmp_path / "2", robots, max_depth=2)


def test_sitemap_named_by_robots_still_followed(tmp_path):
    robots = "User-agent: *\nDisallow:\n\nSitemap: http://127.0.0.1:{port}/named-sitemap.xml\n"
    paths = crawl_paths(tmp_path, robots)
    assert "/named-sitemap.xml" in paths and "/only-in-named.html" in paths
    assert "/sitemap.xml" not in paths  # a named sitemap is never supplemented by a guess


def test_guess_sitemap_opt_in(tmp_path):
    paths = crawl_paths(tmp_path, "User-agent: *\nDisallow:\n", guess_sitemap=True)
    assert paths.count("/sitemap.xml") == 1 and "/only-in-guessed.html" in paths


def test_guess_sitemap_opt_in_without_robots(tmp_path):
    paths = crawl_paths(tmp_path, "", obey_robots=False, guess_sitemap=True)
    assert "/robots.txt" not in paths and "/only-in-guessed.html" in paths


def test_guess_sitemap_off_without_robots(tmp_path):
    paths = crawl_paths(tmp_path, "", obey_robots=False)
    assert "/robots.txt" not in paths and "/sitemap.xml" not in paths
