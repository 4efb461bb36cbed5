"""A WARC record's block, read in bounded memory, and cut where another record starts inside it.

A Content-Length that is too long makes fastwarc read the records after it as the end of this
record's block; one that is far too long (10^12) makes it read the whole rest of the file so.
Blocks up to ``keep`` bytes (or one piece) are read at once, as before; longer ones are read a
piece at a time and searched for a record start as they come, keeping at most ``keep`` bytes of
the record's own and one piece, so a page keeps its own bytes and the records it ran into stay
readable, as a stream, however long the block claims to be.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from thresher.readers.gaps import HEAD_LIMIT, find_record_start, split_overrun

PIECE = 1 << 20
"""Bytes read at a time from a long block; blocks this short are read at once whatever ``keep``."""
_MARGIN = HEAD_LIMIT + 8  # what a piece keeps of the one before: a record start's trailer and header


class _Counted:
    """A record's reader that counts the bytes read from it."""

    def __init__(self, reader) -> None:
        self._reader = reader
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._reader.read(size)
        self.count += len(data)
        return data


class _Rest(io.RawIOBase):
    """The records a block ran into: the bytes already read past the record start, then the rest
    of the block as fastwarc reads it. A stream for another ``ArchiveIterator`` (which asks for
    ``read`` and ``tell``)."""

    def __init__(self, head: bytes, reader: _Counted | None) -> None:
        self._head = head
        self._reader = reader
        self._pos = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if self._head:  # while it lasts, every byte read so far is from it
            data = self._head[self._pos :] if size < 0 else self._head[self._pos : self._pos + size]
            if self._pos + len(data) == len(self._head):
                self._head = b""  # not held once read
        elif self._reader is not None:
            data = self._reader.read(size)
        else:
            data = b""
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@dataclass
class Block:
    own: bytes | None
    """The record's own bytes; None when there are more than ``keep`` (``own_size`` of them)."""
    own_size: int
    rest: _Rest | None
    """The records the block ran into, as a stream; None when it ran into none."""
    _counted: _Counted
    _content_length: int

    @property
    def short(self) -> bool:
        """Whether the stream ended before the block's Content-Length: the file ends inside it.
        Final once ``rest`` is read to its end."""
        return self._counted.count < self._content_length


def read_block(reader, content_length: int, keep: int) -> Block:
    """The block of a record whose Content-Length is ``content_length``, from fastwarc's
    ``reader``, keeping at most ``keep`` of its own bytes."""
    counted = _Counted(reader)
    if content_length <= max(keep, PIECE):
        own, over = split_overrun(counted.read())
        rest = _Rest(over, None) if over else None
        return Block(own if len(own) <= keep else None, len(own), rest, counted, content_length)
    kept: list[bytes] | None = []
    own_size = 0
    buffer = b""
    while True:
        piece = counted.read(PIECE)
        buffer += piece
        found = find_record_start(buffer, None if not piece else max(0, len(buffer) - _MARGIN))
        end = len(buffer) if not piece else max(0, len(buffer) - _MARGIN)
        if found is not None:
            end = found[0]
        own_size += end
        if kept is not None:
            kept.append(buffer[:end])
            if own_size > keep:
                kept = None
        if found is not None or not piece:
            break
        buffer = buffer[end:]
    own = b"".join(kept) if kept is not None else None
    rest = _Rest(buffer[found[1] :], counted) if found is not None else None
    return Block(own, own_size, rest, counted, content_length)
