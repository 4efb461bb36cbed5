"""Token shards: ``OUTPUT/tokens/*.parquet`` (one row per document) and ``manifest.json``.

Layout of a tokens directory::

    tokens/shard-00000.parquet      train documents       (columns: id, tokens, n_tokens)
    tokens/val-00000.parquet        validation documents
    tokens/shard-w3-00000.parquet   a shard written by a parallel writer with prefix "w3"
    tokens/manifest.json            every shard's rows, tokens, bytes, sha256, row-group tokens;
                                    the tokenizer, the config hash, the split rule

The train/validation split is decided **per document** from a stable hash of its id, and each
shard file holds documents of one split only, so a loader reads just the files of its split and
the validation set never changes when more data is added or shards are re-cut.

Every write goes to a hidden temporary name in the same directory and is renamed into place
(:mod:`thresher.io`), so a
file that exists under its final name is complete. Re-writing a shard whose file already holds the
same documents (same ids, same token count) is skipped; a shard that holds something else is
replaced. Several writers (Ray tasks) may write into one directory at once as long as their names
differ (``prefix``); :func:`write_manifest` runs once afterwards, checks every shard and records it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.io import Store, atomic_path, sha256_file, write_json_atomic
from thresher.tokenize.bpe import token_dtype

logger = logging.getLogger(__name__)

FORMAT = "thresher.tokens"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
META_KEY = b"thresher.tokens"
SPLITS = ("train", "validation")
FILE_STEM = {"train": "shard", "validation": "val"}
SPLIT_RULE = (
    "per document: blake2b(id, digest_size=8) read as a big-endian integer, divided by 2**64; "
    "below validation_fraction -> validation, otherwise train. Each shard file holds one split."
)

DEFAULT_SHARD_TOKENS = 1 << 26  # 67M tokens: 128 MiB of uint16 before compression
DEFAULT_ROW_GROUP_TOKENS = 1 << 20  # the unit a loader reads and shuffles: ~2 MiB of uint16
MAX_SHARD_TOKENS = (1 << 31) - 1  # Arrow list offsets are int32
TOKENIZER_KEYS = ("path", "hash", "vocab_size", "eot_id", "dtype")


class ShardError(RuntimeError):
    """A shard file is missing, unreadable or does not match what was recorded for it."""


DTYPES = ("uint16", "uint32")


def dtype_name(dtype: Any) -> str:
    """``"uint16"`` or ``"uint32"`` for a numpy dtype or its name (what files and the manifest
    record); ``ValueError`` for any other type."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be uint16 or uint32, got {dtype!r}")
    return name


def split_of(doc_id: str, validation_fraction: float) -> str:
    """``"validation"`` for a stable ``validation_fraction`` of ids, else ``"train"``.

    blake2b rather than Python's ``hash`` so the answer is the same on every machine and run."""
    if validation_fraction <= 0.0:
        return "train"
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return "validation" if int.from_bytes(digest, "big") / 2.0**64 < validation_fraction else "train"


def tokens_schema(dtype: Any) -> pa.Schema:
    value_type = {"uint16": pa.uint16(), "uint32": pa.uint32()}[dtype_name(dtype)]
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("tokens", pa.list_(value_type), nullable=False),
            pa.field("n_tokens", pa.int32(), nullable=False),
        ]
    )


@dataclass
class ShardInfo:
    """What the manifest records about one shard file."""

    path: str  # file name inside the tokens directory
    split: str
    rows: int
    tokens: int
    bytes: int
    sha256: str
    dtype: str
    row_group_tokens: list[int] = field(default_factory=list)
    ids_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShardInfo:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _ids_digest(ids: Sequence[str]) -> str:
    h = hashlib.sha256()
    for doc_id in ids:
        h.update(doc_id.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _to_list_array(token_arrays: Any, dtype: str) -> pa.ListArray:
    """Token lists as one Arrow list array of ``dtype``; rejects ids that do not fit."""
    value_type = pa.uint16() if dtype == "uint16" else pa.uint32()
    if isinstance(token_arrays, pa.ChunkedArray):
        token_arrays = token_arrays.combine_chunks()
    if isinstance(token_arrays, pa.Array):
        if not pa.types.is_list(token_arrays.type) and not pa.types.is_large_list(token_arrays.type):
            raise TypeError(f"tokens must be a list array, got {token_arrays.type}")
        flat = token_arrays.flatten().to_numpy(zero_copy_only=False)
        lengths = token_arrays.value_lengths().to_numpy(zero_copy_only=False)
    else:
        arrays = [np.asarray(a) for a in token_arrays]
        lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
        flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    if flat.size and flat.dtype.kind not in "iu":
        raise TypeError(f"token ids must be integers, got {flat.dtype}")
    limit = np.iinfo(np.dtype(dtype)).max
    if flat.size and (int(flat.min()) < 0 or int(flat.max()) > limit):
        raise ValueError(f"token ids must lie in [0, {limit}] for {dtype}; got [{flat.min()}, {flat.max()}]")
    if flat.size > MAX_SHARD_TOKENS:
        raise ValueError(f"{flat.size} tokens in one shard; at most {MAX_SHARD_TOKENS}")
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(dtype, copy=False), value_type))


def _row_group_bounds(lengths: np.ndarray, row_group_tokens: int) -> list[tuple[int, int]]:
    """Consecutive row ranges of about ``row_group_tokens`` tokens each (a longer document alone)."""
    if len(lengths) == 0:
        return []
    before = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    bucket = before // row_group_tokens
    starts = np.flatnonzero(np.diff(bucket, prepend=-1))
    ends = np.append(starts[1:], len(lengths))
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def read_shard_meta(path: Path) -> dict[str, Any]:
    """The writer's metadata from a shard's footer; :class:`ShardError` naming the file otherwise."""
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise ShardError(f"token shard missing: {path}") from None
    except Exception as exc:
        raise ShardError(f"token shard unreadable: {path}: {exc}") from exc
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise ShardError(f"not a thresher token shard (no {META_KEY.decode()} metadata): {path}")
    return json.loads(raw)


def write_token_shard(
    out_dir: str | os.PathLike,
    name: str,
    ids: Sequence[str],
    token_arrays: Any,
    *,
    dtype: Any,
    split: str = "train",
    eot_id: int | None = None,
    row_group_tokens: int = DEFAULT_ROW_GROUP_TOKENS,
) -> ShardInfo:
    """Write one shard, ``out_dir/name.parquet``, atomically; skip it when already complete.

    ``token_arrays`` is a sequence of integer arrays/lists or an Arrow list array (what a Ray
    block carries); ``dtype`` is uint16 or uint32, a numpy dtype or its name. When ``eot_id`` is
    given every document must end with it. Empty documents are rejected: they carry no training
    signal and would make row counts disagree with the source.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    dtype = dtype_name(dtype)
    ids = [str(i) for i in ids]
    tokens = _to_list_array(token_arrays, dtype)
    if len(tokens) != len(ids):
        raise ValueError(f"shard {name}: {len(ids)} ids but {len(tokens)} token lists")
    lengths = tokens.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
    if len(lengths) and lengths.min() == 0:
        raise ValueError(f"shard {name}: document {ids[int(np.argmin(lengths))]!r} has no tokens")
    if eot_id is not None and len(lengths):
        last = tokens.flatten().to_numpy(zero_copy_only=False)[np.cumsum(lengths) - 1]
        bad = np.flatnonzero(last != eot_id)
        if bad.size:
            raise ValueError(
                f"shard {name}: {bad.size} documents do not end with <|endoftext|> ({eot_id}), "
                f"first {ids[int(bad[0])]!r}"
            )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"{name}.parquet"
    n_tokens = int(lengths.sum())
    ids_digest = _ids_digest(ids)
    if final.exists():
        try:
            meta = read_shard_meta(final)
        except ShardError:
            meta = {}
        if (
            meta.get("ids_sha256") == ids_digest
            and meta.get("tokens") == n_tokens
            and meta.get("dtype") == dtype
        ):
            logger.info("token shard %s already complete; skipped", final.name)
            return _info_from_file(final, meta)
        logger.warning("token shard %s holds other documents; replacing it", final)

    bounds = _row_group_bounds(lengths, row_group_tokens)
    rg_tokens = [int(lengths[a:b].sum()) for a, b in bounds]
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "split": split,
        "rows": len(ids),
        "tokens": n_tokens,
        "dtype": dtype,
        "eot_id": eot_id,
        "row_group_tokens": rg_tokens,
        "ids_sha256": ids_digest,
    }
    schema = tokens_schema(dtype).with_metadata({META_KEY: json.dumps(meta)})
    table = pa.table(
        [pa.array(ids, pa.string()), tokens, pa.array(lengths.astype(np.int32), pa.int32())], schema=schema
    )
    # No dictionary: token ids are near-uniform over a large vocabulary and plain pages
    # decode faster. No statistics on tokens: min/max of token ids prune nothing.
    with (
        atomic_path(final) as tmp,
        pq.ParquetWriter(
            tmp,
            schema,
            compression="zstd",
            use_dictionary=["id"],
            write_statistics=["n_tokens"],
            write_page_checksum=True,  # lets readers tell a damaged file from bad data
        ) as writer,
    ):
        for a, b in bounds:
            writer.write_table(table.slice(a, b - a), row_group_size=b - a)
    info = _info_from_file(final, meta)
    logger.info("wrote %s: %d docs, %d tokens, %d row groups", final.name, len(ids), n_tokens, len(bounds))
    return info


def _info_from_file(path: Path, meta: dict[str, Any]) -> ShardInfo:
    return ShardInfo(
        path=path.name,
        split=meta["split"],
        rows=meta["rows"],
        tokens=meta["tokens"],
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
        dtype=meta["dtype"],
        row_group_tokens=list(meta["row_group_tokens"]),
        ids_sha256=meta["ids_sha256"],
    )


class TokenShardWriter:
    """Streams tokenized documents into shards of about ``target_tokens`` tokens, per split.

    One writer per process (or Ray task); give concurrent writers distinct ``prefix`` values
    (``shard-<prefix>-00000.parquet``). Shard names depend only on the prefix and the order of the
    documents, so a rerun over the same input finds complete shards and skips them.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        dtype: Any,
        eot_id: int | None = None,
        validation_fraction: float = 0.0,
        target_tokens: int = DEFAULT_SHARD_TOKENS,
        row_group_tokens: int = DEFAULT_ROW_GROUP_TOKENS,
        prefix: str = "",
    ) -> None:
        if not 0.0 <= validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
        if not 0 < target_tokens <= MAX_SHARD_TOKENS:
            raise ValueError(f"target_tokens must be in (0, {MAX_SHARD_TOKENS}], got {target_tokens}")
        if prefix and not all(c.isalnum() or c in "_.-" for c in prefix):
            raise ValueError(f"prefix may hold letters, digits, '_', '.', '-' only: {prefix!r}")
        self.out_dir = Path(out_dir)
        self.dtype = dtype_name(dtype)
        self.eot_id = eot_id
        self.validation_fraction = validation_fraction
        self.target_tokens = target_tokens
        self.row_group_tokens = row_group_tokens
        self.prefix = prefix
        self.shards: list[ShardInfo] = []
        self._ids: dict[str, list[str]] = {s: [] for s in SPLITS}
        self._tokens: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
        self._pending: dict[str, int] = dict.fromkeys(SPLITS, 0)
        self._count: dict[str, int] = dict.fromkeys(SPLITS, 0)

    def add(self, doc_id: str, tokens: Any) -> None:
        split = split_of(doc_id, self.validation_fraction)
        arr = np.asarray(tokens)
        self._ids[split].append(doc_id)
        self._tokens[split].append(arr)
        self._pending[split] += arr.size
        if self._pending[split] >= self.target_tokens:
            self._flush(split)

    def add_batch(self, ids: Iterable[str], token_arrays: Iterable[Any]) -> None:
        for doc_id, tokens in zip(ids, token_arrays, strict=True):
            self.add(doc_id, tokens)

    def _flush(self, split: str) -> None:
        if not self._ids[split]:
            return
        stem = FILE_STEM[split]
        name = (
            f"{stem}-{self.prefix}-{self._count[split]:05d}"
            if self.prefix
            else f"{stem}-{self._count[split]:05d}"
        )
        info = write_token_shard(
            self.out_dir,
            name,
            self._ids[split],
            self._tokens[split],
            dtype=self.dtype,
            split=split,
            eot_id=self.eot_id,
            row_group_tokens=self.row_group_tokens,
        )
        self.shards.append(info)
        self._count[split] += 1
        self._ids[split], self._tokens[split], self._pending[split] = [], [], 0

    def close(self) -> list[ShardInfo]:
        """Write what is buffered; returns every shard this writer produced."""
        for split in SPLITS:
            self._flush(split)
        return self.shards

    def __enter__(self) -> TokenShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def list_shard_files(tokens_dir: str | os.PathLike) -> list[Path]:
    """Complete shard files in a directory (temporary files of unfinished writes excluded)."""
    return sorted(p for p in Path(tokens_dir).glob("*.parquet") if not p.name.startswith("."))


def write_manifest(
    tokens_dir: str | os.PathLike,
    *,
    tokenizer: dict[str, Any],
    config_hash: str,
    validation_fraction: float,
    shards: Sequence[ShardInfo | dict[str, Any]] | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Check the shards and write ``manifest.json`` atomically; returns the manifest.

    ``shards`` are the :class:`ShardInfo` results of the writers (e.g. gathered from Ray tasks);
    when omitted, every complete shard file in the directory is taken. Files present but not listed
    are left out with a warning (leftovers of an earlier run with other settings). With ``verify``
    each file's sha256, rows and tokens are recomputed from disk rather than trusted.
    """
    missing = [k for k in TOKENIZER_KEYS if k not in tokenizer]
    if missing:
        raise ValueError(f"tokenizer info lacks {missing}; need {list(TOKENIZER_KEYS)}")
    expected_dtype = dtype_name(tokenizer["dtype"])
    if expected_dtype != token_dtype(int(tokenizer["vocab_size"])).name:
        raise ValueError(
            f"tokenizer dtype {expected_dtype} does not fit vocab_size {tokenizer['vocab_size']}"
        )
    root = Path(tokens_dir)
    on_disk = list_shard_files(root)
    if shards is None:
        infos: list[ShardInfo] = [_info_from_file(p, read_shard_meta(p)) for p in on_disk]
    else:
        infos = [s if isinstance(s, ShardInfo) else ShardInfo.from_dict(s) for s in shards]
        listed = {s.path for s in infos}
        if len(listed) != len(infos):
            raise ValueError("the same shard is listed twice")
        stray = [p.name for p in on_disk if p.name not in listed]
        if stray:
            logger.warning(
                "%d shard files in %s are not part of this run and are left out: %s",
                len(stray),
                root,
                ", ".join(stray[:5]),
            )
        if verify:
            infos = [_verified(root, s) for s in infos]
    for s in infos:
        if s.dtype != expected_dtype:
            raise ShardError(
                f"{root / s.path}: tokens are {s.dtype} but the tokenizer needs {expected_dtype}"
            )
    infos.sort(key=lambda s: s.path)
    totals = {
        split: {
            "shards": sum(1 for s in infos if s.split == split),
            "rows": sum(s.rows for s in infos if s.split == split),
            "tokens": sum(s.tokens for s in infos if s.split == split),
        }
        for split in SPLITS
    }
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "tokenizer": {**{k: tokenizer[k] for k in TOKENIZER_KEYS}, "dtype": expected_dtype},
        "config_hash": config_hash,
        "split": {"validation_fraction": validation_fraction, "rule": SPLIT_RULE},
        "totals": totals,
        "shards": [s.to_dict() for s in infos],
    }
    final = root / MANIFEST_NAME
    write_json_atomic(final, manifest, indent=1)
    logger.info(
        "manifest: %d train tokens in %d shards, %d validation tokens in %d shards",
        totals["train"]["tokens"],
        totals["train"]["shards"],
        totals["validation"]["tokens"],
        totals["validation"]["shards"],
    )
    return manifest


def _verified(root: Path, info: ShardInfo) -> ShardInfo:
    path = root / info.path
    actual = _info_from_file(path, read_shard_meta(path)) if path.exists() else None
    if actual is None:
        raise ShardError(f"token shard missing: {path}")
    num_rows = pq.ParquetFile(path).metadata.num_rows
    if num_rows != actual.rows:
        raise ShardError(f"{path}: footer says {actual.rows} rows, file holds {num_rows}")
    if info.sha256 and info.sha256 != actual.sha256:
        raise ShardError(f"{path}: sha256 {actual.sha256} differs from the writer's {info.sha256}")
    return actual


def load_manifest(tokens_dir: str | os.PathLike | Store) -> dict[str, Any]:
    """The manifest of a tokens directory (a local path, a URI or a :class:`~thresher.io.Store`),
    with errors that name the file."""
    store = Store.from_uri(tokens_dir)
    path = store.uri_of(MANIFEST_NAME)
    try:
        manifest = json.loads(store.read_bytes(MANIFEST_NAME))
    except FileNotFoundError:
        raise FileNotFoundError(f"no token manifest at {path}: run the pipeline's shard step first") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"token manifest is not valid JSON: {path}: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} manifest")
    if manifest.get("version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: manifest version {manifest['version']} is newer than this reader")
    return manifest


def verify_tokens_dir(tokens_dir: str | os.PathLike | Store) -> list[str]:
    """Every disagreement between the manifest and the files (on disk or in an object store), as
    messages naming files."""
    store = Store.from_uri(tokens_dir)
    manifest = load_manifest(store)
    sizes = store.sizes()
    problems = []
    for d in manifest["shards"]:
        s = ShardInfo.from_dict(d)
        path = store.uri_of(s.path)
        if s.path not in sizes:
            problems.append(f"missing: {path}")
        elif sizes[s.path] != s.bytes:
            problems.append(f"size {sizes[s.path]} != manifest {s.bytes}: {path}")
        elif store.digest(s.path) != s.sha256:
            problems.append(f"sha256 differs from manifest: {path}")
    return problems
