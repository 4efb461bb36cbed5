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
* A file gzipped as a whole, an LZ4 file, or one that is not a local file is not checked:
  record offsets there do not point into the file's bytes (or are expensive to re-read).

The opposite fault, a Content-Length too long, makes fastwarc read the start of the next record
(or, if it is too long by just the right amount, whole records) as the end of this one's block.
:func:`split_overrun` finds where such a block runs into another record, so that the page keeps
only its own bytes and the records inside are read rather than lost.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

logger = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
_PADDING = b"\r\n\x00"
_HEAD_LIMIT = 1 << 16  # fastwarc's default max_header_len is 32 KiB
_TRAILER_SLACK = 16  # line breaks after a record's block, inside its gzip member


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
    return lead, _header_end(data[lead : lead + _HEAD_LIMIT]) if data.startswith(b"WARC/", lead) else None


def holds_record(data: bytes, start: int, content_length: int) -> bool:
    """Whether ``data`` holds the whole record that starts at ``start`` (padding before it aside)."""
    lead, head = _record_head(data[start : start + _HEAD_LIMIT])
    return head is not None and start + lead + head + content_length <= len(data)


def _unread_bytes(block: bytes, content_length: int) -> bytes:
    """What in ``block`` (one record's bytes, padding around it allowed) is not that record,
    padding stripped: empty when it is all record and padding."""
    lead, head = _record_head(block)
    if head is None:
        return block[lead:].rstrip(_PADDING)
    return block[lead + head + content_length :].strip(_PADDING)


def _gap(offset: int, unread: bytes, where: str) -> Gap | None:
    if not unread:
        return None
    kind = re.search(rb"WARC-Type:[ \t]*([\w-]+)", unread[:_HEAD_LIMIT])
    damaged = f"a damaged {kind[1].decode()} record" if kind else "a damaged record header"
    return Gap(
        offset,
        len(unread),
        f"{len(unread)} bytes {where} are no WARC record that could be read "
        f"({damaged}, or a wrong Content-Length?)",
    )


_VERSION_LINE = re.compile(rb"WARC/(?:1\.[01]|0\.1[78])\r\n")
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_FIELD = re.compile(_TOKEN + rb"+:")  # a header line starts with a field name and a colon
_CUT_FIELD = re.compile(_TOKEN + rb"*(?::.*)?", re.DOTALL)  # a header line cut short anywhere
_REQUIRED_FIELDS = {b"warc-type", b"warc-record-id", b"content-length"}


def split_overrun(block: bytes) -> tuple[bytes, bytes]:
    """``block`` cut where another WARC record starts inside it: (its own bytes, the records it ran
    over); the second is empty when there are none.

    A record starts where a version line follows a blank line and header lines follow it: either a
    whole header block with the fields every record has, or header lines that name WARC fields
    up to the end of the block, which then cut the record short."""
    at = block.find(b"\nWARC/")
    while at >= 0:
        start = at + 1
        # the blank line is the trailer the WARC format puts after every record's block
        trailer = next((len(t) for t in (b"\r\n\r\n", b"\n\n") if block.startswith(t, start - len(t))), 0)
        if trailer and _starts_record(block, start):
            return block[: start - trailer], block[start:]
        at = block.find(b"\nWARC/", start)
    return block, b""


def _starts_record(block: bytes, start: int) -> bool:
    if not _VERSION_LINE.match(block, start):
        return False
    head = block[start : start + _HEAD_LIMIT]
    end = _header_end(head)
    if end is not None:
        lines = head[:end].split(b"\r\n")[1:-2]
    else:  # the block ends inside the header: its last line may be cut anywhere
        *lines, cut = head.split(b"\r\n")[1:]
        if len(head) == _HEAD_LIMIT or not _CUT_FIELD.fullmatch(cut):
            return False
    if not lines or not all(map(_FIELD.match, lines)):
        return False
    names = {line.split(b":", 1)[0].lower() for line in lines}
    if end is not None:
        return _REQUIRED_FIELDS <= names
    return all(name.startswith((b"warc-", b"content-")) for name in names)


class RecordGaps:
    """``check(start, content_length, next_start)`` for consecutive records of one file, in order;
    ``next_start`` is None for the last record. Returns the :class:`Gap` that follows the record,
    if any. ``before_first(start)`` checks the bytes before the first record."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._file: BinaryIO | None = None
        self._gzip = False
        if os.path.isfile(path):
            self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
            magic = self._file.read(4)
            self._gzip = magic.startswith(_GZIP_MAGIC)
            if magic == b"\x04\x22\x4d\x18":  # LZ4 frame: offsets are not byte offsets of records
                self.close()
            self._size = os.path.getsize(path)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def before_first(self, start: int) -> Gap | None:
        if self._file is None or start == 0:
            return None
        return self._guarded(self._before_first, start)

    def check(self, start: int, content_length: int, next_start: int | None) -> Gap | None:
        if self._file is None:
            return None
        return self._guarded(self._check, start, content_length, next_start)

    def _guarded(self, check, *args) -> Gap | None:
        """A check that cannot be made (an I/O error re-reading the file) stops the checking of
        this file, logged, rather than the reading of it."""
        try:
            return check(*args)
        except (OSError, ValueError, struct.error) as exc:
            logger.warning("%s: bytes between records not checked from here on: %r", self._path, exc)
            self.close()
            return None

    def _before_first(self, start: int) -> Gap | None:
        block = self._inflate(0, start) if self._gzip else self._read(0, start)
        return _gap(0, (block or b"").strip(_PADDING), "before the first record")

    def _check(self, start: int, content_length: int, next_start: int | None) -> Gap | None:
        if next_start is not None and next_start <= start:
            self.close()  # a file gzipped as a whole: offsets are those of its deflate blocks
            return None
        end = self._size if next_start is None else next_start
        if self._gzip:
            if self._one_member_holds(start, content_length, end):
                return None
            block = self._inflate(start, end)
            if block is None:
                if next_start is not None:  # offsets that are no member boundaries: one gzip stream
                    self.close()
                return None  # else the file ends inside a member: truncated, reported as such
            unread = _unread_bytes(block, content_length)
            if unread.startswith(b"WARC/"):  # fastwarc read that record: members of several records
                self.close()
                return None
            where = f"in the gzip members at {start}-{end}"
        else:
            head = self._read(start, 4096)
            lead, header = _record_head(head)
            if header is None:  # a long header (or none): read as far as fastwarc would
                head = self._read(start, _HEAD_LIMIT)
                lead, header = _record_head(head)
            if header is None:
                unread = head[lead:].rstrip(_PADDING)
            else:
                record_end = start + lead + header + content_length
                if record_end >= end:
                    return None  # the record runs to the next one (or past the end: truncated)
                unread = self._read(record_end, end - record_end).strip(_PADDING)
            where = f"after the record at {start}"
        return _gap(start, unread, where)

    # -- reading ---------------------------------------------------------------------------

    def _read(self, offset: int, size: int) -> bytes:
        assert self._file is not None
        self._file.seek(offset)
        return self._file.read(size)

    def _one_member_holds(self, start: int, content_length: int, end: int) -> bool:
        """The cheap check: the member at ``start`` holds a WARC header, and the last four
        bytes before ``end`` (its ISIZE, if it is the only member) match that record's length."""
        if end - start < 18:
            return False
        inflater = zlib.decompressobj(31)
        head = b""
        offset = start
        while len(head) < _HEAD_LIMIT and not inflater.eof and offset < end:
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

    def _inflate(self, start: int, end: int) -> bytes | None:
        """The uncompressed bytes of the gzip members in [start, end), or None when the last one
        does not end there (truncated) or they are not gzip at all."""
        data = self._read(start, end - start)
        out = []
        while data:
            inflater = zlib.decompressobj(31)
            try:
                out.append(inflater.decompress(data))
            except zlib.error:
                return None
            if not inflater.eof:
                return None
            data = inflater.unused_data
        return b"".join(out)
