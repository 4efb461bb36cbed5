"""A bounded local cache of token shards downloaded from object storage, for the loaders.

A loader reads a shard's row groups in a shuffled order, many times per epoch and again every
epoch, so a shard on ``s3://`` is downloaded whole once and read from the local disk after that.
A cached file is named by the manifest's sha256 and size (``SHA256-BYTES.parquet``): a shard
rewritten under the same name is a new file here, never a stale one, and the download is checked
against the sha256 before it is published (atomically, :mod:`thresher.io`), so a partial or
corrupted download is never read as data.

The cache is bounded: after each download the least recently used files are removed until the
directory holds at most ``max_bytes`` (the file just fetched stays, even alone over the limit).
"Used" is the file's mtime, touched on every hit, so several processes (DataLoader workers, ranks
on one node) can share one directory: each sees the others' files and evicts by the same order. A
file evicted while another process reads it stays readable to that process (POSIX unlink).
A split larger than the cache is read correctly but may be downloaded more than once per epoch.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from thresher.io import TEMP_NAME, Store, atomic_path, sha256_file

logger = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 16 << 30
CACHE_DIR_ENV = "THRESHER_SHARD_CACHE"


def default_cache_dir() -> Path:
    """``$THRESHER_SHARD_CACHE``, else a per-user directory under the system's temp dir."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env)
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"thresher-shard-cache-{uid}"


class ShardCacheError(RuntimeError):
    pass


class ShardCache:
    """Local copies of a store's shard files (see the module docstring). Picklable."""

    def __init__(
        self, store: Store, directory: str | os.PathLike | None = None, max_bytes: int = DEFAULT_CACHE_BYTES
    ):
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.store = store
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.max_bytes = max_bytes
        self._init_locks()

    def _init_locks(self) -> None:
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self.downloads = 0  # files this process fetched (for tests and the bench)

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self.store, "directory": self.directory, "max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_locks()

    def path(self, rel: str, size: int, sha256: str) -> Path:
        """The local copy of ``rel`` (``size`` bytes, ``sha256``), downloaded if it is not here.

        Threads asking for the same file wait for one download."""
        dest = self.directory / f"{sha256}-{size}.parquet"
        if self._hit(dest, size):
            return dest
        with self._lock:
            lock = self._key_locks.setdefault(dest.name, threading.Lock())
        with lock:
            if self._hit(dest, size):
                return dest
            self.directory.mkdir(parents=True, exist_ok=True)
            with atomic_path(dest) as tmp:
                self.store.download(rel, tmp)
                got_size, got_sha = tmp.stat().st_size, sha256_file(tmp)
                if (got_size, got_sha) != (size, sha256):
                    raise ShardCacheError(
                        f"token shard {self.store.uri_of(rel)} is {got_size} bytes with sha256 {got_sha[:12]}…, "
                        f"the manifest says {size} bytes, {sha256[:12]}…: the shard changed after the "
                        "manifest was written"
                    )
            self.downloads += 1
            self._evict(keep=dest)
        return dest

    def open(self, rel: str, size: int, sha256: str) -> Any:
        """The local copy of ``rel`` opened for reading (a ``pyarrow.OSFile``). Once open it stays
        readable even if another thread or process evicts it; a copy evicted between download
        and open is fetched again."""
        import pyarrow as pa

        for _ in range(8):
            try:
                return pa.OSFile(str(self.path(rel, size, sha256)), "rb")
            except FileNotFoundError:
                continue
        raise ShardCacheError(
            f"{self.store.uri_of(rel)}: evicted from the shard cache {self.directory} before it could be read "
            "eight times running: the cache is too small for the readers sharing it (raise cache_bytes)"
        )

    def _hit(self, dest: Path, size: int) -> bool:
        try:
            if dest.stat().st_size != size:
                return False
            os.utime(dest)  # most recently used
            return True
        except FileNotFoundError:
            return False

    def _evict(self, keep: Path) -> None:
        files = []
        for p in self.directory.iterdir():
            if TEMP_NAME.match(p.name) or not p.name.endswith(".parquet"):
                continue  # another process's download in progress, or not ours
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in files)
        for _, size, p in sorted(files):
            if total <= self.max_bytes:
                break
            if p == keep:
                continue
            p.unlink(missing_ok=True)
            total -= size
            logger.debug("shard cache: evicted %s (%d bytes)", p.name, size)
