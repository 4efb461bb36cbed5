"""Opt-out signals for AI training, against a real HTTP server on 127.0.0.1: robots.txt groups
of AI-crawler tokens and tdmrep.json keep pages from being requested at all (the access log
shows it), the TDMRep header and meta tag and X-Robots-Tag/meta robots noai, noimageai and
noindex keep fetched pages out of the WARC, each counted; with ``archive_opted_out`` they are
archived with their signals in the WARC, and the ``optout`` stage drops them from documents the
WARC reader made of the crawler's files (and, from the HTTP headers and meta tags alone, from a
WARC without the crawler's flag, as Common Crawl's are)."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import pytest

from thresher.crawlers.config import CrawlConfig, crawl_config
from thresher.crawlers.localsite import LocalSite, LoggingHandler
from thresher.crawlers.optout import SignalReader, meta_tags, parse_tdmrep, path_matches, tdm_rule_for
from thresher.crawlers.runner import crawl

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-site"
# A real FAQ page, its relative links sent to /faq/ (404 here), away from the reserved paths
FAQ_PAGE = (
    (DEMO / "faq" / "basic-defs.en.html").read_bytes().replace(b"<head>", b'<head><base href="/faq/">', 1)
)

ROBOTS = b"""User-agent: *
Disallow: /private/

User-agent: GPTBot
Disallow: /no-gpt/

User-agent: Google-Extended
Disallow: /no-google/

User-agent: SomeSearchBot
Disallow: /
"""
TDMREP = json.dumps(
    [
        {"location": "/tdm/open.html", "tdm-reservation": 0},
        {"location": "/tdm/*", "tdm-reservation": 1, "tdm-policy": "https://example.org/policy.json"},
    ]
).encode()


def with_head(extra: str) -> bytes:
    """The real FAQ page with ``extra`` at the top of its head."""
    return FAQ_PAGE.replace(b"<head>", b"<head>" + extra.encode(), 1)


# path -> (extra headers, body); the index links to all of them
PAGES = {
    "/ok.html": ({}, FAQ_PAGE),
    "/scoped.html": ({"X-Robots-Tag": "somesearchbot: noai"}, FAQ_PAGE),  # not for us
    "/tdm/open.html": ({}, FAQ_PAGE),
    "/tdm/closed.html": ({}, FAQ_PAGE),
    "/no-gpt/page.html": ({}, FAQ_PAGE),
    "/no-google/page.html": ({}, FAQ_PAGE),
    "/private/page.html": ({}, FAQ_PAGE),
    "/header.html": ({"tdm-reservation": "1"}, FAQ_PAGE),
    "/meta-tdm.html": ({}, with_head('<meta name="tdm-reservation" content="1">')),
    "/noai.html": ({"X-Robots-Tag": "noai"}, FAQ_PAGE),
    "/gpt-noai.html": ({"X-Robots-Tag": "GPTBot: noai"}, FAQ_PAGE),
    "/meta-noai.html": ({}, with_head("<META CONTENT='noai, noimageai' NAME=robots>")),
    "/noimageai.html": ({"X-Robots-Tag": "noimageai"}, FAQ_PAGE),
    "/noindex.html": (
        {},
        with_head('<meta name="robots" content="noindex"><a href="/from-noindex.html">x</a>'),
    ),
    "/from-noindex.html": ({}, FAQ_PAGE),
}
REFUSED = {
    "/no-gpt/page.html": "robots_ai",
    "/no-google/page.html": "robots_ai",
    "/tdm/closed.html": "tdmrep_json",
}
NOT_ARCHIVED = {
    "/header.html": "tdm_header",
    "/meta-tdm.html": "tdm_meta",
    "/noai.html": "noai",
    "/gpt-noai.html": "noai",
    "/meta-noai.html": "noai",
    "/noimageai.html": "noimageai",
    "/noindex.html": "noindex",
}
ARCHIVED = {"/", "/ok.html", "/scoped.html", "/tdm/open.html", "/from-noindex.html"}


class OptoutHandler(LoggingHandler):
    def do_GET(self):
        if self.path == "/robots.txt":
            return self._send(200, ROBOTS, "text/plain")
        if self.path == "/.well-known/tdmrep.json":
            return self._send(200, TDMREP, "application/json")
        if self.path == "/":
            links = "".join(f'<a href="{p}">{p}</a> ' for p in PAGES if p != "/from-noindex.html")
            return self._send(200, f"<html><body>{links}</body></html>".encode(), "text/html")
        if self.path in PAGES:
            extra, body = PAGES[self.path]
            return self._send(200, body, "text/html; charset=utf-8", extra)
        return self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


def run(site: LocalSite, out: Path, **kw) -> dict:
    config = CrawlConfig(
        seeds=[site.url("/")],
        allow_private=True,
        autothrottle=False,
        sitemaps=False,
        max_depth=2,
        timeout=5.0,
        retries=0,
        log_level="WARNING",
        **kw,
    )
    return crawl(config, out)


def responses(out: Path) -> dict[str, dict]:
    from warcio.archiveiterator import ArchiveIterator

    found = {}
    for path in sorted((out / "warc").glob("*.warc.gz")):
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh, check_digests="raise"):
                if rec.rec_type == "response":
                    found[rec.rec_headers.get_header("WARC-Target-URI")] = rec.rec_headers.get_header(
                        "WARC-Thresher-Optout"
                    )
    return found


@pytest.fixture(scope="module")
def crawls(tmp_path_factory):
    site = LocalSite(DEMO, handler=OptoutHandler).start()
    try:
        honoured = tmp_path_factory.mktemp("honoured")
        summary = run(site, honoured)
        hits = [h.path for h in site.hits]
        site.server.hits.clear()
        kept = tmp_path_factory.mktemp("kept")
        kept_summary = run(site, kept, archive_opted_out=True)
        yield {
            "site": site,
            "honoured": (honoured, summary, hits),
            "kept": (kept, kept_summary, [h.path for h in site.hits]),
        }
    finally:
        site.stop()


def test_pages_disallowed_for_ai_are_never_requested(crawls):
    _, summary, hits = crawls["honoured"]
    for path in REFUSED:
        assert path not in hits, path
    assert "/private/page.html" not in hits  # robots.txt for everybody: refused, not an opt-out
    assert hits.count("/.well-known/tdmrep.json") == 1 and hits.count("/robots.txt") == 1
    assert "/tdm/open.html" in hits  # its own tdmrep.json rule comes first: not reserved
    assert summary["robots_denied"] == 1


def test_reserved_pages_are_fetched_but_not_archived(crawls):
    out, summary, hits = crawls["honoured"]
    site = crawls["site"]
    archived = responses(out)
    assert set(archived) == {site.url(p) for p in ARCHIVED}
    assert set(archived.values()) == {None}
    for path in NOT_ARCHIVED:
        assert path in hits, path
    assert "/from-noindex.html" in hits  # noindex is no nofollow: its links are followed
    assert summary["optout"] == {
        "noai": 3,
        "noimageai": 1,
        "noindex": 1,
        "robots_ai": 2,
        "tdm_header": 1,
        "tdm_meta": 1,
        "tdmrep_json": 1,
    }
    assert summary["optout_flagged"] == {} and summary["pages"] == len(ARCHIVED)
    assert summary["tdmrep"] == {"read": 1}


def test_archive_opted_out_keeps_them_flagged(crawls):
    out, summary, hits = crawls["kept"]
    site = crawls["site"]
    archived = responses(out)
    expected = {**REFUSED, **NOT_ARCHIVED}
    assert set(archived) == {site.url(p) for p in ARCHIVED | set(expected)}
    for path, signal in expected.items():
        assert archived[site.url(path)].split()[0] == signal, path
    assert archived[site.url("/meta-noai.html")] == "noai noimageai"
    assert all(archived[site.url(p)] is None for p in ARCHIVED)
    assert summary["optout"] == {}
    assert sum(summary["optout_flagged"].values()) == len(expected)
    assert "/private/page.html" not in hits  # robots.txt for us still holds


def test_pages_waiting_on_robots_txt_all_get_its_rules(tmp_path):
    """Regression: the page requests waiting for a host's robots.txt shared one Deferred, whose
    result only the first waiter got; from the third on they saw "no robots.txt" and went out
    (6 of 8 seeds of a host disallowing everything were fetched and archived)."""
    with LocalSite(DEMO, handler=OptoutHandler) as site:
        seeds = [site.url(f"/private/p{i}.html") for i in range(6)] + [
            site.url(f"/no-gpt/p{i}.html") for i in range(6)
        ]
        config = CrawlConfig(
            seeds=seeds, allow_private=True, autothrottle=False, sitemaps=False, log_level="WARNING"
        )
        summary = crawl(config, tmp_path)
        assert site.paths() == ["/robots.txt"]
    assert summary["robots_denied"] == 6 and summary["optout"] == {"robots_ai": 6}
    assert summary["pages"] == 0


def _read_documents(warc_dir: Path):
    from thresher.readers.warc import read_warc

    docs = []
    for path in sorted(warc_dir.glob("*.warc.gz")):
        docs += [d for d in read_warc(str(path)) if d.drop is None]
    return docs


def test_optout_stage_drops_flagged_documents_of_the_crawlers_warc(crawls):
    from thresher.registry import build_stage

    out, _, _ = crawls["kept"]
    site = crawls["site"]
    docs = _read_documents(out / "warc")
    flagged = {d.url: d.metadata["optout"] for d in docs if d.metadata.get("tdm_optout")}
    assert set(flagged) == {site.url(p) for p in {**REFUSED, **NOT_ARCHIVED}}
    assert {d.url: d.metadata.get("http_tdm_reservation") for d in docs}[site.url("/header.html")] == "1"
    stage = build_stage("optout")
    result = {d.url: d.drop for d in stage(docs)}
    for path, signal in {**REFUSED, **NOT_ARCHIVED}.items():
        drop = result[site.url(path)]
        assert drop is not None and drop.reason == f"optout_{signal}" and drop.stage == "optout", path
    assert {url for url, drop in result.items() if drop is None} == {site.url(p) for p in ARCHIVED}
    stage.stats.check()
    assert stage.stats.dropped["optout_noai"] == 3 and stage.stats.kept == len(ARCHIVED)


def _strip_flag(src: Path, dst: Path) -> None:
    """The crawler's WARC file as another crawler would have written it: without our
    WARC-Thresher-Optout field (one gzip member per record, each rewritten)."""
    data, members = src.read_bytes(), []
    while data:
        d = zlib.decompressobj(wbits=31)
        record = d.decompress(data)
        data = d.unused_data
        head, sep, block = record.partition(b"\r\n\r\n")
        lines = [ln for ln in head.split(b"\r\n") if not ln.startswith(b"WARC-Thresher-Optout:")]
        members.append(gzip.compress(b"\r\n".join(lines) + sep + block, mtime=0))
    dst.write_bytes(b"".join(members))


def test_optout_stage_on_a_warc_without_the_flag_reads_headers_and_meta(crawls, tmp_path):
    """What a Common Crawl WARC allows: the HTTP headers and the meta tags are checked, robots.txt
    and tdmrep.json as they were at fetch time are not in the file."""
    from thresher.registry import build_stage

    out, _, _ = crawls["kept"]
    site = crawls["site"]
    for path in sorted((out / "warc").glob("*.warc.gz")):
        _strip_flag(path, tmp_path / path.name)
    docs = _read_documents(tmp_path)
    assert docs and not any(d.metadata.get("tdm_optout") for d in docs)
    result = {d.url: d.drop for d in build_stage("optout")(docs)}
    dropped = {url: drop.reason for url, drop in result.items() if drop is not None}
    assert dropped == {site.url(p): f"optout_{s}" for p, s in NOT_ARCHIVED.items()}


def test_optout_stage_after_extract_checks_headers_only():
    from thresher.document import Document
    from thresher.registry import build_stage

    stage = build_stage("optout")
    docs = [
        Document(id="a", text="t", metadata={"http_x_robots_tag": "nosnippet\nnoai"}),
        Document(id="b", text="t", metadata={"http_x_robots_tag": "otherbot: noai, noindex"}),
        Document(id="c", text="t"),
    ]
    assert [d.drop.reason if d.drop else None for d in stage(docs)] == ["optout_noai", None, None]
    assert stage.stats.extra["no_html"] == 3


# ---------------------------------------------------------------------- the signal readers


def test_x_robots_tag_scopes_and_meta_tags():
    reader = SignalReader("ThresherBot")
    assert reader.read(["googlebot: noindex, nofollow"], None, None).reasons == ()
    got = reader.read(["thresherbot: nofollow", "CCBot: noai"], "0", None)
    assert got.nofollow and not got.noindex and got.reasons == ("noai",)
    assert reader.read(["none"], None, None) == reader.read(["noindex, nofollow"], None, None)
    assert reader.read(["max-snippet: 20, unavailable_after: 2030-01-01"], None, None).reasons == ()
    html = b"<html><head><!-- <meta name=robots content=noai> --><meta name=x content=y></head>"
    assert reader.read([], None, html + b"<body><meta name=robots content=noindex></body>").reasons == ()
    assert meta_tags(b"<head><meta content='1' name='TDM-Reservation'/>") == [("tdm-reservation", "1")]
    assert meta_tags(b"<head><!-- unterminated <meta name=robots content=noai>") == []
    only_text = SignalReader("ThresherBot", signals=["noai", "noindex"])
    assert only_text.read(["noimageai"], "1", None).reasons == ()


def test_tdmrep_rules():
    rules = parse_tdmrep(TDMREP)
    assert tdm_rule_for(rules, "/tdm/open.html").reserved is False
    assert tdm_rule_for(rules, "/tdm/x?y=1").policy == "https://example.org/policy.json"
    assert tdm_rule_for(rules, "/other.html") is None
    assert path_matches("/*.pdf$", "/a/b.pdf") and not path_matches("/*.pdf$", "/a/b.pdf?x")
    assert path_matches("/a*b*c", "/axxbyyc") and not path_matches("/a*b*c", "/axxcyyb")
    assert not path_matches("/" + "*a" * 500 + "$", "/" + "a" * 5000 + "b")  # linear, no backtracking
    skipped = parse_tdmrep(b'[{"location": "/x", "tdm-reservation": 2}, "junk", {"tdm-reservation": 1}]')
    assert skipped == []
    for bad in (b"{}", b"not json", b"[" * 100_000, b" " * (2 << 20)):
        with pytest.raises(ValueError):
            parse_tdmrep(bad)


def test_config_names_the_signals():
    from thresher.config import ConfigError

    config = crawl_config({})
    assert "GPTBot" in config.ai_tokens and config.archive_opted_out is False
    with pytest.raises(ConfigError, match="optout_signals"):
        crawl_config({"optout_signals": ["noia"]}).validate("crawl")
    with pytest.raises(ConfigError, match="ai_tokens"):
        crawl_config({"ai_tokens": ["GPT Bot"]}).validate("crawl")
