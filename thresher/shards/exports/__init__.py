"""Exports of a finished run for the trainers people use: one module per format, one registry.

=========  ==============================================  ===================================
format     files (per split: train, validation)            read by
=========  ==============================================  ===================================
megatron   ``SPLIT/SPLIT-NNNNN.bin`` + ``.idx``            Megatron-LM / NeMo ``IndexedDataset``
mds        ``SPLIT/shard.NNNNN.mds`` + ``index.json``      ``streaming.StreamingDataset``
jsonl      ``SPLIT/SPLIT-NNNNN.jsonl.gz``                  ``datasets``, dolma, datatrove, Levanter
llmc       ``train_NNNNNN.bin``, ``val_NNNNNN.bin``        llm.c
nanogpt    ``train.bin``, ``val.bin``                      nanoGPT
=========  ==============================================  ===================================

Every export holds the documents of the token shards, in their order and split (``jsonl`` the
documents' text and metadata, the others their tokens), a ``manifest.json`` with counts per split
and per file and each file's sha256, and appears at once (:mod:`.publish`). The source must be a
finished run (:mod:`.source`). ``thresher shards export FORMAT SRC DST`` runs one; a config's
``export:`` section (:class:`ExportConfig`) runs them at the end of a run, into
``OUTPUT/exports/FORMAT`` (the run's export step, :mod:`thresher.run.steps`). Source and
destination may each be a local directory or a URI (``s3://``, ``gs://``, any fsspec URI): token
shards on a store are read through the loaders' checked shard cache, files for a store are built
locally and uploaded one by one as each is complete, the manifest last (:mod:`.publish`).
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from thresher.dataconfig import option
from thresher.errors import UsageError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exporter:
    """A format: where its writer is (imported when used, so the CLI starts without numpy), the
    file size it cuts at unless told, what it needs of the run."""

    name: str
    writer: str  # "module:function" in this package, called (source, ExportDir, max_file_bytes)
    default_max_file_bytes: int | None  # None: no limit of ours (the format's own, if any)
    summary: str
    needs_tokens: bool = True
    needs_documents: bool = False

    def write(self, source: Any, out: Any, max_file_bytes: int | None) -> list[Any]:
        module, function = self.writer.split(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), function)(source, out, max_file_bytes)


EXPORTERS: dict[str, Exporter] = {
    e.name: e
    for e in (
        Exporter("megatron", "megatron:write_megatron", 1 << 30, "Megatron-LM indexed dataset (.bin + .idx)"),
        Exporter("mds", "mds:write_mds", 1 << 26, "MosaicML Streaming MDS shards + index.json (id, tokens)"),
        Exporter(
            "jsonl",
            "jsonl:write_jsonl",
            1 << 28,
            "documents as jsonl.gz (id, text, source, metadata)",
            needs_tokens=False,
            needs_documents=True,
        ),
        Exporter("llmc", "flatbin:write_llmc", None, "llm.c .bin files (256 x int32 header, then tokens)"),
        Exporter("nanogpt", "flatbin:write_nanogpt", None, "nanoGPT train.bin / val.bin (uint16 tokens)"),
    )
}
FORMATS = tuple(EXPORTERS)


@dataclass
class ExportConfig:
    """A config's ``export:`` section: formats the run writes at its end, after tokenizing, into
    ``OUTPUT/exports/FORMAT`` (``thresher shards export FORMAT OUTPUT DST`` does the same later)."""

    formats: list[str] = field(default_factory=list)
    """Any of megatron, mds, jsonl, llmc, nanogpt."""
    max_file_bytes: int | None = option(None, ge=1)
    """Cut each split's files at this size (default: each format's own, see ``--max-file-bytes``)."""

    def validate(self, where: str) -> None:
        for fmt in self.formats:
            if fmt not in EXPORTERS:
                raise ValueError(f"{where}.formats: unknown format {fmt!r}; one of {', '.join(FORMATS)}")
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"{where}.formats: a format is listed twice: {self.formats}")

    def needs_tokens(self) -> list[str]:
        return [fmt for fmt in self.formats if EXPORTERS[fmt].needs_tokens]


def export(
    fmt: str,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    overwrite: bool = False,
    max_file_bytes: int | None = None,
    finished: bool = True,
) -> dict[str, Any]:
    """Export the run (or tokens directory) ``src`` as ``fmt`` into the directory ``dst``; returns
    the export's manifest. Either may be a local path or a URI (``s3://bucket/prefix``, any fsspec
    URI). The destination is checked first (a probe write on an object store), then the source,
    before any file is written. ``finished=False`` lets a run export itself before its stats are
    written."""
    from thresher.shards.exports.publish import export_directory, open_destination, write_manifest
    from thresher.shards.exports.source import ExportSource

    exporter = EXPORTERS.get(fmt)
    if exporter is None:
        raise UsageError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
    if max_file_bytes is not None and max_file_bytes < 1:
        raise UsageError(f"max_file_bytes must be positive, got {max_file_bytes}")
    target = open_destination(dst, overwrite)
    source = ExportSource.open(
        src, need_tokens=exporter.needs_tokens, need_documents=exporter.needs_documents, finished=finished
    )
    limit = max_file_bytes or exporter.default_max_file_bytes
    try:
        with export_directory(target, overwrite=overwrite) as out:
            files = exporter.write(source, out, limit)
            manifest = write_manifest(
                out, fmt=fmt, source=source.describe(), files=files, settings={"max_file_bytes": limit}
            )
    finally:
        source.close()
    for split, s in manifest["splits"].items():
        tokens = s["tokens"] if s["tokens"] is not None else "-"
        logger.info(
            "%s export %s: %d documents, %s tokens, %d files -> %s",
            fmt,
            split,
            s["documents"],
            tokens,
            s["files"],
            target.uri,
        )
    return manifest
