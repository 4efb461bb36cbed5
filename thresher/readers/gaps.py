"""Finds the bytes of a WARC file that fastwarc stepped over without a word.

fastwarc looks for the next ``WARC/`` version line after each record and skips whatever comes
before it. So a record whose version line is damaged, or the rest of a block whose Content-Length
is wrong, disappears without an error, and a page in it is lost silently. This module checks,
record by record, that the bytes between one record's start and the next record's start are that
record and nothing else (line breaks and NUL padding aside).

* Plain files: the header is read again at the record's offset, which gives where the record
  must end; the bytes from there to the next record must be padding.
* gzip files: each record usually is one gzip member, whose trailer (ISIZE) holds its
  uncompressed length; that length must be the header's plus the Content-Length plus the
  trailing line breaks. Only when it is not (a record split over several members, or a member
  fastwarc skipped) are the members in between decompressed and checked as for a plain file.
* A file gzipped as a whole, a zstd, LZ4 or other compressed file, or one that is not a local
  file is not checked: record offsets there do not point into the file's bytes (or are expensive
  to re-read).

Whatever is re-read or inflated is streamed in pieces and only counted, so a check holds at most
``HEAD_LIMIT`` bytes of a span plus one piece, however large the span or its inflated size.

The opposite fault, a Content-Length too long, makes fastwarc read the start of the next record
(or, if it is too long by just the right amount, whole records) as the end of this one's block.
:func:`split_overrun` (and :func:`find_record_start`, for a block read in pieces) finds where such
a block runs into another record, so that the page keeps only its own bytes and the records inside
are read rather than lost.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

logger = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
_PADDING = b"\r\n\x00"
HEAD_LIMIT = 1 << 16  # the longest record header looked for; fastwarc's default max_header_len is 32 KiB
_TRAILER_SLACK = 16  # line breaks after a record's block, inside its gzip member
_PIECE = 1 << 20  # bytes re-read, or inflated, at a time
_COMPRESSED_MAGIC = (
    b"\x28\xb5\x2f\xfd",  # zstd frame
    b"\x04\x22\x4d\x18",  # LZ4 frame
    b"BZh",  # bzip2
    b"\xfd7zXZ",  # xz
)


@dataclass(frozen=True)
class Gap:
    """Unread bytes after the record at ``offset`` (a compressed offset, for gzip), and how many
    there are (uncompressed)."""

    offset: int
    size: int
    detail: str


def _header_end(data: bytes) -> int | None:
    """Length of the WARC header block including its blank line, or None without one."""
    ends = [(at + sep) for at, sep in ((data.find(b"\r\n\r\n"), 4), (data.find(b"\n\n"), 2)) if at >= 0]
    return min(ends) if ends else None


def _record_head(data: bytes) -> tuple[int, int | None]:
    """Padding before the record in ``data``, and where its WARC header block ends after that
    (None when ``data`` does not start with one)."""
    lead = len(data) - len(data.lstrip(_PADDING))
    return lead, _header_end(data[lead : lead + HEAD_LIMIT]) if data.startswith(b"WARC/", lead) else None


class _Unread:
    """What a stream holds that is not padding: how many bytes from the first to the last byte that
    is not padding, and the first ``HEAD_LIMIT`` of them; the rest is counted, not kept."""

    def __init__(self) -> None:
        self.head = b""
        self._pos = 0  # bytes fed so far
        self._first: int | None = None
        self._last = -1

    @property
    def size(self) -> int:
        return 0 if self._first is None else self._last - self._first + 1

    def feed(self, data: bytes) -> None:
        if self._first is None:
            body = data.lstrip(_PADDING)
            if body:
                self._first = self._pos + len(data) - len(body)
        if self._first is not None:
            if len(self.head) < HEAD_LIMIT:
                self.head += data[max(0, self._first - self._pos) :][: HEAD_LIMIT - len(self.head)]
            kept = len(data.rstrip(_PADDING))
            if kept:
                self._last = self._pos + kept - 1
        self._pos += len(data)


def _unread_after_record(pieces: Iterator[bytes], content_length: int | None) -> _Unread:
    """What in ``pieces`` (one record's bytes, padding around it allowed) is not that record; all
    of it when ``content_length`` is None or it does not start with a record header."""
    unread = _Unread()
    if content_length is None:
        for piece in pieces:
            unread.feed(piece)
        return unread
    head = b""
    for piece in pieces:
        head = (head + piece).lstrip(_PADDING)  # leading padding is dropped as it comes
        if len(head) >= HEAD_LIMIT:
            break
    lead, header = _record_head(head)
    skip = 0 if header is None else header + content_length  # lead is 0: head is stripped
    unread.feed(head[skip:])
    skip = max(0, skip - len(head))
    for piece in pieces:
        if skip >= len(piece):
            skip -= len(piece)
            continue
        unread.feed(piece[skip:])
        skip = 0
    return unread


def _gap(offset: int, unread: _Unread, where: str) -> Gap | None:
    if not unread.size:
        return None
    kind = re.search(rb"WARC-Type:[ \t]*([\w-]+)", unread.head)
    damaged = f"a damaged {kind[1].decode()} record" if kind else "a damaged record header"
    return Gap(
        offset,
        unread.size,
        f"{unread.size} bytes {where} are no WARC record that could be read "
        f"({damaged}, or a wrong Content-Length?)",
    )


_VERSION_LINE = re.compile(rb"WARC/(?:1\.[01]|0\.1[78])\r\n")
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_FIELD = re.compile(_TOKEN + rb"+:")  # a header line starts with a field name and a colon
_CUT_FIELD = re.compile(_TOKEN + rb"*(?::.*)?", re.DOTALL)  # a header line cut short anywhere
_REQUIRED_FIELDS = {b"warc-type", b"warc-record-id", b"content-length"}


def split_overrun(block: bytes) -> tuple[bytes, bytes]:
    """``block`` cut where another WARC record starts inside it: (its own bytes, the records it ran
    over); the second is empty when there are none."""
    found = find_record_start(block)
    if found is None:
        return block, b""
    return block[: found[0]], block[found[1] :]


def find_record_start(block: bytes, before: int | None = None) -> tuple[int, int] | None:
    """Where the first WARC record inside ``block`` starts, and where the bytes before it end (its
    blank line trailer cut off), or None. ``before`` limits the starts looked at, for a block read
    in pieces: a start is only sure with ``HEAD_LIMIT`` bytes after it, or the block's end.

    A record starts where a version line follows a blank line and header lines follow it: either a
    whole header block with the fields every record has, or header lines that name WARC fields
    up to the end of the block, which then cut the record short."""
    at = block.find(b"\nWARC/", 0, before)
    while at >= 0:
        start = at + 1
        # the blank line is the trailer the WARC format puts after every record's block
        trailer = next((len(t) for t in (b"\r\n\r\n", b"\n\n") if block.startswith(t, start - len(t))), 0)
        if trailer and _starts_record(block, start):
            return start - trailer, start
        at = block.find(b"\nWARC/", start, before)
    return None


def _starts_record(block: bytes, start: int) -> bool:
    """Whether a record header starts at ``start``, read line by line and no further than the first
    line that is no header field: a block full of near-misses costs time in proportion to it."""
    version = _VERSION_LINE.match(block, start)
    if not version:
        return False
    stop = min(len(block), start + HEAD_LIMIT)
    names: list[bytes] = []
    at = version.end()
    while True:
        eol = block.find(b"\r\n", at, stop)
        if eol < 0:  # the block ends inside the header: its last line may be cut anywhere
            if stop < len(block) or not _CUT_FIELD.fullmatch(block, at, stop):
                return False
            return bool(names) and all(name.startswith((b"warc-", b"content-")) for name in names)
        if eol == at:  # the blank line after a whole header
            return _REQUIRED_FIELDS <= set(names)
        field = _FIELD.match(block, at, eol)
        if not field:
            return False
        names.append(block[at : field.end() - 1].lower())
        at = eol + 2


class RecordGaps:
    """``check(start, content_length, next_start)`` for consecutive records of one file, in order;
    ``next_start`` is None for the last record. Returns the :class:`Gap` that follows the record,
    if any. ``before_first(start)`` checks the bytes before the first record.

    ``origin`` is where reading the file began: 0, or the offset it went on from after a damaged
    span (the layout, plain or gzip, is told from the bytes there)."""

    def __init__(self, path: str, origin: int = 0) -> None:
        self._path = path
        self._origin = origin
        self._file: BinaryIO | None = None
        self._gzip = False
        if os.path.isfile(path):
            self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
            self._file.seek(origin)
            magic = self._file.read(4)
            self._gzip = magic.startswith(_GZIP_MAGIC)
            skippable_zstd = magic[1:] == b"\x2a\x4d\x18" and 0x50 <= magic[0] <= 0x5F  # a dictionary frame
            if magic.startswith(_COMPRESSED_MAGIC) or skippable_zstd:  # offsets are not those of records
                self.close()
            self._size = os.path.getsize(path)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def before_first(self, start: int) -> Gap | None:
        if self._file is None or start == self._origin:
            return None
        return self._guarded(self._before_first, start)

    def check(self, start: int, content_length: int, next_start: int | None) -> Gap | None:
        if self._file is None:
            return None
        return self._guarded(self._check, start, content_length, next_start)

    def record_end(self, start: int, content_length: int) -> int | None:
        """Where the record at ``start`` ends in the file (for gzip: where its member ends), or
        None when that cannot be told: where a damaged span after it begins."""
        if self._file is None:
            return None
        return self._guarded(self._record_end, start, content_length)

    def _guarded(self, check, *args):
        """A check that cannot be made (an I/O error re-reading the file) stops the checking of
        this file, logged, rather than the reading of it."""
        try:
            return check(*args)
        except (OSError, ValueError, struct.error) as exc:
            logger.warning("%s: bytes between records not checked from here on: %r", self._path, exc)
            self.close()
            return None

    def _before_first(self, start: int) -> Gap | None:
        origin = self._origin
        if self._gzip:
            inflated = _Inflated(self, origin, start)
            unread = _unread_after_record(iter(inflated), None)
            if not inflated.whole:
                return None
        else:
            unread = _unread_after_record(self._pieces(origin, start), None)
        return _gap(origin, unread, "before the first record")

    def _check(self, start: int, content_length: int, next_start: int | None) -> Gap | None:
        if next_start is not None and next_start <= start:
            self.close()  # a file gzipped as a whole: offsets are those of its deflate blocks
            return None
        end = self._size if next_start is None else next_start
        if self._gzip:
            if self._one_member_holds(start, content_length, end):
                return None
            inflated = _Inflated(self, start, end)
            unread = _unread_after_record(iter(inflated), content_length)
            if not inflated.whole:
                if next_start is not None:  # offsets that are no member boundaries: one gzip stream
                    self.close()
                return None  # else the file ends inside a member: truncated, reported as such
            if unread.head.startswith(b"WARC/"):  # fastwarc read that record: members of several records
                self.close()
                return None
            where = f"in the gzip members at {start}-{end}"
        else:
            lead, header = self._plain_head(start)
            if header is None:
                unread = _unread_after_record(self._pieces(start + lead, end), None)
            else:
                record_end = start + lead + header + content_length
                if record_end >= end:
                    return None  # the record runs to the next one (or past the end: truncated)
                unread = _unread_after_record(self._pieces(record_end, end), None)
            where = f"after the record at {start}"
        return _gap(start, unread, where)

    def _record_end(self, start: int, content_length: int) -> int | None:
        if self._gzip:
            inflated = _Inflated(self, start, self._size, members=1)
            for _ in inflated:
                pass
            return inflated.end
        lead, header = self._plain_head(start)
        return None if header is None else min(self._size, start + lead + header + content_length)

    # -- reading ---------------------------------------------------------------------------

    def _read(self, offset: int, size: int) -> bytes:
        assert self._file is not None
        self._file.seek(offset)
        return self._file.read(size)

    def _pieces(self, start: int, end: int) -> Iterator[bytes]:
        """The bytes in [start, end), a piece at a time."""
        while start < end:
            piece = self._read(start, min(_PIECE, end - start))
            if not piece:
                return
            start += len(piece)
            yield piece

    def _plain_head(self, start: int) -> tuple[int, int | None]:
        """``_record_head`` of the plain record at ``start``."""
        head = self._read(start, 4096)
        lead, header = _record_head(head)
        if header is None:  # a long header (or none): read as far as fastwarc would
            lead, header = _record_head(self._read(start, HEAD_LIMIT))
        return lead, header

    def _one_member_holds(self, start: int, content_length: int, end: int) -> bool:
        """The cheap check: the member at ``start`` holds a WARC header, and the last four
        bytes before ``end`` (its ISIZE, if it is the only member) match that record's length."""
        if end - start < 18:
            return False
        inflater = zlib.decompressobj(31)
        head = b""
        offset = start
        while len(head) < HEAD_LIMIT and not inflater.eof and offset < end:
            chunk = self._read(offset, min(1024, end - offset))
            offset += len(chunk)
            try:
                head += inflater.decompress(chunk)
            except zlib.error:
                return False
            lead, header = _record_head(head)
            if header is not None:
                break
        else:
            return False
        (isize,) = struct.unpack("<I", self._read(end - 4, 4))
        return 0 <= (isize - lead - header - content_length) % (1 << 32) <= _TRAILER_SLACK


class _Inflated:
    """The uncompressed bytes of the gzip members in [start, end) of a file, a piece of at most
    ``_PIECE`` bytes at a time, however much they inflate to. After the iteration, ``whole`` says
    whether they were all gzip and the last one ended at ``end`` (not so when truncated, or not
    gzip at all), and ``end`` where the last member ended (None unless whole); ``members`` stops
    after so many members."""

    def __init__(self, gaps: RecordGaps, start: int, end: int, members: int | None = None) -> None:
        self._gaps, self._start, self._stop, self._members = gaps, start, end, members
        self.whole = False
        self.end: int | None = None

    def __iter__(self) -> Iterator[bytes]:
        offset, data, done = self._start, b"", 0
        inflater = zlib.decompressobj(31)
        while True:
            if not data and offset < self._stop:
                data = self._gaps._read(offset, min(_PIECE, self._stop - offset))
                offset += len(data)
            if not data:
                return  # the input ends inside a member (or there was none): not whole
            try:
                out = inflater.decompress(data, _PIECE)
            except zlib.error:
                return
            if out:
                yield out
            if inflater.eof:
                done += 1
                data = inflater.unused_data
                at = offset - len(data)
                if done == self._members or (not data and at >= self._stop):
                    self.whole, self.end = at == self._stop or done == self._members, at
                    return
                inflater = zlib.decompressobj(31)
            else:
                data = inflater.unconsumed_tail
