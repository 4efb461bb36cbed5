"""Entry point of one crawl partition: ``python -m thresher.crawlers.run_partition SPEC.json``.

Each partition is its own process because Twisted's reactor can start only once per process.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from thresher.crawlers.config import CrawlConfig
from thresher.crawlers.settings import scrapy_settings
from thresher.crawlers.spider import PartitionSpec, ThresherSpider


def run(spec_path: str) -> int:
    from scrapy.crawler import CrawlerProcess

    spec = PartitionSpec.load(spec_path)
    config = CrawlConfig(**spec.config)
    process = CrawlerProcess(settings=scrapy_settings(config), install_root_handler=True)
    process.crawl(ThresherSpider, spec=spec)
    process.start()
    if not Path(spec.stats_path).exists():  # the spider never closed cleanly
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("spec", help="partition spec JSON written by thresher.crawlers.runner")
    args = parser.parse_args(argv)
    logging.captureWarnings(True)
    return run(args.spec)


if __name__ == "__main__":
    sys.exit(main())
