"""WARC/1.1 writing: one gzip member per record, rolled by size, ``.open`` until finished.

Records are assembled here rather than with warcio's writer so that the block is exactly the
bytes we hand in — warcio may normalise HTTP headers — and so that the digests are computed
over precisely what is stored. warcio and fastwarc are used to read the files back (tests,
resume).

A recrawl (recrawl.py) hands in the page's previous capture: when the server answers 304 Not
Modified, or the payload has the digest the previous capture had, the page is written as a
``revisit`` record of the identical-payload-digest profile (WARC/1.1 §6.7.2): the HTTP headers
of this response, no payload, and ``WARC-Refers-To`` the record that holds it. A page archived
although it carries opt-out signals (``archive_opted_out``) has them in ``WARC-Thresher-Optout``
on its response or revisit record, which the pipeline's WARC reader puts in the document's
metadata (``tdm_optout``).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http
import logging
import os
import re
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

logger = logging.getLogger(__name__)

OPEN_SUFFIX = ".open"
WARC_VERSION = b"WARC/1.1"
REVISIT_PROFILE = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
OPTOUT_FIELD = "WARC-Thresher-Optout"
"""Extension field: the opt-out signals (optout.SIGNALS, space-separated) of a page archived
although it carries them."""
_NAME_RE = re.compile(r"^(?P<prefix>.+)-p(?P<part>\d{3,})-(?P<serial>\d{5,})\.warc\.gz(?:\.open)?$")


def sha1_digest(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


def warc_date(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_id() -> str:
    return f"<urn:uuid:{uuid.uuid4()}>"


def http_request_head(method: str, url_path: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [f"{method} {url_path} HTTP/1.1".encode("latin-1")]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def http_response_head(protocol: str | None, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    status_line = f"{protocol or 'HTTP/1.1'} {status} {phrase}".rstrip().encode("latin-1")
    lines = [status_line] + [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _header_block(fields: list[tuple[str, str]]) -> bytes:
    lines = [WARC_VERSION] + [f"{k}: {v}".encode() for k, v in fields]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def build_record(fields: list[tuple[str, str]], block: bytes) -> bytes:
    """A complete uncompressed record; Content-Length and WARC-Block-Digest are added here."""
    fields = fields + [("WARC-Block-Digest", sha1_digest(block)), ("Content-Length", str(len(block)))]
    return _header_block(fields) + block + b"\r\n\r\n"


@dataclass(frozen=True)
class Capture:
    """The last capture of a URL in a job's WARC files: what a recrawl revalidates against."""

    url: str
    record_id: str
    """The record holding the payload (a revisit's WARC-Refers-To)."""
    date: str
    """That record's WARC-Date."""
    payload_digest: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass
class Exchange:
    """One fetched URL, ready to archive."""

    url: str
    request_head: bytes
    response_head: bytes
    payload: bytes
    """The body as sent by the server: content coding (gzip, br...) kept, transfer coding removed."""
    ip_address: str | None = None
    date: datetime | None = None
    status: int = 0
    prior: Capture | None = None
    """The URL's last capture, on a recrawl."""
    optout: tuple[str, ...] = ()
    """Opt-out signals of a page archived on request (``archive_opted_out``)."""

    def is_revisit(self) -> bool:
        """Unchanged since ``prior``: the server said 304, or the payload's digest is the same."""
        if self.prior is None:
            return False
        return self.status == 304 or sha1_digest(self.payload) == self.prior.payload_digest


class RollingWarcWriter:
    """Writes ``PREFIX-pPPP-SSSSS.warc.gz`` files in ``directory``, each ``.open`` until closed.

    Every record is flushed as its own gzip member, so a process killed mid-write leaves at
    most one partial member at the end of the ``.open`` file, which ``salvage_open_files``
    cuts off on the next start.

    ``on_close``, if given, is called with each finished file's path and returns where the file
    now is (output.py: ``directory`` is local staging and the file is uploaded to the job's
    store); ``first_serial`` then numbers the files after those already on the store.
    ``gzip_level`` is each member's zlib level (``CrawlConfig.warc_gzip_level``).
    """

    def __init__(
        self,
        directory: str | Path,
        prefix: str,
        partition: int,
        max_bytes: int,
        warcinfo: dict[str, str],
        on_close: Callable[[Path], str] | None = None,
        first_serial: int | None = None,
        gzip_level: int = 1,
    ):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.partition = partition
        self.max_bytes = max_bytes
        self.warcinfo = warcinfo
        self.gzip_level = gzip_level
        self._serial = (
            next_serial(self.directory, prefix, partition) if first_serial is None else first_serial
        )
        self.on_close = on_close
        self._file = None
        self._path: Path | None = None
        self._warcinfo_id = ""
        self.files_closed: list[str] = []
        self.records = 0
        self.bytes_written = 0

    @property
    def current_path(self) -> Path | None:
        return self._path

    def _open(self) -> None:
        name = f"{self.prefix}-p{self.partition:03d}-{self._serial:05d}.warc.gz"
        self._serial += 1
        self._path = self.directory / (name + OPEN_SUFFIX)
        self._file = open(self._path, "xb")
        self._warcinfo_id = record_id()
        body = "".join(f"{k}: {v}\r\n" for k, v in self.warcinfo.items()).encode()
        fields = [
            ("WARC-Type", "warcinfo"),
            ("WARC-Record-ID", self._warcinfo_id),
            ("WARC-Date", warc_date()),
            ("WARC-Filename", name),
            ("Content-Type", "application/warc-fields"),
        ]
        self._write_member(build_record(fields, body))

    def _write_member(self, record: bytes) -> None:
        assert self._file is not None
        member = gzip.compress(record, compresslevel=self.gzip_level, mtime=0)
        self._file.write(member)
        self._file.flush()
        self.bytes_written += len(member)

    def write(self, ex: Exchange) -> str:
        """Archive one exchange: a request record, then a response or (``ex.is_revisit()``) a
        revisit record. Returns the second record's type."""
        if self._file is None:
            self._open()
        date = warc_date(ex.date)
        response_id, request_id = record_id(), record_id()
        common = [("WARC-Date", date), ("WARC-Target-URI", ex.url), ("WARC-Warcinfo-ID", self._warcinfo_id)]
        if ex.ip_address:
            common.append(("WARC-IP-Address", ex.ip_address))
        request_fields = (
            [("WARC-Type", "request"), ("WARC-Record-ID", request_id)]
            + common
            + [
                ("WARC-Concurrent-To", response_id),
                ("Content-Type", "application/http;msgtype=request"),
            ]
        )
        optout = [(OPTOUT_FIELD, " ".join(ex.optout))] if ex.optout else []
        if ex.is_revisit():
            prior = ex.prior
            assert prior is not None
            kind, block = "revisit", ex.response_head
            specific = [
                ("WARC-Profile", REVISIT_PROFILE),
                ("WARC-Refers-To", prior.record_id),
                ("WARC-Refers-To-Target-URI", prior.url),
                ("WARC-Refers-To-Date", prior.date),
                ("WARC-Payload-Digest", prior.payload_digest),
            ]
        else:
            kind, block = "response", ex.response_head + ex.payload
            specific = [("WARC-Payload-Digest", sha1_digest(ex.payload))]
        response_fields = (
            [("WARC-Type", kind), ("WARC-Record-ID", response_id)]
            + common
            + specific
            + optout
            + [("Content-Type", "application/http;msgtype=response")]
        )
        # Request first: a file cut short after it holds no response, so the URL is fetched again.
        self._write_member(build_record(request_fields, ex.request_head))
        self._write_member(build_record(response_fields, block))
        self.records += 1
        if self._file is not None and self._file.tell() >= self.max_bytes:
            self.close_current()
        return kind

    def close_current(self) -> None:
        if self._file is None or self._path is None:
            return
        self._file.close()
        final = self._path.with_name(self._path.name[: -len(OPEN_SUFFIX)])
        os.replace(self._path, final)
        self._file = None
        self._path = None
        logger.info("closed %s", final.name)
        self.files_closed.append(self.on_close(final) if self.on_close is not None else str(final))

    def close(self) -> None:
        self.close_current()


def next_serial(directory: Path, prefix: str, partition: int) -> int:
    return serial_after(
        (p.name for p in directory.iterdir()) if directory.exists() else (), prefix, partition
    )


def serial_after(names: Iterable[str], prefix: str, partition: int) -> int:
    """The serial of the partition's next file: one past the highest among ``names``."""
    serial = 0
    for name in names:
        m = _NAME_RE.match(name)
        if m and m["prefix"] == prefix and int(m["part"]) == partition:
            serial = max(serial, int(m["serial"]))
    return serial + 1


def _complete_members_length(path: Path) -> tuple[int, int]:
    """(bytes of leading complete gzip members that each hold a WARC record, their count)."""
    good = 0
    count = 0
    with open(path, "rb") as fh:
        pending = b""
        while True:
            decomp = zlib.decompressobj(wbits=31)
            head = b""
            consumed = 0
            data = pending
            pending = b""
            while True:
                if not data:
                    data = fh.read(1 << 20)
                    if not data:
                        return good, count  # ran out inside (or before) a member
                out = decomp.decompress(data)
                if len(head) < 8:
                    head += out[:8]
                if decomp.eof:
                    used = len(data) - len(decomp.unused_data)
                    consumed += used
                    pending = decomp.unused_data
                    break
                consumed += len(data)
                data = b""
            if not head.startswith(b"WARC/"):
                return good, count
            good += consumed
            count += 1


def salvage_open_files(directory: str | Path) -> list[str]:
    """Finish ``.open`` files left by a killed crawl: keep their complete records, drop the rest.

    A file with nothing but its warcinfo record is removed. Returns the paths now closed.
    """
    closed = []
    directory = Path(directory)
    if not directory.exists():
        return closed
    for path in sorted(directory.glob(f"*.warc.gz{OPEN_SUFFIX}")):
        length, count = _complete_members_length(path)
        final = path.with_name(path.name[: -len(OPEN_SUFFIX)])
        if count <= 1:
            path.unlink()
            logger.info("removed %s: no complete page records", path.name)
            continue
        with open(path, "r+b") as fh:
            fh.truncate(length)
        os.replace(path, final)
        closed.append(str(final))
        logger.info("salvaged %s: %d complete records", final.name, count)
    return closed


@dataclass
class StoredResponse:
    url: str
    status: int
    date: str = ""
    revisit: bool = False

    @property
    def is_page(self) -> bool:
        """A page archived: a 2xx response, or a revisit (of one) written by a recrawl."""
        return self.revisit or 200 <= self.status < 300


def iter_stored_responses(path: str | Path) -> Iterator[StoredResponse]:
    """URL, status and date of every response and revisit record in a closed WARC (headers
    only, bodies skipped)."""
    from fastwarc.warc import WarcRecordType

    for record in iter_response_records(path):
        url = record.headers.get("WARC-Target-URI")
        status = record.http_headers.status_code if record.http_headers is not None else 0
        if url:
            revisit = record.record_type == WarcRecordType.revisit
            yield StoredResponse(url, int(status or 0), record.headers.get("WARC-Date") or "", revisit)


def iter_response_records(path: str | Path):
    """fastwarc's response and revisit records of a WARC file, HTTP headers parsed."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    with open(path, "rb") as fh:
        types = WarcRecordType.response | WarcRecordType.revisit
        yield from ArchiveIterator(fh, record_types=types, parse_http=True)
