"""Run the extractors on one page with a time limit that really ends a runaway parse.

Both extractors can run away: trafilatura in Python code (regexes, tree walks), resiliparse's
main-content heuristics in C (time grows faster than the square of the nesting depth: a page of
10,000 unclosed ``<div>`` takes 16 s). Ways to enforce the limit:

* ``subprocess`` (default): the extractors live in a persistent child process; on timeout the
  child is killed (SIGKILL cannot be ignored or delayed by C code) and a new one starts with the
  next page. Works on any thread — Ray may run UDFs off the main thread — and survives a crash
  of the parser. Costs one pickle of the page and its text through a pipe per call.
* ``signal``: SIGALRM raises inside the parse. Nearly free, main thread only, and it cannot
  interrupt C code: the resiliparse page above still takes its 16 s before the alarm is seen.
* ``auto``: ``signal`` on the main thread, ``subprocess`` elsewhere, call by call.
* ``off``: no limit.
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
from thresher.extract.extractors import Extractors, TrafilaturaOptions

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

    def run(self, task: str, args: tuple):
        if self._proc is None:
            self._start()
        try:
            _frames.write_frame(self._to_child, (task, args))
            reply = self._read_reply(self.timeout_s if self.timeout_s > 0 else 1e9)
        except ExtractionTimeout:
            self._restart("timeout")
            raise
        except (WorkerCrashed, OSError) as exc:
            self._restart("crash")
            raise WorkerCrashed(str(exc)) from exc
        if reply[0] == "ok":
            return reply[1]
        raise ExtractorError(reply[1], reply[2])

    def _restart(self, why: str) -> None:
        logger.info("extraction worker killed after a %s; a new one starts with the next page", why)
        self._kill()
        self.restarts += 1

    def close(self) -> None:
        self._kill()


class Sandbox:
    """Runs extraction tasks (see :class:`~thresher.extract.extractors.Extractors`) under a per-call
    time limit enforced as ``mode`` says (see module doc)."""

    def __init__(self, options: TrafilaturaOptions, timeout_s: float, mode: str = "subprocess") -> None:
        if mode not in ("auto", "signal", "subprocess", "off"):
            raise ValueError(f"unknown timeout mode {mode!r}")
        self.options = options
        self.timeout_s = timeout_s
        self.mode = mode
        self._local: Extractors | None = None
        self._child: SubprocessRunner | None = None

    @property
    def restarts(self) -> int:
        return self._child.restarts if self._child else 0

    def _method(self) -> str:
        if self.timeout_s <= 0 or self.mode == "off":
            return "off"
        if self.mode == "auto":
            return "signal" if on_main_thread() else "subprocess"
        if self.mode == "signal" and not on_main_thread():
            raise RuntimeError("timeout_mode 'signal' needs the main thread; use 'auto' or 'subprocess'")
        return self.mode

    def run(self, task: str, *args):
        method = self._method()
        if method == "subprocess":
            if self._child is None:
                self._child = SubprocessRunner(self.options, self.timeout_s)
            return self._child.run(task, args)
        if self._local is None:
            self._local = Extractors(self.options)
        self._local.prepare(task)
        if method == "signal":
            with alarm(self.timeout_s):
                return self._local.run(task, args)
        return self._local.run(task, args)

    def close(self) -> None:
        if self._child is not None:
            self._child.close()
            self._child = None
