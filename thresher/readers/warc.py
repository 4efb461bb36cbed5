"""WARC → documents with fastwarc: HTTP responses of HTML pages (and WET conversion records).

Reads WARC/1.1, 1.0 and 0.18, gzip-per-record, whole-file gzip or plain, from local paths or any
fsspec URI. Payloads are read raw (``auto_decode="none"``) and decoded here record by record:
fastwarc's own decoding aborts the whole file on one body that lies about being chunked.

Every record that could be a document (response, resource, revisit, conversion) yields a
:class:`Document`; those that are not pages come out already dropped with their reason, and a
file that breaks mid-way yields one error document for the rest of it, and so do bytes fastwarc
steps over between records (gaps.py). A record whose Content-Length is too long is cut where the
next record starts inside its block, and the whole records inside are read as usual. Nothing is
lost silently.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from thresher.document import Document, Drop
from thresher.readers.gaps import Gap, RecordGaps, holds_record, split_overrun
from thresher.readers.http import PayloadError, decode_payload

logger = logging.getLogger(__name__)

STAGE = "read"
HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml+xhtml")
DOCUMENT_RECORDS = {"response", "resource", "revisit", "conversion"}
SCANNED_BLOCK = 1 << 20
"""The blocks of other records (requests, metadata...) up to this size are read too, only to find
the records they ran over if their Content-Length is too long."""


@dataclass
class WarcReaderConfig:
    max_payload_bytes: int = 10 * 1024 * 1024
    """Records whose (decoded) payload is larger are dropped as error ``too_large``."""
    http_statuses: list[int] = field(default_factory=lambda: [200])
    """HTTP statuses whose pages are documents; others are dropped as ``http_status``."""
    sniff_missing_content_type: bool = True
    """Treat a response without Content-Type as HTML if its payload starts like HTML."""


def _record_id(raw: str | None, source: str, offset: int | str) -> str:
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
    cfg = config or WarcReaderConfig()
    offset = 0
    gaps = RecordGaps(path)
    last: tuple[int, int] | None = None  # start and Content-Length of the record before
    try:
        for record in _records(path):
            offset = record.stream_pos
            gap = gaps.before_first(offset) if last is None else gaps.check(*last, offset)
            if gap is not None:
                yield _gap_error(path, gap)
            last = (offset, record.content_length)
            yield from _record_documents(record, path, str(offset), cfg)
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


def _records(source):
    from fastwarc.warc import ArchiveIterator

    return ArchiveIterator(source, parse_http=False, auto_decode="none", quirks_mode=True)


def _record_documents(record, path: str, at: str, cfg: WarcReaderConfig) -> Iterator[Document]:
    """The document of a record (if it is one), then those of the records its block ran over.
    ``at`` locates the record: its offset in the file, or where it lies inside another's block."""
    rtype = str(record.record_type)
    if rtype in DOCUMENT_RECORDS:
        doc, overrun = _to_document(record, rtype, path, at, cfg)
        yield doc
    else:
        overrun = _overrun_of(record)
    if overrun:
        logger.warning(
            "%s: the %s record at %s runs %d bytes into the next record(s): Content-Length too long",
            path, rtype, at, len(overrun),
        )
        try:
            for inner in _records(io.BytesIO(overrun)):
                # a record cut short by the block's end is left out: the gap check reports its rest
                if holds_record(overrun, inner.stream_pos, inner.content_length):
                    yield from _record_documents(inner, path, f"{at}+{inner.stream_pos}", cfg)
        except Exception as exc:  # the records inside cannot be read: one error, the file goes on
            logger.warning("%s: records inside the block of the record at %s unreadable: %r", path, at, exc)
            yield _file_error(path, at, "unreadable_record", str(exc), value=len(overrun), suffix="-overrun")


def _overrun_of(record) -> bytes:
    """The records at the end of a non-document record's block (see ``SCANNED_BLOCK``)."""
    if record.content_length > SCANNED_BLOCK:
        return b""
    try:
        block = record.reader.read()
    except Exception:  # the stream is broken: the next step of the iteration reports it
        return b""
    return split_overrun(block)[1]


def _gap_error(path: str, gap: Gap) -> Document:
    """The error document for bytes fastwarc skipped between records: a record whose header was
    damaged, so the page it held (if any) cannot be read, but is counted."""
    logger.warning("%s: %s", path, gap.detail)
    return _file_error(path, gap.offset, "unreadable_record", gap.detail, value=gap.size, suffix="-skipped")


def _file_error(
    path: str, offset: int | str, reason: str, detail: str, value: float | None = None, suffix: str = "-corrupt"
) -> Document:
    """An error document for bytes of a file that yield no document, from ``offset`` on."""
    doc = Document(id=_record_id(None, path, offset) + suffix, source=f"{path}@{offset}")
    return _dropped(doc, reason, kind="error", value=value, detail=detail[:300])


def _to_document(record, rtype: str, path: str, at: str, cfg: WarcReaderConfig) -> tuple[Document, bytes]:
    """The record's document, and the bytes at the end of its block that are other records
    (empty unless its Content-Length is too long)."""
    headers = record.headers
    url = headers.get("WARC-Target-URI")
    if url:
        url = url.strip().strip("<>")  # wget 1.x writes <https://...>
    doc = Document(
        id=_record_id(headers.get("WARC-Record-ID"), path, at),
        url=url,
        warc_date=headers.get("WARC-Date"),
        source=f"{path}@{at}",
    )
    if rtype == "revisit":
        return _dropped(doc, "revisit"), b""
    if record.content_length > cfg.max_payload_bytes * 4:
        return _dropped(doc, "too_large", kind="error", value=record.content_length), b""
    try:
        block = record.reader.read()
    except Exception as exc:
        return _dropped(doc, "corrupt_record", kind="error", detail=str(exc)[:300]), b""
    if len(block) < record.content_length:
        doc.metadata["truncated"] = True  # the file ends inside this record; keep what is there
    block, overrun = split_overrun(block)
    if overrun:
        doc.metadata["overrun_bytes"] = record.content_length - len(block)
    return _from_block(doc, rtype, headers, block, cfg), overrun


def _dropped(doc: Document, reason: str, kind: str = "dropped", **kw) -> Document:
    doc.mark_dropped(Drop(reason, kind=kind, stage=STAGE, **kw))
    return doc


def _from_block(doc: Document, rtype: str, headers, block: bytes, cfg: WarcReaderConfig) -> Document:
    if rtype == "conversion":  # WET: already text
        doc.text = block.decode("utf-8", "replace")
        lang = headers.get("WARC-Identified-Content-Language")
        if lang:
            doc.metadata["warc_language"] = lang
        return doc if doc.text.strip() else _dropped(doc, "no_text")

    if rtype == "resource":
        doc.content_type = headers.get("Content-Type")
        payload = block
    else:
        status, http_headers, payload = _split_http(block)
        if status is None:
            return _dropped(doc, "bad_http", kind="error", detail=block[:80].decode("latin-1"))
        doc.content_type = http_headers.get("content-type")
        if status not in cfg.http_statuses:
            return _dropped(doc, "http_status", value=status)
        try:
            payload = decode_payload(payload, http_headers, cfg.max_payload_bytes)
        except PayloadError as exc:
            return _dropped(doc, exc.reason, kind="error", detail=exc.detail[:300])
    ident = headers.get("WARC-Identified-Payload-Type")
    mime = _mime(doc.content_type)
    is_html = mime in HTML_TYPES or _mime(ident) in HTML_TYPES
    if not is_html and not mime and cfg.sniff_missing_content_type:
        is_html = _looks_like_html(payload)
    if not is_html:
        return _dropped(doc, "non_html", detail=mime or "unknown")
    if len(payload) > cfg.max_payload_bytes:
        return _dropped(doc, "too_large", kind="error", value=len(payload))
    if not payload.strip():
        return _dropped(doc, "empty_payload")
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
