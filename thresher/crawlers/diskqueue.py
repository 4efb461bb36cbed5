"""Per-host FIFO queues whose entries live on disk: 8 bytes of RAM per queued entry.

An entry is an opaque byte string (the scheduler stores ``depth<TAB>url<TAB>referer``). It
is appended to the current *segment*, an anonymous file in the job's state directory (opened
and unlinked at once, so a crashed or killed process leaves nothing behind and the kernel
frees the space), and its host's queue keeps one 64-bit word: segment number, offset and
length. Popping reads the entry back with one ``pread``; the page cache serves recent ones.

A segment is dropped (its space freed) once every entry written to it has been popped, so
disk use is the span between the oldest queued entry and the newest, at most all entries
ever queued by this process (~100 bytes each).

Nothing here is needed after a crash: the journal and the WARC files say what is left to do
(``frontier.py``), so these files are a spill area, not a log.
"""

from __future__ import annotations

import os
import tempfile
from array import array
from collections import deque
from pathlib import Path

SEGMENT_BYTES = 64 << 20
"""A segment is closed for writing past this size (the offset field holds 32 bits)."""
WRITE_BUFFER = 64 << 10
_LEN_BITS = 13
_OFF_BITS = 32
_SEG_BITS = 64 - _OFF_BITS - _LEN_BITS
MAX_ENTRY_BYTES = (1 << _LEN_BITS) - 1
"""8,191: a URL and a referer of at most 2,083 characters each fit (``scope.MAX_URL_LENGTH``)."""
_COMPACT_AT = 4096


class _Segment:
    __slots__ = ("fd", "live", "size")

    def __init__(self, directory: Path):
        fh = tempfile.TemporaryFile(dir=directory, prefix="frontier-")  # unlinked at once on POSIX
        self.fd = os.dup(fh.fileno())
        fh.close()
        self.size = 0
        self.live = 0


class _HostQueue:
    """One host's entries (packed words) with a read position instead of a deque of ints."""

    __slots__ = ("head", "words")

    def __init__(self):
        self.words = array("Q")
        self.head = 0

    def __len__(self) -> int:
        return len(self.words) - self.head

    def popleft(self) -> int:
        word = self.words[self.head]
        self.head += 1
        if self.head >= _COMPACT_AT and self.head * 2 >= len(self.words):
            del self.words[: self.head]  # amortised O(1) per entry
            self.head = 0
        return word


class HostQueues:
    """FIFO queue per host; hosts taken in turn by ``next_host``. Entries at most
    ``MAX_ENTRY_BYTES`` long (``push`` raises ValueError on longer ones)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._queues: dict[str, _HostQueue] = {}
        self.ring: deque[str] = deque()
        """Hosts with entries, each once, in turn order (the scheduler rotates it)."""
        self._segments: dict[int, _Segment] = {}
        self._seg_no = -1
        self._buffer = bytearray()
        self._flushed = 0  # bytes of the current segment already written to its file
        self._size = 0
        self._new_segment()

    def __len__(self) -> int:
        return self._size

    def __contains__(self, host: str) -> bool:
        return host in self._queues

    def host_len(self, host: str) -> int:
        q = self._queues.get(host)
        return len(q) if q is not None else 0

    @property
    def hosts(self) -> int:
        return len(self._queues)

    @property
    def disk_bytes(self) -> int:
        return sum(s.size for s in self._segments.values())

    @property
    def ram_bytes(self) -> int:
        """The queues' words and per-host bookkeeping (approximate)."""
        words = sum(q.words.buffer_info()[1] for q in self._queues.values()) * 8
        return words + 250 * len(self._queues)

    def push(self, host: str, entry: bytes) -> None:
        n = len(entry)
        if n > MAX_ENTRY_BYTES:
            raise ValueError(f"queue entry of {n} bytes (at most {MAX_ENTRY_BYTES})")
        seg = self._segments[self._seg_no]
        if seg.size + n > SEGMENT_BYTES:
            self._new_segment()
            seg = self._segments[self._seg_no]
        word = (self._seg_no << (_OFF_BITS + _LEN_BITS)) | (seg.size << _LEN_BITS) | n
        self._buffer += entry
        seg.size += n
        seg.live += 1
        if len(self._buffer) >= WRITE_BUFFER:
            self._flush()
        q = self._queues.get(host)
        if q is None:
            q = self._queues[host] = _HostQueue()
            self.ring.append(host)
        q.words.append(word)
        self._size += 1

    def pop(self, host: str) -> bytes:
        """The oldest entry of ``host`` (which must have one); a host left empty leaves the ring
        only when the caller has rotated it to the ring's end (``next_host`` does)."""
        q = self._queues[host]
        word = q.popleft()
        if not len(q):
            del self._queues[host]
            if self.ring and self.ring[-1] == host:
                self.ring.pop()
            else:
                self.ring.remove(host)
        self._size -= 1
        seg_no = word >> (_OFF_BITS + _LEN_BITS)
        offset = (word >> _LEN_BITS) & ((1 << _OFF_BITS) - 1)
        n = word & MAX_ENTRY_BYTES
        if seg_no == self._seg_no and offset + n > self._flushed:
            self._flush()
        seg = self._segments[seg_no]
        entry = os.pread(seg.fd, n, offset)
        seg.live -= 1
        if seg.live == 0 and seg_no != self._seg_no:
            os.close(seg.fd)
            del self._segments[seg_no]
        return entry

    def _flush(self) -> None:
        if self._buffer:
            fd = self._segments[self._seg_no].fd
            view = memoryview(self._buffer)
            while view:
                view = view[os.write(fd, view) :]
            self._flushed += len(self._buffer)
            self._buffer = bytearray()

    def _new_segment(self) -> None:
        if self._seg_no >= 0:
            self._flush()
            old = self._segments[self._seg_no]
            if old.live == 0:
                os.close(old.fd)
                del self._segments[self._seg_no]
        self._seg_no += 1
        if self._seg_no >= 1 << _SEG_BITS:
            raise OverflowError("frontier segment numbers exhausted")
        self._segments[self._seg_no] = _Segment(self.directory)
        self._flushed = 0

    def close(self) -> None:
        """Free the files (also done by the kernel when the process dies)."""
        for seg in self._segments.values():
            os.close(seg.fd)
        self._segments.clear()
        self._queues.clear()
        self.ring.clear()
        self._buffer = bytearray()
        self._size = 0
