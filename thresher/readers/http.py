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
  frame asking for more is refused, as RFC 9659 has HTTP decoders do) and, for brotli, the window
  its stream declares, which must fit the limit (see ``brotli_window_bits``). With the default
  10 MiB limit a bomb peaks near 19 MiB, within twice the limit (tests/test_readers_hostile.py
  measures each decoder);
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


def brotli_window_bits(data: bytes) -> tuple[int, bool] | None:
    """The window a brotli stream declares, as (log2 of its size, large-window or not), or None
    when ``data`` is too short or the code is none (the decoder reports those).

    RFC 7932 §9.1: WBITS (10-24) is a variable-length code in the stream's first 1-7 bits, read
    from the least significant bit of the first byte: ``0`` is 16; ``1`` then 3 bits n != 0 is
    17 + n; ``1000`` then 3 bits m is 8 + m for m in 2-7 (10-15) or 17 for m = 0. m = 1 is not in
    the RFC: large-window brotli marks itself with it, a ``0`` bit and WBITS in the next 6 bits."""
    if not data:
        return None
    first = data[0]
    if not first & 1:
        return 16, False
    if n := (first >> 1) & 7:
        return 17 + n, False
    m = (first >> 4) & 7
    if m != 1:
        return (8 + m if m else 17), False
    if first >> 7 or len(data) < 2:
        return None
    return data[1] & 0x3F, True


def _check_brotli_window(data: bytes, limit: int) -> None:
    """Refuse a stream whose window does not fit the limit, before any decoding.

    The decoder fills its ring buffer, as large as the declared window, before it hands out any
    output, and the Python binding cannot make it smaller: on a bomb, memory is the limit plus
    the window (measured with brotli 1.2, 10 MiB limit: +14 MiB at lgwin 22, +18 at 23, +26 at
    24). A window of at most ``limit - _STEP`` keeps that, with the last piece, within twice the
    limit: at the default 10 MiB, lgwin 23 (8 MiB) passes and lgwin 24 (16 MiB) is refused.

    What servers send: ngx_brotli defaults to 512 KiB (lgwin 19) and shrinks the window to fit a
    known length, Apache mod_brotli to lgwin 18, the brotli library, its Python binding and Node
    to 22; the ``brotli`` tool defaults to 24 but shrinks it to fit the file. So an lgwin-24
    stream is a page over 8 MiB or one compressed with ``-w 24`` / ``lgwin=24`` by hand; such a
    page is one counted ``content_encoding`` error naming its window unless the limit is raised
    to 16.25 MiB or more. Large-window streams (not RFC 7932, and refused by the decoder anyway)
    are refused here with their window named."""
    declared = brotli_window_bits(data)
    if declared is None:
        return
    bits, large = declared
    if large:
        raise PayloadError(
            "content_encoding", f"br: large-window stream (window 2^{bits} bytes), not RFC 7932 brotli"
        )
    if (1 << bits) > limit - _STEP:
        raise PayloadError(
            "content_encoding",
            f"br: the stream's window is {1 << bits} bytes (lgwin {bits}); at most {limit - _STEP} "
            f"fits the {limit}-byte payload limit",
        )


def _brotli_pieces(data: bytes, limit: int) -> Iterator[bytes]:
    import brotli  # 1.2+: output_buffer_limit

    _check_brotli_window(data, limit)

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
            return _collect(_brotli_pieces(body, limit), limit)
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
