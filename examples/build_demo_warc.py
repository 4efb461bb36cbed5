"""Rebuild ``examples/demo.warc.gz`` from Debian documentation packages.

The demo WARC holds real pages in several languages whose licences allow redistribution:
the Debian Administrator's Handbook (GPL-2+ or CC BY-SA 3.0), the Debian New Maintainers'
Guide (GPL-2+) and the Debian FAQ (SPI permissive notice). Pages are stored as HTTP responses
with the URLs they have on the web, plus the kinds of records a real crawl contains: a
stylesheet and an image (non-HTML), a 404, a page in a legacy charset, an exact duplicate and a
near-duplicate, so that ``make demo`` shows every stage at work.

Usage: ``python examples/build_demo_warc.py [--debs DIR] [--output examples/demo.warc.gz]``
(downloads the packages with ``apt-get download`` when --debs is not given).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import tempfile
import uuid
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

PACKAGES = [
    "debian-handbook",
    "maint-guide",
    "maint-guide-de",
    "maint-guide-fr",
    "maint-guide-es",
    "maint-guide-ja",
    "maint-guide-ru",
    "maint-guide-zh-cn",
    "debian-faq",
    "debian-faq-de",
    "debian-faq-fr",
]
HANDBOOK_LANGS = ["en-US", "de-DE", "fr-FR", "es-ES", "ja-JP", "zh-CN", "ru-RU", "it-IT", "pt-BR"]
HANDBOOK_PAGES = 14
DATE = "2026-11-01T12:00:00Z"


def extract_packages(debs: Path, root: Path) -> None:
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)


def pages(root: Path) -> list[tuple[str, Path]]:
    doc = root / "usr/share/doc"
    out: list[tuple[str, Path]] = []
    for lang in HANDBOOK_LANGS:
        files = sorted((doc / "debian-handbook/html" / lang).glob("*.html"))
        for f in files[:HANDBOOK_PAGES]:
            out.append((f"https://debian-handbook.info/browse/{lang}/stable/{f.name}", f))
    for guide in sorted(doc.glob("maint-guide*/html")):
        lang = guide.parent.name.removeprefix("maint-guide").lstrip("-") or "en"
        for f in sorted(guide.glob("*.html"))[:6]:
            stem = f.name.split(".")[0]
            out.append((f"https://www.debian.org/doc/manuals/maint-guide/{stem}.{lang}.html", f))
    for faq in [doc / "debian/FAQ", doc / "debian/FAQ/de", doc / "debian/FAQ/fr"]:
        lang = faq.name if faq.name in ("de", "fr") else "en"
        for f in sorted(faq.glob("*.html"))[:8]:
            out.append((f"https://www.debian.org/doc/manuals/debian-faq/{f.stem}.{lang}.html", f))
    return out


def record_id(url: str, salt: str = "") -> str:
    return f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url + salt)}>"


def write_response(
    writer: WARCWriter, url: str, body: bytes, content_type: str, status: str = "200 OK"
) -> None:
    http = StatusAndHeaders(
        status,
        [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Server", "demo")],
        protocol="HTTP/1.1",
    )
    req = StatusAndHeaders(
        f"GET {url.split('/', 3)[-1] if url.count('/') >= 3 else '/'} HTTP/1.1",
        [("Host", url.split("/")[2]), ("User-Agent", "thresher-demo")],
        is_http_request=True,
    )
    headers = {"WARC-Date": DATE, "WARC-Record-ID": record_id(url, status)}
    writer.write_record(
        writer.create_warc_record(
            url,
            "request",
            http_headers=req,
            warc_headers_dict={"WARC-Date": DATE, "WARC-Record-ID": record_id(url, "req" + status)},
        )
    )
    writer.write_record(
        writer.create_warc_record(
            url, "response", payload=io.BytesIO(body), http_headers=http, warc_headers_dict=headers
        )
    )


def build(root: Path, output: Path) -> None:
    items = pages(root)
    with open(output, "wb") as fh:
        writer = WARCWriter(fh, gzip=True, warc_version="1.1")
        info = writer.create_warcinfo_record(
            output.name,
            {
                "software": "thresher examples/build_demo_warc.py",
                "description": "Thresher demo: Debian documentation pages",
            },
        )
        writer.write_record(info)
        for url, path in items:
            write_response(writer, url, path.read_bytes(), "text/html; charset=utf-8")
        # The kinds of records a real crawl holds besides clean HTML pages.
        doc = root / "usr/share/doc/debian-handbook/html/en-US"
        css = next(iter(sorted(doc.rglob("*.css"))), None)
        if css:
            write_response(
                writer,
                "https://debian-handbook.info/browse/en-US/stable/Common_Content/css/default.css",
                css.read_bytes(),
                "text/css",
            )
        png = next(iter(sorted(doc.rglob("*.png"))), None)
        if png:
            write_response(
                writer,
                "https://debian-handbook.info/browse/en-US/stable/images/logo.png",
                png.read_bytes(),
                "image/png",
            )
        write_response(
            writer,
            "https://debian-handbook.info/browse/en-US/stable/missing.html",
            b"<html><body><h1>Not Found</h1></body></html>",
            "text/html",
            "404 Not Found",
        )
        de_faq = sorted((root / "usr/share/doc/debian/FAQ/de").glob("*.html"))[-1]
        text = (
            de_faq.read_text(encoding="utf-8")
            .replace('charset="UTF-8"', 'charset="ISO-8859-1"')
            .replace("charset=UTF-8", "charset=ISO-8859-1")
        )
        write_response(
            writer,
            "https://www.debian.org/doc/manuals/debian-faq/legacy-charset.de.html",
            text.encode("iso-8859-1", "replace"),
            "text/html; charset=ISO-8859-1",
        )
        first_url, first_path = items[2]
        write_response(
            writer,
            first_url.replace("debian-handbook.info", "mirror.debian-handbook.info"),
            first_path.read_bytes(),
            "text/html; charset=utf-8",
        )
        near = first_path.read_text(encoding="utf-8").replace(
            "</body>", "<p>Mirrored copy, updated nightly.</p></body>"
        )
        write_response(
            writer,
            first_url.replace("debian-handbook.info", "archive.debian-handbook.info"),
            near.encode(),
            "text/html; charset=utf-8",
        )
    digest = hashlib.sha256(output.read_bytes()).hexdigest()
    print(f"{output}: {len(items)} pages, {output.stat().st_size / 1e6:.2f} MB, sha256 {digest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--debs", type=Path, help="directory with the .deb files (default: apt-get download them)"
    )
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("demo.warc.gz"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        debs = args.debs
        if debs is None:
            debs = Path(tmp) / "debs"
            debs.mkdir()
            subprocess.run(["apt-get", "download", *PACKAGES], check=True, cwd=debs)
        root = Path(tmp) / "root"
        extract_packages(debs, root)
        build(root, args.output)


if __name__ == "__main__":
    main()
