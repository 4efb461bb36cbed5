"""The Scrapy ceiling for bench/crawl.py: a plain Scrapy spider that follows links, no WARC, no robots.

    .venv/bin/python bench/bare_spider.py SEEDS_FILE --max-pages N [--concurrency 16] [--per-host 4]

Scrapy's defaults otherwise (its dupefilter, its scheduler, CONCURRENT_ITEMS), so the gap between
this and ``thresher crawl`` is what archiving, robots.txt, scope rules and bookkeeping cost.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import CrawlerProcess


class BareSpider(scrapy.Spider):
    name = "bare"
    allowed_domains = ["127.0.0.1"]

    def __init__(self, seeds: list[str], **kwargs):
        super().__init__(**kwargs)
        self.start_urls = seeds

    async def start(self):
        for url in self.start_urls:
            yield self.request(url)

    def request(self, url: str) -> scrapy.Request:
        # One download slot per host:port, as thresher has (Scrapy's default ignores the port).
        return scrapy.Request(url, callback=self.parse, meta={"download_slot": urlsplit(url).netloc})

    def parse(self, response):
        for href in response.css("a::attr(href)").getall():
            yield self.request(response.urljoin(href))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("seeds")
    ap.add_argument("--max-pages", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--per-host", type=int, default=4)
    args = ap.parse_args()
    with open(args.seeds, encoding="utf-8") as fh:
        seeds = [line.strip() for line in fh if line.strip()]
    process = CrawlerProcess(
        settings={
            "LOG_LEVEL": "WARNING",
            "CONCURRENT_REQUESTS": args.concurrency,
            "CONCURRENT_REQUESTS_PER_DOMAIN": args.per_host,
            "CLOSESPIDER_PAGECOUNT": args.max_pages,
            "ROBOTSTXT_OBEY": False,
            "TELNETCONSOLE_ENABLED": False,
            "DEPTH_PRIORITY": 1,  # breadth first, as thresher
            "SCHEDULER_DISK_QUEUE": "scrapy.squeues.PickleFifoDiskQueue",
            "SCHEDULER_MEMORY_QUEUE": "scrapy.squeues.FifoMemoryQueue",
        }
    )
    process.crawl(BareSpider, seeds=seeds)
    process.start()


if __name__ == "__main__":
    main()
