"""Recrawl of a finished job against a real HTTP server on 127.0.0.1 that answers conditional
requests: unchanged pages become WARC revisit records (identical-payload-digest profile)
referring to the capture that holds their payload, a changed page a new response, and the
pipeline's WARC reader makes one document per payload, none for a revisit."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from thresher.crawlers.config import CrawlConfig
from thresher.crawlers.localsite import LocalSite, LoggingHandler
from thresher.crawlers.runner import crawl

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-site"
FAQ = DEMO / "faq"
LAST_MODIFIED = "Tue, 01 Oct 2024 10:00:00 GMT"
PROFILE = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"


def faq_page(name: str, extra: str = "") -> bytes:
    return (FAQ / name).read_bytes().replace(b"</body>", extra.encode() + b"</body>", 1)


class ConditionalHandler(LoggingHandler):
    """Real FAQ pages; /etag.html answers If-None-Match, /lastmod.html If-Modified-Since (both
    with 304), /plain.html sends no validators (the same bytes every time), /changing.html
    changes whenever the test bumps ``server.version``."""

    def do_GET(self):
        server = self.server
        server.conditional.append(
            (self.path, self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since"))
        )
        if self.path == "/robots.txt":
            return self._send(200, b"User-agent: *\nDisallow:\n", "text/plain")
        if self.path == "/":
            links = "".join(
                f'<a href="/{n}">{n}</a> '
                for n in ("etag.html", "lastmod.html", "plain.html", "changing.html")
            )
            return self._send(200, f"<html><body><h1>Recrawl</h1>{links}</body></html>".encode(), "text/html")
        if self.path == "/etag.html":
            etag = '"faq-basic-v1"'
            if self.headers.get("If-None-Match") == etag:
                return self._send(304, b"", None, {"ETag": etag})
            return self._send(200, faq_page("basic-defs.en.html"), "text/html", {"ETag": etag})
        if self.path == "/lastmod.html":
            if self.headers.get("If-Modified-Since") == LAST_MODIFIED:
                return self._send(304, b"", None, {"Last-Modified": LAST_MODIFIED})
            return self._send(200, faq_page("support.en.html"), "text/html", {"Last-Modified": LAST_MODIFIED})
        if self.path == "/plain.html":
            return self._send(200, faq_page("software.en.html"), "text/html")
        if self.path == "/changing.html":
            body = faq_page("choosing.en.html", f"<p>Edition {server.version} of this page.</p>")
            etag = f'"choosing-{server.version}"'
            if self.headers.get("If-None-Match") == etag:
                return self._send(304, b"", None, {"ETag": etag})
            return self._send(200, body, "text/html", {"ETag": etag})
        return self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, ctype: str | None, extra: dict | None = None):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if status != 304:
            self.wfile.write(body)


def records(out: Path) -> list[dict]:
    """Every response and revisit record of the job, digests checked, in file order."""
    from warcio.archiveiterator import ArchiveIterator

    found = []
    for path in sorted((out / "warc").glob("*.warc.gz")):
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh, check_digests="raise"):
                if rec.rec_type in ("response", "revisit"):
                    h = rec.rec_headers
                    found.append(
                        {
                            "type": rec.rec_type,
                            "url": h.get_header("WARC-Target-URI"),
                            "id": h.get_header("WARC-Record-ID"),
                            "date": h.get_header("WARC-Date"),
                            "digest": h.get_header("WARC-Payload-Digest"),
                            "profile": h.get_header("WARC-Profile"),
                            "refers_to": h.get_header("WARC-Refers-To"),
                            "refers_to_uri": h.get_header("WARC-Refers-To-Target-URI"),
                            "refers_to_date": h.get_header("WARC-Refers-To-Date"),
                            "status": rec.http_headers.get_statuscode() if rec.http_headers else None,
                            "payload": rec.content_stream().read(),
                        }
                    )
    return found


@pytest.fixture(scope="module")
def passes(tmp_path_factory):
    out = tmp_path_factory.mktemp("recrawl")
    site = LocalSite(DEMO, handler=ConditionalHandler)
    site.server.conditional = []
    site.server.version = 1
    site.start()
    config = dict(
        seeds=[site.url("/")],
        allow_private=True,
        autothrottle=False,
        sitemaps=False,
        timeout=5.0,
        retries=0,
        log_level="WARNING",
    )
    try:
        first = crawl(CrawlConfig(**config), out)
        after_first = len(records(out))
        site.server.version = 2  # /changing.html changes between the crawls
        site.server.conditional.clear()
        second = crawl(CrawlConfig(**config, recrawl=True), out)
        asked = list(site.server.conditional)
        after_second = len(records(out))
        site.server.conditional.clear()
        third = crawl(CrawlConfig(**config, recrawl=True), out)  # nothing changed since the second
        yield {
            "site": site,
            "out": out,
            "summaries": (first, second, third),
            "counts": (after_first, after_second),
            "asked": asked,
            "records": records(out),
        }
    finally:
        site.stop()


def test_first_crawl_archives_every_page(passes):
    first = passes["summaries"][0]
    assert first["pages"] == 5 and first["recrawl"] == {}
    recs = passes["records"][: passes["counts"][0]]
    assert {r["type"] for r in recs} == {"response"} and len(recs) == 5


def test_recrawl_sends_the_validators_of_the_last_capture(passes):
    site = passes["site"]
    asked = {path: (inm, ims) for path, inm, ims in passes["asked"]}
    assert asked["/etag.html"] == ('"faq-basic-v1"', None)
    assert asked["/lastmod.html"] == (None, LAST_MODIFIED)
    assert asked["/changing.html"] == ('"choosing-1"', None)
    assert asked["/plain.html"] == (None, None)  # no validators: fetched, compared by digest
    statuses = {h.path: h.status for h in site.hits if h.path in ("/etag.html", "/lastmod.html")}
    assert statuses == {"/etag.html": 304, "/lastmod.html": 304}


def test_unchanged_pages_are_revisits_and_the_changed_page_a_response(passes):
    site = passes["site"]
    start, end = passes["counts"]
    first = {r["url"]: r for r in passes["records"][:start]}
    second = {r["url"]: r for r in passes["records"][start:end]}
    assert set(second) == set(first)
    for path in ("/", "/etag.html", "/lastmod.html", "/plain.html"):
        rec, orig = second[site.url(path)], first[site.url(path)]
        assert rec["type"] == "revisit", path
        assert rec["profile"] == PROFILE
        assert rec["refers_to"] == orig["id"]
        assert rec["refers_to_uri"] == orig["url"]
        assert rec["refers_to_date"] == orig["date"]
        assert rec["digest"] == orig["digest"]
        assert rec["payload"] == b""  # HTTP headers only
    assert second[site.url("/etag.html")]["status"] == "304"
    assert second[site.url("/plain.html")]["status"] == "200"
    changed = second[site.url("/changing.html")]
    assert changed["type"] == "response" and b"Edition 2 of this page" in changed["payload"]
    assert changed["digest"] != first[site.url("/changing.html")]["digest"]
    assert passes["summaries"][1]["recrawl"] == {"changed": 1, "not_modified": 2, "same_digest": 2}
    assert passes["summaries"][1]["pages"] == 5  # revisits count as the pass's pages


def test_a_revisit_of_a_revisit_refers_to_the_payload(passes):
    """The third pass: all unchanged; each revisit names the record that holds the payload,
    the first crawl's for most pages, the second's for the page that changed."""
    site = passes["site"]
    start, end = passes["counts"]
    holders = {r["url"]: r for r in passes["records"][:end] if r["type"] == "response"}
    third = passes["records"][end:]
    assert len(third) == 5 and {r["type"] for r in third} == {"revisit"}
    for rec in third:
        assert rec["refers_to"] == holders[rec["url"]]["id"]
        assert rec["refers_to_date"] == holders[rec["url"]]["date"]
    asked = {path: inm for path, inm, _ in site.server.conditional}
    assert asked["/changing.html"] == '"choosing-2"'  # the new capture's ETag
    assert passes["summaries"][2]["recrawl"] == {"not_modified": 3, "same_digest": 2}


def test_reader_makes_one_document_per_payload(passes):
    """No document for a revisit (dropped with reason ``revisit``); both editions of the page
    that changed are documents."""
    from thresher.readers.warc import read_warc

    site = passes["site"]
    kept, revisits = {}, 0
    for path in sorted((passes["out"] / "warc").glob("*.warc.gz")):
        for doc in read_warc(str(path)):
            if doc.drop is None:
                kept.setdefault(doc.url, []).append(hashlib.sha1(doc.html).hexdigest())
            elif doc.drop.reason == "revisit":
                revisits += 1
    assert revisits == 9
    assert {url: len(v) for url, v in kept.items()} == {
        site.url("/"): 1,
        site.url("/etag.html"): 1,
        site.url("/lastmod.html"): 1,
        site.url("/plain.html"): 1,
        site.url("/changing.html"): 2,
    }


def test_plain_rerun_after_a_pass_fetches_no_archived_page(passes):
    """Without --recrawl a rerun is a resume: what is archived is not requested again (the
    FAQ's relative links that answered 404 are, as on any resume)."""
    site = passes["site"]
    before = len(site.hits)
    config = CrawlConfig(
        seeds=[site.url("/")], allow_private=True, autothrottle=False, sitemaps=False, log_level="WARNING"
    )
    summary = crawl(config, passes["out"])
    again = {h.path for h in site.hits[before:]}
    assert summary["pages"] == 0 and summary["recrawl"] == {}
    assert again and not again & {"/", "/etag.html", "/lastmod.html", "/plain.html", "/changing.html"}
