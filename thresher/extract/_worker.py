"""The child side of :class:`thresher.extract.guard.SubprocessRunner`: one trafilatura per process.

Run as ``python -m thresher.extract._worker READ_FD WRITE_FD``. Frames on both pipes are an
8-byte big-endian length followed by a pickle. The first request carries the extractor options;
the worker answers ``("ready",)`` once trafilatura is imported, then one reply per page:
``("ok", text, metadata)`` or ``("error", exception type name, message)``.

The worker exits on end-of-file, and also when its parent disappears while it is busy on a
page (a watchdog thread notices the parent id change), so a killed Ray worker leaves no orphan.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import threading
import time

HEADER = struct.Struct(">Q")


def read_exact(fd: int, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int):
    head = read_exact(fd, HEADER.size)
    if head is None:
        return None
    body = read_exact(fd, HEADER.unpack(head)[0])
    return None if body is None else pickle.loads(body)


def write_frame(fd: int, obj) -> None:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    data = memoryview(HEADER.pack(len(body)) + body)
    while data:
        data = data[os.write(fd, data):]


def _exit_when_orphaned(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def main(read_fd: int, write_fd: int) -> int:
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    from thresher.extract.extractors import TrafilaturaExtractor, TrafilaturaOptions

    options = read_frame(read_fd)
    if options is None:
        return 0
    extractor = TrafilaturaExtractor(TrafilaturaOptions(**options))
    write_frame(write_fd, ("ready",))
    while (request := read_frame(read_fd)) is not None:
        html, url = request
        try:
            result = extractor(html, url)
            reply = ("ok", result.text, result.metadata)
        except Exception as exc:  # MemoryError and RecursionError included: report, go on
            reply = ("error", type(exc).__name__, str(exc)[:300])
        write_frame(write_fd, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
