"""Publishing files atomically: the one place that writes a file under a temporary name and renames it.

Every file Thresher publishes (documents, stats, manifests, reports, token shards, tokenizers,
downloaded models) is written here, so a reader (a resumed run, a training job, ``datasets``)
sees either the old file or the complete new one, never half a file, and a writer that fails or
is killed leaves no partial file under the final name.

The rule for temporary names is :func:`_temp_name`: ``.NAME.tmp-PID-RANDOM`` in the destination's
own directory (a rename is atomic only within one file system). The name is unique per writer,
so two writers of the same destination (two threads, two processes, two Ray workers retrying one
block) never write into one temporary file: the last rename wins and the destination is one
writer's complete version. A killed writer leaves its dotted temporary behind;
:data:`TEMP_NAME` matches it, so the output-directory checks count it as the run's own.

The publish step is :func:`_publish` (``os.replace``). Both are the places a file system is
plugged in later (object storage, issue #18: a put of a whole object is atomic already, so there
the temporary may be the destination itself).

Writes are not fsync'ed: the guarantee is against readers and failed writers, not power loss.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

# What a temporary file of ours looks like; also matches older names (``.x.tmp123``) a killed
# writer of an earlier version may have left.
TEMP_NAME = re.compile(r"^\..+\.tmp\S*$")


def _temp_name(dest: Path) -> Path:
    """A temporary path beside ``dest`` that no other writer uses (pid + 48 random bits)."""
    return dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{secrets.token_hex(6)}")


def _publish(tmp: Path, dest: Path) -> None:
    """Put the finished temporary file in place under its final name, in one step."""
    os.replace(tmp, dest)


@contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``dest``'s content to; rename it to ``dest`` when the
    block ends without an exception, remove it when it raises.

    Checks belong inside the block: raise there (a checksum that does not match, a file that
    fails validation) and nothing is published. The destination's directory is created."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(dest)
    try:
        yield tmp
        _publish(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(dest: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """``open(dest, mode)`` for a file written as a stream (a download, an export); published
    when the block ends without an exception. ``mode`` is ``"wb"`` or ``"w"``."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes a new file (mode 'wb' or 'w'), got {mode!r}")
    with atomic_path(dest) as tmp, open(tmp, mode, **open_kwargs) as f:
        yield f
        # the file is closed by the inner ``with`` before atomic_path publishes it


def write_bytes_atomic(dest: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_text_atomic(dest: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(dest)


def write_json_atomic(dest: str | os.PathLike, obj: Any, **json_kwargs: Any) -> Path:
    """``obj`` as JSON (``json.dumps(obj, **json_kwargs)``) and a final newline."""
    return write_text_atomic(dest, json.dumps(obj, **json_kwargs) + "\n")


def write_parquet_atomic(
    table: pa.Table, dest: str | os.PathLike, *, compression: str | None = "zstd", **parquet_kwargs: Any
) -> Path:
    """``table`` as one Parquet file; ``compression`` and the keyword arguments go to
    ``pyarrow.parquet.write_table`` (``"none"`` or ``None``: uncompressed)."""
    import pyarrow.parquet as pq

    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, compression=compression or "none", **parquet_kwargs)
    return Path(dest)


def copy_file_atomic(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """A copy of ``src`` published as ``dest`` (contents only, not permissions or times)."""
    import shutil

    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)
