"""RAM per queued URL: the disk frontier against the in-memory one it replaced (same run).

Each contender runs in its own child process, which admits N URLs (default 1M, spread over
10,000 hosts) the way a partition does when a page's links are found, and reports how much
its resident memory grew (``/proc/self/statm``, after a garbage collection), divided by N:

* ``disk``:   today's path: ``Frontier.add`` (``SeenSet`` + journal), ``ThresherSpider.
  page_request`` (its per-host counters), the Referer header Scrapy adds, then
  ``FrontierScheduler.enqueue_request`` (one line on disk, 8 bytes in RAM).
* ``memory``: the frontier before it: a Python ``set`` of the same 64-bit keys and the same
  Request objects held by Scrapy's ``ScrapyPriorityQueue`` of ``FifoMemoryQueue`` (what
  ``Scheduler`` did without JOBDIR).

Run: ``.venv/bin/python -m bench.frontier [--urls 1000000]`` (~1 min; the memory contender
needs ~1.5 GB at 1M).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOSTS = 10_000
logger = logging.getLogger("bench.frontier")


def url_at(i: int) -> tuple[str, str]:
    """(url, its referer) of the i-th URL: ~75 characters, like article links."""
    host = f"www.site{i % HOSTS}.example.org"
    n = i // HOSTS
    return (
        f"https://{host}/articles/{2000 + n % 25}/a-longer-slug-of-words-{n}.html",
        f"https://{host}/articles/{2000 + n % 25}/index-{n // 10}.html",
    )


def rss_bytes() -> int:
    gc.collect()
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _crawler():
    from scrapy.utils.test import get_crawler

    from thresher.crawlers.config import CrawlConfig
    from thresher.crawlers.settings import scrapy_settings
    from thresher.crawlers.spider import ThresherSpider

    settings = scrapy_settings(CrawlConfig(log_level="WARNING"))
    return get_crawler(ThresherSpider, settings)


def child_disk(n: int, work: Path) -> dict:
    from thresher.crawlers.scheduler import FrontierScheduler
    from thresher.crawlers.scope import url_key
    from thresher.crawlers.spider import PartitionSpec, ThresherSpider

    crawler = _crawler()
    spec = PartitionSpec(
        config={"log_level": "WARNING", "max_queued_requests": 0, "max_pages_per_host": 0},
        partition=0,
        partitions=1,
        output_dir=str(work),
        work_file=str(work / "work.tsv"),
        journal_path=str(work / "journal.tsv"),
        stats_path=str(work / "stats.json"),
    )
    spider = ThresherSpider.from_crawler(crawler, spec=spec)
    crawler.spider = spider
    scheduler = FrontierScheduler.from_crawler(crawler)
    scheduler.open(spider)
    frontier = spider.state.frontier
    before = rss_bytes()
    started = time.process_time()
    for i in range(n):
        url, referer = url_at(i)
        frontier.add(url, 2, url_key(url))
        request = spider.page_request(url, 2)
        request.headers[b"Referer"] = referer
        scheduler.enqueue_request(request)
    frontier.flush()
    cpu = time.process_time() - started
    grown = rss_bytes() - before
    assert len(scheduler) == n
    out = {
        "bytes_per_url": grown / n,
        "cpu_us_per_url": cpu / n * 1e6,
        "seen_set_bytes_per_url": frontier.seen.nbytes / n,
        "queue_ram_bytes_per_url": scheduler.queues.ram_bytes / n,
        "disk_bytes_per_url": scheduler.queues.disk_bytes / n,
    }
    started = time.process_time()
    popped = sum(
        1 for _ in range(min(n, 100_000)) if scheduler._unpack(scheduler.queues.pop(scheduler.queues.ring[0]))
    )
    out["pop_us_per_url"] = (time.process_time() - started) / popped * 1e6
    scheduler.close("finished")
    return out


def child_memory(n: int, work: Path) -> dict:
    from scrapy.http import Request
    from scrapy.pqueues import ScrapyPriorityQueue
    from scrapy.squeues import FifoMemoryQueue

    from thresher.crawlers.scope import netloc_of, url_key

    crawler = _crawler()
    queue = ScrapyPriorityQueue(crawler, FifoMemoryQueue, "")
    seen: set[int] = set()
    journal = open(work / "journal.tsv", "a", encoding="utf-8")
    before = rss_bytes()
    started = time.process_time()
    for i in range(n):
        url, referer = url_at(i)
        seen.add(url_key(url))
        journal.write(f"2\t{url}\n")
        meta = {"depth": 2, "thresher_kind": "page", "thresher_queued": netloc_of(url)}
        request = Request(url, priority=-2, meta=meta)
        request.headers[b"Referer"] = referer
        queue.push(request)
    journal.flush()
    cpu = time.process_time() - started
    grown = rss_bytes() - before
    assert len(queue) == n and len(seen) == n
    return {"bytes_per_url": grown / n, "cpu_us_per_url": cpu / n * 1e6}


def run_child(kind: str, n: int) -> dict:
    cmd = [sys.executable, "-m", "bench.frontier", "--child", kind, "--urls", str(n)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--urls", type=int, default=1_000_000)
    parser.add_argument("--child", choices=["disk", "memory"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        with tempfile.TemporaryDirectory(prefix="bench-frontier-") as work:
            fn = child_disk if args.child == "disk" else child_memory
            print(json.dumps(fn(args.urls, Path(work))))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    disk = run_child("disk", args.urls)
    memory = run_child("memory", args.urls)
    logger.info("RAM per queued URL at %d URLs over %d hosts (RSS growth / URLs):", args.urls, HOSTS)
    logger.info(
        "  disk frontier:      %6.1f B  (seen-set %.1f B, queue words %.1f B; %.0f B/URL on disk;"
        " %.1f us to queue, %.1f us to pop)",
        disk["bytes_per_url"],
        disk["seen_set_bytes_per_url"],
        disk["queue_ram_bytes_per_url"],
        disk["disk_bytes_per_url"],
        disk["cpu_us_per_url"],
        disk["pop_us_per_url"],
    )
    logger.info(
        "  in-memory frontier: %6.1f B  (%.1f us to queue)", memory["bytes_per_url"], memory["cpu_us_per_url"]
    )
    logger.info("  ratio: %.1fx less RAM", memory["bytes_per_url"] / max(disk["bytes_per_url"], 1e-9))
    return 0


if __name__ == "__main__":
    sys.exit(main())
