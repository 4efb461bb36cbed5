"""Publishing an export: the whole directory appears at once, with a manifest of what is in it.

An export is many files (``.bin`` + ``.idx`` pairs, MDS shards and their ``index.json``, JSONL
parts) that are only usable together, so publishing each file atomically is not enough: a
trainer started while an export is written must find either no export or a complete one. The
export is written into a temporary directory beside the destination, named by the rule of
:mod:`thresher.io` (so a killed export's leftover counts as ours), and renamed into place when
every file and the manifest are written. A failed export removes its temporary directory and
leaves the destination as it was.

An existing destination is replaced only when asked (``overwrite``) and only when it is an
export of ours (it holds our manifest); an empty directory is taken as free. Anything else is
refused, so an export never deletes a user's files.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from thresher.errors import OutputProblem
from thresher.io import _publish, _temp_name, sha256_file

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "thresher.export"
EXPORT_VERSION = 1
EXPORT_MANIFEST = "manifest.json"


@dataclass
class ExportedFile:
    """One file of an export, as its manifest records it."""

    path: str  # relative to the export directory
    split: str
    documents: int = 0  # documents whose content the file holds (0 for an index of other files)
    tokens: int | None = 0  # their tokens; None for text (jsonl)
    role: str = "data"  # "data", or "index": a file that lists the data files (.idx, index.json)
    bytes: int = 0
    sha256: str = ""


def is_export(path: Path) -> bool:
    """Whether ``path`` is an export directory this module published."""
    try:
        return json.loads((path / EXPORT_MANIFEST).read_text()).get("format") == EXPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_destination(dst: Path, overwrite: bool) -> None:
    """Raise :class:`OutputProblem` unless ``dst`` is free, empty, or an export we may replace."""
    if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
        raise OutputProblem(f"{dst} exists and is not a directory; give another destination")
    if not dst.exists() or not any(dst.iterdir()):
        return
    if not is_export(dst):
        raise OutputProblem(f"{dst} holds files that are not a thresher export; give another destination")
    if not overwrite:
        raise OutputProblem(f"{dst} already holds an export; give --overwrite to replace it")


@contextmanager
def export_directory(dst: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory to write the export into; publish it as ``dst`` when
    the block ends without an exception (replacing an older export of ours when ``overwrite``),
    remove it when the block raises."""
    dst = Path(dst)
    check_destination(dst, overwrite)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(dst)
    tmp.mkdir()
    try:
        yield tmp
        check_destination(dst, overwrite)  # again: another writer may have published meanwhile
        old = None
        if dst.exists():
            old = _temp_name(dst)
            _publish(dst, old)  # move the previous export aside, then put the new one in place
        _publish(tmp, dst)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_manifest(
    out: Path, *, fmt: str, source: dict[str, Any], files: list[ExportedFile], settings: dict[str, Any]
) -> dict[str, Any]:
    """Hash every file and write ``out/manifest.json``: counts per split and per file, sha256s."""
    for f in files:
        path = out / f.path
        f.bytes = path.stat().st_size
        f.sha256 = sha256_file(path)
    splits: dict[str, Any] = {}
    for f in files:
        s = splits.setdefault(f.split, {"files": 0, "documents": 0, "tokens": 0, "bytes": 0})
        s["files"] += 1
        s["bytes"] += f.bytes
        s["documents"] += f.documents
        s["tokens"] = None if f.tokens is None or s["tokens"] is None else s["tokens"] + f.tokens
    manifest = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "export": fmt,
        "settings": settings,
        "source": source,
        "splits": splits,
        "files": [asdict(f) for f in files],
    }
    (out / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return manifest
