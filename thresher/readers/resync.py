"""Where a WARC file can be read again after bytes fastwarc cannot read.

fastwarc stops at the first gzip member it cannot inflate (and at bytes between members that are
no gzip at all), and reads nothing from a per-record gzip file with junk before its first member:
every intact record after the damage would be lost. :func:`next_record_start` finds the next
offset where a record can be read, so reading goes on from there and only the damaged span is
lost (and counted): a gzip member whose first inflated bytes are a WARC version line, or a
version line at the start of a line of a plain file.

The search reads the file a piece at a time; each gzip magic number it meets costs at most
``_PROBE`` bytes of input to try, so the time is linear in the bytes searched and the memory is
one piece.
"""

from __future__ import annotations

import re
import zlib
from typing import BinaryIO

_PIECE = 1 << 20
_GZIP_MEMBER = re.compile(rb"\x1f\x8b\x08")  # gzip magic and the deflate method
_VERSION = rb"WARC/(?:1\.[01]|0\.1[78])\r?\n"
_MEMBER_RECORD = re.compile(_VERSION)
_PLAIN_RECORD = re.compile(rb"(?m)^" + _VERSION)
_PROBE = 1024
"""Input tried per gzip member: a member's gzip header and first deflate block header fit, and
its first bytes are the record's version line."""


def next_record_start(file: BinaryIO, start: int) -> int | None:
    """The first offset at or after ``start`` where a WARC record (gzip member or plain) begins, or
    None when there is none up to the end of ``file``."""
    offset = start
    carry = b""  # the end of the piece before: a magic number or a version line across two pieces
    while True:
        file.seek(offset)
        piece = file.read(_PIECE)
        if not piece:
            return None
        data = carry + piece
        base = offset - len(carry)
        found = _first_start(file, data, base, first_line=base == start)
        if found is not None:
            return found
        offset += len(piece)
        carry = data[-16:]


def _first_start(file: BinaryIO, data: bytes, base: int, first_line: bool) -> int | None:
    """The first record start in ``data`` (which lies at ``base`` in ``file``); its first byte
    starts a line only if ``first_line`` (else a version line there was seen in the piece before)."""
    plain = next((m.start() for m in _PLAIN_RECORD.finditer(data) if m.start() or first_line), None)
    for member in _GZIP_MEMBER.finditer(data, 0, len(data) if plain is None else plain):
        if _inflates_to_record(file, base + member.start()):
            return base + member.start()
    return None if plain is None else base + plain


def _inflates_to_record(file: BinaryIO, offset: int) -> bool:
    file.seek(offset)
    try:
        head = zlib.decompressobj(31).decompress(file.read(_PROBE), 64)
    except zlib.error:
        return False
    return _MEMBER_RECORD.match(head.lstrip(b"\r\n")) is not None
