"""WARC → documents with fastwarc: HTTP responses of HTML pages (and WET conversion records).

Reads WARC/1.1, 1.0 and 0.18, gzip-per-record, whole-file gzip or plain, from local paths or any
fsspec URI. Payloads are read raw (``auto_decode="none"``) and decoded here record by record:
fastwarc's own decoding aborts the whole file on one body that lies about being chunked.

Every record that could be a document (response, resource, revisit, conversion, or one whose
WARC-Type is damaged) yields a :class:`Document`; those that are not pages come out already
dropped with their reason. Bytes fastwarc steps over between records (gaps.py) are one error
document each; so is a span it cannot read at all (a damaged gzip member, junk before the first
record), after which reading goes on at the next record (resync.py), or the rest of the file when
there is none. A record whose Content-Length is too long, by any amount, is cut where the next
record starts inside its block, and the records inside are read as usual (blocks.py). Nothing is
lost silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from thresher.document import Document, Drop
from thresher.readers.blocks import Block, read_block
from thresher.readers.gaps import Gap, RecordGaps
from thresher.readers.http import PayloadError, decode_payload
from thresher.readers.resync import next_record_start

logger = logging.getLogger(__name__)

STAGE = "read"
HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml+xhtml")
DOCUMENT_RECORDS = {"response", "resource", "revisit", "conversion"}
PAGE_RECORDS = DOCUMENT_RECORDS - {"revisit"}
"""Records whose block can hold a page; the blocks of others (requests, metadata...) are read too,
only to find the records they ran over if their Content-Length is too long."""
MAX_NESTING = 32
"""Records inside a too-long block inside a too-long block... are read this deep; each level holds
a piece of its block and a stream, so deeper ones (every Content-Length of a file far too long)
are one counted error instead."""
OPTOUT_FIELD = "WARC-Thresher-Optout"
"""Our crawler's record of the opt-out signals of a page archived anyway (``archive_opted_out``):
the document gets ``metadata["tdm_optout"] = True`` and ``metadata["optout"]``, the signals."""
OPTOUT_HEADERS = {
    "x-robots-tag": "http_x_robots_tag",
    "tdm-reservation": "http_tdm_reservation",
    "tdm-policy": "http_tdm_policy",
}
"""HTTP response headers kept in the document's metadata, for the ``optout`` stage (any WARC's,
Common Crawl's included); several X-Robots-Tag headers are one value per line."""
DAMAGED_TYPE = "unknown"
"""fastwarc's type for a WARC-Type it does not know (``respnse``, a flipped bit): a document
record whose header is damaged, or none that any reader knows; either way one counted error."""


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
        return rid[len("urn:uuid:") :] if rid.startswith("urn:uuid:") else rid
    return hashlib.sha1(f"{source}@{offset}".encode()).hexdigest()


def _looks_like_html(payload: bytes) -> bool:
    head = payload[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in head


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def read_warc(path: str, config: WarcReaderConfig | None = None) -> Iterator[Document]:
    cfg = config or WarcReaderConfig()
    origin = 0  # where the current pass over the file began: 0, or where reading went on
    damage: _Damage | None = None  # a span fastwarc could not read, reported where reading goes on
    read_any = False
    while True:
        with contextlib.ExitStack() as files:  # this pass's files, closed before the next pass
            gaps = RecordGaps(path, origin)
            files.callback(gaps.close)
            source = path if origin == 0 else files.enter_context(open(path, "rb"))  # noqa: SIM115
            if origin:
                source.seek(origin)
            offset, last, failed = origin, None, None
            try:
                for record in _records(source):
                    offset = record.stream_pos
                    if damage is not None:
                        yield from damage.report(offset)
                        damage = None
                    gap = gaps.before_first(offset) if last is None else gaps.check(*last, offset)
                    if gap is not None:
                        yield _gap_error(path, gap)
                    last, failed, read_any = (offset, record.content_length), None, True
                    for doc in _record_documents(record, path, str(offset), cfg):
                        broken = doc.drop is not None and doc.drop.reason == "corrupt_record"
                        if broken and doc.source == f"{path}@{offset}":
                            failed = offset  # this record's block could not be read: it is counted
                        yield doc
                gap = gaps.check(*last, None) if last is not None else None
            except Exception as exc:  # a damaged gzip member, junk between members, a truncated file
                logger.warning("%s: unreadable after offset %d: %r", path, offset, exc)
                if damage is None:
                    start = _damage_start(gaps, last, failed, offset)
                    damage = _Damage(path, start, str(exc), counted=failed is not None)
                origin = _resume_at(path, origin if last is None else last[0])
                if origin is None:
                    yield from damage.report(None)
                    return
                continue
            if gap is not None:
                yield _gap_error(path, gap)
            if damage is not None:  # reading went on, but no record came: the span runs to the end
                yield from damage.report(None)
                return
            if read_any or origin != 0:
                return
            # fastwarc skips what is not a record, and reads a gzip file with junk before it as
            # plain: a file that yields nothing may still hold records after some junk
            origin = _resume_at(path, -1)
            if not origin:
                logger.warning("%s: no WARC record in it (not a WARC file?)", path)
                yield _file_error(path, 0, "not_warc", "no WARC record found")
                return
            damage = _Damage(path, 0, "", junk=True)


@dataclass
class _Damage:
    """Bytes from ``start`` on that fastwarc could not read (``why``), or, ``junk``, bytes before
    the first record it could not find. Reported as one error when reading goes on after them,
    unless ``counted``: they are the block of a record already counted as corrupt_record."""

    path: str
    start: int
    why: str
    counted: bool = False
    junk: bool = False

    def report(self, end: int | None) -> Iterator[Document]:
        """The error for the span up to ``end``, where reading went on (None: to the file's end)."""
        if self.counted:
            return
        to = end if end is not None else os.path.getsize(self.path) if os.path.isfile(self.path) else None
        size = None if to is None else to - self.start
        if self.junk:
            detail = f"{size} bytes before the first record are no WARC data (junk before the file?)"
            reason, suffix = "unreadable_record", "-skipped"
        else:
            span = f"the {size} bytes at {self.start}-{to}" if to is not None else f"bytes {self.start}-"
            how = "none of the rest is readable" if end is None else f"reading went on at {end}"
            detail, reason, suffix = f"{span} cannot be read ({self.why}): {how}", "corrupt_warc", "-corrupt"
        logger.warning("%s: %s", self.path, detail)
        yield _file_error(self.path, self.start, reason, detail, value=size, suffix=suffix)


def _damage_start(gaps: RecordGaps, last: tuple[int, int] | None, failed: int | None, offset: int) -> int:
    """Where the bytes fastwarc could not read begin: the end of the last record it read (the
    record itself when its block was unreadable too), else where this pass began."""
    if last is None or failed is not None:
        return offset
    end = gaps.record_end(*last)
    return end if end is not None and end > last[0] else last[0]


def _resume_at(path: str, after: int) -> int | None:
    """The next offset after ``after`` where a record can be read, for a local file."""
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as file:
        return next_record_start(file, after + 1)


def _records(source):
    from fastwarc.warc import ArchiveIterator

    return ArchiveIterator(source, parse_http=False, auto_decode="none", quirks_mode=True)


def _record_documents(
    record, path: str, at: str, cfg: WarcReaderConfig, outer: Block | None = None, depth: int = 0
) -> Iterator[Document]:
    """The document of a record (if it is one), then those of the records its block ran over.
    ``at`` locates the record: its offset in the file, or where it lies inside ``outer``, the block
    of another record (``depth`` blocks deep)."""
    rtype = str(record.record_type)
    doc = _new_document(record, path, at) if rtype in DOCUMENT_RECORDS or rtype == DAMAGED_TYPE else None
    try:
        keep = cfg.max_payload_bytes * 4 if rtype in PAGE_RECORDS else 0
        block = read_block(record.reader, record.content_length, keep)
    except Exception as exc:  # the stream is broken: the next step of the iteration reports the rest
        if doc is not None:
            yield _dropped(doc, "corrupt_record", kind="error", detail=str(exc)[:300])
        return
    if outer is not None and block.short and block.rest is None and not outer.short:
        doc = None  # cut short by the end of the block it lies in: the gap check reports its rest
    if doc is not None:
        yield _to_document(doc, record, rtype, block, cfg)
    if block.rest is None:
        return
    logger.warning(
        "%s: the %s record at %s runs into the next record(s): Content-Length too long (%d)",
        path,
        rtype,
        at,
        record.content_length,
    )
    try:
        if depth == MAX_NESTING:
            raise ValueError(f"records inside {MAX_NESTING} blocks that are too long, one inside the other")
        for inner in _records(block.rest):
            yield from _record_documents(inner, path, f"{at}+{inner.stream_pos}", cfg, block, depth + 1)
    except Exception as exc:  # the records inside cannot be read: one error, the file goes on
        logger.warning("%s: records inside the block of the record at %s unreadable: %r", path, at, exc)
        yield _file_error(path, at, "unreadable_record", str(exc), value=block.rest.tell(), suffix="-overrun")


def _gap_error(path: str, gap: Gap) -> Document:
    """The error document for bytes fastwarc skipped between records: a record whose header was
    damaged, so the page it held (if any) cannot be read, but is counted."""
    logger.warning("%s: %s", path, gap.detail)
    return _file_error(path, gap.offset, "unreadable_record", gap.detail, value=gap.size, suffix="-skipped")


def _file_error(
    path: str,
    offset: int | str,
    reason: str,
    detail: str,
    value: float | None = None,
    suffix: str = "-corrupt",
) -> Document:
    """An error document for bytes of a file that yield no document, from ``offset`` on."""
    doc = Document(id=_record_id(None, path, offset) + suffix, source=f"{path}@{offset}")
    return _dropped(doc, reason, kind="error", value=value, detail=detail[:300])


def _new_document(record, path: str, at: str) -> Document:
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
    optout = headers.get(OPTOUT_FIELD)
    if optout is not None:
        doc.metadata["tdm_optout"] = True
        doc.metadata["optout"] = optout.split()
    return doc


def _to_document(doc: Document, record, rtype: str, block: Block, cfg: WarcReaderConfig) -> Document:
    """The record's document, from its block (its own bytes: cut where another record starts)."""
    if rtype == "revisit":
        return _dropped(doc, "revisit")
    if rtype == DAMAGED_TYPE:
        warc_type = record.headers.get("WARC-Type")
        detail = f"WARC-Type {ascii(warc_type)} is no record type (a damaged header?)"
        return _dropped(doc, "unknown_record_type", kind="error", detail=detail[:300])
    if block.own is None:
        return _dropped(doc, "too_large", kind="error", value=block.own_size)
    if block.rest is not None:
        doc.metadata["overrun_bytes"] = record.content_length - block.own_size
    elif block.short:
        doc.metadata["truncated"] = True  # the file ends inside this record; keep what is there
    return _from_block(doc, rtype, record.headers, block.own, cfg)


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
        for name, key in OPTOUT_HEADERS.items():
            if name in http_headers:
                doc.metadata[key] = http_headers[name]
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
    if not 100 <= status <= 999:  # three digits (RFC 9110); a 20-digit one would not fit a stats column
        return None, {}, b""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            name = name.strip().lower()
            if name == "x-robots-tag" and name in headers:  # each its own, one per line
                headers[name] += "\n" + value.strip()
            else:
                headers[name] = value.strip()
    return status, headers, block[end + sep :]
