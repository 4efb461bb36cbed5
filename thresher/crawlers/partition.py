"""What the partitions of one crawl share while they all run: a page budget, hand-overs, an end.

All partitions of a run start together and run until the whole crawl is done; each fetches
only the hosts it owns (``frontier.partition_of``). The coordination goes through small files
in the job's state directory, so it needs no service and no Ray (one machine, or nodes that
share the job directory):

* ``budget-RUN.bin``: the page budget as two counters under an ``flock``. A page request
  *reserves* one page when it enters the downloader (``BudgetMiddleware``) and the reservation
  is *committed* when the page is archived or released when it is not (error, redirect
  refused, not HTML, opted out). So no page is requested beyond the budget, none fetched is
  thrown away for lack of budget, and a partition with more work uses more of it.
* ``handoff-RUN-pSSS-to-pDDD.tsv``: links to another partition's hosts, ``depth<TAB>url``,
  appended by the partition that found them and read (``Coordinator.tick``, every
  ``TICK_S``) by the owner, which admits them through its own seen-set: the link is fetched
  in this run, once. The finder journals it too, so a rerun finds it if this run is cut short.
* ``live-RUN-pNNN.json``: whether the partition is idle and how many hand-over lines it has
  written and read. The crawl is over when every partition is idle, every line written has
  been read, and two successive looks agree (so no line was in flight between them).
* ``stop-RUN``: written by the runner when a partition died; the others close.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import time
from pathlib import Path

from scrapy import signals
from scrapy.exceptions import DontCloseSpider, IgnoreRequest
from scrapy.utils.defer import deferred_from_coro

from thresher.crawlers.middlewares import PAGE
from thresher.io import write_json_atomic

logger = logging.getLogger(__name__)

TICK_S = 0.2
"""Seconds between looks at the hand-over files and the other partitions' states."""
_COUNTERS = struct.Struct("<qq")  # reserved, archived


class BudgetTaken(IgnoreRequest):
    """Every page of the crawl's budget is archived or reserved by a request in flight."""


class SharedBudget:
    """The crawl's page budget, shared by its partitions through one locked file.

    ``limit`` 0 is no budget: nothing is counted and every request may go.
    """

    SPENT_LOOK_S = 0.05
    """``spent()`` reads the file at most this often; reserve and commit read it anyway."""

    def __init__(self, path: str | Path | None, limit: int):
        self.limit = limit
        self._fd = None
        if limit and path:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._local = [0, 0]  # no file (tests, one-off spiders): this process only
        self._archived_seen = 0
        self._reserved_seen = 0
        self._seen_at = float("-inf")

    def _update(self, reserved: int = 0, archived: int = 0, test=None) -> tuple[int, int, bool]:
        if self._fd is None:
            r, a = self._local
            ok = test is None or test(r, a)
            if ok:
                self._local = [r + reserved, a + archived]
            self._reserved_seen, self._archived_seen = self._local
            self._seen_at = time.monotonic()
            return self._local[0], self._local[1], ok
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            raw = os.pread(self._fd, _COUNTERS.size, 0)
            r, a = _COUNTERS.unpack(raw) if len(raw) == _COUNTERS.size else (0, 0)
            ok = test is None or test(r, a)
            if ok and (reserved or archived):
                r, a = r + reserved, a + archived
                os.pwrite(self._fd, _COUNTERS.pack(r, a), 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._reserved_seen, self._archived_seen, self._seen_at = r, a, time.monotonic()
        return r, a, ok

    def reserve(self) -> bool:
        if not self.limit:
            return True
        return self._update(reserved=1, test=lambda r, a: r < self.limit)[2]

    def commit(self) -> None:
        if self.limit:
            self._update(archived=1)

    def release(self) -> None:
        if self.limit:
            self._update(reserved=-1)

    def spent(self) -> bool:
        """Every page of the budget archived (by any partition).

        Asked several times per page; the archived count only grows, so a look less than
        ``SPENT_LOOK_S`` old answers. A stale "not yet" only delays the close that long: a
        request still needs its reservation, which the file grants."""
        if not self.limit:
            return False
        if self._archived_seen < self.limit and time.monotonic() - self._seen_at >= self.SPENT_LOOK_S:
            self._update()
        return self._archived_seen >= self.limit

    def taken(self) -> bool:
        """Every page of the budget archived or reserved by a request in flight (by any
        partition): a page request handed to the downloader now would only be refused
        (``BudgetTaken``). The scheduler holds its page requests back meanwhile.

        A look less than ``SPENT_LOOK_S`` old answers; this partition's own reservations
        and releases update it at once, another partition's release is seen that late."""
        if not self.limit:
            return False
        if time.monotonic() - self._seen_at >= self.SPENT_LOOK_S:
            self._update()
        return self._reserved_seen >= self.limit

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class BudgetMiddleware:
    """Downloader middleware (after robots.txt): a page request reserves its page of the budget
    before it is downloaded, or is refused (``BudgetTaken``, counted as ``skipped.max_pages``).
    Retries and redirects carry the reservation of the request they come from."""

    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_request(self, request, spider=None):
        meta = request.meta
        if meta.get("thresher_kind") != PAGE or meta.get("thresher_budget"):
            return None
        if not self.crawler.spider.state.budget.reserve():
            self.crawler.stats.inc_value("thresher/skipped/max_pages")
            raise BudgetTaken("the page budget is archived or reserved")
        meta["thresher_budget"] = True
        return None


class Mailboxes:
    """Hand-over files between the partitions of one run (see the module docstring)."""

    def __init__(self, state_dir: str | Path, run_tag: str, me: int, partitions: int):
        self.dir = Path(state_dir)
        self.tag, self.me, self.partitions = run_tag, me, partitions
        self._out: dict[int, object] = {}
        self._pending: dict[int, list[str]] = {}
        self._offsets = {src: 0 for src in range(partitions) if src != me}
        self.sent = 0
        self.received = 0

    def path(self, src: int, dst: int) -> Path:
        return self.dir / f"handoff-{self.tag}-p{src:03d}-to-p{dst:03d}.tsv"

    def send(self, dst: int, url: str, depth: int) -> None:
        self._pending.setdefault(dst, []).append(f"{depth}\t{url}\n")

    def flush(self) -> None:
        for dst, lines in self._pending.items():
            if not lines:
                continue
            fh = self._out.get(dst)
            if fh is None:
                fh = self._out[dst] = open(self.path(self.me, dst), "a", encoding="utf-8")
            fh.write("".join(lines))
            fh.flush()
            self.sent += len(lines)
            lines.clear()

    def receive(self) -> list[tuple[int, str]]:
        """New complete lines of every inbox since the last call."""
        out = []
        for src, offset in self._offsets.items():
            path = self.path(src, self.me)
            try:
                if path.stat().st_size <= offset:
                    continue
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    data = fh.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1  # a line being written is read next time
            for line in data[:end].decode("utf-8", errors="replace").splitlines():
                depth, sep, url = line.partition("\t")
                if sep and depth.isdigit() and url:
                    out.append((int(depth), url))
                self.received += 1
            self._offsets[src] = offset + end
        return out

    def close(self) -> None:
        self.flush()
        for fh in self._out.values():
            fh.close()
        self._out.clear()


def live_path(state_dir: str | Path, run_tag: str, partition: int) -> Path:
    return Path(state_dir) / f"live-{run_tag}-p{partition:03d}.json"


def stop_path(state_dir: str | Path, run_tag: str) -> Path:
    return Path(state_dir) / f"stop-{run_tag}"


class Coordinator:
    """Runs in each partition's reactor: hands links over, reads those handed to it, keeps
    the spider open while the crawl as a whole is not done, and closes it when it is."""

    def __init__(self, spider):
        self.spider = spider
        spec = spider.spec
        self.state_dir = Path(spec.journal_path).parent
        self.tag = spec.run_tag
        self.partitions = spec.partitions
        self._loop = None
        self._last = None
        self._published = None
        self._closing = False

    @classmethod
    def attach(cls, spider, crawler) -> Coordinator:
        self = cls(spider)
        crawler.signals.connect(self.on_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.on_idle, signal=signals.spider_idle)
        return self

    def on_opened(self, spider=None):
        from twisted.internet import task

        self._loop = task.LoopingCall(self.tick)
        self._loop.start(TICK_S, now=False).addErrback(
            lambda f: logger.error("partition coordination failed: %s", f.getTraceback())
        )

    def on_idle(self, spider=None):
        if self.partitions > 1 and not self._closing:
            raise DontCloseSpider  # the others may still hand links over; tick() decides

    def tick(self) -> None:
        state = self.spider.state
        engine = self.spider.crawler.engine
        if self._closing or engine is None or engine.spider is None:
            return
        if stop_path(self.state_dir, self.tag).exists():
            return self._close("stopped")
        if state.budget.spent():
            return self._close("max_pages")
        scheduler = getattr(engine, "_slot", None) and engine._slot.scheduler
        if getattr(scheduler, "held", False) and not state.budget.taken():
            engine._slot.nextcall.schedule()  # another partition released pages of the budget
        mail = state.mail
        if mail is not None:
            mail.flush()
        got = 0
        for depth, url in mail.receive() if mail is not None else ():
            request = self.spider._admit(url, depth)
            if request is not None:
                engine.crawl(request)
                got += 1
        if got:
            self.spider.crawler.stats.inc_value("thresher/handoffs_received", got)
        state.frontier.flush()
        idle = not got and engine.spider_is_idle()
        if mail is None:
            return  # one partition: Scrapy closes it when it is idle
        self._publish(idle, mail)
        if idle and self._all_done():
            self._close("finished")

    def _publish(self, idle: bool, mail: Mailboxes) -> None:
        """Write the live record when it changed (a busy partition's counts change at every
        tick; an idle one's record stays, and the others' looks at it agree)."""
        record = (idle, mail.sent, mail.received)
        if record == self._published:
            return
        path = live_path(self.state_dir, self.tag, self.spider.spec.partition)
        write_json_atomic(path, {"idle": idle, "sent": mail.sent, "received": mail.received})
        self._published = record

    def _all_done(self) -> bool:
        looks = []
        for p in range(self.partitions):
            try:
                looks.append(json.loads(live_path(self.state_dir, self.tag, p).read_text()))
            except (FileNotFoundError, ValueError):
                self._last = None
                return False  # not started yet, or being replaced right now
        snapshot = tuple((s["idle"], s["sent"], s["received"]) for s in looks)
        done = all(s[0] for s in snapshot) and sum(s[1] for s in snapshot) == sum(s[2] for s in snapshot)
        agreed = done and snapshot == self._last
        self._last = snapshot if done else None
        return agreed

    def _close(self, reason: str) -> None:
        self._closing = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self.spider.state.mail is not None:
            self.spider.state.mail.close()
        engine = self.spider.crawler.engine
        logger.info("partition %d closing: %s", self.spider.spec.partition, reason)
        if hasattr(engine, "close_spider_async"):
            deferred_from_coro(engine.close_spider_async(reason=reason))
        else:  # Scrapy < 2.14
            engine.close_spider(self.spider, reason)
