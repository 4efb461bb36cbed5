"""Undo HTTP transfer and content encodings of a payload stored raw in a WARC record.

Crawlers disagree on what they store: Common Crawl decodes and renames the headers
(``X-Crawler-Content-Encoding``), wget and our crawler keep the bytes as they came off the wire.
Decoding here, record by record, means one broken body is one counted error, not a dead file.

The bytes are untrusted, so every decoder is bounded in time and memory:

- chunked decoding always moves forward (a chunk size is 1-16 hex digits, nothing else, so a
  negative or absurd size ends the decoding) and its output is never longer than its input;
- gzip, deflate, brotli and zstd are decompressed as streams, at most ``_STEP`` bytes per call, and
  stop with ``too_large`` as soon as the output passes the limit. A bomb costs the limit plus the
  decoder's window, never its full size: 32 KiB for gzip and deflate, at most 8 MiB for zstd (a
  frame asking for more is refused, as RFC 9659 has HTTP decoders do), at most 16 MiB for brotli
  (RFC 7932's largest window; the decoder refuses large-window streams). So peak memory is at
  most twice the limit once the limit is 17 MiB or more; with the default 10 MiB, about 19 MiB on
  a zstd bomb and 26 MiB on a brotli one (tests/test_readers_hostile.py measures both);
- at most ``MAX_CODINGS`` content codings are undone, so the work is at most that many times
  the limit.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator

MAX_CODINGS = 4
"""More content codings than this (``gzip, gzip, gzip, ...``) are an error, not a loop."""
_STEP = 1 << 18
"""The most output a decoder gives per call: the overshoot past the limit before it is noticed."""
_ZSTD_WINDOW_LOG_MAX = 23
"""8 MiB: RFC 9659 limits a ``zstd`` Content-Encoding's window to this, and so do browsers."""
_MAX_SIZE_LINE = 4096
"""A chunk-size line (size and extensions) longer than this is not one."""
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


class PayloadError(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _chunk_size(line: bytes) -> int | None:
    """The size of a chunk-size line (``1a3;ext=x``), or None when it is not one."""
    field = line.split(b";", 1)[0].strip(b" \t")
    return int(field, 16) if _CHUNK_SIZE.fullmatch(field) else None


def dechunk(body: bytes) -> bytes:
    """Decode ``Transfer-Encoding: chunked``. Bodies that only claim to be chunked are returned as-is;
    a body whose chunks stop making sense (a bad size line, a chunk cut short) keeps what came before."""
    view = memoryview(body)
    out = bytearray()
    pos = 0
    while pos < len(body):
        eol = body.find(b"\r\n", pos, pos + _MAX_SIZE_LINE)
        if eol < 0:
            break
        size = _chunk_size(body[pos:eol])
        if size is None:
            if pos == 0:  # not chunked at all, whatever the header says
                return body
            break
        if size == 0:
            return bytes(out)
        start = eol + 2
        out += view[start : start + size]
        pos = start + size + 2  # > the previous pos: the loop always moves forward
    return bytes(out) if out else body


def _inflate_pieces(data: bytes, wbits: int) -> Iterator[bytes]:
    d = zlib.decompressobj(wbits)
    tail = data
    while not d.eof:
        piece = d.decompress(tail, _STEP)
        if not piece:  # the input is used up: a truncated stream keeps what it held
            return
        yield piece
        tail = d.unconsumed_tail


def _brotli_pieces(data: bytes) -> Iterator[bytes]:
    import brotli  # 1.2+: output_buffer_limit

    d = brotli.Decompressor()
    piece = d.process(data, output_buffer_limit=_STEP)
    while True:
        if piece:
            yield piece
        if d.is_finished():
            return
        if d.can_accept_more_data():  # all input taken and no end of stream
            raise PayloadError("content_encoding", "br: truncated stream")
        piece = d.process(b"", output_buffer_limit=_STEP)


def _zstd():
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+
    except ImportError:
        from backports import zstd  # type: ignore[import-not-found,no-redef]
    return zstd


def _zstd_pieces(data: bytes) -> Iterator[bytes]:
    zstd = _zstd()
    options = {zstd.DecompressionParameter.window_log_max: _ZSTD_WINDOW_LOG_MAX}
    while data:  # one decompressor per frame: a body may hold several
        d = zstd.ZstdDecompressor(options=options)
        piece = d.decompress(data, max_length=_STEP)
        while True:
            if piece:
                yield piece
            if d.eof:
                break
            if d.needs_input:
                raise PayloadError("content_encoding", "zstd: truncated stream")
            piece = d.decompress(b"", max_length=_STEP)
        data = d.unused_data


def _collect(pieces: Iterator[bytes], limit: int) -> bytes:
    out: list[bytes] = []
    size = 0
    for piece in pieces:
        size += len(piece)
        if size > limit:
            raise PayloadError("too_large", f"decompressed body exceeds {limit} bytes")
        out.append(piece)
    return b"".join(out)


def decode_content(body: bytes, encoding: str, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity", "none"):
        return body
    try:
        if encoding in ("gzip", "x-gzip"):
            return _collect(_inflate_pieces(body, 47), limit)  # 47: gzip or zlib header, auto-detected
        if encoding == "deflate":
            try:
                return _collect(_inflate_pieces(body, 15), limit)
            except zlib.error:
                return _collect(_inflate_pieces(body, -15), limit)  # raw deflate, as some servers send it
        if encoding == "br":
            return _collect(_brotli_pieces(body), limit)
        if encoding == "zstd":
            return _collect(_zstd_pieces(body), limit)
        raise PayloadError("content_encoding", f"unsupported Content-Encoding {encoding!r}")
    except PayloadError:
        raise
    except Exception as exc:
        raise PayloadError("content_encoding", f"{encoding}: {exc}") from exc


_COMPRESSED_MAGIC = (b"\x1f\x8b", b"\x78", b"\x28\xb5\x2f\xfd")


def _already_decoded(body: bytes) -> bool:
    """Archives such as ClueWeb09 store decoded bodies under the original Content-Encoding header."""
    head = body[:512].lstrip()
    return not head.startswith(_COMPRESSED_MAGIC) and head[:1] == b"<"


def decode_payload(body: bytes, headers: dict[str, str], limit: int) -> bytes:
    """``headers``: lower-cased HTTP header names → values."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = dechunk(body)
    encodings = [e for e in headers.get("content-encoding", "").split(",") if e.strip()]
    if len(encodings) > MAX_CODINGS:
        raise PayloadError("content_encoding", f"{len(encodings)} content codings (at most {MAX_CODINGS})")
    for enc in reversed(encodings):
        try:
            body = decode_content(body, enc, limit)
        except PayloadError as exc:
            if exc.reason == "content_encoding" and _already_decoded(body):
                break
            raise
    return body
