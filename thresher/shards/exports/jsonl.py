"""Documents as gzipped JSON Lines with dolma's and datatrove's field names.

``SPLIT/SPLIT-NNNNN.jsonl.gz``, one document a line::

    {"id": "...", "text": "...", "source": "...",
     "metadata": {"url": ..., "warc_date": ..., "language": ..., "language_score": ...,
                  "scores": {"filter": value, ...}, "title": ..., "hostname": ..., ...}}

``id``, ``text`` and ``metadata`` (an object) are what datatrove's ``JsonlWriter`` and dolma's
tools read; dolma also wants ``source`` at the top. ``metadata`` holds the document's own
metadata (title, date, hostname, ... from extraction) with the run's columns over it.
``datasets.load_dataset("json", data_files=...)``, Levanter and OLMo's tooling read these files.

With token shards, documents come in the token shards' order and split (each token shard names
the documents shard it was encoded from, and every id is looked up there), so the text of line k
encodes to the tokens of document k; a run without a tokenize step exports all its documents as
``train``, in documents order. Files are cut at ``max_file_bytes`` of JSON before compression;
gzip headers carry no time or name, so the same run exports to the same bytes.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

from thresher.errors import InputProblem
from thresher.shards.exports.publish import ExportDir, ExportedFile
from thresher.shards.exports.source import ExportSource

COLUMNS = ("id", "text", "url", "warc_date", "language", "language_score", "source", "metadata", "scores")


def _json_object(raw: str | None, what: str, doc_id: str) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InputProblem(f"document {doc_id!r}: {what} is not JSON: {exc}") from exc
    return value if isinstance(value, dict) else {what: value}


def record(row: dict[str, Any]) -> dict[str, Any]:
    """A documents row as a dolma/datatrove document."""
    doc_id = row["id"]
    metadata = _json_object(row.get("metadata"), "metadata", doc_id)
    metadata.update(
        url=row.get("url"),
        warc_date=row.get("warc_date"),
        language=row.get("language"),
        language_score=row.get("language_score"),
        source=row.get("source"),
        scores=_json_object(row.get("scores"), "scores", doc_id),
    )
    return {"id": doc_id, "text": row["text"], "source": row.get("source") or "", "metadata": metadata}


def _read_documents(source: ExportSource, rel: str) -> list[dict[str, Any]]:
    return source.read_documents(rel, COLUMNS).to_pylist()


def documents_in_token_order(source: ExportSource, split: str) -> Iterator[dict[str, Any]]:
    """The split's documents rows, in the order of its token shards."""
    loaded: tuple[str, dict[str, dict[str, Any]]] | None = None
    for block in source.token_blocks(split, columns=("id",)):
        rel = source.documents_of_shard(block.shard)
        if loaded is None or loaded[0] != rel:
            loaded = (rel, {row["id"]: row for row in _read_documents(source, rel)})
        rows = loaded[1]
        for doc_id in block.ids:
            row = rows.get(doc_id)
            if row is None:
                raise InputProblem(
                    f"{source.token_shard_uri(block.shard)}: document {doc_id!r} is not in "
                    f"{source.documents_uri(rel)}"
                )
            yield row


def all_documents(source: ExportSource) -> Iterator[dict[str, Any]]:
    for rel in source.documents_files():
        yield from _read_documents(source, rel)


class _PartWriter:
    def __init__(self, out: ExportDir, split: str, max_bytes: int) -> None:
        self.out, self.split, self.max_bytes = out, split, max_bytes
        self.files: list[ExportedFile] = []
        self._gz: gzip.GzipFile | None = None

    def add(self, line: bytes) -> None:
        if self._gz is not None and self._size + len(line) > self.max_bytes:
            self._close_part()
        if self._gz is None:
            rel = f"{self.split}/{self.split}-{len(self.files):05d}.jsonl.gz"
            self._raw = open(self.out.path(rel), "wb")
            self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0)
            self.files.append(ExportedFile(rel, self.split, documents=0, tokens=None))
            self._size = 0
        self._gz.write(line)
        self._size += len(line)
        self.files[-1].documents += 1

    def _close_part(self) -> None:
        self._gz.close()
        self._raw.close()
        self._gz = None
        self.out.finished(self.files[-1].path)

    def close(self) -> list[ExportedFile]:
        if self._gz is not None:
            self._close_part()
        return self.files


def write_jsonl(source: ExportSource, out: ExportDir, max_file_bytes: int) -> list[ExportedFile]:
    """Write every split as ``out/SPLIT/SPLIT-NNNNN.jsonl.gz``; returns the files written."""
    files: list[ExportedFile] = []
    for split in source.splits():
        rows = all_documents(source) if source.manifest is None else documents_in_token_order(source, split)
        writer = _PartWriter(out, split, max_file_bytes)
        for row in rows:
            writer.add(json.dumps(record(row), ensure_ascii=False).encode("utf-8") + b"\n")
        files += writer.close()
    return files
