"""Bytes → str for web pages: HTTP header charset, then ``<meta>`` charset, then detection.

Declared charsets are often wrong or unknown to Python (``x-sjis``, ``utf8``); a declaration
that Python cannot decode strictly falls through to the next source rather than producing
mojibake.
"""

from __future__ import annotations

import codecs

import regex

_HEADER_CHARSET = regex.compile(rb"charset\s*=\s*[\"']?([A-Za-z0-9_\-.:]+)", regex.I)
_META_CHARSET = regex.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_\-.:]+)", regex.I)
_ALIASES = {
    "x-sjis": "shift_jis",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
}


def _normalise(name: bytes | str | None) -> str | None:
    if not name:
        return None
    if isinstance(name, bytes):
        name = name.decode("ascii", "ignore")
    name = name.strip().lower()
    name = _ALIASES.get(name, name)  # browsers treat these labels as their supersets (WHATWG)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def charset_from_content_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    m = _HEADER_CHARSET.search(content_type.encode("latin-1", "ignore"))
    return _normalise(m.group(1)) if m else None


def charset_from_meta(html: bytes) -> str | None:
    m = _META_CHARSET.search(html[:8192])
    return _normalise(m.group(1)) if m else None


def decode_html(html: bytes, content_type: str | None = None) -> tuple[str, str, str]:
    """Decode a page. Returns ``(text, encoding, how)`` with ``how`` one of ``header``, ``meta``,
    ``bom``, ``detected``, ``fallback`` (undecodable bytes replaced)."""
    if html.startswith(codecs.BOM_UTF8):
        return html[3:].decode("utf-8", "replace"), "utf-8", "bom"
    for how, enc in (("header", charset_from_content_type(content_type)), ("meta", charset_from_meta(html))):
        if enc:
            try:
                return html.decode(enc), enc, how
            except (UnicodeDecodeError, LookupError):
                pass
    try:
        return html.decode("utf-8"), "utf-8", "detected"
    except UnicodeDecodeError:
        pass
    from resiliparse.parse.encoding import detect_encoding

    enc = _normalise(detect_encoding(html[:65536])) or "utf-8"
    try:
        return html.decode(enc), enc, "detected"
    except (UnicodeDecodeError, LookupError):
        return html.decode(enc, "replace"), enc, "fallback"
