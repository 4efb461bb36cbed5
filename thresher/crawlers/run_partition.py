"""Entry point of one crawl partition: ``python -m thresher.crawlers.run_partition SPEC.json``.

Each partition is its own process because Twisted's reactor can start only once per process.
On one machine ``start`` forks them from the driver, which has Scrapy imported already: a new
interpreter spent about 1 CPU-s and 1-3 s of wall on imports before its first request, once
per partition, on cores the other partitions were crawling on. Where a fork is not safe (the
driver runs threads, or a reactor is installed in it) each partition is a new interpreter.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path

from thresher.crawlers.config import CrawlConfig
from thresher.crawlers.settings import scrapy_settings
from thresher.crawlers.spider import PartitionSpec, ThresherSpider

logger = logging.getLogger(__name__)

GC_THRESHOLDS = (10_000, 20, 100)
"""The partition's garbage-collector thresholds (Python's defaults: 700, 10, 10). A crawl makes
reference cycles by the thousand (each failed request's Twisted ``Failure`` holds its traceback's
frames) and keeps a few hundred thousand objects alive, and under the defaults the full
collections that scan all of them took 40% of a partition's CPU (measured on the 1,000-host
bench web: 15 full collections, 3.2 of 8.0 CPU-s). With these, cycles are still collected, in
the young generations, and a full collection comes after a few hundred times more allocations."""


def tune_gc() -> None:
    """What the process holds before it crawls (modules, classes: the driver's, in a fork) goes
    to the permanent generation, which no collection scans, and the thresholds are raised. No
    collection first: it cost 0.14 CPU-s per partition, for the little garbage of imports."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(spec_path: str) -> int:
    from scrapy.crawler import CrawlerProcess

    tune_gc()
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


class ForkedPartition:
    """A partition running in a fork of this process; polled like a ``subprocess.Popen``."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def can_fork() -> bool:
    """A fork is a sound copy only of a process with one thread, and Scrapy installs the
    reactor of its settings only where none is installed yet."""
    return (
        hasattr(os, "fork")
        and threading.active_count() == 1
        and "twisted.internet.reactor" not in sys.modules
    )


def _prepare_fork() -> None:
    """Import in the driver what every partition imports, so each fork starts with it: Scrapy's
    crawler and reactor modules and every component the partition's settings name."""
    import scrapy.crawler  # noqa: F401
    import twisted.internet.asyncioreactor  # noqa: F401
    from scrapy.settings import Settings
    from scrapy.utils.misc import load_object

    raw = scrapy_settings(CrawlConfig(seeds=["http://example.invalid/"]))
    settings = Settings(raw)
    paths = [v for v in raw.values() if isinstance(v, str) and v.count(".") >= 2 and " " not in v]
    for key in ("DOWNLOADER_MIDDLEWARES", "SPIDER_MIDDLEWARES", "EXTENSIONS"):
        paths += [path for path, order in settings.getwithbase(key).items() if order is not None]
    paths += [v for v in settings.getwithbase("DOWNLOAD_HANDLERS").values() if isinstance(v, str)]
    for path in paths:
        try:
            load_object(path)
        except Exception:  # noqa: BLE001 - not a component, or the partition reports it
            pass


def start(spec_path: str | Path, command: list[str], env: dict[str, str]):
    """Start the partition of ``spec_path``: forked when ``can_fork()``, else ``command``."""
    if not can_fork():
        return subprocess.Popen(command, env=env)
    _prepare_fork()
    if not can_fork():  # an import started a thread or installed a reactor
        return subprocess.Popen(command, env=env)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        logger.debug("partition %s: forked from the driver, pid %d", spec_path, pid)
        return ForkedPartition(pid)
    code = 1
    try:  # the child: as if started fresh, with its own logging and signal handlers
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        logging.captureWarnings(True)
        code = run(str(spec_path))
    except BaseException:  # noqa: BLE001 - a fork must never return into the driver's code
        traceback.print_exc()
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
