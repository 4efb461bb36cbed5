"""The seen-set and the journal of discovered URLs, which together make a crawl resumable.

A page's outgoing links are journaled (and flushed) before the page's WARC record is written.
So for every page found in a WARC file, the URLs it led to are in the journal; on restart,
``journal minus archived`` is exactly the work left, without Scrapy's JOBDIR (which is not
safe against SIGKILL: its queues and seen-file are written on clean shutdown only).

The seen-set is a ``SeenSet`` (~9 bytes per URL) and the queued requests wait on disk in the
scheduler (``scheduler.FrontierScheduler``), so a partition's RAM grows by ~20 bytes per
queued URL; neither needs saving, since both are rebuilt from the work list on restart.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

from thresher.crawlers.scope import url_key
from thresher.crawlers.seen import SeenSet

logger = logging.getLogger(__name__)


def partition_of(netloc: str, partitions: int) -> int:
    """Stable across processes and runs (Python's hash() is salted per process)."""
    digest = hashlib.blake2b(netloc.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


class Frontier:
    """URLs seen by this partition (as 64-bit keys) plus an append-only journal on disk."""

    def __init__(self, journal_path: str | Path | None):
        self.seen = SeenSet()
        self._journal = open(journal_path, "a", encoding="utf-8") if journal_path else None

    def mark_seen(self, url: str) -> None:
        self.seen.add(url_key(url))

    def claim(self, url: str) -> bool:
        """Mark a URL seen without journaling it (seeds and journaled work replayed on resume)."""
        return self.seen.add(url_key(url))

    def is_seen(self, key: int) -> bool:
        return key in self.seen

    def unseen(self, keys: list[int]) -> list[bool]:
        """``not is_seen`` for each key, in one lookup (a page's links)."""
        return self.seen.missing(keys)

    def add(self, url: str, depth: int, key: int | None = None, checked: bool = False) -> bool:
        """Register a newly discovered URL (``key``: its ``url_key``, if known; ``checked``:
        ``unseen`` just said so); False if it was seen before."""
        key = url_key(url) if key is None else key
        if not (self.seen.add_missing(key) if checked else self.seen.add(key)):
            return False
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
