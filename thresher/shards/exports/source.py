"""What an export reads: a finished run's token shards (and documents), checked before any writing.

An export never reads a run that is still going or one whose files do not match its records: a
run is finished when ``stats.json`` exists (written last), token shards are complete when
``tokens/manifest.json`` exists and every shard it lists has the recorded size and sha256. Anything
else is an :class:`~thresher.errors.InputProblem`, one line naming what is missing and what to do.

Documents are read in the order of the token shards (manifest order, row group by row group), so
every format holds the same documents, in the same order and split, as the Parquet token shards.

The source may be a local directory or a URI (``s3://bucket/run``, any fsspec URI), read through
:class:`~thresher.io.Store`. On an object store the checks before writing are the listing's
(every shard there, with the manifest's size: one request), and each token shard is then read
through the loaders' :class:`~thresher.shards.cache.ShardCache` in a private temporary directory:
downloaded whole once, checked against the manifest's sha256 before a byte of it is used (a
shard that does not match stops the export, which then publishes nothing), and removed when the
next one arrives or the export ends. Hashing every shard before the export as well would read it
twice over the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.errors import InputProblem
from thresher.io import Store
from thresher.shards.cache import ShardCache, ShardCacheError
from thresher.shards.tokens import (
    FILE_STEM,
    MANIFEST_NAME,
    SPLITS,
    ShardError,
    ShardInfo,
    load_manifest,
    verify_tokens_dir,
)

RUN_FINISHED_FILE = "stats.json"
_TOKEN_SHARD = re.compile(rf"^(?:{'|'.join(FILE_STEM.values())})-(?P<documents>.+)-\d{{5}}\.parquet$")
"""``shard-SHARD-NNNNN.parquet`` / ``val-SHARD-NNNNN.parquet``: the tokens of ``documents/SHARD.parquet``
(see :mod:`thresher.tokenize.step`)."""


@dataclass
class TokenBlock:
    """One row group of a token shard: its document ids, their tokens back to back, and the
    ``len(ids) + 1`` offsets of each document in ``tokens``."""

    shard: str
    ids: list[str]
    tokens: np.ndarray
    offsets: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass
class ExportSource:
    """A finished run's output directory (``root``) or a bare tokens directory (``root`` is None),
    on a local disk or an object store."""

    store: Store
    root: Store | None
    tokens: Store | None
    manifest: dict[str, Any] | None
    _cache: ShardCache | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls, src: str | os.PathLike, *, need_tokens: bool, need_documents: bool, finished: bool = True
    ) -> ExportSource:
        """Check ``src`` is something an export can read, or raise :class:`InputProblem`.

        ``finished=False`` is for a run exporting its own output at its end, before its
        ``stats.json`` is written."""
        store = Store.from_uri(src)
        path = store.uri
        if not store.isdir():
            if not store.is_local:
                store.probe(write=False)  # a missing bucket or a denied read: its own line
            raise InputProblem(f"{path}: no such directory (give a finished run's output directory)")
        if store.exists(MANIFEST_NAME) and not store.isdir("documents"):
            root, tokens = None, store  # a tokens directory on its own (`thresher shards sample`)
            if need_documents:
                raise InputProblem(
                    f"{path}: a tokens directory holds no document text; give the run's output directory"
                )
        else:
            root, tokens = store, store.child("tokens")
            if not store.isdir("documents"):
                raise InputProblem(f"{path}: not a run's output directory (no documents/ in it)")
            if finished and not store.exists(RUN_FINISHED_FILE):
                raise InputProblem(
                    f"{path}: not a finished run (no {RUN_FINISHED_FILE}); finish it with --resume first"
                )
            if not tokens.exists(MANIFEST_NAME):
                if need_tokens:
                    raise InputProblem(
                        f"{path}: the run has no token shards (no tokens/{MANIFEST_NAME}); "
                        f"run `thresher tokenize {path}` first"
                    )
                tokens = None
        manifest = None
        if tokens is not None:
            try:
                manifest = load_manifest(tokens)
                problems = (
                    verify_tokens_dir(tokens) if tokens.is_local else _listing_problems(tokens, manifest)
                )
            except (FileNotFoundError, ValueError, KeyError, ShardError) as exc:
                raise InputProblem(f"{tokens.uri}: not a usable tokens directory: {exc}") from exc
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise InputProblem(
                    f"{tokens.uri}: token shards do not match the manifest: {problems[0]}{more}"
                )
        source = cls(store, root, tokens, manifest)
        if tokens is not None and not tokens.is_local:
            cache_dir = tempfile.mkdtemp(prefix="thresher-export-shards-")
            source._cache = ShardCache(tokens, cache_dir, max_bytes=1)  # one shard at a time
        return source

    def close(self) -> None:
        """Remove the downloaded shards (an object-store source)."""
        if self._cache is not None:
            shutil.rmtree(self._cache.directory, ignore_errors=True)
            self._cache = None

    # ------------------------------------------------------------------ tokens

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.manifest["tokenizer"]["dtype"])

    @property
    def eot_id(self) -> int:
        return int(self.manifest["tokenizer"]["eot_id"])

    def shards(self, split: str) -> list[ShardInfo]:
        """The split's token shards in manifest order, the order every loader reads them in."""
        return [ShardInfo.from_dict(s) for s in self.manifest["shards"] if s["split"] == split]

    def splits(self) -> list[str]:
        """The splits that hold documents (all documents are ``train`` when the run has no tokens)."""
        if self.manifest is None:
            return ["train"]
        return [s for s in SPLITS if self.manifest["totals"][s]["rows"]]

    def token_shard_uri(self, shard: str) -> str:
        return self.tokens.uri_of(shard)

    def _shard_file(self, info: ShardInfo) -> Any:
        """What pyarrow reads a token shard from: the local file, or its checked cached copy."""
        if self._cache is None:
            return self.tokens.local_path(info.path)
        try:
            return self._cache.open(info.path, info.bytes, info.sha256)
        except (ShardCacheError, FileNotFoundError) as exc:
            raise InputProblem(f"{self.tokens.uri}: token shards do not match the manifest: {exc}") from exc

    def token_blocks(self, split: str, columns: tuple[str, ...] = ("id", "tokens")) -> Iterator[TokenBlock]:
        """The split's documents, row group by row group, in manifest order."""
        for info in self.shards(split):
            path = self.token_shard_uri(info.path)
            source = self._shard_file(info)
            try:
                pf = pq.ParquetFile(source, page_checksum_verification=True)
                for rg, expected in enumerate(info.row_group_tokens):
                    table = pf.read_row_group(rg, columns=list(columns))
                    column = table.column("tokens").combine_chunks() if "tokens" in columns else None
                    ids = table.column("id").to_pylist() if "id" in columns else []
                    if column is None:
                        yield TokenBlock(info.path, ids, np.zeros(0, self.dtype), np.zeros(1, np.int64))
                        continue
                    offsets = column.offsets.to_numpy().astype(np.int64)
                    tokens = column.values.to_numpy()[offsets[0] : offsets[-1]]
                    offsets -= offsets[0]
                    if tokens.size != expected:
                        raise ShardError(
                            f"row group {rg} holds {tokens.size} tokens, the manifest says {expected}"
                        )
                    yield TokenBlock(info.path, ids, tokens.astype(self.dtype, copy=False), offsets)
            except (OSError, ShardError, ValueError) as exc:  # damaged after the checksum pass
                raise InputProblem(f"cannot read token shard {path}: {exc}") from exc
            finally:
                if isinstance(source, pa.NativeFile):
                    source.close()

    # --------------------------------------------------------------- documents

    def documents_files(self) -> list[str]:
        """The run's documents shards, as paths relative to the run's root, sorted."""
        names = self.root.ls("documents") if self.root.isdir("documents") else []
        return [f"documents/{n}" for n in names if n.endswith(".parquet") and not n.startswith(".")]

    def documents_uri(self, rel: str) -> str:
        return self.root.uri_of(rel)

    def read_documents(self, rel: str, columns: tuple[str, ...]) -> pa.Table:
        """The ``columns`` (those the file has) of a documents shard; ``id`` and ``text`` required."""
        local = self.root.local_path(rel)
        source = local if local is not None else pa.BufferReader(self.root.read_bytes(rel))
        schema = pq.read_schema(source)
        present = [c for c in columns if c in schema.names]
        if "id" not in present or "text" not in present:
            raise InputProblem(f"{self.documents_uri(rel)}: a documents shard needs id and text columns")
        return pq.read_table(source, columns=present)

    def documents_of_shard(self, token_shard: str) -> str:
        """The documents shard a token shard was encoded from (relative to the run's root)."""
        match = _TOKEN_SHARD.match(token_shard)
        rel = f"documents/{match['documents']}.parquet" if match else None
        if rel is None or not self.root.exists(rel):
            raise InputProblem(
                f"{self.token_shard_uri(token_shard)}: no documents shard of that name in "
                f"{self.root.uri_of('documents')}"
            )
        return rel

    def tokens_fingerprint(self) -> str | None:
        """sha256 of the token manifest: which token shards an export was made from."""
        if self.tokens is None:
            return None
        return hashlib.sha256(self.tokens.read_bytes(MANIFEST_NAME)).hexdigest()

    def describe(self) -> dict[str, Any]:
        """What the export manifest records about its source."""
        where = str(Path(self.store.root).absolute()) if self.store.is_local else self.store.uri
        out: dict[str, Any] = {"path": where}
        if self.manifest is not None:
            out.update(
                tokens_manifest_sha256=self.tokens_fingerprint(),
                tokenizer=self.manifest["tokenizer"],
                config_hash=self.manifest.get("config_hash"),
                split=self.manifest.get("split"),
            )
        return json.loads(json.dumps(out))


def _listing_problems(tokens: Store, manifest: dict[str, Any]) -> list[str]:
    """Every shard of the manifest missing from the store or of another size (one listing); the
    sha256 is checked when the shard is downloaded (:class:`ShardCache`)."""
    sizes = tokens.sizes()
    problems = []
    for d in manifest["shards"]:
        s = ShardInfo.from_dict(d)
        if s.path not in sizes:
            problems.append(f"missing: {tokens.uri_of(s.path)}")
        elif sizes[s.path] != s.bytes:
            problems.append(f"size {sizes[s.path]} != manifest {s.bytes}: {tokens.uri_of(s.path)}")
    return problems
