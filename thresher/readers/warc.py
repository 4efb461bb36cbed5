"""WARC → documents with fastwarc: HTTP responses of HTML pages (and WET conversion records).

Reads WARC/1.1, 1.0 and 0.18, gzip-per-record, whole-file gzip or plain, from local paths or any
fsspec URI. Payloads are read raw (``auto_decode="none"``) and decoded here record by record:
fastwarc's own decoding aborts the whole file on one body that lies about being chunked.

Every record that could be a document (response, resource, revisit, conversion) yields a
:class:`Document`; those that are not pages come out already dropped with their reason, and a
file that breaks mid-way yields one error document for the rest of it, and so do bytes fastwarc
steps over between records (gaps.py). Nothing is lost silently.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from thresher.document import Document, Drop
from thresher.readers.gaps import Gap, RecordGaps
from thresher.readers.http import PayloadError, decode_payload

logger = logging.getLogger(__name__)

STAGE = "read"
HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml+xhtml")
DOCUMENT_RECORDS = {"response", "resource", "revisit", "conversion"}


@dataclass
class WarcReaderConfig:
    max_payload_bytes: int = 10 * 1024 * 1024
    """Records whose (decoded) payload is larger are dropped as error ``too_large``."""
    http_statuses: list[int] = field(default_factory=lambda: [200])
    """HTTP statuses whose pages are documents; others are dropped as ``http_status``."""
    sniff_missing_content_type: bool = True
    """Treat a response without Content-Type as HTML if its payload starts like HTML."""


def _record_id(raw: str | None, source: str, offset: int) -> str:
    if raw:
        rid = raw.strip().strip("<>")
        return rid[len("urn:uuid:"):] if rid.startswith("urn:uuid:") else rid
    return hashlib.sha1(f"{source}@{offset}".encode()).hexdigest()


def _looks_like_html(payload: bytes) -> bool:
    head = payload[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in head


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def read_warc(path: str, config: WarcReaderConfig | None = None) -> Iterator[Document]:
    from fastwarc.warc import ArchiveIterator

    cfg = config or WarcReaderConfig()
    offset = 0
    gaps = RecordGaps(path)
    last: tuple[int, int] | None = None  # start and Content-Length of the record before
    try:
        records = ArchiveIterator(path, parse_http=False, auto_decode="none", quirks_mode=True)
        for record in records:
            offset = record.stream_pos
            gap = gaps.before_first(offset) if last is None else gaps.check(*last, offset)
            if gap is not None:
                yield _gap_error(path, gap)
            last = (offset, record.content_length)
            rtype = str(record.record_type)
            if rtype not in DOCUMENT_RECORDS:
                continue
            yield _to_document(record, rtype, path, cfg)
        gap = gaps.check(*last, None) if last is not None else None
    except Exception as exc:  # corrupt gzip, truncated file, garbage between records
        logger.warning("%s: unreadable after offset %d: %r", path, offset, exc)
        yield _file_error(path, offset, "corrupt_warc", str(exc))
        return
    finally:
        gaps.close()
    if gap is not None:
        yield _gap_error(path, gap)
    if last is None:  # fastwarc skips what is not a record: a file of anything else reads as empty
        logger.warning("%s: no WARC record in it (not a WARC file?)", path)
        yield _file_error(path, 0, "not_warc", "no WARC record found")


def _gap_error(path: str, gap: Gap) -> Document:
    """The error document for bytes fastwarc skipped between records: a record whose header was
    damaged, so the page it held (if any) cannot be read, but is counted."""
    logger.warning("%s: %s", path, gap.detail)
    return _file_error(path, gap.offset, "unreadable_record", gap.detail, value=gap.size, suffix="-skipped")


def _file_error(
    path: str, offset: int, reason: str, detail: str, value: float | None = None, suffix: str = "-corrupt"
) -> Document:
    """An error document for bytes of a file that yield no document, from ``offset`` on."""
    doc = Document(id=_record_id(None, path, offset) + suffix, source=f"{path}@{offset}")
    doc.mark_dropped(Drop(reason, kind="error", value=value, detail=detail[:300], stage=STAGE))
    return doc


def _to_document(record, rtype: str, path: str, cfg: WarcReaderConfig) -> Document:
    headers = record.headers
    offset = record.stream_pos
    url = headers.get("WARC-Target-URI")
    if url:
        url = url.strip().strip("<>")  # wget 1.x writes <https://...>
    doc = Document(
        id=_record_id(headers.get("WARC-Record-ID"), path, offset),
        url=url,
        warc_date=headers.get("WARC-Date"),
        source=f"{path}@{offset}",
    )

    def drop(reason: str, kind: str = "dropped", **kw) -> Document:
        doc.mark_dropped(Drop(reason, kind=kind, stage=STAGE, **kw))
        return doc

    if rtype == "revisit":
        return drop("revisit")
    if record.content_length > cfg.max_payload_bytes * 4:
        return drop("too_large", kind="error", value=record.content_length)
    try:
        block = record.reader.read()
    except Exception as exc:
        return drop("corrupt_record", kind="error", detail=str(exc)[:300])
    if len(block) < record.content_length:
        doc.metadata["truncated"] = True  # the file ends inside this record; keep what is there

    if rtype == "conversion":  # WET: already text
        doc.text = block.decode("utf-8", "replace")
        lang = headers.get("WARC-Identified-Content-Language")
        if lang:
            doc.metadata["warc_language"] = lang
        return doc if doc.text.strip() else drop("no_text")

    if rtype == "resource":
        doc.content_type = headers.get("Content-Type")
        payload = block
    else:
        status, http_headers, payload = _split_http(block)
        if status is None:
            return drop("bad_http", kind="error", detail=block[:80].decode("latin-1"))
        doc.content_type = http_headers.get("content-type")
        if status not in cfg.http_statuses:
            return drop("http_status", value=status)
        try:
            payload = decode_payload(payload, http_headers, cfg.max_payload_bytes)
        except PayloadError as exc:
            return drop(exc.reason, kind="error", detail=exc.detail[:300])
    ident = headers.get("WARC-Identified-Payload-Type")
    mime = _mime(doc.content_type)
    is_html = mime in HTML_TYPES or _mime(ident) in HTML_TYPES
    if not is_html and not mime and cfg.sniff_missing_content_type:
        is_html = _looks_like_html(payload)
    if not is_html:
        return drop("non_html", detail=mime or "unknown")
    if len(payload) > cfg.max_payload_bytes:
        return drop("too_large", kind="error", value=len(payload))
    if not payload.strip():
        return drop("empty_payload")
    doc.html = payload
    return doc


def _split_http(block: bytes) -> tuple[int | None, dict[str, str], bytes]:
    """Status, lower-cased headers and body of an HTTP response block."""
    end = block.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = block.find(b"\n\n"), 2
    if end < 0:
        end, sep = len(block), 0
    head = block[:end].decode("latin-1")
    lines = head.splitlines()
    if not lines or not lines[0].upper().startswith("HTTP/"):
        return None, {}, b""
    parts = lines[0].split(None, 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        return None, {}, b""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return status, headers, block[end + sep :]
