"""``OUTPUT/manifest.json``: what a finished run published, with a checksum for every file.

Downstream jobs (a training run, a copy to object storage) read this one file instead of listing
directories, and can tell a complete output from one a crashed or concurrent run left half
written: the manifest is written last, atomically, and only after the documents on disk were
checked against the run's own ``stats.json``.

Layout of the manifest::

    format, version, created_at, output      identity of the file and of the output directory
    run                                      free key/values from the caller (dag id, run id, config)
    totals                                   documents, document shards, bytes of documents
    documents / dropped                      [{path, rows, bytes, sha256}] per Parquet shard
    stats                                    {path, bytes, sha256, documents}
    tokens                                   the token manifest ({path, bytes, sha256, totals}), if any
    tokenizer / crawl / report               their files ({path, bytes, sha256}), if any

Run it as ``python -m thresher.orchestration.manifest OUTPUT [--meta key=value ...]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from thresher.io import sha256_file, write_json_atomic

logger = logging.getLogger(__name__)

FORMAT = "thresher.run-manifest"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


class ManifestError(RuntimeError):
    """The output directory is not a complete, self-consistent run."""


def file_entry(root: Path, path: Path) -> dict[str, Any]:
    return {
        "path": path.relative_to(root).as_posix(),
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }


def parquet_entries(root: Path, folder: Path) -> list[dict[str, Any]]:
    """One entry per complete Parquet shard; row counts come from the footer, not a full read.

    Hidden files are the temporary names of writes in progress and are not part of the output."""
    entries = []
    for path in sorted(folder.glob("*.parquet")):
        if path.name.startswith("."):
            continue
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except Exception as exc:  # a truncated footer: report the file, do not publish it
            raise ManifestError(f"{path}: not a readable Parquet file ({exc})") from exc
        entries.append({**file_entry(root, path), "rows": rows})
    return entries


def _files_under(root: Path, folder: Path) -> list[dict[str, Any]]:
    return [
        file_entry(root, p) for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")
    ]


def _tokens_entry(root: Path, tokens_dir: Path) -> dict[str, Any]:
    from thresher.shards.tokens import load_manifest, verify_tokens_dir

    problems = verify_tokens_dir(tokens_dir)
    if problems:
        raise ManifestError(
            f"{tokens_dir}: token shards disagree with their manifest: " + "; ".join(problems[:5])
        )
    tokens_manifest = load_manifest(tokens_dir)
    entry = file_entry(root, tokens_dir / "manifest.json")
    entry["totals"] = tokens_manifest.get("totals", {})
    entry["shards"] = len(tokens_manifest.get("shards", []))
    return entry


def build_manifest(output: str | os.PathLike, run: dict[str, Any] | None = None) -> dict[str, Any]:
    """Inventory and check a finished run's output directory; raises :class:`ManifestError`."""
    from thresher.run.layout import RunLayout

    layout = RunLayout.at(output)
    root, documents_dir, stats_path = layout.root, layout.documents_dir, layout.stats
    if not documents_dir.is_dir() or not stats_path.is_file():
        raise ManifestError(f"{root}: no documents/ and stats.json here; has `thresher run` finished?")
    try:
        stats = json.loads(stats_path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{stats_path}: not valid JSON ({exc})") from exc
    documents = parquet_entries(root, documents_dir)
    rows = sum(d["rows"] for d in documents)
    if rows != stats.get("documents"):
        raise ManifestError(
            f"{root}: documents/ holds {rows} rows in {len(documents)} shards but stats.json says "
            f"{stats.get('documents')}: the output is incomplete or from two different runs"
        )
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "output": str(root),
        "run": dict(run or {}),
        "totals": {
            "documents": rows,
            "document_shards": len(documents),
            "document_bytes": sum(d["bytes"] for d in documents),
        },
        "documents": documents,
        "stats": {**file_entry(root, stats_path), "documents": stats.get("documents")},
    }
    if layout.dropped_dir.is_dir():
        manifest["dropped"] = parquet_entries(root, layout.dropped_dir)
    if layout.tokens_manifest.is_file():
        manifest["tokens"] = _tokens_entry(root, layout.tokens_dir)
    if layout.tokenizer_dir.is_dir():
        manifest["tokenizer"] = _files_under(root, layout.tokenizer_dir)
    if (root / "crawl" / "warc").is_dir():
        crawl = root / "crawl"
        manifest["crawl"] = [file_entry(root, p) for p in sorted((crawl / "warc").glob("*.warc.gz"))]
        if (crawl / "crawl-stats.json").is_file():
            manifest["crawl"].append(file_entry(root, crawl / "crawl-stats.json"))
    if layout.report.is_file():
        manifest["report"] = file_entry(root, layout.report)
    return manifest


def write_manifest(output: str | os.PathLike, run: dict[str, Any] | None = None) -> Path:
    """Build the manifest and rename it into place, so a reader never sees half a file."""
    manifest = build_manifest(output, run)
    final = Path(manifest["output"]) / MANIFEST_NAME
    write_json_atomic(final, manifest, indent=2, ensure_ascii=False)
    logger.info(
        "%s: %d documents in %d shards%s",
        final,
        manifest["totals"]["documents"],
        manifest["totals"]["document_shards"],
        ", tokens listed" if "tokens" in manifest else "",
    )
    return final


def _parse_meta(pairs: list[str]) -> dict[str, str]:
    meta = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--meta expects KEY=VALUE, got {pair!r}")
        meta[key] = value
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m thresher.orchestration.manifest",
        description="Check a finished run's output directory and write OUTPUT/manifest.json.",
    )
    parser.add_argument("output", help="the run's output directory (with documents/ and stats.json)")
    parser.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='recorded under "run" in the manifest (repeatable)',
    )
    args = parser.parse_args(argv)
    try:
        meta = _parse_meta(args.meta)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        path = write_manifest(args.output, meta)
    except (ManifestError, ValueError, FileNotFoundError) as exc:
        logger.error("%s", exc)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
