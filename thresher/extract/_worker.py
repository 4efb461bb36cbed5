"""The child side of :class:`thresher.extract.guard.SubprocessRunner`: the extractors in a process
of their own, so that a page they get stuck on can be ended with SIGKILL.

Run as ``python -m thresher.extract._worker READ_FD WRITE_FD`` (frames: :mod:`._frames`). The first
request carries the trafilatura options; the worker answers ``("ready",)``, then one reply per
``(task, args)`` request: ``("ok", value)`` or ``("error", exception type name, message)``.

The worker exits on end-of-file, and also when its parent disappears while it is busy on a
page (a watchdog thread notices the parent id change), so a killed Ray worker leaves no orphan.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from thresher.extract._frames import read_frame, write_frame


def _exit_when_orphaned(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def main(read_fd: int, write_fd: int) -> int:
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    from thresher.extract.extractors import Extractors, TrafilaturaOptions

    options = read_frame(read_fd)
    if options is None:
        return 0
    extractors = Extractors(TrafilaturaOptions(**options))
    extractors.prepare("trafilatura")
    extractors.prepare("early_text")
    write_frame(write_fd, ("ready",))
    while (request := read_frame(read_fd)) is not None:
        task, args = request
        try:
            reply = ("ok", extractors.run(task, args))
        except Exception as exc:  # MemoryError and RecursionError included: report, go on
            reply = ("error", type(exc).__name__, str(exc)[:300])
        write_frame(write_fd, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
