"""The seen-set and the journal of discovered URLs, which together make a crawl resumable.

A page's outgoing links are journaled (and flushed) before the page's WARC record is written.
So for every page found in a WARC file, the URLs it led to are in the journal; on restart,
``journal minus archived`` is exactly the work left, without Scrapy's JOBDIR (which is not
safe against SIGKILL: its queues and seen-file are written on clean shutdown only).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

from thresher.crawlers.scope import url_key

logger = logging.getLogger(__name__)


def partition_of(netloc: str, partitions: int) -> int:
    """Stable across processes and runs (Python's hash() is salted per process)."""
    digest = hashlib.blake2b(netloc.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


class Frontier:
    """URLs seen by this partition (as 64-bit keys) plus an append-only journal on disk."""

    def __init__(self, journal_path: str | Path | None):
        self.seen: set[int] = set()
        self._journal = open(journal_path, "a", encoding="utf-8") if journal_path else None

    def mark_seen(self, url: str) -> None:
        self.seen.add(url_key(url))

    def claim(self, url: str) -> bool:
        """Mark a URL seen without journaling it (seeds and journaled work replayed on resume)."""
        key = url_key(url)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def is_seen(self, key: int) -> bool:
        return key in self.seen

    def add(self, url: str, depth: int, key: int | None = None) -> bool:
        """Register a newly discovered URL (``key``: its ``url_key``, if known); False if it
        was seen before."""
        key = url_key(url) if key is None else key
        if key in self.seen:
            return False
        self.seen.add(key)
        if self._journal is not None:
            self._journal.write(f"{depth}\t{url}\n")
        return True

    def flush(self) -> None:
        if self._journal is not None:
            self._journal.flush()

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def read_journal(path: str | Path) -> Iterator[tuple[int, str]]:
    """(depth, url) entries; a torn last line (killed mid-write) is skipped."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            depth, sep, url = line.rstrip("\n").partition("\t")
            if sep and depth.isdigit() and url:
                yield int(depth), url
