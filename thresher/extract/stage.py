"""HTML → text with trafilatura, configured as FineWeb ran it (favour precision, no comments).

Guard rails around the extractor: a size cap before parsing, a binary-content check, charset
resolution (:mod:`thresher.extract.charset`) and a per-page time limit, so that one pathological
page costs one counted error instead of a stuck worker.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from thresher.document import Document, Drop
from thresher.extract.charset import decode_html
from thresher.stage import Stage

logger = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")


class ExtractionTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """Interrupt the block after ``seconds`` (SIGALRM; only possible on the main thread)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise ExtractionTimeout(f"extraction took longer than {seconds}s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class ExtractConfig:
    favor_precision: bool = True
    include_comments: bool = False
    deduplicate: bool = True
    timeout_s: float = 10.0
    """Per-page limit; a page that takes longer is dropped as error ``timeout``."""
    max_html_bytes: int = 5 * 1024 * 1024
    """Pages larger than this are not parsed (error ``too_large``)."""
    min_text_chars: int = 1
    """Documents with less extracted text are dropped as ``no_text``."""


def looks_binary(payload: bytes) -> bool:
    """NUL bytes or a known binary signature in the first KiB: not a web page whatever the header says."""
    head = payload[:1024]
    if b"\x00" in head:
        return True
    return head.startswith((b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b"))


def _extract(html: str, url: str | None, cfg: ExtractConfig) -> tuple[str | None, dict]:
    import trafilatura

    result = trafilatura.bare_extraction(
        html,
        url=url,
        favor_precision=cfg.favor_precision,
        include_comments=cfg.include_comments,
        deduplicate=cfg.deduplicate,
        with_metadata=True,
    )
    if result is None:
        return None, {}
    meta = {k: getattr(result, k, None) for k in ("title", "author", "date", "hostname", "sitename")}
    return result.text, {k: v for k, v in meta.items() if v}


def extract_text(html: bytes | str, url: str | None = None) -> str | None:
    """Main text of one page with the default extraction settings (for checking a page by hand)."""
    if isinstance(html, bytes):
        html = decode_html(html)[0]
    text, _ = _extract(html, url, ExtractConfig())
    return text or None


class ExtractStage(Stage):
    """Reasons: ``no_text`` (nothing extracted); errors: ``too_large``, ``binary``, ``timeout``,
    ``parse_error``."""

    name = "extract"
    Config = ExtractConfig

    def process(self, doc: Document) -> Document | Drop:
        cfg: ExtractConfig = self.config
        payload = doc.html
        if payload is None:  # already text (e.g. read from Parquet): nothing to extract
            return doc if doc.text else Drop("no_text")
        if len(payload) > cfg.max_html_bytes:
            return Drop("too_large", kind="error", value=len(payload))
        if looks_binary(payload):
            return Drop("binary", kind="error")
        html, encoding, how = decode_html(payload, doc.content_type)
        try:
            with time_limit(cfg.timeout_s):
                text, meta = _extract(html, doc.url, cfg)
        except ExtractionTimeout:
            return Drop("timeout", kind="error", value=cfg.timeout_s)
        except Exception as exc:  # lxml and trafilatura raise a zoo of exceptions on broken markup
            return Drop("parse_error", kind="error", detail=f"{type(exc).__name__}: {exc}"[:300])
        if not text or len(text) < cfg.min_text_chars:
            return Drop("no_text", value=len(text or ""))
        doc.text = text
        doc.html = None
        meta["encoding"] = encoding
        meta["encoding_source"] = how
        if doc.url and "hostname" not in meta:
            meta["hostname"] = urlsplit(doc.url).hostname
        doc.metadata.update(meta)
        return doc
