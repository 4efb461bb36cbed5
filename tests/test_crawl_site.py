"""End-to-end crawl of a real site on 127.0.0.1: politeness, limits, WARC correctness.

One crawl (module fixture) of three local servers, then many assertions on what the servers
logged and what the WARC files hold. The pages are the Debian FAQ from examples/demo-site;
the special routes (redirects, errors, slow, huge, gzip bomb...) are added by the handler.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from thresher.crawlers.config import CrawlConfig
from thresher.crawlers.localsite import LocalSite, LoggingHandler
from thresher.crawlers.runner import crawl

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-site"
FAQ_EN = sorted(p.name for p in (DEMO / "faq").glob("*.en.html"))
MAX_BYTES = 1_000_000


def latin1_page() -> bytes:
    """A real French FAQ page re-encoded as ISO-8859-1 (accents become single bytes)."""
    text = (DEMO / "faq" / "fr" / "basic-defs.fr.html").read_text(encoding="utf-8")
    text = re.sub(r"<\?xml[^>]*\?>", "", text)
    text = re.sub(r"(?i)<meta[^>]+charset[^>]*>", "", text)
    text = text.replace(
        "<head>", '<head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">', 1
    )
    return text.encode("iso-8859-1", errors="xmlcharrefreplace")


class SiteHandler(LoggingHandler):
    """The demo site plus routes that exercise every failure the crawler must survive."""

    extra_links = ""  # set per server class

    def do_GET(self):
        port = self.server.server_address[1]
        route = self.path.split("?")[0]
        if route == "/robots.txt":
            return self._send(200, self.server.robots.format(port=port).encode(), "text/plain")
        if route == "/sitemap.xml" and "{port}" in self.server.robots:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>'
                '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<url><loc>http://127.0.0.1:{port}/only-in-sitemap.html</loc></url></urlset>"
            )
            return self._send(200, body.encode(), "application/xml")
        handler = self.server.routes.get(route)
        if handler is not None:
            return handler(self)
        return super().do_GET()

    def _send(self, status, body: bytes, ctype: str, extra: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


def page(title: str, links: list[str]) -> bytes:
    items = "".join(f'<li><a href="{u}">{u}</a></li>' for u in links)
    return f"<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1><ul>{items}</ul></body></html>".encode()


GZIPPED_BODY = gzip.compress((DEMO / "faq" / "support.en.html").read_bytes(), mtime=0)
BOMB_BODY = gzip.compress(b"\0" * (20 * MAX_BYTES), compresslevel=9, mtime=0)


def main_routes(other_port: int, offsite_port: int) -> dict:
    def index(h):
        links = [
            "/faq/index.en.html",
            "/private/secret.html",
            "/moved",
            "/moved-new",
            "/missing.html",
            "/broken.html",
            "/slow.html",
            "/big.html",
            "/bomb.html",
            "/gzipped.html",
            "/latin1.html",
            "/data",
            "/report.pdf",
            "/picture.png",
            f"http://127.0.0.1:{offsite_port}/offsite.html",
            "mailto:someone@example.org",
            "/javascript-only.html",
            "/index.html#fragment",
        ]
        h._send(200, page("Thresher crawl test", links), "text/html; charset=utf-8")

    def redirect(to):
        return lambda h: h._send(301 if to.startswith("/faq") else 302, b"", "text/html", {"Location": to})

    def slow(h):
        time.sleep(8)
        h._send(200, page("slow", []), "text/html")

    def big(h):
        body = page("big", []) + b"<!--" + b"x" * (2 * MAX_BYTES) + b"-->"
        h._send(200, body, "text/html")

    def js_only(h):
        body = b"<html><body><script>document.write('<a href=\"/from-script.html\">x</a>')</script></body></html>"
        h._send(200, body, "text/html")

    return {
        "/": index,
        "/index.html": index,
        "/moved": redirect("/faq/basic-defs.en.html"),
        "/moved-new": redirect("/redirect-target.html"),
        "/redirect-target.html": lambda h: h._send(200, page("redirect target", []), "text/html"),
        "/only-in-sitemap.html": lambda h: h._send(200, page("only in sitemap", []), "text/html"),
        "/private/secret.html": lambda h: h._send(200, page("secret", []), "text/html"),
        "/broken.html": lambda h: h._send(500, b"boom", "text/plain"),
        "/slow.html": slow,
        "/big.html": big,
        "/bomb.html": lambda h: h._send(200, BOMB_BODY, "text/html", {"Content-Encoding": "gzip"}),
        "/gzipped.html": lambda h: h._send(
            200, GZIPPED_BODY, "text/html; charset=utf-8", {"Content-Encoding": "gzip"}
        ),
        "/latin1.html": lambda h: h._send(200, latin1_page(), "text/html; charset=iso-8859-1"),
        "/data": lambda h: h._send(200, b"\x00\x01" * 5000, "application/octet-stream"),
        "/javascript-only.html": js_only,
        "/other-link": lambda h: h._send(200, page("x", [f"http://127.0.0.1:{other_port}/"]), "text/html"),
    }


def delayed_routes() -> dict:
    return {
        "/": lambda h: h._send(200, page("delayed", ["/one.html", "/two.html"]), "text/html"),
        "/one.html": lambda h: h._send(200, page("one", ["/two.html"]), "text/html"),
        "/two.html": lambda h: h._send(200, page("two", ["/one.html"]), "text/html"),
    }


def start_site(routes: dict, robots: str) -> LocalSite:
    site = LocalSite(DEMO, handler=SiteHandler)
    site.server.routes = routes
    site.server.robots = robots
    return site.start()


EXPECTED_MAIN_PAGES = {
    "/",
    "/index.html",
    "/redirect-target.html",
    "/only-in-sitemap.html",
    "/gzipped.html",
    "/latin1.html",
    "/javascript-only.html",
} | {f"/faq/{name}" for name in FAQ_EN}


@pytest.fixture(scope="module")
def crawled(tmp_path_factory):
    out = tmp_path_factory.mktemp("crawl")
    offsite = start_site({}, "User-agent: *\nDisallow:\n")
    delayed = start_site(delayed_routes(), "User-agent: *\nCrawl-delay: 1\n")
    main = start_site(
        main_routes(delayed.port, offsite.port),
        "User-agent: *\nDisallow: /private/\n\nSitemap: http://127.0.0.1:{port}/sitemap.xml\n",
    )
    # The FAQ pages link to /faq/*.en.html only; the index of the main site links to everything.
    config = CrawlConfig(
        seeds=[main.url("/"), delayed.url("/")],
        allow_private=True,
        autothrottle=False,
        timeout=4.0,  # headroom for a loaded machine; only /slow.html (8 s) must time out
        retries=1,
        retry_backoff_base=0.1,
        max_page_bytes=MAX_BYTES,
        max_depth=3,
        concurrent_per_host=4,
        warc_max_bytes=50_000,
        log_level="WARNING",
    )
    started = time.time()
    summary = crawl(config, out)
    records = read_records(out)
    yield {
        "main": main,
        "delayed": delayed,
        "offsite": offsite,
        "out": out,
        "summary": summary,
        "records": records,
        "elapsed": time.time() - started,
    }
    for site in (main, delayed, offsite):
        site.stop()


def read_records(out: Path) -> list:
    from warcio.archiveiterator import ArchiveIterator

    records = []
    for path in sorted((out / "warc").glob("*.warc.gz")):
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh, check_digests="raise"):
                raw = rec.raw_stream.read() if rec.rec_type == "response" else b""
                records.append(
                    (
                        rec.rec_type,
                        rec.rec_headers.get_header("WARC-Target-URI"),
                        rec.http_headers.get_statuscode() if rec.http_headers else None,
                        rec.http_headers,
                        raw,
                        path.name,
                    )
                )
    return records


def responses(crawled, site=None):
    out = [r for r in crawled["records"] if r[0] == "response"]
    if site is not None:
        out = [r for r in out if r[1].startswith(site.base)]
    return out


def test_every_in_scope_page_archived_exactly_once(crawled):
    main = crawled["main"]
    pages = Counter(r[1][len(main.base) :] for r in responses(crawled, main) if r[2] == "200")
    assert set(pages) == EXPECTED_MAIN_PAGES
    assert max(pages.values()) == 1
    delayed = crawled["delayed"]
    assert sorted(r[1][len(delayed.base) :] for r in responses(crawled, delayed)) == [
        "/",
        "/one.html",
        "/two.html",
    ]


def test_server_saw_each_page_once_and_nothing_forbidden(crawled):
    main = crawled["main"]
    hits = Counter(h.path for h in main.hits)
    assert "/private/secret.html" not in hits  # robots.txt Disallow
    for path in ("/report.pdf", "/picture.png", "/from-script.html"):  # extension filter, no JS
        assert path not in hits
    assert hits["/robots.txt"] == 1
    assert hits["/broken.html"] == 2  # one retry on 500
    summary = crawled["summary"]
    assert summary["retry_reasons"].get("500 Internal Server Error") == 1, summary["retry_reasons"]
    # A page is requested once (/faq/basic-defs.en.html is both linked and redirected to), but
    # on a loaded machine a request can time out and be retried: every hit beyond the first must
    # be one of the crawl's counted retries, less those of /broken.html and /slow.html (whose
    # retry the end of the crawl cuts off before the server logs it).
    extra = {p: n - 1 for p, n in hits.items() if n > 1 and p not in ("/broken.html", "/slow.html")}
    assert sum(extra.values()) <= summary["retries"] - 2, (extra, summary["retry_reasons"])
    for path in EXPECTED_MAIN_PAGES - {"/"}:
        assert hits[path] >= 1, path
    assert crawled["offsite"].hits == []  # another host, not a seed: out of scope
    assert all(h.user_agent.startswith("ThresherBot/") for h in main.hits)


def test_redirects_archived_and_followed(crawled):
    main = crawled["main"]
    redirects = {
        r[1][len(main.base) :]: r[3].get_header("Location")
        for r in responses(crawled, main)
        if r[2] in ("301", "302")
    }
    assert redirects == {"/moved": "/faq/basic-defs.en.html", "/moved-new": "/redirect-target.html"}


def test_crawl_delay_honoured(crawled):
    hits = crawled["delayed"].hits
    assert [h.path for h in hits][:1] == ["/robots.txt"]
    times = [h.time for h in hits]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(hits) >= 4  # robots, 3 pages (no /sitemap.xml guess by default)
    assert min(gaps) >= 0.9, gaps


def test_link_robots_txt_disallows_is_not_queued(crawled):
    """A link whose host's robots.txt is parsed already and disallows it is counted as denied
    without a request being made for it (before, the request went through the scheduler and the
    middlewares to be refused there)."""
    s = crawled["summary"]
    assert s["robots_denied"] == 1 and s["errors"]["robots"] == 1
    assert s["robots_txt"]["denied_unqueued"] == 1
    assert "/private/secret.html" not in crawled["main"].paths()


def test_failures_counted_not_archived(crawled):
    s = crawled["summary"]
    assert s["status_codes"]["404"] >= 1 and s["status_codes"]["500"] == 2
    assert s["errors"]["timeout"] >= 1
    assert s["errors"]["too_large"] == 1
    assert s["errors"]["decompressed_too_large"] == 1
    assert s["skipped"]["content_type"] == 1
    assert s["robots_denied"] == 1
    assert s["skipped"]["extension"] >= 2
    assert s["skipped"]["offsite"] >= 1
    archived = {r[1] for r in responses(crawled)}
    main = crawled["main"]
    for path in ("/missing.html", "/broken.html", "/slow.html", "/big.html", "/bomb.html", "/data"):
        assert main.url(path) not in archived


def test_payload_is_raw_bytes_as_sent(crawled):
    main = crawled["main"]
    by_url = {r[1]: r for r in responses(crawled, main)}
    gz = by_url[main.url("/gzipped.html")]
    assert gz[3].get_header("Content-Encoding") == "gzip"
    assert gz[4] == GZIPPED_BODY  # compressed bytes, not the decoded page
    latin = by_url[main.url("/latin1.html")]
    assert latin[4] == latin1_page()
    assert b"\xe9" in latin[4]  # é as one ISO-8859-1 byte


def test_digests_valid_in_fastwarc(crawled):
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    files = sorted((crawled["out"] / "warc").glob("*.warc.gz"))
    assert len(files) >= 2  # rolled at 50 kB
    assert not list((crawled["out"] / "warc").glob("*.open"))
    n = 0
    for path in files:
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh, parse_http=False):
                assert rec.verify_block_digest(), (path, rec.record_id)
                n += 1
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh, record_types=WarcRecordType.response, parse_http=True):
                assert rec.verify_payload_digest(), (path, rec.record_id)
    assert n == len(crawled["records"])


def test_one_gzip_member_per_record(crawled):
    import zlib

    for path in sorted((crawled["out"] / "warc").glob("*.warc.gz")):
        data, members = path.read_bytes(), 0
        while data:
            d = zlib.decompressobj(wbits=31)
            assert d.decompress(data).startswith(b"WARC/1.1\r\n")
            data, members = d.unused_data, members + 1
        assert members == sum(1 for r in crawled["records"] if r[5] == path.name)


def test_stats_file(crawled):
    stats = json.loads((crawled["out"] / "crawl-stats.json").read_text())
    assert stats["pages"] == len(EXPECTED_MAIN_PAGES) + 3
    assert stats["pages_per_s"] > 0 and stats["requests"] > stats["pages"]
    assert stats["warc_files"] and stats["failed_partitions"] == 0


def test_pages_readable_as_documents(crawled):
    """The pipeline's WARC reader sees the pages (decoded) with their text."""
    try:
        from thresher.readers.warc import read_warc
    except ImportError:
        read_warc = None
    main = crawled["main"]
    texts = {}
    for path in sorted((crawled["out"] / "warc").glob("*.warc.gz")):
        if read_warc is not None:
            for doc in read_warc(str(path)):
                texts[doc.url] = doc.html
        else:
            from warcio.archiveiterator import ArchiveIterator

            with open(path, "rb") as fh:
                for rec in ArchiveIterator(fh):
                    if rec.rec_type == "response" and rec.http_headers.get_statuscode() == "200":
                        texts[rec.rec_headers.get_header("WARC-Target-URI")] = rec.content_stream().read()
    assert b"Debian" in texts[main.url("/faq/index.en.html")]
    assert b"support" in texts[main.url("/gzipped.html")].lower()  # content coding undone by the reader
    assert (
        "définitions".encode("iso-8859-1") in texts[main.url("/latin1.html")].lower()
        or b"D\xe9finitions" in texts[main.url("/latin1.html")]
    )


@pytest.mark.slow
def test_thresher_run_on_crawl_output_yields_page_text(crawled, tmp_path):
    """The crawl's WARC directory is a valid input of the pipeline (`thresher run`)."""
    import subprocess
    import sys

    import pyarrow.parquet as pq

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "run"
    # Extraction only: the demo's quality and dedup stages would decide which of the site's
    # duplicate test pages survives by their (random) WARC record ids.
    config = tmp_path / "extract-only.yaml"
    config.write_text("stages:\n  - extract: {deduplicate: false}\n")
    cmd = [
        sys.executable,
        "-m",
        "thresher.cli",
        "run",
        str(config),
        "--input",
        str(crawled["out"] / "warc"),
        "--output",
        str(out),
        "--local",
    ]
    subprocess.run(cmd, cwd=root, check=True, timeout=600)
    table = pq.read_table(out / "documents")
    texts = dict(zip(table.column("url").to_pylist(), table.column("text").to_pylist(), strict=True))
    main = crawled["main"]
    assert "Debian" in texts[main.url("/faq/basic-defs.en.html")]
    assert "Debian" in texts[main.url("/gzipped.html")]  # gzip content coding undone
    assert "é" in texts[main.url("/latin1.html")]  # ISO-8859-1 decoded to text
