"""Every failure mode of extraction is counted, never a crash: real pages and assets from the shared
WARC samples and gold sets, some of them made broken on purpose."""

from __future__ import annotations

import gzip
import threading
import time

import pytest

from thresher.document import Document
from thresher.extract import ExtractConfig, ExtractStage, extract_text
from thresher.extract.charset import decode_html

IANA = "pywb-iana-2014-with-revisits.warc.gz"


def warc_payloads(path) -> dict[str, tuple[str | None, bytes]]:
    """url → (content type, payload) of the response records of a shared WARC sample."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    out = {}
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
            out.setdefault(
                rec.headers.get("WARC-Target-URI"), (rec.http_headers.get("Content-Type"), rec.reader.read())
            )
    return out


@pytest.fixture(scope="module")
def iana(shared_data):
    return warc_payloads(shared_data("warc-samples", IANA))


@pytest.fixture(scope="module")
def eval_page(shared_data):
    """A real German news page from the trafilatura corpus with snippets it must contain."""
    import json

    root = shared_data("extraction-trafilatura-eval")
    data = json.loads((root / "evaldata.json").read_text(encoding="utf-8"))
    url = next(u for u, v in data.items() if u.startswith("https://") and ".de/" in u and v["with"])
    item = data[url]
    return url, gzip.decompress((root / item["file"]).read_bytes()), item["with"]


def run(docs: list[Document], **cfg) -> ExtractStage:
    cfg.setdefault("mode", "trafilatura")
    cfg.setdefault("timeout_mode", "signal")
    stage = ExtractStage(ExtractConfig(**cfg))
    try:
        stage.apply(docs)
    finally:
        stage.close()
    stage.stats.check()
    return stage


def doc(i: int, payload: bytes, content_type: str | None = "text/html", url: str | None = None) -> Document:
    return Document(
        id=f"d{i}", url=url or f"https://example.org/{i}", html=payload, content_type=content_type
    )


def test_non_html_and_binary_assets_are_counted(iana):
    png_ct, png = iana["http://www.iana.org/_img/2013.1/iana-logo-homepage.png"]
    ttf_ct, ttf = iana["http://www.iana.org/_css/2013.1/fonts/OpenSans-Regular.ttf"]
    js_ct, js = iana["http://www.iana.org/_js/2013.1/jquery.js"]
    home_ct, home = iana["http://www.iana.org/"]
    docs = [
        doc(0, png, png_ct),  # declared image: not a page
        doc(1, ttf, ttf_ct, "http://www.iana.org/_css/2013.1/fonts/OpenSans-Regular.ttf"),
        doc(2, js, js_ct),
        doc(3, png, "text/html"),  # server lies: binary bytes behind an HTML header
        doc(4, gzip.compress(home), "text/html"),  # Content-Encoding not undone
        doc(5, home, home_ct, "http://www.iana.org/"),
    ]
    stage = run(docs)
    assert stage.stats.dropped["non_html"] == 3
    assert stage.stats.errors["binary"] == 2
    assert stage.stats.kept == 1
    assert "Internet Assigned Numbers Authority" in docs[5].text or "IANA" in docs[5].text
    assert docs[3].drop.kind == "error" and docs[0].drop.kind == "dropped"


def test_mislabelled_html_is_still_extracted(iana):
    _, home = iana["http://www.iana.org/"]
    docs = [doc(0, home, "application/octet-stream"), doc(1, home, None), doc(2, home, "text/plain")]
    stage = run(docs)
    assert stage.stats.kept == 3


def test_too_large_is_counted_before_parsing(iana):
    _, big = iana["http://www.iana.org/protocols"]  # a real 655 kB page
    _, small = iana["http://www.iana.org/domains"]
    docs = [doc(0, big), doc(1, small)]
    stage = run(docs, max_html_bytes=100_000)
    assert stage.stats.errors == {"too_large": 1}
    assert docs[0].drop.value == len(big)
    assert stage.stats.kept == 1


@pytest.mark.parametrize("header, meta", [(True, False), (False, True), (False, False)])
def test_charset_from_header_then_meta_then_detection(eval_page, header, meta):
    """A real UTF-8 page re-encoded to cp1252 — the charset declared in the HTTP header only, in
    a <meta> only, or nowhere — is decoded right each time."""
    url, html, snippets = eval_page
    text = html.decode("utf-8")
    text = text.replace("charset=utf-8", "").replace("charset=UTF-8", "").replace('charset="utf-8"', "")
    if meta:
        text = text.replace("<head>", '<head><meta charset="windows-1252">', 1)
    payload = text.encode("cp1252", "replace")
    content_type = "text/html; charset=windows-1252" if header else "text/html"
    decoded, encoding, how = decode_html(payload, content_type)
    assert how == ("header" if header else "meta" if meta else "detected")
    docs = [doc(0, payload, content_type, url)]
    stage = run(docs)
    assert stage.stats.kept == 1
    assert "ü" in docs[0].text or "ä" in docs[0].text or "ö" in docs[0].text
    assert "Ã" not in docs[0].text  # no mojibake
    assert any(s in docs[0].text for s in snippets)


def test_euc_jp_page_without_declared_charset_is_detected(shared_data):
    pages = warc_payloads(shared_data("warc-samples", "resiliparse-clueweb09-ja-quirk.warc.gz"))
    url, (ct, payload) = next(iter(pages.items()))
    assert ct is None and b"charset" not in payload[:1024].lower()
    text, encoding, how = decode_html(payload, ct)
    assert encoding == "euc_jp" and how == "detected"
    docs = [doc(0, payload, ct, url)]
    stage = run(docs, mode="resiliparse")
    assert stage.stats.kept == 1
    assert "検索" in docs[0].text


def test_broken_markup_is_extracted_or_counted(eval_page):
    """Truncated mid-tag, tags stripped of their closing halves, stray NULs and control bytes,
    a deep pile of unclosed tags: each page ends up kept or counted, and the truncated one keeps
    its opening paragraph."""
    url, html, snippets = eval_page
    text = html.decode("utf-8")
    cut = max(text.index(s) + len(s) for s in snippets) + 200
    broken = [
        text[:cut] + '<div class="x',  # truncated inside a tag
        text.replace("</p>", "").replace("</div>", ""),  # closing tags gone
        text[:5000] + "\x00\x0b\x01" * 20 + text[5000:],  # NULs after the first KiB
        text.replace("<body", "<body>" + "<font><b>" * 2000, 1),  # unclosed-tag pile
        "<html><body><p>" + "&#" * 20000 + "</p>",  # garbage entities, no article
    ]
    docs = [doc(i, b.encode("utf-8"), "text/html; charset=utf-8", url) for i, b in enumerate(broken)]
    stage = run(docs, timeout_s=20)
    assert stage.stats.docs_in == 5
    found_intact = [s for s in snippets if s in extract_text(html, url)]
    assert found_intact and docs[0].drop is None
    assert all(s in docs[0].text for s in found_intact)
    assert sum(d.drop is None for d in docs) >= 3


def test_timeout_in_signal_mode_is_counted(iana):
    _, big = iana["http://www.iana.org/protocols"]
    _, small = iana["http://www.iana.org/domains"]
    docs = [doc(0, big), doc(1, small)]
    stage = run(docs, timeout_s=0.2, timeout_mode="signal", max_html_bytes=10**7)
    assert stage.stats.errors.get("timeout") == 1
    assert docs[0].drop.reason == "timeout"


def _deep_page(eval_page) -> bytes:
    """A real page's head and paragraphs, its layout replaced by 12,000 nested <div>:
    resiliparse's main-content pass spends tens of seconds in C on it (time grows with the
    depth to a power above 2), where SIGALRM cannot reach."""
    import re

    _, html, _ = eval_page
    text = html.decode("utf-8")
    start = text.index(">", text.index("<body")) + 1
    end = text.rindex("</body>")
    paragraphs = "".join(re.findall(r"<p[ >].*?</p>", text[start:end], flags=re.S))
    nest = "<div>" * 12000 + "<p>x</p>" + "</div>" * 12000
    return (text[:start] + paragraphs + nest + text[end:]).encode("utf-8")


def test_subprocess_timeout_kills_a_parse_stuck_in_c_off_the_main_thread(eval_page, iana):
    _, small = iana["http://www.iana.org/domains"]
    docs = [doc(0, _deep_page(eval_page)), doc(1, small, url="http://www.iana.org/domains")]
    result: dict = {}

    def work():  # as in a threaded Ray actor: not the main thread, so no SIGALRM possible
        start = time.perf_counter()
        result["stage"] = run(docs, mode="cascade", timeout_s=1.0, timeout_mode="auto")
        result["seconds"] = time.perf_counter() - start

    t = threading.Thread(target=work)
    t.start()
    t.join(120)
    stage = result["stage"]
    assert stage.stats.errors == {"timeout": 1}
    assert docs[0].drop.detail == "early_text"
    assert stage.stats.kept == 1  # the worker was replaced and went on with the next page
    assert stage.stats.extra["worker_restarts"] == 1
    assert result["seconds"] < 30  # nowhere near the tens of seconds the parse would have taken


def test_crashed_worker_is_counted_and_replaced(iana):
    """The child is killed from outside mid-page (as the kernel's OOM killer would)."""
    import os
    import signal

    _, big = iana["http://www.iana.org/protocols"]
    _, small = iana["http://www.iana.org/domains"]
    stage = ExtractStage(
        ExtractConfig(mode="trafilatura", timeout_s=60, timeout_mode="subprocess", max_html_bytes=10**7)
    )
    try:
        stage.apply([doc(9, small)])  # starts the worker
        child = stage._sandbox._child._proc
        killer = threading.Timer(0.3, os.kill, (child.pid, signal.SIGKILL))
        killer.start()
        docs = [doc(0, big * 3), doc(1, small)]
        stage.apply(docs)
        killer.join()
    finally:
        stage.close()
    stage.stats.check()
    assert stage.stats.errors == {"worker_crash": 1}
    assert docs[1].drop is None
