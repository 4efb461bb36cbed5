"""Undo HTTP transfer and content encodings of a payload stored raw in a WARC record.

Crawlers disagree on what they store: Common Crawl decodes and renames the headers
(``X-Crawler-Content-Encoding``), wget and our crawler keep the bytes as they came off the wire.
Decoding here, record by record, means one broken body is one counted error, not a dead file.
"""

from __future__ import annotations

import zlib


class PayloadError(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def dechunk(body: bytes) -> bytes:
    """Decode ``Transfer-Encoding: chunked``. Bodies that only claim to be chunked are returned as-is."""
    out = bytearray()
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            break
        size_field = body[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            if pos == 0:  # not chunked at all, whatever the header says
                return body
            break
        if size == 0:
            return bytes(out)
        start = eol + 2
        out += body[start : start + size]
        pos = start + size + 2
    return bytes(out) if out else body


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = d.decompress(data, limit + 1)
    if len(out) > limit:
        raise PayloadError("too_large", f"decompressed body exceeds {limit} bytes")
    return out


def decode_content(body: bytes, encoding: str, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity", "none"):
        return body
    try:
        if encoding in ("gzip", "x-gzip"):
            return _inflate(body, 47, limit)  # 47: gzip or zlib header, auto-detected
        if encoding == "deflate":
            try:
                return _inflate(body, 15, limit)
            except zlib.error:
                return _inflate(body, -15, limit)  # raw deflate, as some servers send it
        if encoding == "br":
            import brotli

            out = brotli.decompress(body)
        elif encoding == "zstd":
            from backports import zstd  # type: ignore[import-not-found]

            out = zstd.decompress(body)
        else:
            raise PayloadError("content_encoding", f"unsupported Content-Encoding {encoding!r}")
    except PayloadError:
        raise
    except Exception as exc:
        raise PayloadError("content_encoding", f"{encoding}: {exc}") from exc
    if len(out) > limit:
        raise PayloadError("too_large", f"decompressed body exceeds {limit} bytes")
    return out


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
    for enc in reversed(encodings):
        try:
            body = decode_content(body, enc, limit)
        except PayloadError as exc:
            if exc.reason == "content_encoding" and _already_decoded(body):
                break
            raise
    return body
