"""Real documents for evaluating the filters: the shared extraction pages and WARC samples,
run through our own extractor.

The parity tests and ``bench/filters.py`` need the same ~1,300 real pages as text. Extraction
costs about a quarter of a second per page, so the extracted corpus is cached (JSONL, gzip) under
the user cache directory, keyed by the input files' names and sizes; third-party page text is
never committed to the repository.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from thresher.io import atomic_path

logger = logging.getLogger(__name__)

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "thresher" / "eval"


@dataclass(frozen=True)
class Page:
    """A page to extract: where its HTML is and the URL it was served from (None when unknown)."""

    source: str
    url: str | None
    path: str | None = None  # a .html.gz file
    warc: str | None = None  # a WARC file, with the record's offset in ``offset``
    offset: int = 0


def _html_pages(shared: Path) -> Iterator[Page]:
    tra = shared / "extraction-trafilatura-eval"
    if (tra / "evaldata.json").is_file():
        evaldata = json.loads((tra / "evaldata.json").read_text(encoding="utf-8"))
        for key, item in sorted(evaldata.items()):
            # Most keys are the page's URL; a few are "hard::site.tld-name.html".
            name = key.split("::")[-1]
            host = name.split("-")[0]
            url = name if "://" in name else (f"https://{host}/{name}" if "." in host else None)
            yield Page("trafilatura-eval", url, path=str(tra / item["file"]))
    aeb = shared / "extraction-scrapinghub-aeb"
    if (aeb / "ground-truth.json").is_file():
        truth = json.loads((aeb / "ground-truth.json").read_text(encoding="utf-8"))
        for key, item in sorted(truth.items()):
            path = aeb / "html" / f"{key}.html.gz"
            if path.is_file():
                yield Page("scrapinghub-aeb", item.get("url"), path=str(path))
    leo = shared / "extraction-htmltotext-leogao"
    for path in sorted(leo.glob("*/html/*.html.gz")):
        yield Page("htmltotext-leogao", None, path=str(path))


def _warc_pages(shared: Path) -> Iterator[Page]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    for path in sorted((shared / "warc-samples").glob("*.warc.gz")):
        try:
            with open(path, "rb") as f:
                for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
                    ctype = (rec.http_headers.get("Content-Type") or "") if rec.http_headers else ""
                    if "html" in ctype.lower():
                        url = (rec.headers.get("WARC-Target-URI") or "").strip("<>") or None
                        yield Page("warc-samples", url, warc=str(path), offset=rec.stream_pos)
        except Exception as exc:  # the deliberately broken samples end early; keep what was read
            logger.debug("stopped reading %s: %r", path, exc)


def _read_html(page: Page) -> bytes | None:
    if page.path:
        with gzip.open(page.path, "rb") as f:
            return f.read()
    from fastwarc.warc import ArchiveIterator

    with open(page.warc, "rb") as f:
        f.seek(page.offset)
        for rec in ArchiveIterator(f, parse_http=True):
            return rec.reader.read()
    return None


def _extract(page: Page) -> dict | None:
    from thresher.extract import extract_text

    try:
        html = _read_html(page)
        text = extract_text(html, page.url) if html else None
    except Exception as exc:
        logger.debug("extraction failed for %s: %r", page, exc)
        return None
    if not text:
        return None
    return {"source": page.source, "url": page.url, "text": text}


def list_pages(shared: Path) -> list[Page]:
    return list(_html_pages(shared)) + list(_warc_pages(shared))


def _cache_key(pages: list[Page]) -> str:
    h = hashlib.sha256()
    for p in pages:
        f = p.path or p.warc
        h.update(f"{f}:{os.path.getsize(f)}:{p.offset}:{p.url}\n".encode())
    return h.hexdigest()[:16]


def load_documents(shared: str | Path, workers: int = 2) -> list[dict]:
    """``[{source, url, text}]`` for every shared page that extracts to some text (about 1,250)."""
    pages = list_pages(Path(shared))
    cache = CACHE_DIR / f"filters-corpus-{_cache_key(pages)}.jsonl.gz"
    if cache.is_file():
        with gzip.open(cache, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f]
    logger.info("extracting %d shared pages once (cached in %s)", len(pages), cache)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        docs = [d for d in pool.map(_extract, pages, chunksize=8) if d]
    with atomic_path(cache) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    return docs


LINGUA_CLASSES = ("sentences", "word-pairs", "single-words")
# Lingua names Norwegian Bokmål "nb"; lid.176 calls it "no".
LID_ALIASES = {"nb": "no"}


def lingua_accuracy(
    base: str | Path, per_file: int | None = None, languages: list[str] | None = None
) -> dict[str, dict[str, tuple[int, int, int]]]:
    """Language-ID accuracy on the Lingua test set, lid.176 on raw text against lid.176 after our
    normalisation, in the same run: ``{length class: {language: (items, raw correct, ours correct)}}``.
    ``per_file`` takes the first items of each file (for a quick check)."""
    from thresher.filters.language import identify_batch, predict_raw

    base = Path(base)
    out: dict[str, dict[str, tuple[int, int, int]]] = {}
    for cls in LINGUA_CLASSES:
        out[cls] = {}
        for path in sorted((base / cls).glob("*.txt.gz")):
            lang = path.name.split(".")[0]
            if languages is not None and lang not in languages:
                continue
            with gzip.open(path, "rt", encoding="utf-8") as f:
                items = [line for line in f.read().splitlines() if line.strip()][:per_file]
            want = LID_ALIASES.get(lang, lang)
            raw = sum(p[0][0] == want for p in predict_raw(items))
            ours = sum(bool(p) and p[0][0] == want for p in identify_batch(items))
            out[cls][lang] = (len(items), raw, ours)
    return out
