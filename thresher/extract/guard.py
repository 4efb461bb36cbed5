"""Run trafilatura on one page with a time limit that really ends a runaway parse.

Two ways to stop a page that takes too long:

* ``signal``: SIGALRM raises inside the parse. Nearly free, but only possible on the main
  thread, and only at a point where the interpreter runs (a hang inside C code is not interrupted
  until it returns).
* ``subprocess``: the page is parsed in a persistent child process; on timeout the child is
  killed (SIGKILL cannot be ignored) and a new one is started for the next page. Works on any
  thread — Ray runs actor methods off the main thread — and also survives a crash of the parser.
  Costs one pickle of the page each way.

``auto`` picks ``signal`` on the main thread and ``subprocess`` elsewhere, page by page.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from thresher.extract import _frames
from thresher.extract.extractors import Extraction, TrafilaturaExtractor, TrafilaturaOptions

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 120.0
"""Generous: importing trafilatura on a loaded two-core machine can take seconds."""


class ExtractionTimeout(BaseException):
    """A BaseException so that the ``except Exception`` blocks inside trafilatura and its helpers
    cannot swallow the alarm and let the parse run on."""


class WorkerCrashed(Exception):
    """The child process died while parsing a page (segfault, out of memory)."""


class ExtractorError(Exception):
    """The extractor raised on a page; ``kind`` is the exception's type name."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


def on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def alarm(seconds: float):
    """Raise :class:`ExtractionTimeout` in the block after ``seconds`` (main thread only)."""
    if seconds <= 0:
        yield
        return

    def _raise(signum, frame):
        raise ExtractionTimeout(f"extraction took longer than {seconds}s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _kill_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class SubprocessRunner:
    """A persistent ``thresher.extract._worker`` child, restarted after a timeout or a crash."""

    def __init__(self, options: TrafilaturaOptions, timeout_s: float) -> None:
        self.options = options
        self.timeout_s = timeout_s
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self._to_child = self._from_child = -1

    def _start(self) -> None:
        parent_read, child_write = os.pipe()
        child_read, parent_write = os.pipe()
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "thresher.extract._worker", str(child_read), str(child_write)],
                pass_fds=(child_read, child_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
                close_fds=True,
            )
        finally:
            os.close(child_read)
            os.close(child_write)
        self._to_child, self._from_child = parent_write, parent_read
        # a stage that is never closed (Ray workers just exit) must not leave its child behind
        self._finalizer = weakref.finalize(self, _kill_process, self._proc)
        try:
            _frames.write_frame(self._to_child, asdict(self.options))
            reply = self._read_reply(STARTUP_TIMEOUT_S)
        except (ExtractionTimeout, OSError) as exc:
            self._kill()
            raise WorkerCrashed(f"extraction worker did not start: {exc!r}") from exc
        if reply != ("ready",):
            self._kill()
            raise WorkerCrashed(f"extraction worker did not start: {reply!r}")

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        for fd in (self._to_child, self._from_child):
            if fd >= 0:
                os.close(fd)
        self._to_child = self._from_child = -1

    def _read_exact(self, n: int, deadline: float) -> bytes:
        chunks = []
        while n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._from_child], [], [], remaining)[0]:
                raise ExtractionTimeout(f"extraction took longer than {self.timeout_s}s")
            chunk = os.read(self._from_child, min(n, 1 << 20))
            if not chunk:
                raise WorkerCrashed(f"extraction worker exited (status {self._proc.poll()})")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _read_reply(self, timeout: float):
        import pickle

        deadline = time.monotonic() + timeout
        size = _frames.HEADER.unpack(self._read_exact(_frames.HEADER.size, deadline))[0]
        return pickle.loads(self._read_exact(size, deadline))

    def extract(self, html: str, url: str | None) -> Extraction:
        if self._proc is None:
            self._start()
        try:
            _frames.write_frame(self._to_child, (html, url))
            reply = self._read_reply(self.timeout_s if self.timeout_s > 0 else 1e9)
        except ExtractionTimeout:
            self._restart("timeout")
            raise
        except (WorkerCrashed, OSError) as exc:
            self._restart("crash")
            raise WorkerCrashed(str(exc)) from exc
        if reply[0] == "ok":
            return Extraction(reply[1], reply[2])
        raise ExtractorError(reply[1], reply[2])

    def _restart(self, why: str) -> None:
        logger.info("extraction worker killed after a %s; a new one starts with the next page", why)
        self._kill()
        self.restarts += 1

    def close(self) -> None:
        self._kill()


class GuardedTrafilatura:
    """trafilatura with a per-page time limit, by the method ``mode`` names (see module doc)."""

    def __init__(self, options: TrafilaturaOptions, timeout_s: float, mode: str = "auto") -> None:
        if mode not in ("auto", "signal", "subprocess", "off"):
            raise ValueError(f"unknown timeout mode {mode!r}")
        self.options = options
        self.timeout_s = timeout_s
        self.mode = mode
        self._local: TrafilaturaExtractor | None = None
        self._child: SubprocessRunner | None = None

    @property
    def restarts(self) -> int:
        return self._child.restarts if self._child else 0

    def _method(self) -> str:
        if self.mode == "auto":
            if self.timeout_s <= 0:
                return "off"
            return "signal" if on_main_thread() else "subprocess"
        if self.mode == "signal" and not on_main_thread():
            raise RuntimeError("timeout_mode 'signal' needs the main thread; use 'auto' or 'subprocess'")
        return self.mode

    def extract(self, html: str, url: str | None = None) -> Extraction:
        method = self._method()
        if method == "subprocess":
            if self._child is None:
                self._child = SubprocessRunner(self.options, self.timeout_s)
            return self._child.extract(html, url)
        if self._local is None:
            self._local = TrafilaturaExtractor(self.options)
        if method == "signal":
            with alarm(self.timeout_s):
                return self._local(html, url)
        return self._local(html, url)

    def close(self) -> None:
        if self._child is not None:
            self._child.close()
            self._child = None
