"""What an export reads: a finished run's token shards (and documents), checked before any writing.

An export never reads a run that is still going or one whose files do not match its records: a
run is finished when ``stats.json`` exists (written last), token shards are complete when
``tokens/manifest.json`` exists and every shard it lists has the recorded size and sha256. Anything
else is an :class:`~thresher.errors.InputProblem`, one line naming what is missing and what to do.

Documents are read in the order of the token shards (manifest order, row group by row group), so
every format holds the same documents, in the same order and split, as the Parquet token shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from thresher.errors import InputProblem
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
    """A finished run's output directory (``root``) or a bare tokens directory (``root`` is None)."""

    path: Path
    root: Path | None
    tokens_dir: Path | None
    manifest: dict[str, Any] | None

    @classmethod
    def open(
        cls, src: str | os.PathLike, *, need_tokens: bool, need_documents: bool, finished: bool = True
    ) -> ExportSource:
        """Check ``src`` is something an export can read, or raise :class:`InputProblem`.

        ``finished=False`` is for a run exporting its own output at its end, before its
        ``stats.json`` is written."""
        path = Path(src)
        if not path.is_dir():
            raise InputProblem(f"{path}: no such directory (give a finished run's output directory)")
        if (path / MANIFEST_NAME).exists() and not (path / "documents").is_dir():
            root, tokens_dir = None, path  # a tokens directory on its own (`thresher shards sample`)
            if need_documents:
                raise InputProblem(
                    f"{path}: a tokens directory holds no document text; give the run's output directory"
                )
        else:
            root, tokens_dir = path, path / "tokens"
            if not (path / "documents").is_dir():
                raise InputProblem(f"{path}: not a run's output directory (no documents/ in it)")
            if finished and not (path / RUN_FINISHED_FILE).exists():
                raise InputProblem(
                    f"{path}: not a finished run (no {RUN_FINISHED_FILE}); finish it with --resume first"
                )
            if not (tokens_dir / MANIFEST_NAME).exists():
                if need_tokens:
                    raise InputProblem(
                        f"{path}: the run has no token shards (no tokens/{MANIFEST_NAME}); "
                        f"run `thresher tokenize {path}` first"
                    )
                tokens_dir = None
        manifest = None
        if tokens_dir is not None:
            try:
                manifest = load_manifest(tokens_dir)
                problems = verify_tokens_dir(tokens_dir)
            except (FileNotFoundError, ValueError, KeyError, ShardError) as exc:
                raise InputProblem(f"{tokens_dir}: not a usable tokens directory: {exc}") from exc
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise InputProblem(
                    f"{tokens_dir}: token shards do not match the manifest: {problems[0]}{more}"
                )
        return cls(path, root, tokens_dir, manifest)

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

    def token_blocks(self, split: str, columns: tuple[str, ...] = ("id", "tokens")) -> Iterator[TokenBlock]:
        """The split's documents, row group by row group, in manifest order."""
        for info in self.shards(split):
            path = self.tokens_dir / info.path
            try:
                pf = pq.ParquetFile(path, page_checksum_verification=True)
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

    # --------------------------------------------------------------- documents

    def documents_files(self) -> list[Path]:
        return sorted(p for p in (self.root / "documents").glob("*.parquet") if not p.name.startswith("."))

    def documents_of_shard(self, token_shard: str) -> Path:
        """The documents shard a token shard was encoded from."""
        match = _TOKEN_SHARD.match(token_shard)
        path = self.root / "documents" / f"{match['documents']}.parquet" if match else None
        if path is None or not path.exists():
            raise InputProblem(
                f"{self.tokens_dir / token_shard}: no documents shard of that name in {self.root / 'documents'}"
            )
        return path

    def tokens_fingerprint(self) -> str | None:
        """sha256 of the token manifest: which token shards an export was made from."""
        if self.tokens_dir is None:
            return None
        return hashlib.sha256((self.tokens_dir / MANIFEST_NAME).read_bytes()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """What the export manifest records about its source."""
        out: dict[str, Any] = {"path": str(self.path.absolute())}
        if self.manifest is not None:
            out.update(
                tokens_manifest_sha256=self.tokens_fingerprint(),
                tokenizer=self.manifest["tokenizer"],
                config_hash=self.manifest.get("config_hash"),
                split=self.manifest.get("split"),
            )
        return json.loads(json.dumps(out))
