"""The frontier on disk: the seen-set, the per-host disk queues, the scheduler, its RAM per
queued URL, and resume after SIGKILL with requests waiting in the disk queues."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from scrapy.http import Request
from scrapy.utils.misc import load_object
from scrapy.utils.test import get_crawler

from thresher.crawlers import diskqueue, seen
from thresher.crawlers.config import CrawlConfig
from thresher.crawlers.diskqueue import MAX_ENTRY_BYTES, HostQueues
from thresher.crawlers.localsite import LocalSite
from thresher.crawlers.runner import crawl
from thresher.crawlers.scheduler import FrontierScheduler
from thresher.crawlers.seen import SeenSet
from thresher.crawlers.settings import scrapy_settings
from thresher.crawlers.spider import PartitionSpec, ThresherSpider
from thresher.crawlers.warc import iter_stored_responses

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- seen-set


def test_seen_set_agrees_with_a_python_set_across_merges(monkeypatch):
    monkeypatch.setattr(seen, "MIN_BUFFER", 16)  # merge into the sorted array every few keys
    rng = random.Random(5)
    ref: set[int] = set()
    keys = SeenSet()
    for _ in range(4000):
        batch = [rng.choice((rng.randrange(3000), rng.getrandbits(64))) for _ in range(rng.randrange(1, 12))]
        batch += batch[:2]  # one page linking the same URL twice
        missing = keys.missing(batch)
        assert missing == [k not in ref for k in batch]
        for key, new in zip(batch, missing, strict=True):
            if new:
                assert keys.add_missing(key) == (key not in ref)
                ref.add(key)
        key = rng.randrange(3000)
        assert keys.add(key) == (key not in ref)
        ref.add(key)
    assert len(keys) == len(ref)
    assert all(k in keys for k in ref) and (2**64 - 1 in keys) == (2**64 - 1 in ref)
    assert keys._merges > 100  # the array path was exercised, not only the recent set


# ---------------------------------------------------------------- disk queues


def test_host_queues_are_fifo_per_host_and_free_spent_segments(monkeypatch, tmp_path):
    monkeypatch.setattr(diskqueue, "SEGMENT_BYTES", 4096)
    monkeypatch.setattr(diskqueue, "WRITE_BUFFER", 512)
    queues = HostQueues(tmp_path)
    expected: dict[str, list[bytes]] = {}
    rng = random.Random(2)
    for i in range(3000):
        host = f"h{rng.randrange(7)}"
        entry = f"{i}\t{host}\t\thttp://{host}/{'x' * rng.randrange(80)}\t".encode()
        queues.push(host, entry)
        expected.setdefault(host, []).append(entry)
        if rng.random() < 0.3:  # interleave pops with pushes, from the unflushed buffer too
            h = queues.ring[0]
            assert queues.pop(h) == expected[h].pop(0)
            if not expected[h]:
                del expected[h]
            queues.ring.rotate(-1)
    assert len(queues) == sum(map(len, expected.values()))
    segments_full = len(queues._segments)
    while queues.ring:
        h = queues.ring[-1]
        assert queues.pop(h) == expected[h].pop(0)
    assert all(not v for v in expected.values())
    assert segments_full > 10 and len(queues._segments) == 1  # spent segments closed
    assert list(tmp_path.iterdir()) == []  # the files are unlinked from the start
    with pytest.raises(ValueError, match="at most"):
        queues.push("h", b"x" * (MAX_ENTRY_BYTES + 1))
    queues.close()


# ---------------------------------------------------------------- scheduler


def _spider(tmp_path: Path):
    config = CrawlConfig(log_level="WARNING")
    crawler = get_crawler(ThresherSpider, scrapy_settings(config))
    spec = PartitionSpec(
        config=config.to_dict(),
        partition=0,
        partitions=1,
        output_dir=str(tmp_path),
        work_file=str(tmp_path / "work.tsv"),
        journal_path=str(tmp_path / "journal.tsv"),
        stats_path=str(tmp_path / "stats.json"),
    )
    spider = ThresherSpider.from_crawler(crawler, spec=spec)
    crawler.spider = spider
    return crawler, spider


def test_settings_name_the_disk_scheduler_and_page_requests_round_trip(tmp_path):
    crawler, spider = _spider(tmp_path)
    scheduler = load_object(crawler.settings["SCHEDULER"]).from_crawler(crawler)
    assert isinstance(scheduler, FrontierScheduler)
    scheduler.open(spider)
    page = spider.page_request("http://a.example:8080/p?q=1", 3)
    page.headers[b"Referer"] = b"http://a.example:8080/"
    packed = scheduler._pack(page)
    assert packed is not None and packed[0] == "a.example:8080"
    back = scheduler._unpack(packed[1])
    assert (back.url, back.priority, back.meta, back.headers.get(b"Referer")) == (
        page.url,
        page.priority,
        page.meta,
        b"http://a.example:8080/",
    )
    assert back.callback == spider.parse and back.errback == spider.on_error
    retry = page.replace(dont_filter=True)
    retry.meta["retry_times"] = 1
    sitemap = Request("http://a.example:8080/sitemap.xml", callback=spider.parse_sitemap, priority=100)
    assert scheduler._pack(retry) is None and scheduler._pack(sitemap) is None
    for request in (page, retry, sitemap):
        scheduler.enqueue_request(request)
    assert len(scheduler) == 3 and len(scheduler.queues) == 1
    assert scheduler.next_request() is retry  # kept in memory, served first
    assert scheduler.next_request() is sitemap
    scheduler.close("finished")


RAM_CHILD = textwrap.dedent(
    """
    import gc, hashlib, json, os, sys
    from thresher.crawlers.diskqueue import HostQueues
    from thresher.crawlers.frontier import Frontier
    from thresher.crawlers.scheduler import page_line

    def rss():
        gc.collect()
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    n, work = int(sys.argv[1]), sys.argv[2]
    frontier = Frontier(os.path.join(work, "journal.tsv"))
    queues = HostQueues(work)
    before = rss()
    for i in range(n):
        host = f"www.site{i % 10000}.example.org"
        url = f"https://{host}/articles/{i // 10000}/a-longer-slug-of-words.html"
        key = int.from_bytes(hashlib.blake2b(url.encode(), digest_size=8).digest(), "big")
        assert frontier.add(url, 2, key)
        queues.push(host, page_line(2, host, "", url, b"https://" + host.encode() + b"/"))
    frontier.flush()
    grown = rss() - before
    print(json.dumps({"per_url": grown / n, "queued": len(queues), "seen": len(frontier.seen),
                      "disk": queues.disk_bytes}))
    """
)


@pytest.mark.slow
def test_frontier_ram_per_queued_url_at_one_million_urls(tmp_path):
    """1M URLs (10,000 hosts) admitted into the seen-set and journal and queued the way the
    scheduler queues them, in a child process: its RSS grows by at most 64 bytes per URL
    (a Python set and queued Request objects took ~1.7 KB, bench/frontier.py)."""
    n = 1_000_000
    proc = subprocess.run(
        [sys.executable, "-c", RAM_CHILD, str(n), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["queued"] == result["seen"] == n
    assert result["disk"] > 80 * n  # the URLs themselves went to disk
    assert result["per_url"] <= 64, result


# ---------------------------------------------------------------- crawls


def build_web(roots: list[Path], ports: list[int], pages: int) -> None:
    """Host h serves /p/0.html ... /p/{pages-1}.html, each linking to 6 pages of its own host
    and one of the next host, so every page is reachable from /p/0.html."""
    for h, root in enumerate(roots):
        (root / "p").mkdir(parents=True)
        (root / "robots.txt").write_text("User-agent: *\nAllow: /\n")
        other = f"http://127.0.0.1:{ports[(h + 1) % len(ports)]}"
        for i in range(pages):
            links = "".join(f'<a href="/p/{(i * 6 + j) % pages}.html">{j}</a> ' for j in range(1, 7))
            links += f'<a href="{other}/p/{(i * 7) % pages}.html">next host</a>'
            body = f"<!DOCTYPE html><html><head><title>{h}/{i}</title></head><body><p>page {i} of host {h}. "
            (root / "p" / f"{i}.html").write_text(body + "text " * 200 + f"</p>{links}</body></html>")


def archived(warc_dir: Path) -> Counter:
    pages: Counter = Counter()
    for path in warc_dir.glob("*.warc.gz"):
        pages.update(r.url for r in iter_stored_responses(path) if r.status == 200)
    return pages


CRAWL_CHILD = (
    "import json, sys; from thresher.crawlers.config import CrawlConfig; "
    "from thresher.crawlers.runner import crawl; "
    "crawl(CrawlConfig(**json.load(open(sys.argv[1]))), sys.argv[2])"
)


def test_hosts_take_turns_and_every_page_is_fetched_once(tmp_path):
    """Three hosts crawled from one seed each: every page archived once, fetched once, and
    the queues really were on disk (all page requests through them)."""
    hosts, pages = 3, 40
    roots = [tmp_path / f"site{h}" for h in range(hosts)]
    for root in roots:
        root.mkdir()
    sites = [LocalSite(root).start() for root in roots]
    try:
        build_web(roots, [s.port for s in sites], pages)
        config = CrawlConfig(
            seeds=[s.url("/p/0.html") for s in sites],
            allow_private=True,
            autothrottle=False,
            sitemaps=False,
            max_depth=50,
            log_level="WARNING",
        )
        summary = crawl(config, tmp_path / "job")
        hits = [Counter(h.path for h in s.hits if h.path.startswith("/p/")) for s in sites]
    finally:
        for s in sites:
            s.stop()
    assert summary["pages"] == hosts * pages
    assert all(len(c) == pages and max(c.values()) == 1 for c in hits)
    final = archived(tmp_path / "job" / "warc")
    assert len(final) == hosts * pages and max(final.values()) == 1
    (partition,) = summary["partitions"]
    assert partition["queued_at_close"] == 0
    assert not [p for p in (tmp_path / "job" / "state").iterdir() if p.name.startswith("frontier")]


@pytest.mark.slow
def test_sigkill_with_a_disk_frontier_resumes_without_loss_or_refetch(tmp_path):
    """A crawl of 3 hosts x 150 pages is killed (SIGKILL, the whole process group) while its
    disk queues hold hundreds of requests, then run again: no page archived before the kill
    is fetched again, every page ends up archived exactly once, and only the pages that were
    in flight at the kill (at most ``concurrent_requests``) were requested twice."""
    hosts, pages = 3, 150
    roots = [tmp_path / f"site{h}" for h in range(hosts)]
    for root in roots:
        root.mkdir()
    sites = [LocalSite(root).start() for root in roots]
    job = tmp_path / "job"
    try:
        build_web(roots, [s.port for s in sites], pages)
        config = CrawlConfig(
            seeds=[s.url("/p/0.html") for s in sites],
            allow_private=True,
            autothrottle=False,
            download_delay=0.03,
            concurrent_per_host=1,
            sitemaps=False,
            max_depth=50,
            warc_max_bytes=30_000,
            log_level="WARNING",
        )
        cfg = tmp_path / "config.json"
        cfg.write_text(json.dumps(config.to_dict()))
        cmd = [sys.executable, "-c", CRAWL_CHILD, str(cfg), str(job)]
        proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
        deadline = time.time() + 90
        while len(archived(job / "warc")) < hosts * pages // 4:
            assert proc.poll() is None, "crawl finished before it could be interrupted"
            assert time.time() < deadline
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and its partition process
        proc.wait()
        before = archived(job / "warc")
        assert 0 < len(before) < hosts * pages // 2
        restart = time.time()
        subprocess.run(cmd, cwd=ROOT, check=True, timeout=180)
        first = [
            Counter(h.path for h in s.hits if h.path.startswith("/p/") and h.time < restart) for s in sites
        ]
        second = [
            Counter(h.path for h in s.hits if h.path.startswith("/p/") and h.time >= restart) for s in sites
        ]
        urls = [s.url("") for s in sites]
    finally:
        for s in sites:
            s.stop()
    refetched = {base + path for base, c in zip(urls, second, strict=True) for path in c} & set(before)
    assert refetched == set()
    final = archived(job / "warc")
    assert len(final) == hosts * pages and max(final.values()) == 1
    twice = sum((a & b).total() for a, b in zip(first, second, strict=True))
    assert twice <= config.concurrent_requests
    assert all(max((a + b).values()) <= 2 for a, b in zip(first, second, strict=True))
    stats = json.loads((job / "crawl-stats.json").read_text())
    assert stats["pages_archived_before"] >= len(before)  # plus those salvaged from .open files
