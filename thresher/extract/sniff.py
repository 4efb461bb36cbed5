"""Cheap checks on a raw payload before any parser sees it.

They run on every page, so each looks at a few hundred bytes at most. Their job is to keep
images, PDFs, archives and other non-pages away from the HTML parsers, which would otherwise
spend time producing garbage text from them (a PDF decodes to "text" in cp1252 just fine).
"""

from __future__ import annotations

from urllib.parse import urlsplit

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "application/xml+xhtml"})
# Declared types whose payload may still be a page: servers label HTML as text/plain or
# application/octet-stream often enough that these are decided by looking at the bytes.
SNIFF_TYPES = frozenset({"", "text/plain", "application/octet-stream", "application/xml", "text/xml"})

BINARY_SIGNATURES = (
    b"%PDF",
    b"\x89PNG",
    b"GIF8",
    b"\xff\xd8\xff",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"BM",
    b"RIFF",
    b"\x00\x00\x01\x00",
    b"OggS",
    b"ID3",
    b"fLaC",
    b"\x7fELF",
    b"MZ",
    b"\xd0\xcf\x11\xe0",
    b"Rar!",
    b"7z\xbc\xaf",
    b"\x28\xb5\x2f\xfd",
    b"wOFF",
    b"wOF2",
    b"\x00\x01\x00\x00",
)
NON_HTML_URL_SUFFIXES = (
    ".pdf",
    ".jpg",
    ".jpeg",
    ".png",
    ".gif",
    ".webp",
    ".svg",
    ".ico",
    ".bmp",
    ".tif",
    ".tiff",
    ".zip",
    ".gz",
    ".tgz",
    ".bz2",
    ".xz",
    ".7z",
    ".rar",
    ".tar",
    ".exe",
    ".msi",
    ".dmg",
    ".iso",
    ".mp3",
    ".mp4",
    ".m4a",
    ".avi",
    ".mov",
    ".wmv",
    ".flv",
    ".ogg",
    ".wav",
    ".webm",
    ".doc",
    ".docx",
    ".xls",
    ".xlsx",
    ".ppt",
    ".pptx",
    ".odt",
    ".ods",
    ".epub",
    ".css",
    ".js",
    ".json",
    ".woff",
    ".woff2",
    ".ttf",
    ".otf",
    ".eot",
    ".apk",
    ".deb",
    ".rpm",
)
_HTML_MARKERS = (
    b"<html",
    b"<!doctype html",
    b"<head",
    b"<body",
    b"<div",
    b"<p>",
    b"<p ",
    b"<title",
    b"<meta",
    b"<table",
    b"<a href",
    b"<br",
    b"<span",
)


def mime_of(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def looks_binary(payload: bytes) -> bool:
    """NUL bytes or a known binary signature at the start: not a web page whatever the header says.
    UTF-16 pages (BOM first) contain NULs but are text, so a BOM exempts the page."""
    head = payload[:1024]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    if b"\x00" in head:
        return True
    return head.startswith(BINARY_SIGNATURES)


def looks_like_html(payload: bytes) -> bool:
    head = payload[:4096].lower()
    return any(marker in head for marker in _HTML_MARKERS)


def url_says_not_html(url: str | None) -> bool:
    """A URL path ending in a file extension that is never a web page (``/report.pdf``)."""
    if not url:
        return False
    try:
        path = urlsplit(url).path.lower()
    except ValueError:
        return False
    return path.endswith(NON_HTML_URL_SUFFIXES)


def non_html_reason(payload: bytes, content_type: str | None, url: str | None) -> str | None:
    """Why this payload is not an HTML page (a short detail), or None if it may be one.

    A declared HTML type is trusted. Ambiguous declarations (none, text/plain, octet-stream,
    XML) and URLs with a binary-file extension are decided by looking for HTML tags.
    """
    mime = mime_of(content_type)
    if mime in HTML_TYPES:
        return None
    if mime in SNIFF_TYPES and not url_says_not_html(url):
        return None if looks_like_html(payload) else f"no HTML markup ({mime or 'no content type'})"
    if looks_like_html(payload):  # mislabelled page: the bytes win over the label
        return None
    return f"content type {mime}" if mime not in SNIFF_TYPES else "URL extension"
