"""Documents from already-extracted text: Parquet and JSONL (``id``, ``text``, optional ``url``,
``metadata`` and anything else, which lands in metadata). Ids are kept as given."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from typing import Any

from thresher.document import Document, Drop
from thresher.readers.inputs import input_format

logger = logging.getLogger(__name__)

STAGE = "read"
_KNOWN = {"id", "text", "url", "warc_date", "language", "language_score", "source", "metadata", "scores"}


def _row_to_document(row: dict[str, Any], source: str, index: int) -> Document:
    raw_id = row.get("id")
    doc = Document(id=str(raw_id) if raw_id is not None else f"{source}#{index}", source=f"{source}#{index}")
    meta = row.get("metadata")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = {"metadata": meta}
    doc.metadata = dict(meta or {})
    scores = row.get("scores")
    if isinstance(scores, str):
        scores = json.loads(scores) if scores else {}
    doc.scores = dict(scores or {})
    doc.url = row.get("url")
    doc.warc_date = str(row["warc_date"]) if row.get("warc_date") is not None else None
    doc.language = row.get("language")
    doc.language_score = row.get("language_score")
    for key, value in row.items():
        if key not in _KNOWN and value is not None:
            doc.metadata[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
    text = row.get("text")
    if raw_id is None:
        doc.mark_dropped(Drop("missing_id", kind="error", stage=STAGE))
    elif not isinstance(text, str) or not text.strip():
        doc.mark_dropped(Drop("no_text", stage=STAGE))
    else:
        doc.text = text
    return doc


def read_parquet(path: str, batch_size: int = 1024) -> Iterator[Document]:
    import fsspec
    import pyarrow.parquet as pq

    index = 0
    try:
        with fsspec.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(batch_size=batch_size):
                for row in batch.to_pylist():
                    yield _row_to_document(row, path, index)
                    index += 1
    except Exception as exc:
        logger.warning("%s: unreadable after row %d: %r", path, index, exc)
        doc = Document(id=f"{path}#corrupt@{index}", source=f"{path}#{index}")
        doc.mark_dropped(Drop("corrupt_file", kind="error", detail=str(exc)[:300], stage=STAGE))
        yield doc


def read_jsonl(path: str) -> Iterator[Document]:
    import fsspec

    compression = "infer"
    index = 0
    try:
        with fsspec.open(path, "rt", encoding="utf-8", errors="replace", compression=compression) as f:
            for index, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError("a JSONL line must be an object")
                except ValueError as exc:
                    doc = Document(id=f"{path}#{index}", source=f"{path}#{index}")
                    doc.mark_dropped(Drop("bad_json", kind="error", detail=str(exc)[:200], stage=STAGE))
                    yield doc
                    continue
                yield _row_to_document(row, path, index)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        logger.warning("%s: unreadable after line %d: %r", path, index, exc)
        doc = Document(id=f"{path}#corrupt@{index}", source=f"{path}#{index}")
        doc.mark_dropped(Drop("corrupt_file", kind="error", detail=str(exc)[:300], stage=STAGE))
        yield doc


def read_documents(path: str, fmt: str = "auto", warc_config=None) -> Iterator[Document]:
    """Documents of one input file, whatever its format."""
    fmt = input_format(path, fmt)
    if fmt == "warc":
        from thresher.readers.warc import read_warc

        return read_warc(path, warc_config)
    if fmt == "parquet":
        return read_parquet(path)
    return read_jsonl(path)
