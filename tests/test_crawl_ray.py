"""Partitioned crawl on Ray: hosts split over processes, cross-host links handed over as they run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from thresher.crawlers.config import CrawlConfig
from thresher.crawlers.frontier import partition_of
from thresher.crawlers.localsite import LocalSite, LoggingHandler
from thresher.crawlers.runner import crawl
from thresher.crawlers.scope import netloc_of
from thresher.crawlers.warc import iter_stored_responses

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-site"


class LinkingHandler(LoggingHandler):
    """The German FAQ, with an index that also links to the other hosts."""

    def do_GET(self):
        if self.path == "/":
            links = ["/faq/de/index.de.html"] + [f"http://127.0.0.1:{p}/" for p in self.server.peers]
            body = "".join(f'<a href="{u}">{u}</a> ' for u in links).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


@pytest.mark.slow
def test_ray_partitions_share_hosts_without_overlap(tmp_path, ray_session):
    sites = [LocalSite(DEMO, handler=LinkingHandler).start() for _ in range(3)]
    try:
        for site in sites:
            site.server.peers = [s.port for s in sites if s is not site]
        config = CrawlConfig(
            seeds=[sites[0].url("/")],  # the other two hosts are only reached through links
            allowed_domains=["127.0.0.1"],
            allow_private=True,
            autothrottle=False,
            partitions=2,
            max_depth=3,
            log_level="WARNING",
        )
        summary = crawl(config, tmp_path)
        pages_per_site = 1 + len(list(DEMO.glob("faq/de/*.html")))
        archived: Counter = Counter()
        for path in (tmp_path / "warc").glob("*.warc.gz"):
            archived.update(r.url for r in iter_stored_responses(path) if r.status == 200)
        for site in sites:
            mine = [u for u in archived if u.startswith(site.base)]
            assert len(mine) == pages_per_site
            hits = Counter(h.path for h in site.hits)
            assert max(hits.values()) == 1  # no page (nor robots.txt) fetched twice
        assert max(archived.values()) == 1
        assert summary["ray"] is True
        owners = {partition_of(netloc_of(s.base), 2) for s in sites}
        assert summary["rounds"] == 1  # links are handed over while the partitions run
        assert len(summary["partitions"]) == 2  # both start, seeds or not
        if len(owners) > 1:  # some host belongs to the partition that did not get the seed
            assert summary["handoffs_received"] > 0
        names = {p.name.split("-")[1] for p in (tmp_path / "warc").glob("*.warc.gz")}
        assert names == {f"p{o:03d}" for o in owners}
    finally:
        for site in sites:
            site.stop()
