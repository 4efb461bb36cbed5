"""The WARC writer on its own: rolling, .open renaming, salvage after a crash, digests."""

from __future__ import annotations

import gzip
import io
import os

import pytest
from fastwarc.warc import ArchiveIterator as FastIterator
from warcio.archiveiterator import ArchiveIterator

from thresher.config import ConfigError
from thresher.crawlers.config import CrawlConfig
from thresher.crawlers.warc import (
    Exchange,
    RollingWarcWriter,
    http_request_head,
    http_response_head,
    iter_stored_responses,
    salvage_open_files,
)


def exchange(i: int, size: int = 3000) -> Exchange:
    body = (f"<html><body>page {i} " + "lorem ipsum " * (size // 12) + "</body></html>").encode()
    return Exchange(
        url=f"http://site.example/p{i}.html",
        request_head=http_request_head(
            "GET", f"/p{i}.html", [(b"Host", b"site.example"), (b"User-Agent", b"T/1")]
        ),
        response_head=http_response_head(
            "HTTP/1.1", 200, [(b"Content-Type", b"text/html"), (b"Content-Length", str(len(body)).encode())]
        ),
        payload=body,
        ip_address="93.184.215.14",
    )


def writer(tmp_path, max_bytes=1_000_000) -> RollingWarcWriter:
    return RollingWarcWriter(tmp_path, "t", 0, max_bytes, {"software": "test"})


def test_records_read_back_with_valid_digests(tmp_path):
    w = writer(tmp_path)
    for i in range(3):
        w.write(exchange(i))
    assert [p.name for p in tmp_path.iterdir()] == ["t-p000-00001.warc.gz.open"]
    w.close()
    (path,) = tmp_path.glob("*.warc.gz")
    with open(path, "rb") as fh:
        recs = [
            (r.rec_type, r.rec_headers.get_header("WARC-Target-URI"), r.content_stream().read())
            for r in ArchiveIterator(fh, check_digests="raise")
        ]
    assert [r[0] for r in recs] == ["warcinfo"] + ["request", "response"] * 3
    assert recs[2][2] == exchange(0).payload
    with open(path, "rb") as fh:
        assert all(r.verify_block_digest() for r in FastIterator(fh, parse_http=False))
    assert [(s.url, s.status) for s in iter_stored_responses(path)] == [
        (f"http://site.example/p{i}.html", 200) for i in range(3)
    ]


def test_rolls_at_size_and_continues_numbering(tmp_path):
    w = writer(tmp_path, max_bytes=2000)
    for i in range(4):
        ex = exchange(i)
        ex.payload = os.urandom(3000)  # incompressible: each record alone passes 2000 bytes
        w.write(ex)
    w.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"t-p000-{n:05d}.warc.gz" for n in range(1, 5)]
    w2 = writer(tmp_path)
    w2.write(exchange(9))
    w2.close()
    assert (tmp_path / "t-p000-00005.warc.gz").exists()


def test_salvage_cuts_partial_record(tmp_path):
    w = writer(tmp_path)
    for i in range(3):
        w.write(exchange(i))
    path = w.current_path
    size = path.stat().st_size
    w._file.close()  # simulate a crash: the file stays .open
    with open(path, "r+b") as fh:
        fh.truncate(size - 100)  # the last response record is torn
    assert salvage_open_files(tmp_path) == [str(path)[: -len(".open")]]
    (final,) = tmp_path.glob("*.warc.gz")
    assert [s.url for s in iter_stored_responses(final)] == [
        f"http://site.example/p{i}.html" for i in range(2)
    ]
    with open(final, "rb") as fh:
        assert sum(1 for _ in ArchiveIterator(fh, check_digests="raise")) == 1 + 2 * 2 + 1  # + lone request


def test_salvage_removes_file_without_pages(tmp_path):
    w = writer(tmp_path)
    w.write(exchange(0))
    path = w.current_path
    w._file.close()
    data = path.read_bytes()
    path.write_bytes(data[:200])  # not even the warcinfo member is complete
    assert salvage_open_files(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_response_head_format():
    head = http_response_head("HTTP/1.1", 404, [(b"Content-Type", b"text/html")])
    assert head == b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\n"
    assert http_response_head(None, 599, []).startswith(b"HTTP/1.1 599\r\n")
    assert io.BytesIO(head).readline() == b"HTTP/1.1 404 Not Found\r\n"


def test_gzip_level_is_the_configured_one(tmp_path):
    """Each member is compressed at ``gzip_level`` (the gzip header's XFL byte says 4 for the
    fastest level, 2 for the best), and reads back the same."""
    sizes = {}
    for level, xfl in ((1, 4), (9, 2)):
        d = tmp_path / str(level)
        w = RollingWarcWriter(d, "t", 0, 1_000_000, {"software": "test"}, gzip_level=level)
        w.write(exchange(0, size=20_000))
        w.close()
        (path,) = d.glob("*.warc.gz")
        data = path.read_bytes()
        assert data[8] == xfl
        assert b"page 0 " in gzip.decompress(data)
        sizes[level] = len(data)
    assert sizes[1] > sizes[9]
    assert CrawlConfig(seeds=["http://a.example/"]).warc_gzip_level == 1
    for bad in (0, 10):
        with pytest.raises(ConfigError, match="warc_gzip_level"):
            CrawlConfig(seeds=["http://a.example/"], warc_gzip_level=bad).validate("crawl")
