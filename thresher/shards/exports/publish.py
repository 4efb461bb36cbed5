"""Publishing an export: it appears whole, with a manifest of what is in it, on a disk or a store.

An export is many files (``.bin`` + ``.idx`` pairs, MDS shards and their ``index.json``, JSONL
parts) that are only usable together, so publishing each file atomically is not enough: a
trainer started while an export is written must find either no export or a complete one.

*On a local disk* the export is written into a temporary directory beside the destination, named
by the rule of :mod:`thresher.io` (so a killed export's leftover counts as ours), and renamed into
place when every file and the manifest are written. A failed export removes its temporary
directory and leaves the destination as it was.

*On an object store* (``s3://``, ``gs://``, any fsspec URI) there is no rename. The writers build
each file in a local staging directory; once a file is complete it is hashed, uploaded whole (one
PUT or one completed multipart upload: visible complete or not at all) and removed locally, so the
local disk holds about one file per split at a time, not the export. ``manifest.json`` is uploaded
last: it is the export's completion record, and an export on a store is complete exactly when its
manifest is there. While it is written the prefix holds :data:`EXPORT_MARKER`, claimed with a
conditional create (``If-None-Match: *``), so two exports never write one prefix and a killed
export's files are known as ours. A failed export removes what it uploaded and its marker; a
killed one leaves them for ``--overwrite`` to replace. Replacing an earlier export on a store
removes it first (there is no rename to swap two versions), so while ``--overwrite`` runs, and if
it fails, the prefix holds no complete export.

An existing destination is replaced only when asked (``overwrite``) and only when it is an
export of ours (it holds our manifest, or our marker); an empty directory is taken as free.
Anything else is refused, so an export never deletes a user's files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from thresher.errors import OutputProblem
from thresher.io import PROBE_PREFIX, Store, _publish, _temp_name, scrub_secrets, sha256_file

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "thresher.export"
EXPORT_VERSION = 1
EXPORT_MANIFEST = "manifest.json"
EXPORT_MARKER = ".thresher-export-incomplete"
"""On an object store: the object that says an export is being written to (or was killed in) this
prefix; removed once the manifest is uploaded."""


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


class ExportDir:
    """Where an exporter writes: :meth:`path` gives the local file to write ``rel`` into, and
    :meth:`finished` says the file is complete. Locally that is the whole story (the directory is
    renamed into place at the end); on an object store a finished file is hashed, uploaded and
    removed from the staging directory."""

    def __init__(self, local: Path, store: Store | None = None) -> None:
        self.local = local
        self.store = store
        self._sent: dict[str, tuple[int, str]] = {}  # rel -> (bytes, sha256) of uploaded files

    def path(self, rel: str) -> Path:
        """The local file to write ``rel`` into (its directory created)."""
        path = self.local / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def finished(self, rel: str) -> None:
        """``rel`` is complete and will not change: on an object store it is uploaded now."""
        if self.store is None:
            return
        path = self.local / rel
        self._sent[rel] = (path.stat().st_size, sha256_file(path))
        self.store.upload(path, rel)
        path.unlink()

    def checksum(self, rel: str) -> tuple[int, str]:
        """(bytes, sha256) of a finished file."""
        if rel in self._sent:
            return self._sent[rel]
        path = self.local / rel
        return path.stat().st_size, sha256_file(path)

    @property
    def uploaded(self) -> list[str]:
        return list(self._sent)


def is_export(path: Path | Store) -> bool:
    """Whether ``path`` (a local directory or a store) holds an export this module published."""
    try:
        if isinstance(path, Store):
            return path.read_json(EXPORT_MANIFEST).get("format") == EXPORT_FORMAT
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


def _store_files(store: Store) -> list[str]:
    """The files below a store's root, without probe objects (:meth:`Store.probe`) a killed
    process may have left."""
    return [f for f in store.find() if not f.rsplit("/", 1)[-1].startswith(PROBE_PREFIX)]


def check_store_destination(store: Store, overwrite: bool) -> bool:
    """:func:`check_destination` for a prefix on an object store; True when it holds an export
    of ours (complete or not) that ``overwrite`` lets this export replace."""
    uri = store.uri
    if store.exists() and not store.isdir():
        raise OutputProblem(f"{uri} exists and is not a directory; give another destination")
    files = _store_files(store)
    if not files:
        return False
    if EXPORT_MANIFEST in files and is_export(store):
        if not overwrite:
            raise OutputProblem(f"{uri} already holds an export; give --overwrite to replace it")
        return True
    if EXPORT_MARKER in files:
        if not overwrite:
            raise OutputProblem(
                f"{uri} holds an unfinished export (a failed or killed one); give --overwrite to replace it"
            )
        return True
    raise OutputProblem(f"{uri} holds files that are not a thresher export; give another destination")


def open_destination(dst: str | os.PathLike, overwrite: bool) -> Store:
    """The destination as a store, checked before any work: a malformed URI is a usage error; on
    an object store a probe write (missing bucket, credentials, denied write: one line, exit 4),
    then the rules of :func:`check_destination`."""
    store = Store.from_uri(dst)
    if store.is_local:
        check_destination(Path(store.root), overwrite)
    else:
        store.probe()
        check_store_destination(store, overwrite)
    return store


@contextmanager
def export_directory(dst: str | os.PathLike | Store, *, overwrite: bool = False) -> Iterator[ExportDir]:
    """Yield an :class:`ExportDir` to write the export into; publish it as ``dst`` when the block
    ends without an exception (replacing an older export of ours when ``overwrite``), remove
    what was written when the block raises."""
    store = dst if isinstance(dst, Store) else Store.from_uri(dst)
    if not store.is_local:
        with _store_export(store, overwrite) as out:
            yield out
        return
    dst = Path(store.root)
    check_destination(dst, overwrite)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(dst)
    tmp.mkdir()
    try:
        yield ExportDir(tmp)
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


def _remove_export(store: Store) -> None:
    """An earlier export of ours, manifest first (from then on it is not a complete export)."""
    files = store.find()
    if EXPORT_MANIFEST in files:
        store.rm(EXPORT_MANIFEST)
    for rel in files:
        if rel not in (EXPORT_MANIFEST, EXPORT_MARKER):
            store.rm(rel)
    logger.info("removed the earlier export in %s (--overwrite)", store.uri)


@contextmanager
def _store_export(store: Store, overwrite: bool) -> Iterator[ExportDir]:
    if check_store_destination(store, overwrite):
        _remove_export(store)
        store.rm(EXPORT_MARKER)
    marker = json.dumps({"format": EXPORT_FORMAT, "state": "writing", "pid": os.getpid()}).encode()
    if not store.create_new(EXPORT_MARKER, marker + b"\n"):
        raise OutputProblem(
            f"{store.uri}: another export started writing here meanwhile; give another destination"
        )
    staging = Path(tempfile.mkdtemp(prefix=".thresher-export-"))
    out = ExportDir(staging, store)
    try:
        try:
            yield out
            out.finished(EXPORT_MANIFEST)  # last: the export is complete once its manifest is there
        except BaseException:
            _discard(store, out.uploaded)
            raise
        store.rm(EXPORT_MARKER)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _discard(store: Store, uploaded: list[str]) -> None:
    """A failed export's uploaded files and marker; a failure here is logged (the marker, if it
    stays, lets ``--overwrite`` replace what is left)."""
    try:
        for rel in uploaded:
            store.rm(rel)
        store.rm(EXPORT_MARKER)
    except Exception as exc:
        logger.warning(
            "could not remove the failed export's files in %s (%s); --overwrite replaces them",
            store.uri,
            scrub_secrets(f"{type(exc).__name__}: {exc}"),
        )


def write_manifest(
    out: ExportDir, *, fmt: str, source: dict[str, Any], files: list[ExportedFile], settings: dict[str, Any]
) -> dict[str, Any]:
    """Hash every file and write ``manifest.json``: counts per split and per file, sha256s."""
    for f in files:
        f.bytes, f.sha256 = out.checksum(f.path)
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
    out.path(EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return manifest
