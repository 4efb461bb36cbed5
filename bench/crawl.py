"""Crawler throughput and memory against local servers (several hosts via several ports).

    .venv/bin/python bench/crawl.py [--hosts 4] [--pages-per-host 250] [--skip-ray]

Figures: pages/s and MB/s (HTTP bytes received) for one Scrapy process and for Ray with two
partitions; memory per 100k queued URLs (seen-set and queued Request objects); and, side by
side on the same servers, GNU Wget writing WARC (``wget -r --warc-file``, one process per host).
The pipeline peers (datatrove, NeMo Curator, Dolma, DCLM tooling, data-juicer) have no crawler
— they start from Common Crawl — so Wget is the baseline. Pages are the Debian FAQ pages from
examples/demo-site, served under /p/N.html with links forming a binary tree.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thresher.crawlers.localsite import LocalSite, LoggingHandler  # noqa: E402

DEMO = ROOT / "examples" / "demo-site"


class TreeSiteHandler(LoggingHandler):
    def do_GET(self):
        path = self.path
        if path == "/robots.txt":
            return self._send(b"User-agent: *\nDisallow: /nothing/\n", "text/plain")
        if path == "/":
            path = "/p/0.html"
        if not (path.startswith("/p/") and path.endswith(".html") and path[3:-5].isdigit()):
            self.send_error(404)
            return
        n = int(path[3:-5])
        if n >= self.server.pages:
            self.send_error(404)
            return
        body = self.server.bodies[n % len(self.server.bodies)]
        links = "".join(
            f'<a href="/p/{c}.html">next {c}</a>' for c in (2 * n + 1, 2 * n + 2) if c < self.server.pages
        )
        self._send(body.replace(b"</body>", links.encode() + b"</body>", 1), "text/html; charset=utf-8")

    def _send(self, body: bytes, ctype: str):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(pages: int, queue) -> None:
    site = LocalSite(DEMO, handler=TreeSiteHandler)
    site.server.pages = pages
    site.server.bodies = [
        p.read_bytes() for p in sorted(DEMO.glob("faq/**/*.html")) if b"</body>" in p.read_bytes()
    ]
    queue.put(site.port)
    site.server.serve_forever()


def start_servers(hosts: int, pages: int):
    queue = mp.Queue()
    procs = [mp.Process(target=serve, args=(pages, queue), daemon=True) for _ in range(hosts)]
    for p in procs:
        p.start()
    ports = [queue.get(timeout=30) for _ in procs]
    return procs, ports


def run_thresher(ports, partitions: int, workdir: Path) -> dict:
    from thresher.crawlers.config import CrawlConfig
    from thresher.crawlers.runner import crawl

    config = CrawlConfig(
        seeds=[f"http://127.0.0.1:{p}/" for p in ports],
        allow_private=True,
        autothrottle=False,
        concurrent_requests=16,
        concurrent_per_host=4,
        max_depth=100,
        sitemaps=False,
        partitions=partitions,
        log_level="WARNING",
    )
    out = workdir / f"thresher-{partitions}"
    summary = crawl(config, out)
    crawl_s = max(p["elapsed_s"] for p in summary["partitions"])
    return {
        "pages": summary["pages"],
        "wall_s": summary["elapsed_s"],
        "crawl_s": crawl_s,
        "bytes": summary["response_bytes"],
        "warc_bytes": sum(os.path.getsize(f) for f in summary["warc_files"]),
    }


def run_wget(ports, workdir: Path) -> dict | None:
    if shutil.which("wget") is None:
        return None
    out = workdir / "wget"
    out.mkdir()
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                "wget",
                "-q",
                "-r",
                "-l",
                "inf",
                "-np",
                "-e",
                "robots=on",
                "--delete-after",
                f"--warc-file={out}/host{i}",
                "--no-warc-keep-log",
                "-P",
                str(out / f"t{i}"),
                f"http://127.0.0.1:{port}/",
            ],
        )
        for i, port in enumerate(ports)
    ]
    for p in procs:
        p.wait()
    elapsed = time.monotonic() - start
    from warcio.archiveiterator import ArchiveIterator

    pages = bytes_ = 0
    for f in out.glob("*.warc.gz"):
        with open(f, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type == "response" and rec.http_headers.get_statuscode() == "200":
                    data = rec.content_stream().read()
                    if b"<html" in data[:2000].lower():
                        pages += 1
                        bytes_ += len(data)
    return {
        "pages": pages,
        "wall_s": elapsed,
        "crawl_s": elapsed,
        "bytes": bytes_,
        "warc_bytes": sum(os.path.getsize(f) for f in out.glob("*.warc.gz")),
    }


def memory_per_100k() -> dict:
    """Bytes held per queued URL: its seen-set key and its Request object in the scheduler."""
    from scrapy.http import Request

    from thresher.crawlers.frontier import Frontier

    urls = [
        f"https://host{i % 997}.example.org/section/{i // 997}/page-{i}.html?ref=nav" for i in range(100_000)
    ]
    tracemalloc.start()
    frontier = Frontier(None)
    base = tracemalloc.get_traced_memory()[0]
    for u in urls:
        frontier.add(u, 1)
    seen = tracemalloc.get_traced_memory()[0] - base
    base = tracemalloc.get_traced_memory()[0]
    queued = [Request(u, priority=-1, meta={"depth": 1, "thresher_kind": "page"}) for u in urls]
    requests = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del queued
    return {"seen_set_mb": seen / 1e6, "requests_mb": requests / 1e6}


def fmt(name: str, r: dict, ref: dict | None) -> str:
    pps = r["pages"] / r["crawl_s"]
    mbs = r["bytes"] / r["crawl_s"] / 1e6
    ratio = f"  ×{pps / (ref['pages'] / ref['crawl_s']):.2f} vs wget" if ref else ""
    return (
        f"{name:<28} {r['pages']:>6} pages  {r['crawl_s']:7.2f} s  {pps:8.1f} pages/s  {mbs:6.2f} MB/s"
        f"  (wall {r['wall_s']:.1f} s incl. start-up; WARC {r['warc_bytes'] / 1e6:.1f} MB){ratio}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--pages-per-host", type=int, default=250)
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    procs, ports = start_servers(args.hosts, args.pages_per_host)
    workdir = Path(tempfile.mkdtemp(prefix="bench-crawl-"))
    try:
        print(
            f"{args.hosts} hosts x {args.pages_per_host} pages on 127.0.0.1 ports {ports}; {os.cpu_count()} CPUs"
        )
        wget = run_wget(ports, workdir)
        print(fmt(f"wget -r --warc-file (x{args.hosts})", wget, None) if wget else "wget: not installed")
        one = run_thresher(ports, 1, workdir)
        print(fmt("thresher, 1 process", one, wget))
        if not args.skip_ray:
            from thresher.raycontext import init_ray

            init_ray(num_cpus=os.cpu_count(), quiet=True)
            two = run_thresher(ports, 2, workdir)
            print(fmt("thresher, Ray, 2 partitions", two, wget))
        mem = memory_per_100k()
        print(
            f"memory per 100k queued URLs: seen-set {mem['seen_set_mb']:.1f} MB + queued Request objects "
            f"{mem['requests_mb']:.1f} MB = {mem['seen_set_mb'] + mem['requests_mb']:.1f} MB (peers: no crawler)"
        )
    finally:
        for p in procs:
            p.terminate()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
